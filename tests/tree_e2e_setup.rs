//! End-to-end tests of the tree's start-up: the runtime-dir lock, the pid file, the
//! config log and the command line.

mod tree_support;

use std::process::Command;
use std::time::Duration;

use tree_support::{entry, root_or_skip, Fixture};

const SLEEP: &str = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 1\n\
                     kill-timeout: 3\nexecutable: /bin/sleep\narguments: [\"3600\"]\n";

#[test]
fn second_tree_on_same_runtime_dir_exits() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = Fixture::new("lock");
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", 1));
    // A stale pid file naming a live unrelated process does not stop the first tree.
    std::fs::write(fixture.runtime_dir().join("master.pid"), "1\n").unwrap();
    fixture.start_tree();
    let running = fixture.wait_running(1, Duration::from_secs(20));
    let second = Command::new(env!("CARGO_BIN_EXE_lithos_tree"))
        .arg("-C")
        .arg(fixture.master())
        .arg("--log-stderr")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already runs"), "{stderr}");
    assert!(stderr.contains(&fixture.tree_pid().to_string()), "{stderr}");
    assert_eq!(
        fixture.running(),
        running,
        "the second tree touched containers"
    );
    let pid_file = std::fs::read_to_string(fixture.runtime_dir().join("master.pid")).unwrap();
    assert_eq!(pid_file.trim(), fixture.tree_pid().to_string());
}

#[test]
fn config_log_gets_one_line_per_load() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = Fixture::new("configlog");
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", 1));
    fixture.start_tree();
    fixture.wait_running(1, Duration::from_secs(20));
    let generation = fixture.status().unwrap().generation;
    fixture.signal_tree(nix::sys::signal::Signal::SIGQUIT);
    fixture.wait_generation_above(generation, Duration::from_secs(20));
    let log = std::fs::read_to_string(fixture.root().join("log/config/sb.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let (time, json) = lines[0].split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{time}");
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(value["sleep"]["instances"], 1);
}

#[test]
fn invalid_master_config_exits_three() {
    if !root_or_skip("runtime dir") {
        return;
    }
    let fixture = Fixture::new("badmasterstart");
    std::fs::write(fixture.master(), "runtime-dir: relative\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lithos_tree"))
        .arg("-C")
        .arg(fixture.master())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("runtime-dir"), "{stderr}");
}

#[test]
fn version_flag_prints_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_lithos_tree"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

#[test]
fn notify_socket_gets_ready_and_reloading() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = Fixture::new("notify");
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", 1));
    let socket_path = fixture.root().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    fixture.env.push((
        "NOTIFY_SOCKET".into(),
        socket_path.to_string_lossy().into_owned(),
    ));
    fixture.start_tree();
    let mut messages = Vec::new();
    let receive_until = |wanted: &str, count: usize, messages: &mut Vec<String>| {
        let mut buffer = [0u8; 512];
        while messages.iter().filter(|message| *message == wanted).count() < count {
            let count = socket
                .recv(&mut buffer)
                .expect("notification before timeout");
            messages.push(String::from_utf8_lossy(&buffer[..count]).into_owned());
        }
    };
    receive_until("READY=1", 1, &mut messages);
    fixture.wait_running(1, Duration::from_secs(20));
    fixture.signal_tree(nix::sys::signal::Signal::SIGQUIT);
    receive_until("RELOADING=1", 1, &mut messages);
    receive_until("READY=1", 2, &mut messages);
    assert!(
        messages
            .iter()
            .any(|message| message.starts_with("STATUS=")),
        "{messages:?}"
    );
}
