//! Loading whole config trees built in a temporary directory.

use std::fs;
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
