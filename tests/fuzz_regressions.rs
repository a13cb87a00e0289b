//! Hostile inputs kept as regression cases: each once crashed, hung or ballooned a parser
//! somewhere, or is the known way to do so to a YAML or base64 parser. Every case must
//! give problems, quickly, without a panic.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use lithos::model::files::{check_text, FileKind};
use lithos::secrets::EncryptedValue;

const KINDS: [FileKind; 5] = [
    FileKind::Master,
    FileKind::Sandbox,
    FileKind::Processes,
    FileKind::Container,
    FileKind::SecretEnviron,
];

/// Parses `text` as every kind of config on a thread with a deadline.
fn survives(name: &str, text: String) {
    let (sender, receiver) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            for kind in KINDS {
                let problems = check_text(Path::new("/fuzz/case.yaml"), &text, kind);
                let _ = problems.to_string();
            }
            let _ = sender.send(());
        })
        .unwrap();
    match receiver.recv_timeout(Duration::from_secs(20)) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{name}: parser panicked: {:?}", worker.join().err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: parser hung"),
    }
}

#[test]
fn alias_bomb() {
    // Each level refers to the previous one nine times: expanding it all would need 9^9
    // nodes. The YAML parser must refuse instead of expanding.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let refs = vec![format!("*a{}", level - 1); 9].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    survives("alias_bomb", text.clone());
    survives("alias_bomb_merge", format!("{text}<<: *a9\n"));
}

#[test]
fn deep_nesting() {
    // A recursive descent without a depth limit overflows the stack on these.
    // Parsing time is linear in the input (bounded by the 16 MiB read limit), so a
    // moderate depth proves the point without a slow test.
    let depth = 10_000;
    survives(
        "deep_flow_sequence",
        format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
    );
    survives("deep_flow_mapping", "{a: ".repeat(depth));
    let mut block = String::new();
    for level in 0..2_000 {
        block.push_str(&" ".repeat(level));
        block.push_str("k:\n");
    }
    survives("deep_block_mapping", block);
}

#[test]
fn merge_key_oddities() {
    survives("merge_self", "a: &a {<<: *a}\n".into());
    survives("merge_scalar", "<<: 1\n".into());
    survives("merge_undefined", "<<: *nowhere\n".into());
    survives("merge_list", "x: &x {a: 1}\n<<: [*x, *x, 3]\n".into());
}

#[test]
fn odd_scalars_and_bytes() {
    survives("bom", "\u{feff}executable: /bin/sh\n".into());
    survives("nul", "executable: \"/bin/\0sh\"\n".into());
    survives("huge_int", "instances: 184467440737095516160000\n".into());
    survives("neg_int", "instances: -1\nuser-id: -5\n".into());
    survives(
        "float_overflow",
        "restart-timeout: 1e400\nkill-timeout: .nan\n".into(),
    );
    survives(
        "memory_suffix",
        "memory-limit: 99999999999999999999G\n".into(),
    );
    survives("tags", "volumes:\n  /x: !Nope {}\n  /y: !Tmpfs 7\n".into());
    survives("tag_only", "!Persistent\n".into());
    survives(
        "directives",
        "%YAML 1.2\n%TAG ! tag:x,2000:\n---\n...\n---\n".into(),
    );
    survives("empty_key", ": 1\n? [a]\n: 2\n".into());
    survives("many_docs", "---\na: 1\n".repeat(10_000));
    survives(
        "long_line",
        format!("executable: {}\n", "x".repeat(1 << 20)),
    );
}

#[test]
fn secret_values() {
    for text in [
        "",
        ":",
        "v2",
        "v2:",
        "v2::::",
        "v2:::::",
        "v9:a:b:c:d",
        "vé:a:b:c:d",
        "v:a",
        "v2:AAAA:AAAA:AAAA:",
        "v2:AAAAAAAA:AAAAAAAA:AAAAAAAA:====",
        "v2:AAAAAAAA:AAAAAAAA:AAAAAAAA:AAAA",
        "v2:\u{0}:\u{0}:\u{0}:\u{0}",
    ] {
        let result = text.parse::<EncryptedValue>();
        if let Ok(value) = result {
            assert_eq!(value.to_string().parse::<EncryptedValue>().unwrap(), value);
        }
        let _ = lithos::secrets::decrypt(&[], text);
    }
    // A long payload is decoded in one go and bounded by the input's own size.
    let long = format!("v2:AAAAAAAA:AAAAAAAA:AAAAAAAA:{}", "A".repeat(1 << 20));
    let _ = long.parse::<EncryptedValue>();
}

#[test]
fn private_key_text() {
    for text in [
        "",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n",
        "-----END OPENSSH PRIVATE KEY-----\n-----BEGIN OPENSSH PRIVATE KEY-----\n",
    ] {
        let _ = lithos::secrets::parse_private_keys(text, Path::new("/fuzz/key"));
    }
}
