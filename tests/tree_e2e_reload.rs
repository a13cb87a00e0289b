//! End-to-end tests of reloads: SIGQUIT and SIGHUP re-execute the tree with running
//! containers untouched, bad config kills nothing, and kill deadlines survive a reload.

mod tree_support;

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tree_support::{
    entry, eventually, exists, root_or_skip, shell_container, zombie_children, Fixture,
};

const SLEEP: &str = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 1\n\
                     kill-timeout: 3\nexecutable: /bin/sleep\narguments: [\"3600\"]\n";

fn running_fixture(
    tag: &str,
    instances: u32,
) -> (Fixture, std::collections::BTreeMap<String, i32>) {
    let mut fixture = Fixture::new(tag);
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", instances));
    fixture.start_tree();
    let running = fixture.wait_running(instances as usize, Duration::from_secs(20));
    (fixture, running)
}

#[test]
fn sigquit_and_sighup_keep_pids() {
    if !root_or_skip("containers") {
        return;
    }
    let (fixture, before) = running_fixture("reload", 3);
    let tree = fixture.tree_pid();
    for signal in [Signal::SIGQUIT, Signal::SIGHUP] {
        let generation = fixture.status().unwrap().generation;
        fixture.signal_tree(signal);
        let status = fixture.wait_generation_above(generation, Duration::from_secs(20));
        assert_eq!(status.pid as i32, tree, "the tree changed pid on {signal}");
        let after = fixture.wait_running(3, Duration::from_secs(20));
        assert_eq!(after, before, "pids changed on {signal}");
    }
    assert!(
        fixture.log().contains("lithos_tree reloaded"),
        "{}",
        fixture.log()
    );
}

#[test]
fn sigquit_burst_keeps_pids_and_reaps() {
    if !root_or_skip("containers") {
        return;
    }
    let (fixture, before) = running_fixture("burst", 3);
    let tree = fixture.tree_pid();
    let generation = fixture.status().unwrap().generation;
    for _ in 0..50 {
        kill(Pid::from_raw(tree), Signal::SIGQUIT).unwrap();
    }
    fixture.wait_generation_above(generation, Duration::from_secs(30));
    // Let the burst settle: the generation stops moving once every signal was handled.
    let mut last = 0;
    let settled = eventually(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(500));
        let current = fixture.status().map(|s| s.generation).unwrap_or(0);
        let same = current == last;
        last = current;
        same
    });
    assert!(settled, "the tree kept reloading");
    assert!(
        exists(tree),
        "the tree died in the burst\n{}",
        fixture.log()
    );
    let after = fixture.wait_running(3, Duration::from_secs(20));
    assert_eq!(after, before);
    assert!(zombie_children(tree).is_empty(), "zombies left");
}

#[test]
fn invalid_processes_file_kills_nothing() {
    if !root_or_skip("containers") {
        return;
    }
    let (fixture, before) = running_fixture("badproc", 2);
    let generation = fixture.status().unwrap().generation;
    fixture.write_processes(
        "sb",
        "sleep:\n  image: test.v1\n  instances: [not a number\n",
    );
    fixture.signal_tree(Signal::SIGQUIT);
    let status = fixture.wait_generation_above(generation, Duration::from_secs(20));
    assert!(status.errors.contains_key("sb"), "{:?}", status.errors);
    let after = fixture.wait_running(2, Duration::from_secs(20));
    assert_eq!(after, before);
    // A second reload with the file still broken keeps the last good state too.
    fixture.signal_tree(Signal::SIGHUP);
    fixture.wait_generation_above(status.generation, Duration::from_secs(20));
    assert_eq!(fixture.wait_running(2, Duration::from_secs(20)), before);
}

#[test]
fn invalid_container_config_kills_nothing() {
    if !root_or_skip("containers") {
        return;
    }
    let (fixture, before) = running_fixture("badcontainer", 2);
    let generation = fixture.status().unwrap().generation;
    fixture.write_container(
        "sleep",
        "kind: Daemon\nexecutable: relative/path\nbogus-key: 1\n",
    );
    fixture.signal_tree(Signal::SIGQUIT);
    let status = fixture.wait_generation_above(generation, Duration::from_secs(20));
    assert!(
        status.errors.contains_key("sb/sleep"),
        "{:?}",
        status.errors
    );
    assert_eq!(fixture.wait_running(2, Duration::from_secs(20)), before);
}

#[test]
fn invalid_master_config_prevents_reload() {
    if !root_or_skip("containers") {
        return;
    }
    let (fixture, before) = running_fixture("badmaster", 2);
    let generation = fixture.status().unwrap().generation;
    let good = std::fs::read_to_string(fixture.master()).unwrap();
    std::fs::write(fixture.master(), "runtime-dir: relative\nlog-level: loud\n").unwrap();
    fixture.signal_tree(Signal::SIGQUIT);
    let logged = eventually(Duration::from_secs(10), || {
        fixture
            .log()
            .contains("master config is invalid, not reloading")
    });
    assert!(logged, "{}", fixture.log());
    assert_eq!(
        fixture.status().unwrap().generation,
        generation,
        "reloaded anyway"
    );
    assert_eq!(fixture.wait_running(2, Duration::from_secs(20)), before);
    std::fs::write(fixture.master(), good).unwrap();
    fixture.signal_tree(Signal::SIGQUIT);
    fixture.wait_generation_above(generation, Duration::from_secs(20));
    assert_eq!(fixture.wait_running(2, Duration::from_secs(20)), before);
}

#[test]
fn removed_processes_file_stops_sandbox() {
    if !root_or_skip("containers") {
        return;
    }
    let (fixture, before) = running_fixture("rmproc", 2);
    std::fs::remove_file(fixture.processes_path("sb")).unwrap();
    fixture.signal_tree(Signal::SIGQUIT);
    let stopped = eventually(Duration::from_secs(20), || {
        before.values().all(|pid| !exists(*pid))
    });
    assert!(stopped, "{}", fixture.log());
}

/// A container whose program ignores SIGTERM.
fn stubborn_fixture(tag: &str) -> (Fixture, i32) {
    let mut fixture = Fixture::new(tag);
    let script = "trap \"\" TERM; echo $$ >> /data/ready; while true; do sleep 0.2; done";
    fixture.write_container("stubborn", &shell_container(script, "1", "4"));
    fixture.write_processes("sb", &entry("stubborn", "stubborn", 1));
    fixture.start_tree();
    let running = fixture.wait_running(1, Duration::from_secs(20));
    // A SIGTERM before the trap is set would end the program, not test the deadline.
    let trapped = eventually(Duration::from_secs(10), || {
        !fixture.data_lines("ready").is_empty()
    });
    assert!(trapped, "{}", fixture.log());
    (fixture, running["sb/stubborn.0"])
}

#[test]
fn kill_timeout_escalates_to_sigkill() {
    if !root_or_skip("containers") {
        return;
    }
    let (fixture, knot) = stubborn_fixture("killtimeout");
    fixture.write_processes("sb", "");
    fixture.signal_tree(Signal::SIGQUIT);
    let killed = eventually(Duration::from_secs(20), || !exists(knot));
    assert!(killed, "{}", fixture.log());
    assert!(
        fixture.log().contains("killed container"),
        "{}",
        fixture.log()
    );
    // The tree asked it to stop, so the SIGKILL that ended it is not a failure.
    let accounted = eventually(Duration::from_secs(10), || {
        fixture.log().contains("container exited")
    });
    assert!(accounted, "{}", fixture.log());
    let log = fixture.log();
    let exit_line = log
        .lines()
        .find(|line| line.contains("container exited"))
        .unwrap();
    assert!(exit_line.contains("failure: false"), "{log}");
}

#[test]
fn kill_deadline_survives_reload() {
    if !root_or_skip("containers") {
        return;
    }
    let (fixture, knot) = stubborn_fixture("killreload");
    // A stopped knot cannot act on SIGTERM at all, so only the tree's deadline ends it.
    kill(Pid::from_raw(knot), Signal::SIGSTOP).unwrap();
    fixture.write_processes("sb", "");
    let generation = fixture.status().unwrap().generation;
    fixture.signal_tree(Signal::SIGQUIT);
    let status = fixture.wait_generation_above(generation, Duration::from_secs(20));
    let signalled = eventually(Duration::from_secs(10), || {
        fixture.log().contains("stopping container")
    });
    assert!(signalled, "{}", fixture.log());
    fixture.signal_tree(Signal::SIGQUIT);
    fixture.wait_generation_above(status.generation, Duration::from_secs(20));
    let killed = eventually(Duration::from_secs(20), || !exists(knot));
    assert!(killed, "{}", fixture.log());
    let terms = fixture.log().matches("stopping container").count();
    assert_eq!(
        terms,
        1,
        "SIGTERM sent again after the reload\n{}",
        fixture.log()
    );
}
