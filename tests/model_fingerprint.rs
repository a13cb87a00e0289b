//! The fingerprint: stable under key order, changed by every field that needs a restart.

use std::fs;
use std::path::Path;
use std::time::Duration;

use lithos::model::spec::LaunchSpec;
use lithos::model::{fingerprint, load_tree, LoadOptions};
use proptest::prelude::*;

/// Lines of a container config; each is one top-level key, so any order is the same config.
const CONTAINER_LINES: &[&str] = &[
    "kind: Daemon",
    "user-id: 1",
    "group-id: 1",
    "memory-limit: 64Mi",
    "cpu-shares: 512",
    "fileno-limit: 2k",
    "restart-timeout: 0.5",
    "kill-timeout: 3",
    "executable: /bin/busybox",
    "arguments: [httpd, -f, -p, \"@{port}\"]",
    "environ: {LANG: C.UTF-8, NAME: \"@{lithos:name}\", PID: \"@{lithos:pid}\", B: b, A: a}",
    "workdir: /tmp",
    "variables: {port: !TcpPort , mode: !Choice [fast, slow]}",
    "tcp-ports: {\"@{port}\": {fd: 3, host: 127.0.0.1}, 9000: {fd: 4}}",
    "volumes: {/tmp: !Tmpfs {size: 1Mi}, /state: !Statedir {}}",
    "normal-exit-codes: [7, 8]",
    "metadata: {owner: team}",
];

const PROCESS_LINES: &[&str] = &[
    "image: web",
    "config: /config/c.yaml",
    "instances: 1",
    "variables: {mode: fast, port: 8080}",
];

fn load_spec(root: &Path, container: &[&str], process: &[&str]) -> LaunchSpec {
    fs::create_dir_all(root.join("sandboxes")).unwrap();
    fs::create_dir_all(root.join("processes")).unwrap();
    fs::create_dir_all(root.join("images/web/config")).unwrap();
    fs::write(
        root.join("master.yaml"),
        format!(
            "runtime-dir: {}/run\ndefault-log-dir: {0}/log\n",
            root.display()
        ),
    )
    .unwrap();
    fs::write(
        root.join("sandboxes/app.yaml"),
        format!("image-dir: {}/images\nallow-users: [1]\nallow-groups: [1]\nallow-tcp-ports: [8000-9000]\n", root.display()),
    )
    .unwrap();
    let process: String = process.iter().map(|line| format!("  {line}\n")).collect();
    fs::write(root.join("processes/app.yaml"), format!("web:\n{process}")).unwrap();
    let container: String = container.iter().map(|line| format!("{line}\n")).collect();
    fs::write(root.join("images/web/config/c.yaml"), container).unwrap();
    let tree = load_tree(&root.join("master.yaml"), &LoadOptions::default()).unwrap();
    assert!(tree.problems.is_empty(), "{}", tree.problems);
    let instance = tree.desired_instances().next().expect("one instance");
    assert_eq!(instance.fingerprint, fingerprint(&instance.spec));
    (*instance.spec).clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn fingerprint_ignores_key_order(
        container in Just(CONTAINER_LINES.to_vec()).prop_shuffle(),
        process in Just(PROCESS_LINES.to_vec()).prop_shuffle(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let reference = load_spec(&dir.path().join("a"), CONTAINER_LINES, PROCESS_LINES);
        let shuffled = load_spec(&dir.path().join("a"), &container, &process);
        prop_assert_eq!(fingerprint(&reference), fingerprint(&shuffled));
    }
}

type Mutation = (&'static str, fn(&mut LaunchSpec));

/// Returns the socket with the lowest fd; changes go through it so they compose.
fn first_port(spec: &mut LaunchSpec) -> &mut lithos::model::spec::TcpPortSpec {
    spec.container.tcp_ports.values_mut().next().unwrap()
}

/// One change per fingerprinted field of the spec.
const CHANGES: &[Mutation] = &[
    ("version", |s| s.version += 1),
    ("name", |s| s.name.push('x')),
    ("sandbox", |s| s.sandbox.push('x')),
    ("process", |s| s.process.push('x')),
    ("entry_kind", |s| {
        s.entry_kind = lithos::model::spec::EntryKind::Command
    }),
    ("network", |s| {
        s.network = Some(lithos::model::spec::NetworkSpec {
            bridge: "br0".into(),
            network: "10.0.0.0/24".into(),
            default_gateway: None,
            after_setup_command: Vec::new(),
            ip_address: None,
        })
    }),
    ("gid_map", |s| {
        s.container.gid_map.push(lithos::model::spec::IdMap {
            inside: 0,
            outside: 1,
            count: 1,
        })
    }),
    ("image", |s| s.image.push('x')),
    ("image_root", |s| s.image_root.push("x")),
    ("config_path", |s| s.config_path.push("x")),
    ("kind", |s| {
        s.container.kind = lithos::model::spec::ContainerKind::CommandOrDaemon
    }),
    ("user_id", |s| s.container.user_id += 1),
    ("group_id", |s| s.container.group_id += 1),
    ("memory_limit", |s| s.container.memory_limit = None),
    ("cpu_shares", |s| s.container.cpu_shares = Some(2)),
    ("fileno_limit", |s| s.container.fileno_limit += 1),
    ("executable", |s| s.container.executable.push('x')),
    ("arguments", |s| s.container.arguments.push("x".into())),
    ("environ", |s| {
        s.container.environ.insert("NEW".into(), "1".into());
    }),
    ("pid_environ", |s| s.container.pid_environ.clear()),
    ("secret_environ", |s| {
        s.container
            .secret_environ
            .insert("S".into(), vec!["v2:a:b:c:d".into()]);
    }),
    ("workdir", |s| s.container.workdir.push("x")),
    ("resolv_conf", |s| {
        s.container.resolv_conf.copy_from_host = false
    }),
    ("hosts_file", |s| s.container.hosts_file.mount = Some(true)),
    ("uid_map", |s| {
        s.container.uid_map.push(lithos::model::spec::IdMap {
            inside: 0,
            outside: 1,
            count: 1,
        })
    }),
    ("stdout_stderr_file", |s| {
        s.container.stdout_stderr_file = Some("/log".into())
    }),
    ("interactive", |s| s.container.interactive = true),
    ("restart_process_only", |s| {
        s.container.restart_process_only = true
    }),
    ("volumes", |s| {
        s.container.volumes.remove(Path::new("/tmp"));
    }),
    ("port", |s| first_port(s).port += 1),
    ("host", |s| first_port(s).host = "0.0.0.0".parse().unwrap()),
    ("fd", |s| {
        let ports = &mut s.container.tcp_ports;
        let first = *ports.keys().next().unwrap();
        let unused = ports.keys().max().unwrap() + 1;
        let mut port = ports.remove(&first).unwrap();
        port.fd = unused;
        ports.insert(unused, port);
    }),
    ("reuse_port", |s| first_port(s).reuse_port = true),
    ("external", |s| first_port(s).external = true),
    ("readonly_paths", |s| {
        s.readonly_paths.insert("/v".into(), "/h".into());
    }),
    ("writable_paths", |s| {
        s.writable_paths.insert("/v".into(), "/h".into());
    }),
    ("secrets_private_key", |s| {
        s.secrets_private_key = Some("/k".into())
    }),
    ("secrets_namespaces", |s| {
        s.secrets_namespaces.push("ns".into())
    }),
    ("devfs_dir", |s| s.devfs_dir.push("x")),
    ("mount_dir", |s| s.mount_dir.push("x")),
    ("state_dir", |s| s.state_dir.push("x")),
    ("stdio_log", |s| s.stdio_log.push("x")),
    ("log_file", |s| s.log_file.push("x")),
    ("log_level", |s| s.log_level = "debug".into()),
    ("syslog", |s| {
        s.syslog = Some(("daemon".into(), "lithos".into()))
    }),
    ("cgroup", |s| s.cgroup = None),
];

/// Changes that must not restart an instance.
const KEPT: &[Mutation] = &[
    ("restart_timeout", |s| {
        s.container.restart_timeout = Duration::from_secs(60)
    }),
    ("kill_timeout", |s| {
        s.container.kill_timeout = Duration::from_secs(60)
    }),
    ("normal_exit_codes", |s| {
        s.container.normal_exit_codes.push(9)
    }),
    ("listen_backlog", |s| first_port(s).listen_backlog = 1),
    ("reuse_addr", |s| first_port(s).reuse_addr = false),
    ("set_non_block", |s| first_port(s).set_non_block = true),
];

fn base_spec() -> LaunchSpec {
    let dir = tempfile::tempdir().unwrap();
    load_spec(dir.path(), CONTAINER_LINES, PROCESS_LINES)
}

#[test]
fn fingerprint_changes_with_each_field() {
    let base = base_spec();
    for (field, change) in CHANGES {
        let mut changed = base.clone();
        change(&mut changed);
        assert_ne!(changed, base, "the change of {field} did nothing");
        assert_ne!(
            fingerprint(&base),
            fingerprint(&changed),
            "{field} is not fingerprinted"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any set of fingerprinted changes, mixed with excluded ones, changes the fingerprint.
    #[test]
    fn fingerprint_changes_with_any_mix(
        changes in prop::sample::subsequence((0..CHANGES.len()).collect::<Vec<_>>(), 1..6),
        kept in prop::sample::subsequence((0..KEPT.len()).collect::<Vec<_>>(), 0..KEPT.len()),
    ) {
        let base = base_spec();
        let mut changed = base.clone();
        for index in &changes {
            (CHANGES[*index].1)(&mut changed);
        }
        for index in &kept {
            (KEPT[*index].1)(&mut changed);
        }
        prop_assert_ne!(fingerprint(&base), fingerprint(&changed));
    }
}

#[test]
fn fingerprint_keeps_excluded_fields() {
    let base = base_spec();
    for (field, change) in KEPT {
        let mut changed = base.clone();
        change(&mut changed);
        assert_ne!(changed, base, "the change of {field} did nothing");
        assert_eq!(
            fingerprint(&base),
            fingerprint(&changed),
            "{field} is fingerprinted"
        );
    }
}

#[test]
fn fingerprint_independent_of_instance_count_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let base = load_spec(&dir.path().join("a"), CONTAINER_LINES, PROCESS_LINES);
    let mut process = PROCESS_LINES.to_vec();
    process[2] = "instances: 3";
    let more = load_spec(&dir.path().join("b"), CONTAINER_LINES, &process);
    let mut container = CONTAINER_LINES.to_vec();
    container[16] = "metadata: {owner: other, extra: [1, 2]}";
    let other_metadata = load_spec(&dir.path().join("c"), &container, PROCESS_LINES);
    // The paths differ by tree root, so compare after pointing them at the same place.
    let normalize = |mut spec: LaunchSpec| {
        let root = spec
            .image_root
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let strip =
            |p: &mut std::path::PathBuf| *p = Path::new("/").join(p.strip_prefix(&root).unwrap());
        strip(&mut spec.image_root);
        strip(&mut spec.mount_dir);
        strip(&mut spec.state_dir);
        strip(&mut spec.stdio_log);
        strip(&mut spec.log_file);
        fingerprint(&spec)
    };
    let reference = normalize(base);
    assert_eq!(reference, normalize(more));
    assert_eq!(reference, normalize(other_metadata));
}

#[test]
fn fingerprint_is_hex_and_deterministic() {
    let spec = base_spec();
    let first = fingerprint(&spec);
    assert_eq!(first.len(), 64);
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    let roundtrip: LaunchSpec =
        serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(first, fingerprint(&roundtrip));
}

/// The fingerprint of a fixed spec is pinned: a change here restarts every instance of
/// every deployment after an upgrade, so it must come with a new encoding version.
#[test]
fn fingerprint_pinned_across_versions() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/model/launch_spec.json");
    let spec: LaunchSpec = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        fingerprint(&spec),
        "1b18831e90dfb61da152e7b26ee31d51550935173fccdcaad1832f8ab9c6937e"
    );
}
