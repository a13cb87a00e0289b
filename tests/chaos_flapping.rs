//! A container that exits at once, watched for about 20 s through real reloads: its
//! starts stay spaced by restart-timeout, SIGQUIT does not start it early, and the other
//! containers of the tree keep their pids.

mod tree_support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tree_support::{entry, root_or_skip, shell_container, Fixture};

const SLEEP: &str = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 1\n\
                     kill-timeout: 3\nexecutable: /bin/sleep\narguments: [\"3600\"]\n";

/// restart-timeout of the flapping container, in seconds.
const SPACING: f64 = 3.0;

/// Start times (seconds since boot) the flapping container wrote.
fn starts(fixture: &Fixture) -> Vec<f64> {
    fixture
        .data_lines("flap")
        .iter()
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn flapping_container_is_spaced_through_reloads() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = Fixture::new("flap");
    fixture.write_container("sleep", SLEEP);
    // /proc/uptime counts from boot, like the tree's own clock, and is not namespaced.
    fixture.write_container(
        "flap",
        &shell_container("cat /proc/uptime >> /data/flap; exit 1", "3", "1"),
    );
    fixture.write_processes(
        "sb",
        &format!(
            "{}{}",
            entry("steady", "sleep", 2),
            entry("flap", "flap", 1)
        ),
    );
    fixture.start_tree();
    let steady = fixture.wait_running(2, Duration::from_secs(20));
    let tree = fixture.tree_pid();

    let began = Instant::now();
    let mut reloads = 0;
    while began.elapsed() < Duration::from_secs(20) {
        // Reloads at varied moments of the backoff: right after a start, mid-way, late.
        std::thread::sleep(Duration::from_millis(700 + (reloads % 4) * 450));
        fixture.signal_tree(Signal::SIGQUIT);
        reloads += 1;
    }
    std::thread::sleep(Duration::from_secs(1));

    let times = starts(&fixture);
    assert!(
        times.len() >= 4,
        "the flapping container barely started: {times:?}\n{}",
        fixture.log()
    );
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        // /proc/uptime has 10 ms resolution; the program starts a little after the spawn.
        assert!(
            gap >= SPACING - 0.1,
            "two starts {gap:.2} s apart with restart-timeout {SPACING} s: {times:?}\n{}",
            fixture.log()
        );
    }
    let now = fixture.running();
    for (name, pid) in &steady {
        assert_eq!(
            now.get(name),
            Some(pid),
            "{name} was restarted during {reloads} reloads\n{}",
            fixture.log()
        );
    }
    assert_eq!(fixture.tree_pid(), tree);
    assert!(
        tree_support::zombie_children(tree).is_empty(),
        "zombies left behind"
    );
    println!(
        "{} starts in {:.1} s with {reloads} reloads",
        times.len(),
        began.elapsed().as_secs_f64()
    );
}
