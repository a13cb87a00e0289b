//! No input panics a loader: arbitrary bytes and arbitrary YAML built from lithos keys.

use std::fs;
use std::path::Path;

use lithos::model::files::{check_text, FileKind};
use lithos::model::{load_tree, LoadOptions};
use proptest::prelude::*;

const KINDS: [FileKind; 5] = [
    FileKind::Master,
    FileKind::Sandbox,
    FileKind::Processes,
    FileKind::Container,
    FileKind::SecretEnviron,
];

/// Keys of every format, so generated mappings reach deep into the loaders.
const KEYS: &[&str] = &[
    "kind",
    "variables",
    "volumes",
    "user-id",
    "user_id",
    "group-id",
    "memory-limit",
    "cpu-shares",
    "fileno-limit",
    "restart-timeout",
    "kill-timeout",
    "executable",
    "arguments",
    "environ",
    "secret-environ",
    "secret-environ-file",
    "workdir",
    "resolv-conf",
    "hosts-file",
    "uid-map",
    "gid-map",
    "stdout-stderr-file",
    "interactive",
    "restart-process-only",
    "tcp-ports",
    "normal-exit-codes",
    "metadata",
    "image-dir",
    "image-dir-levels",
    "allow-users",
    "allow-groups",
    "default-user",
    "default-group",
    "allow-tcp-ports",
    "bridged-network",
    "bridge",
    "network",
    "readonly-paths",
    "writable-paths",
    "secrets-namespaces",
    "image",
    "config",
    "instances",
    "ip-addresses",
    "runtime-dir",
    "cgroup-name",
    "cgroup-controllers",
    "size",
    "mode",
    "path",
    "fd",
    "host",
    "inside",
    "outside",
    "count",
    "activation",
    "mount",
    "_x",
    "77",
    "\"@{p}\"",
    "/tmp",
    "web",
];

const SCALARS: &[&str] = &[
    "1",
    "0",
    "-1",
    "0o755",
    "0o99",
    "50ki",
    "100m",
    "100Mi",
    "1T",
    "99999999999999999999",
    "0.5",
    "1e400",
    "nil",
    "null",
    "~",
    "true",
    "\"\"",
    "/abs",
    "rel",
    "\"@{p}\"",
    "\"@{lithos:pid}\"",
    "\"@{\"",
    "1-10",
    "10-1",
    "10.0.0.1",
    "10.0.0.0/8",
    "Daemon",
    "Command",
    "systemd",
    "v2:a:b:c:d",
    "!TcpPort",
    "!Name",
    "!DottedName",
    "!Choice [a, b]",
    "!Tmpfs {size: 1k}",
    "!Statedir {}",
    "!Readonly /x",
    "!Persistent {path: /x}",
    "!Persistent /x",
    "!Other 1",
    "*undefined",
    "&a 1",
];

fn yaml_value() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(SCALARS).prop_map(str::to_string);
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec((prop::sample::select(KEYS), inner.clone()), 0..6).prop_map(
                |pairs| {
                    let body: Vec<String> = pairs
                        .into_iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect();
                    format!("{{{}}}", body.join(", "))
                }
            ),
            prop::collection::vec(inner.clone(), 0..5)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            inner.prop_map(|value| format!("!Tmpfs {value}")),
        ]
    })
}

fn yaml_document() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(KEYS), yaml_value()), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect()
    })
}

proptest! {
    #[test]
    fn loaders_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        for kind in KINDS {
            let _ = check_text(Path::new("/t/f.yaml"), &text, kind);
        }
    }

    #[test]
    fn loaders_never_panic_on_yaml(text in yaml_document()) {
        for kind in KINDS {
            let _ = check_text(Path::new("/t/f.yaml"), &text, kind);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn tree_never_panics(sandbox in yaml_document(), processes in yaml_document(), container in yaml_document()) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("sandboxes")).unwrap();
        fs::create_dir_all(root.join("processes")).unwrap();
        fs::create_dir_all(root.join("images/web/config")).unwrap();
        fs::write(root.join("master.yaml"), format!("runtime-dir: {}/run\n", root.display())).unwrap();
        fs::write(root.join("sandboxes/s.yaml"), format!("image-dir: {}/images\n{sandbox}", root.display())).unwrap();
        fs::write(root.join("processes/s.yaml"), format!("web: {{image: web, config: /config/c.yaml}}\n{processes}")).unwrap();
        fs::write(root.join("images/web/config/c.yaml"), container).unwrap();
        let tree = load_tree(&root.join("master.yaml"), &LoadOptions::default()).unwrap();
        for problem in &tree.problems.0 {
            prop_assert!(!problem.message.is_empty());
        }
    }
}
