//! End-to-end test of the tree's metrics: the Prometheus file and the cantal files after
//! three starts and one killed program. Needs root (containers).

mod tree_support;

use std::fs;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tree_support::{entry, eventually, first_child, root_or_skip, Fixture};

const SLEEP: &str = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 0\n\
                     kill-timeout: 3\nexecutable: /bin/sleep\narguments: [\"3600\"]\n";

/// Returns the value of the sample `name` (with its labels, as written) in `text`.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_starts_deaths_and_failures() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = Fixture::new("metrics");
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", 3));
    fixture.start_tree();
    let running = fixture.wait_running(3, Duration::from_secs(20));

    let knot = running["sb/sleep.1"];
    let program = first_child(knot).expect("the knot runs its program");
    kill(Pid::from_raw(program), Signal::SIGKILL).unwrap();

    let prometheus = fixture.runtime_dir().join("metrics.prom");
    let labels = "{sandbox=\"sb\",process=\"sleep\"}";
    let settled = eventually(Duration::from_secs(20), || {
        let text = fs::read_to_string(&prometheus).unwrap_or_default();
        sample(&text, &format!("lithos_process_deaths_total{labels}")) == Some(1)
            && sample(&text, &format!("lithos_process_running{labels}")) == Some(3)
    });
    let text = fs::read_to_string(&prometheus).unwrap_or_default();
    assert!(
        settled,
        "metrics did not settle:\n{text}\n{}",
        fixture.log()
    );

    assert_eq!(
        sample(&text, &format!("lithos_process_started_total{labels}")),
        Some(4)
    );
    assert_eq!(
        sample(&text, &format!("lithos_process_failures_total{labels}")),
        Some(1)
    );
    assert_eq!(sample(&text, "lithos_containers_started_total"), Some(4));
    assert_eq!(sample(&text, "lithos_containers_deaths_total"), Some(1));
    assert_eq!(sample(&text, "lithos_containers_failures_total"), Some(1));
    assert_eq!(sample(&text, "lithos_containers_running"), Some(3));
    assert_eq!(sample(&text, "lithos_master_containers"), Some(3));
    assert_eq!(sample(&text, "lithos_master_sandboxes"), Some(1));

    // The cantal files exist next to it, with every metric named in their metadata.
    let meta = fs::read_to_string(fixture.runtime_dir().join("metrics.meta")).unwrap();
    assert!(meta.contains("processes.sb.sleep.deaths"), "{meta}");
    assert!(meta.contains("containers.running"), "{meta}");
    assert!(fixture.runtime_dir().join("metrics.values").exists());
}
