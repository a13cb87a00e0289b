//! End-to-end tests of `lithos_tree` on real containers: start, restart, scale, change,
//! remove, graceful stop. They need root (namespaces, mounts, cgroups).

mod tree_support;

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tree_support::{entry, eventually, exists, root_or_skip, shell_container, Fixture};

const SLEEP: &str = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 1\n\
                     kill-timeout: 3\nexecutable: /bin/sleep\narguments: [\"3600\"]\n";

fn sleeping_fixture(tag: &str, instances: u32) -> Fixture {
    let fixture = Fixture::new(tag);
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", instances));
    fixture
}

#[test]
fn instances_start() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = sleeping_fixture("start", 3);
    fixture.start_tree();
    let running = fixture.wait_running(3, Duration::from_secs(20));
    assert!(running.contains_key("sb/sleep.0"), "{running:?}");
    assert!(running.contains_key("sb/sleep.2"), "{running:?}");
    assert_eq!(fixture.knots().len(), 3);
    let status = fixture.status().unwrap();
    assert_eq!(status.pid as i32, fixture.tree_pid());
    assert!(status.errors.is_empty(), "{:?}", status.errors);
}

#[test]
fn killed_container_restarts_after_restart_timeout() {
    if !root_or_skip("containers") {
        return;
    }
    let fixture = Fixture::new("restart");
    fixture.write_container(
        "sleep",
        &SLEEP.replace("restart-timeout: 1", "restart-timeout: 6"),
    );
    fixture.write_processes("sb", &entry("sleep", "sleep", 1));
    let mut fixture = fixture;
    fixture.start_tree();
    let first = fixture.wait_running(1, Duration::from_secs(20))["sb/sleep.0"];
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    // Killed right after its start, so the backoff of 6 s from that start applies.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        fixture.knots().is_empty(),
        "restarted before restart-timeout\n{}",
        fixture.log()
    );
    let restarted = eventually(Duration::from_secs(20), || {
        fixture
            .running()
            .get("sb/sleep.0")
            .is_some_and(|pid| *pid != first)
    });
    assert!(restarted, "{}", fixture.log());
    assert!(
        fixture.log().contains("container exited"),
        "{}",
        fixture.log()
    );
}

#[test]
fn long_running_container_restarts_at_once() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = sleeping_fixture("longrun", 1);
    fixture.start_tree();
    let first = fixture.wait_running(1, Duration::from_secs(20))["sb/sleep.0"];
    // Ran longer than its restart-timeout of 1 s, so no backoff applies.
    std::thread::sleep(Duration::from_millis(1500));
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let restarted = eventually(Duration::from_secs(5), || {
        fixture
            .running()
            .get("sb/sleep.0")
            .is_some_and(|pid| *pid != first)
    });
    assert!(restarted, "{}", fixture.log());
}

#[test]
fn scaling_up_keeps_running_pids() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = sleeping_fixture("scale", 3);
    fixture.start_tree();
    let before = fixture.wait_running(3, Duration::from_secs(20));
    fixture.write_processes("sb", &entry("sleep", "sleep", 5));
    fixture.signal_tree(Signal::SIGQUIT);
    let after = fixture.wait_running(5, Duration::from_secs(20));
    for (name, pid) in &before {
        assert_eq!(after.get(name), Some(pid), "{name} was restarted");
    }
}

#[test]
fn argument_change_restarts_with_one_sigterm() {
    if !root_or_skip("containers") {
        return;
    }
    let fixture = Fixture::new("argchange");
    let script = |word: &str| {
        format!(
            "trap \"echo $LITHOS_NAME >> /data/terms; exit 0\" TERM; echo {word} >> /data/ready; \
             while true; do sleep 0.2; done"
        )
    };
    fixture.write_container("sh", &shell_container(&script("one"), "1", "5"));
    fixture.write_processes("sb", &entry("sh", "sh", 2));
    let mut fixture = fixture;
    fixture.start_tree();
    let before = fixture.wait_running(2, Duration::from_secs(20));
    // Both traps must be set before the SIGTERM comes.
    let trapped = eventually(Duration::from_secs(10), || {
        fixture.data_lines("ready").len() == 2
    });
    assert!(trapped, "{}", fixture.log());
    fixture.write_container("sh", &shell_container(&script("two"), "1", "5"));
    fixture.signal_tree(Signal::SIGQUIT);
    let replaced = eventually(Duration::from_secs(30), || {
        let now = fixture.running();
        now.len() == 2 && before.iter().all(|(name, pid)| now.get(name) != Some(pid))
    });
    assert!(replaced, "{}", fixture.log());
    let terms = fixture.data_lines("terms");
    assert_eq!(terms.len(), 2, "one SIGTERM per old container: {terms:?}");
    assert_ne!(terms[0], terms[1], "{terms:?}");
}

#[test]
fn removed_entry_is_stopped() {
    if !root_or_skip("containers") {
        return;
    }
    let fixture = Fixture::new("remove");
    fixture.write_container("sleep", SLEEP);
    let both = format!("{}{}", entry("keep", "sleep", 1), entry("drop", "sleep", 2));
    fixture.write_processes("sb", &both);
    let mut fixture = fixture;
    fixture.start_tree();
    let before = fixture.wait_running(3, Duration::from_secs(20));
    fixture.write_processes("sb", &entry("keep", "sleep", 1));
    fixture.signal_tree(Signal::SIGQUIT);
    let after = fixture.wait_running(1, Duration::from_secs(20));
    assert_eq!(after.get("sb/keep.0"), before.get("sb/keep.0"));
    let gone = eventually(Duration::from_secs(10), || {
        !exists(before["sb/drop.0"]) && !exists(before["sb/drop.1"])
    });
    assert!(gone, "{}", fixture.log());
    let state_dir = fixture.runtime_dir().join("state/sb/drop.0");
    assert!(eventually(Duration::from_secs(5), || !state_dir.exists()));
}

#[test]
fn sigterm_stops_everything_and_exits_zero() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = sleeping_fixture("stop", 2);
    fixture.start_tree();
    let running = fixture.wait_running(2, Duration::from_secs(20));
    fixture.signal_tree(Signal::SIGTERM);
    let code = fixture.wait_tree(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", fixture.log());
    for pid in running.values() {
        assert!(!exists(*pid), "container {pid} survived a graceful stop");
    }
    assert!(fixture.knots().is_empty());
    let state = fixture.runtime_dir().join("state/sb");
    assert!(!state.join("sleep.0").exists(), "state dir left behind");
}

#[test]
fn sigint_stops_containers_of_other_sessions() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = sleeping_fixture("sigint", 1);
    fixture.start_tree();
    let running = fixture.wait_running(1, Duration::from_secs(20));
    let knot = running["sb/sleep.0"];
    // Knots run in sessions of their own, so a Ctrl-C on the tree's terminal never reaches
    // them: the tree sends them SIGTERM itself and exits once they are gone.
    fixture.signal_tree(Signal::SIGINT);
    let code = fixture.wait_tree(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", fixture.log());
    assert!(!exists(knot), "the container outlived the tree's stop");
    let log = fixture.log();
    assert_eq!(log.matches("stopping container").count(), 1, "{log}");
    assert!(!log.contains("killed container"), "{log}");
    let exit_line = log
        .lines()
        .find(|line| line.contains("container exited"))
        .unwrap_or_default();
    assert!(exit_line.contains("failure: false"), "{log}");
}

#[test]
fn unwritable_log_keeps_tree_running() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = sleeping_fixture("deadlog", 2);
    // stderr is a pipe whose reading end is closed at once, so every log write fails.
    let tree = fixture.start_tree_with_output(Stdio::null(), Stdio::piped());
    drop(fixture.take_stderr());
    let running = fixture.wait_running(2, Duration::from_secs(20));
    let victim = running["sb/sleep.0"];
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    fixture.signal_tree(Signal::SIGQUIT);
    let restarted = eventually(Duration::from_secs(20), || {
        let now = fixture.running();
        now.len() == 2 && now.get("sb/sleep.0").is_some_and(|pid| *pid != victim)
    });
    assert!(
        restarted,
        "the tree stopped supervising: {:?}",
        fixture.running()
    );
    assert!(exists(tree), "the tree died after failing to log");
    assert_eq!(fixture.running()["sb/sleep.1"], running["sb/sleep.1"]);
}
