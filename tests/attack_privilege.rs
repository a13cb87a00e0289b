//! Privilege boundaries: uid 0 only where allow-users permits it, and a container sees
//! neither the host's runtime dir nor the state of other sandboxes.

mod tree_support;

use std::time::Duration;

use lithos::model::{load_tree, EntryLoad, LoadOptions, SandboxLoad};
use tree_support::{entry, eventually, root_or_skip, shell_container, Fixture};

fn write(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn uid_zero_needs_allow_users() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        &root.join("configs/master.yaml"),
        &format!(
            "runtime-dir: {0}/run\ndefault-log-dir: {0}/log\ndevfs-dir: {0}/dev\n",
            root.display()
        ),
    );
    write(
        &root.join("configs/sandboxes/strict.yaml"),
        "image-dir: ../../images\nallow-users: [1-1000]\nallow-groups: [0-1]\n",
    );
    write(
        &root.join("configs/sandboxes/trusted.yaml"),
        "image-dir: ../../images\nallow-users: [0-1000]\nallow-groups: [0-1]\n",
    );
    let processes = entry("root", "root", 1);
    write(&root.join("configs/processes/strict.yaml"), &processes);
    write(&root.join("configs/processes/trusted.yaml"), &processes);
    write(
        &root.join("images/test.v1/config/root.yaml"),
        "kind: Daemon\nuser-id: 0\ngroup-id: 0\nexecutable: /bin/sleep\narguments: [\"60\"]\n",
    );
    let tree = load_tree(&root.join("configs/master.yaml"), &LoadOptions::default()).unwrap();
    let text = tree.problems.to_string();
    let SandboxLoad::Loaded { entries } = &tree.sandboxes["strict"] else {
        panic!("{text}");
    };
    assert!(
        matches!(entries["root"], EntryLoad::Failed),
        "uid 0 allowed"
    );
    assert!(
        text.contains("user-id") && text.contains("allow-users"),
        "{text}"
    );
    let SandboxLoad::Loaded { entries } = &tree.sandboxes["trusted"] else {
        panic!("{text}");
    };
    assert!(
        matches!(entries["root"], EntryLoad::Daemon { .. }),
        "uid 0 refused where allow-users permits it: {text}"
    );
}

#[test]
fn container_sees_no_host_runtime_dir_or_other_state() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = Fixture::new("isolate");
    fixture.write_sandbox("s2", "");
    let run = fixture.runtime_dir();
    let probe = format!(
        "ls -a /state > /data/state-ls; \
         if test -e {run}/state.bin; then echo visible; else echo hidden; fi > /data/runtime; \
         if test -e {run}/state/s2; then echo visible; else echo hidden; fi >> /data/runtime; \
         cat /proc/self/mountinfo > /data/mounts; echo marker > /state/mine; sleep 3600",
        run = run.display()
    );
    let mut config = shell_container(&probe, "1", "1");
    config.push_str("  /state: !Statedir {}\n");
    fixture.write_container("probe", &config);
    let mut other = shell_container("echo secret > /state/other; sleep 3600", "1", "1");
    other.push_str("  /state: !Statedir {}\n");
    fixture.write_container("other", &other);
    // The other sandbox starts first, so its state exists while the probe looks.
    fixture.write_processes("s2", &entry("other", "other", 1));
    fixture.start_tree();
    fixture.wait_running(1, Duration::from_secs(20));
    assert!(
        eventually(Duration::from_secs(10), || run
            .join("state/s2/other.0/other")
            .exists()),
        "{}",
        fixture.log()
    );
    fixture.write_processes("sb", &entry("probe", "probe", 1));
    fixture.signal_tree(nix::sys::signal::Signal::SIGQUIT);
    fixture.wait_running(2, Duration::from_secs(20));
    assert!(
        eventually(Duration::from_secs(10), || fixture
            .data_lines("runtime")
            .len()
            == 2),
        "{}",
        fixture.log()
    );
    assert_eq!(fixture.data_lines("runtime"), ["hidden", "hidden"]);
    let listing = fixture.data_lines("state-ls");
    assert!(
        !listing.iter().any(|name| name == "other"),
        "another container's state is visible: {listing:?}"
    );
    let mounts = fixture.data_lines("mounts").join("\n");
    for line in mounts.lines() {
        let root = line.split_whitespace().nth(3).unwrap_or("");
        // Only the probe's own state dir (and files in it) may come from the runtime dir.
        if root.contains(run.to_str().unwrap()) {
            assert!(
                root.contains("/state/sb/probe.0"),
                "the container mounts {root} from the runtime dir"
            );
        }
    }
    assert!(run.join("state/sb/probe.0/mine").exists());
}
