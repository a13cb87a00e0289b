//! Hostile input to every config parser, the v2 secret parser and the tree's own state
//! files: arbitrary bytes and mutated real files must give errors, never a panic or a hang.
//!
//! cargo-fuzz needs a nightly toolchain, which this project's build machines lack, so the
//! fuzzing runs here as property tests over arbitrary bytes. `PROPTEST_CASES` raises the
//! number of cases; `scripts/fuzz` runs each target for a fixed time that way. Inputs that
//! once failed are kept in `tests/fuzz_regressions.rs`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use lithos::model::files::{check_text, FileKind};
use lithos::secrets::EncryptedValue;
use proptest::prelude::*;

/// Maximum time of one parse before the test reports a hang.
const HANG_LIMIT: Duration = Duration::from_secs(20);

const KINDS: [FileKind; 5] = [
    FileKind::Master,
    FileKind::Sandbox,
    FileKind::Processes,
    FileKind::Container,
    FileKind::SecretEnviron,
];

/// Runs `work` on its own thread and fails when it panics or outlives `HANG_LIMIT`.
fn bounded(what: &str, input: &[u8], work: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        work();
        let _ = done.send(());
    });
    match finished.recv_timeout(HANG_LIMIT) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let panic = worker.join().err();
            panic!("{what} panicked on {input:?}: {panic:?}");
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} took longer than {HANG_LIMIT:?} on {input:?}")
        }
    }
}

fn check_all_kinds(text: String) {
    let bytes = text.clone().into_bytes();
    bounded("check_text", &bytes, move || {
        for kind in KINDS {
            let problems = check_text(Path::new("/fuzz/input.yaml"), &text, kind);
            // Every problem must render: the tree logs and serializes each one.
            let _ = problems.to_string();
            let _ = serde_json::to_string(&problems).unwrap();
        }
    });
}

/// Reads every YAML file of the corpus of real configs, the seeds for mutation.
fn seeds() -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/model")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    found.push(text);
                }
            }
        }
    }
    found.sort();
    assert!(!found.is_empty(), "no corpus files");
    found
}

/// One edit of a seed: overwrite, insert, delete or duplicate a span.
#[derive(Clone, Debug)]
enum Edit {
    Overwrite(usize, Vec<u8>),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Repeat(usize, usize, u8),
}

/// Fragments that YAML and the lithos tags treat specially.
const TOKENS: &[&str] = &[
    "<<: *a\n",
    "&a ",
    "*a",
    "!Persistent ",
    "!Tmpfs ",
    "!Readonly ",
    "!Statedir ",
    "!BindRW ",
    "!Snapshot ",
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    "\n  ",
    "\t",
    "..",
    "/../",
    "~",
    "null",
    "0x",
    "-1",
    "18446744073709551616",
    "1e400",
    "'",
    "\"",
    "|\n",
    ">\n",
    "? ",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "\u{feff}",
    "\0",
    "v2:",
    "instances: ",
    "memory-limit: ",
    "1G",
];

fn edit() -> impl Strategy<Value = Edit> {
    let fragment = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        proptest::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), fragment.clone()).prop_map(|(at, bytes)| Edit::Overwrite(at, bytes)),
        (any::<usize>(), fragment).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 0usize..64).prop_map(|(at, len)| Edit::Delete(at, len)),
        (any::<usize>(), 1usize..32, 1u8..6)
            .prop_map(|(at, len, times)| Edit::Repeat(at, len, times)),
    ]
}

fn apply(seed: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    for edit in edits {
        let len = bytes.len();
        let at = |pos: usize| if len == 0 { 0 } else { pos % (len + 1) };
        match edit {
            Edit::Overwrite(pos, data) => {
                let start = at(*pos);
                for (offset, byte) in data.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(start + offset) {
                        *slot = *byte;
                    } else {
                        bytes.push(*byte);
                    }
                }
            }
            Edit::Insert(pos, data) => {
                let start = at(*pos);
                bytes.splice(start..start, data.iter().copied());
            }
            Edit::Delete(pos, count) => {
                let start = at(*pos);
                let end = (start + count).min(len);
                bytes.drain(start..end);
            }
            Edit::Repeat(pos, count, times) => {
                let start = at(*pos);
                let end = (start + count).min(len);
                let span = bytes[start..end].to_vec();
                for _ in 0..*times {
                    bytes.splice(end..end, span.iter().copied());
                }
            }
        }
    }
    bytes
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures found here belong in tests/fuzz_regressions.rs, not in a side file.
        failure_persistence: None,
        ..ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200),
        )
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_parsers_survive_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        check_all_kinds(String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn config_parsers_survive_mutated_configs(
        index in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 1..8),
    ) {
        let seeds = seeds();
        let seed = &seeds[index.index(seeds.len())];
        check_all_kinds(String::from_utf8_lossy(&apply(seed, &edits)).into_owned());
    }

    #[test]
    fn load_master_survives_arbitrary_files(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.yaml");
        std::fs::write(&path, &bytes).unwrap();
        bounded("load_master", &bytes.clone(), move || {
            let _ = lithos::model::load_master(&path);
        });
    }

    #[test]
    fn secret_parser_survives_arbitrary_text(
        fields in proptest::collection::vec(
            prop_oneof![
                "[A-Za-z0-9+/=]{0,64}",
                proptest::sample::select(&["v2", "v1", "v22", "", "===="][..]).prop_map(String::from),
                any::<String>(),
            ],
            0..8,
        )
    ) {
        let text = fields.join(":");
        let bytes = text.clone().into_bytes();
        bounded("EncryptedValue::from_str", &bytes, move || {
            if let Ok(value) = text.parse::<EncryptedValue>() {
                // Whatever parses must print back to something that parses the same.
                let again: EncryptedValue = value.to_string().parse().unwrap();
                assert_eq!(again, value);
            }
            let _ = lithos::secrets::decrypt(&[], &text);
        });
    }

    #[test]
    fn secret_parser_survives_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        bounded("EncryptedValue::from_str", &bytes, move || {
            let _ = text.parse::<EncryptedValue>();
            let _ = lithos::secrets::parse_private_keys(&text, Path::new("/fuzz/key"));
        });
    }

    #[test]
    fn state_file_survives_arbitrary_payloads(
        payload in proptest::collection::vec(any::<u8>(), 0..4096),
        mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        from_real in any::<bool>(),
    ) {
        let mut payload = if from_real { real_state_payload() } else { payload };
        for (at, byte) in mutations {
            if !payload.is_empty() {
                let len = payload.len();
                payload[at % len] = byte;
            }
        }
        // A correct header and checksum, so the hostile bytes reach the decoder itself.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        std::fs::write(&path, state_file(&payload)).unwrap();
        let bytes = payload.clone();
        bounded("Persisted::load", &bytes, move || {
            let _ = lithos::state::Persisted::load(&path);
        });
    }

    #[test]
    fn exit_file_survives_arbitrary_bytes(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            (any::<i64>(), any::<u64>(), any::<f64>()).prop_map(|(pid, start, time)| format!(
                r#"{{"pid": {pid}, "start_time": {start}, "code": null, "signal": 9, "failure": true, "time": {time:e}}}"#
            ).into_bytes()),
        ]
    ) {
        let dir = tempfile::tempdir().unwrap();
        let name: lithos::model::spec::InstanceName = "s/p.0".parse().unwrap();
        std::fs::create_dir_all(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/p.0.exit"), &bytes).unwrap();
        let root = dir.path().to_path_buf();
        bounded("read_exit_file", &bytes.clone(), move || {
            if let Ok(Some(exit)) = lithos::state::read_exit_file(&root, &name) {
                let _ = exit.to_record();
                let _ = exit.process();
            }
        });
    }
}

/// Saves a state with a few records and returns the payload of its file.
fn real_state_payload() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.bin");
    let mut state = lithos::state::Persisted::default();
    for index in 0..3 {
        let instance = lithos::reconcile::testing::sample_instance(
            lithos::model::spec::InstanceName::new("s", "p", index),
            "f00d",
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        state.record_spawn(
            &instance,
            lithos::state::ProcId {
                pid: 42,
                start_time: 7,
            },
            Duration::from_secs(5),
        );
    }
    state.save(&path).unwrap();
    std::fs::read(&path).unwrap()[52..].to_vec()
}

fn state_file(payload: &[u8]) -> Vec<u8> {
    use blake2::{Blake2s256, Digest};
    let mut bytes = b"LITHOSST".to_vec();
    bytes.extend(lithos::state::STATE_FORMAT_VERSION.to_le_bytes());
    bytes.extend((payload.len() as u64).to_le_bytes());
    bytes.extend(Blake2s256::digest(payload));
    bytes.extend(payload);
    bytes
}
