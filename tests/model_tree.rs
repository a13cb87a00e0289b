//! Loading whole config trees built in a temporary directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lithos::model::{load_tree, EntryLoad, LoadOptions, SandboxLoad};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Builds a small tree with one sandbox `app`, two daemon instances and one command.
fn simple_tree(root: &Path) {
    write(
        &root.join("configs/master.yaml"),
        &format!(
            "runtime-dir: {0}/run\ndefault-log-dir: {0}/log\ndevfs-dir: {0}/dev\n",
            root.display()
        ),
    );
    write(
        &root.join("configs/sandboxes/app.yaml"),
        "image-dir: ../../images\nallow-users: [1]\nallow-groups: [0-1]\nallow-tcp-ports: [8000-8100]\n",
    );
    write(
        &root.join("configs/processes/app.yaml"),
        "web:\n  instances: 2\n  image: web\n  config: /config/web.yaml\n  variables: {port: 8080}\nshell:\n  kind: Command\n  image: web\n  config: /config/shell.yaml\n",
    );
    write(
        &root.join("images/web/config/web.yaml"),
        "variables:\n  port: !TcpPort\nuser-id: 1\nexecutable: /bin/busybox\narguments: [httpd, -p, \"@{port}\"]\ntcp-ports:\n  \"@{port}\": {fd: 3}\n",
    );
    write(
        &root.join("images/web/config/shell.yaml"),
        "kind: Command\nuser_id: 1\ninteractive: true\nexecutable: /bin/sh\n",
    );
}

#[test]
fn tree_simple_loads() {
    let dir = tempfile::tempdir().unwrap();
    simple_tree(dir.path());
    let tree = load_tree(
        &dir.path().join("configs/master.yaml"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(tree.problems.is_empty(), "{}", tree.problems);
    let instances: Vec<_> = tree.desired_instances().collect();
    assert_eq!(instances.len(), 2);
    let first = &instances[0];
    assert_eq!(first.name.to_string(), "app/web.0");
    assert_eq!(first.spec.container.arguments, ["httpd", "-p", "8080"]);
    assert_eq!(first.spec.container.tcp_ports[&3].port, 8080);
    assert_eq!(first.spec.state_dir, dir.path().join("run/state/app/web.0"));
    assert_eq!(first.spec.stdio_log, dir.path().join("log/stderr/app.log"));
    assert_eq!(first.spec.log_file, dir.path().join("log/app.log"));
    assert_eq!(first.spec.cgroup.as_ref().unwrap().leaf, "app:web.0.scope");
    assert_ne!(instances[0].fingerprint, instances[1].fingerprint);
    let SandboxLoad::Loaded { entries } = &tree.sandboxes["app"] else {
        panic!("sandbox failed");
    };
    let EntryLoad::Command { spec } = &entries["shell"] else {
        panic!("command failed");
    };
    assert_eq!(spec.name, "app/cmd.shell.0");
}

/// Writes and loads a tree with one sandbox `s`. The sandbox text gets an image-dir, and the
/// container configs go into image `img`.
fn load(
    dir: &Path,
    sandbox: &str,
    processes: &str,
    containers: &[(&str, &str)],
) -> lithos::model::ConfigTree {
    let root = dir;
    write(
        &root.join("etc/master.yaml"),
        &format!("runtime-dir: {}/run\n", root.display()),
    );
    write(
        &root.join("etc/sandboxes/s.yaml"),
        &format!("image-dir: ../../images\n{sandbox}"),
    );
    write(&root.join("etc/processes/s.yaml"), processes);
    for (name, text) in containers {
        write(&root.join("images/img/config").join(name), text);
    }
    load_tree(&root.join("etc/master.yaml"), &LoadOptions::default()).unwrap()
}

const SANDBOX: &str = "allow-users: [1-10]\nallow-groups: [0-10]\nallow-tcp-ports: [7000-7999]\n";
const DAEMON: &str = "user-id: 1\nexecutable: /bin/true\n";

fn entry_state<'a>(tree: &'a lithos::model::ConfigTree, name: &str) -> &'a EntryLoad {
    match &tree.sandboxes["s"] {
        SandboxLoad::Loaded { entries } => &entries[name],
        SandboxLoad::Failed => panic!("sandbox failed:\n{}", tree.problems),
    }
}

/// Asserts that the tree has exactly one problem, at `key`, whose message contains `text`.
fn assert_one_problem(tree: &lithos::model::ConfigTree, key: &str, text: &str) {
    assert_eq!(tree.problems.len(), 1, "{}", tree.problems);
    let problem = &tree.problems.0[0];
    assert_eq!(problem.key, key, "{problem}");
    assert!(problem.message.contains(text), "{problem}");
}

#[test]
fn tree_cross_file_checks() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // (sandbox extra, entry extra, container, expected key, expected text)
        ("", "", "user-id: 11\nexecutable: /x\n", "user-id", "not in the sandbox's allow-users"),
        ("", "", "user-id: 1\ngroup-id: 11\nexecutable: /x\n", "group-id", "allow-groups"),
        ("", "", "executable: /x\n", "", "missing key \"user-id\""),
        ("", "  kind: Command\n", DAEMON, "a.kind", "make the kinds agree"),
        (
            "uid-map: [{inside: 0, outside: 1000, count: 10}]\n",
            "",
            "user-id: 1\nexecutable: /x\nuid-map: [{inside: 0, outside: 5, count: 1}]\n",
            "uid-map",
            "both the sandbox and the container",
        ),
        ("", "", "user-id: 1\nexecutable: /x\nvolumes: {/v: !Readonly /data}\n", "volumes./v", "readonly-paths"),
        (
            "readonly-paths: {/data: /srv/data}\n",
            "",
            "user-id: 1\nexecutable: /x\nvolumes: {/v: !Persistent {path: /data}}\n",
            "volumes./v",
            "writable-paths",
        ),
        ("", "", "user-id: 1\nexecutable: /x\ntcp-ports: {80: {fd: 3}}\n", "tcp-ports", "port 80 is not in"),
        ("", "  ip-addresses: [10.0.0.1]\n", DAEMON, "a.ip-addresses", "need a bridged-network"),
        (
            "bridged-network: {bridge: br0, network: 10.0.0.0/24}\n",
            "  instances: 2\n  ip-addresses: [10.0.0.1]\n",
            DAEMON,
            "a.ip-addresses",
            "one ip address per instance",
        ),
        (
            "bridged-network: {bridge: br0, network: 10.0.0.0/24}\n",
            "  kind: Command\n  ip-addresses: [10.0.0.1, 10.0.0.2]\n",
            "kind: Command\nuser-id: 1\nexecutable: /x\n",
            "a.ip-addresses",
            "a command runs one container",
        ),
        ("", "  extra-secrets-namespaces: [\"a/b\"]\n", DAEMON, "a.extra-secrets-namespaces", "not a namespace"),
        (
            "",
            "",
            "user-id: 1\nexecutable: /x\nsecret-environ: {A: \"v2:ROit92I5:82HdsExJ:Gd3ocJsr:Hp3p\"}\n",
            "secret-environ",
            "secrets-private-key",
        ),
        (
            "",
            "  variables: {p: 8000}\n",
            "user-id: 1\nexecutable: /x\nvariables:\n  p: !TcpPort\ntcp-ports: {\"@{p}\": {fd: 3}}\n",
            "a.variables.p",
            "not in the sandbox's allow-tcp-ports",
        ),
        (
            "",
            "  variables: {n: \"a.b\"}\n",
            "user-id: 1\nexecutable: /x\nvariables:\n  n: !Name\n",
            "a.variables.n",
            "not a name",
        ),
        (
            "",
            "  variables: {c: en}\n",
            "user-id: 1\nexecutable: /x\nvariables:\n  c: !Choice [ru, ua]\n",
            "a.variables.c",
            "not one of the choices",
        ),
    ];
    for (sandbox, entry, container, key, text) in cases {
        let dir = tempfile::tempdir().unwrap();
        let processes = format!("a:\n  image: img\n  config: /config/a.yaml\n{entry}");
        let tree = load(
            dir.path(),
            &format!("{SANDBOX}{sandbox}"),
            &processes,
            &[("a.yaml", container)],
        );
        assert!(
            matches!(entry_state(&tree, "a"), EntryLoad::Failed),
            "{key}"
        );
        assert_one_problem(&tree, key, text);
    }
}

#[test]
fn tree_internal_ports_skip_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = format!("{SANDBOX}bridged-network: {{bridge: br0, network: 10.0.0.0/24}}\n");
    let processes = "a:\n  image: img\n  config: /config/a.yaml\n  ip-addresses: [10.0.0.2]\n";
    let container = "user-id: 1\nexecutable: /x\ntcp-ports: {80: {fd: 3}}\n";
    let tree = load(dir.path(), &sandbox, processes, &[("a.yaml", container)]);
    assert!(tree.problems.is_empty(), "{}", tree.problems);
    let instance = tree.desired_instances().next().unwrap();
    let network = instance.spec.network.as_ref().unwrap();
    assert_eq!(network.ip_address, Some("10.0.0.2".parse().unwrap()));
}

#[test]
fn tree_one_bad_entry_keeps_others() {
    let dir = tempfile::tempdir().unwrap();
    let processes = "bad:\n  image: img\n  config: /config/bad.yaml\n\
                     good:\n  image: img\n  config: /config/good.yaml\n  instances: 3\n\
                     zero:\n  image: img\n  config: /config/good.yaml\n  instances: 0\n";
    let bad = "user-id: 99\ngroup-id: 99\nexecutable: relative\nfileno-limit: 1k\n";
    let tree = load(
        dir.path(),
        SANDBOX,
        processes,
        &[("bad.yaml", bad), ("good.yaml", DAEMON)],
    );
    assert!(matches!(entry_state(&tree, "bad"), EntryLoad::Failed));
    let EntryLoad::Daemon { instances } = entry_state(&tree, "good") else {
        panic!("good failed:\n{}", tree.problems);
    };
    assert_eq!(instances.len(), 3);
    let EntryLoad::Daemon { instances } = entry_state(&tree, "zero") else {
        panic!("zero failed:\n{}", tree.problems);
    };
    assert!(instances.is_empty());
    let keys: Vec<&str> = tree.problems.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["user-id", "group-id", "executable"],
        "{}",
        tree.problems
    );
}

#[test]
fn tree_image_names_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let processes = "up:\n  image: ../img\n  config: /config/a.yaml\n\
                     deep:\n  image: img/x\n  config: /config/a.yaml\n\
                     rel:\n  image: img\n  config: config/a.yaml\n\
                     escape:\n  image: img\n  config: /../../etc/a.yaml\n";
    let tree = load(dir.path(), SANDBOX, processes, &[("a.yaml", DAEMON)]);
    let keys: Vec<&str> = tree.problems.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["up.image", "deep.image", "rel.config", "escape.config"],
        "{}",
        tree.problems
    );
}

#[test]
fn tree_config_symlink_stays_in_image() {
    let dir = tempfile::tempdir().unwrap();
    let processes = "a:\n  image: img\n  config: /etc/link.yaml\n";
    write(&dir.path().join("images/img/etc/.keep"), "");
    std::os::unix::fs::symlink(
        "/config/a.yaml",
        dir.path().join("images/img/etc/link.yaml"),
    )
    .unwrap();
    let tree = load(dir.path(), SANDBOX, processes, &[("a.yaml", DAEMON)]);
    assert!(tree.problems.is_empty(), "{}", tree.problems);
    assert_eq!(tree.desired_instances().count(), 1);
}

/// Installs the test key with mode 0600 and returns its path and an encrypter.
fn test_key(dir: &Path) -> (std::path::PathBuf, impl Fn(&str, &str) -> String) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/secrets");
    let key = dir.join("secret.key");
    fs::copy(fixtures.join("test_key_1"), &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let public = lithos::secrets::PublicKey::read_file(&fixtures.join("test_key_1.pub")).unwrap();
    let encrypt = move |namespace: &str, secret: &str| {
        lithos::secrets::encrypt(&public, namespace, secret.as_bytes()).unwrap()
    };
    (key, encrypt)
}

fn is_root(reason: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    println!("skipped: needs root ({reason})");
    false
}

#[test]
fn tree_secret_environ_file_read() {
    if !is_root("the secrets key must be owned by root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, encrypt) = test_key(dir.path());
    let sandbox = format!(
        "{SANDBOX}secrets-private-key: {}\nsecrets-namespaces: [a]\n",
        key.display()
    );
    let processes = "a:\n  image: img\n  config: /config/a.yaml\n  extra-secrets-namespaces: [b]\n";
    let container = "user-id: 1\nexecutable: /x\nsecret-environ-file: secrets.yaml\n";
    let secrets = format!(
        "PASS: {}\nMANY: [{}, {}]\n",
        encrypt("a", "p"),
        encrypt("c", "x"),
        encrypt("b", "y")
    );
    let tree = load(
        dir.path(),
        &sandbox,
        processes,
        &[("a.yaml", container), ("secrets.yaml", &secrets)],
    );
    assert!(tree.problems.is_empty(), "{}", tree.problems);
    let spec = &tree.desired_instances().next().unwrap().spec;
    assert_eq!(spec.container.secret_environ["PASS"].len(), 1);
    assert_eq!(spec.container.secret_environ["MANY"].len(), 2);
    assert_eq!(spec.secrets_namespaces, ["a", "b"]);
}

#[test]
fn tree_secrets_checked_against_namespaces_and_key() {
    if !is_root("the secrets key must be owned by root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, encrypt) = test_key(dir.path());
    let sandbox = format!(
        "{SANDBOX}secrets-private-key: {}\nsecrets-namespaces: [a]\n",
        key.display()
    );
    let processes = "a:\n  image: img\n  config: /config/a.yaml\n";
    let container = format!(
        "user-id: 1\nexecutable: /x\nsecret-environ:\n  A: {}\n",
        encrypt("other", "p")
    );
    let tree = load(dir.path(), &sandbox, processes, &[("a.yaml", &container)]);
    assert_one_problem(&tree, "secret-environ.A", "allowed namespace");

    let dir = tempfile::tempdir().unwrap();
    let (_, encrypt) = test_key(dir.path());
    let other_key = dir.path().join("other.key");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/secrets");
    fs::copy(fixtures.join("test_key_2"), &other_key).unwrap();
    fs::set_permissions(&other_key, fs::Permissions::from_mode(0o600)).unwrap();
    let sandbox = format!("{SANDBOX}secrets-private-key: {}\n", other_key.display());
    let container = format!(
        "user-id: 1\nexecutable: /x\nsecret-environ:\n  A: {}\n",
        encrypt("", "p")
    );
    let tree = load(dir.path(), &sandbox, processes, &[("a.yaml", &container)]);
    assert_one_problem(&tree, "secret-environ", "cannot decrypt");
}

#[test]
fn tree_duplicate_addresses_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = format!("{SANDBOX}bridged-network: {{bridge: br0, network: 10.0.0.0/24}}\n");
    let processes = "a:\n  image: img\n  config: /config/a.yaml\n  ip-addresses: [10.0.0.2]\n\
                     b:\n  image: img\n  config: /config/a.yaml\n  ip-addresses: [10.0.0.2]\n";
    let tree = load(dir.path(), &sandbox, processes, &[("a.yaml", DAEMON)]);
    assert!(matches!(entry_state(&tree, "a"), EntryLoad::Failed));
    assert!(matches!(entry_state(&tree, "b"), EntryLoad::Failed));
    assert_eq!(tree.problems.len(), 2, "{}", tree.problems);
}

#[test]
fn tree_bad_sandbox_still_checks_entries() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = format!("{SANDBOX}default-user: 99\n");
    let processes = "a:\n  image: img\n  config: /config/a.yaml\n";
    let tree = load(
        dir.path(),
        &sandbox,
        processes,
        &[("a.yaml", "user-id: 50\nexecutable: /x\n")],
    );
    assert!(matches!(tree.sandboxes["s"], SandboxLoad::Failed));
    let keys: Vec<&str> = tree.problems.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["default-user", "user-id"], "{}", tree.problems);
}

#[test]
fn tree_alternate_processes_file() {
    let dir = tempfile::tempdir().unwrap();
    let processes = "a:\n  image: img\n  config: /config/a.yaml\n";
    load(dir.path(), SANDBOX, processes, &[("a.yaml", DAEMON)]);
    let alternate = dir.path().join("next.yaml");
    write(
        &alternate,
        "a:\n  image: img\n  config: /config/a.yaml\n  instances: 4\n",
    );
    let options = LoadOptions {
        alternate: Some(("s".to_string(), alternate)),
    };
    let tree = load_tree(&dir.path().join("etc/master.yaml"), &options).unwrap();
    assert_eq!(tree.desired_instances().count(), 4);
}

#[test]
fn tree_missing_master_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = load_tree(&dir.path().join("master.yaml"), &LoadOptions::default()).unwrap_err();
    assert_eq!(error.len(), 1);
    assert!(error.to_string().contains("cannot open"), "{error}");
}
