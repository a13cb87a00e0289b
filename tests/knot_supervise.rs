//! End-to-end tests of the knot's supervision: signals, the kill timeout, restarts in
//! place, the program's output file and the exit record.

mod knot_support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use knot_support::{
    assert_no_mounts, container_root, eventually, launch, root_or_skip, signal, spec, wait_exit,
};
use lithos::exec::knot::exit_codes;
use lithos::model::spec::Volume;
use nix::sys::signal::Signal;

fn record(root: &Path, name: &str) -> serde_json::Value {
    let path = root.join(format!("state/{name}.exit"));
    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
}

#[test]
fn sigterm_forwarded_to_program() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let spec = spec(tmp.path(), "sb/term.0", "/bin/sleep", &["100"]);
    let pid = launch(&spec, None);
    let log = &spec.stdio_log;
    assert!(eventually(Duration::from_secs(10), || fs::read_to_string(
        log
    )
    .unwrap()
    .contains("starting")));
    signal(pid, Signal::SIGTERM);
    assert_eq!(
        wait_exit(pid, Duration::from_secs(10)),
        Some(exit_codes::SUCCESS)
    );
    let text = fs::read_to_string(log).unwrap();
    assert!(
        text.contains("sb/term.0: killed by signal 15 after"),
        "{text}"
    );
    let record = record(tmp.path(), "sb/term.0");
    assert_eq!(record["signal"], 15, "{record}");
    assert_eq!(record["failure"], false, "{record}");
    assert_eq!(record["pid"], pid, "{record}");
    assert_no_mounts(tmp.path());
}

#[test]
fn kill_timeout_ends_namespace() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    // The program ignores SIGTERM, so only the end of the pid namespace stops it. The
    // test waits for its "2 ready" line, since the start line contains the script too.
    let script = "trap '' TERM; echo $$ ready; while true; do sleep 1; done";
    let mut spec = spec(tmp.path(), "sb/stubborn.0", "/bin/sh", &["-c", script]);
    spec.container.kill_timeout = Duration::from_millis(500);
    let pid = launch(&spec, None);
    let log = &spec.stdio_log;
    assert!(eventually(Duration::from_secs(10), || fs::read_to_string(
        log
    )
    .unwrap()
    .contains("\n2 ready\n")));
    signal(pid, Signal::SIGTERM);
    assert_eq!(
        wait_exit(pid, Duration::from_secs(10)),
        Some(exit_codes::SUCCESS)
    );
    let knot_log = fs::read_to_string(&spec.log_file).unwrap();
    assert!(knot_log.contains("kill timeout passed"), "{knot_log}");
    let record = record(tmp.path(), "sb/stubborn.0");
    assert_eq!(record["signal"], 9, "{record}");
    assert_eq!(record["failure"], false, "{record}");
}

#[test]
fn restart_process_only_restarts_in_place() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let root = tmp.path();
    fs::create_dir_all(root.join("image/logs")).unwrap();
    fs::create_dir_all(root.join("storage/logs")).unwrap();
    // The tmpfs keeps a counter across restarts, which proves the container stayed.
    let script = "echo run >> /tmp/runs; echo runs=$(wc -l < /tmp/runs); exit 5";
    let mut spec = spec(root, "sb/again.0", "/bin/sh", &["-c", script]);
    spec.container.restart_process_only = true;
    spec.container.restart_timeout = Duration::from_millis(300);
    spec.container.stdout_stderr_file = Some("/logs/out.log".into());
    spec.writable_paths
        .insert("/storage".into(), root.join("storage"));
    let logs = Volume::Persistent {
        path: "/storage/logs".into(),
        mkdir: false,
        mode: 0o755,
        user: 0,
        group: 0,
    };
    spec.container.volumes.insert("/logs".into(), logs);
    spec.container.volumes.insert(
        "/tmp".into(),
        Volume::Tmpfs {
            size: 0,
            mode: 0o1777,
        },
    );
    let pid = launch(&spec, None);
    let out = root.join("storage/logs/out.log");
    let restarted = eventually(Duration::from_secs(10), || {
        fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("runs=3\n")
    });
    signal(pid, Signal::SIGTERM);
    assert_eq!(
        wait_exit(pid, Duration::from_secs(10)),
        Some(exit_codes::SUCCESS)
    );
    let text = fs::read_to_string(&out).unwrap();
    assert!(restarted, "{text}");
    assert!(
        text.matches("sb/again.0: starting /bin/sh -c").count() >= 3,
        "{text}"
    );
    assert!(
        text.matches("sb/again.0: exited with code 5 after").count() >= 3,
        "{text}"
    );
    assert_eq!(record(root, "sb/again.0")["failure"], false);
    assert_no_mounts(root);
}

#[test]
fn sigterm_while_waiting_to_restart_exits() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let mut spec = spec(tmp.path(), "sb/wait.0", "/bin/sh", &["-c", "exit 1"]);
    spec.container.restart_process_only = true;
    spec.container.restart_timeout = Duration::from_secs(3600);
    let pid = launch(&spec, None);
    let log = &spec.stdio_log;
    assert!(eventually(Duration::from_secs(10), || fs::read_to_string(
        log
    )
    .unwrap()
    .contains("exited with code 1")));
    signal(pid, Signal::SIGTERM);
    assert_eq!(
        wait_exit(pid, Duration::from_secs(10)),
        Some(exit_codes::SUCCESS)
    );
}
