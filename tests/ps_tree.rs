//! `lithos_ps` against a real `lithos_tree`: its instances, their processes and restarts,
//! in text and JSON.

#[path = "tree_support/mod.rs"]
mod tree_support;

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tree_support::{eventually, root_or_skip, Fixture};

const SLEEP: &str = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 0\n\
                     executable: /bin/sleep\narguments: ['1000']\n";

fn lithos_ps(fixture: &Fixture, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_lithos_ps"))
        .args(args)
        .arg("-C")
        .arg(fixture.master())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn ps_lists_real_tree() {
    if !root_or_skip("lithos_tree builds containers") {
        return;
    }
    let mut fixture = Fixture::new("ps");
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes(
        "sb",
        "sleeper:\n  instances: 2\n  image: test.v1\n  config: /config/sleep.yaml\n",
    );
    let tree_pid = fixture.start_tree();
    let running = fixture.wait_running(2, Duration::from_secs(20));

    // A killed container is restarted, which status.json counts as a second start.
    let old = running["sb/sleeper.0"];
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let restarted = eventually(Duration::from_secs(20), || {
        fixture
            .running()
            .get("sb/sleeper.0")
            .is_some_and(|pid| *pid != old && tree_support::is_knot(*pid))
    });
    assert!(restarted, "sb/sleeper.0 not restarted\n{}", fixture.log());
    let running = fixture.running();

    let json = lithos_ps(&fixture, &["--json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tree = &report["trees"][0];
    assert_eq!(tree["pid"], tree_pid, "{json}");
    assert_eq!(tree["master"], fixture.master().to_str().unwrap());
    let instances = tree["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{json}");
    for (instance, name) in instances.iter().zip(["sb/sleeper.0", "sb/sleeper.1"]) {
        assert_eq!(instance["name"], name);
        assert_eq!(instance["state"], "running", "{json}");
        assert_eq!(instance["pid"], running[name]);
        let program = &instance["processes"]["children"][0];
        assert!(
            program["cmdline"].as_str().unwrap().contains("sleep 1000"),
            "{json}"
        );
    }
    assert_eq!(instances[0]["restarts"], 1, "{json}");
    assert_eq!(instances[1]["restarts"], 0, "{json}");
    assert_eq!(tree["unknown"], serde_json::json!([]));
    assert_eq!(report["unsupervised"], serde_json::json!([]));

    let text = lithos_ps(&fixture, &["--no-color"]);
    assert!(
        text.contains(&format!(
            "lithos_tree pid {tree_pid} master {}",
            fixture.master().display()
        )),
        "{text}"
    );
    let pid = running["sb/sleeper.0"];
    assert!(
        text.contains(&format!("sb/sleeper.0 pid {pid} running up")),
        "{text}"
    );
    assert!(text.contains("restarts 1"), "{text}");
    assert!(text.contains("sleep 1000"), "{text}");

    // After a SIGKILL of the tree its containers keep running without supervision.
    fixture.kill_tree();
    let json = lithos_ps(&fixture, &["--json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["trees"], serde_json::json!([]), "{json}");
    let unsupervised = report["unsupervised"].as_array().unwrap();
    assert_eq!(unsupervised.len(), 2, "{json}");
    assert_eq!(unsupervised[0]["state"], "unsupervised");
}
