//! `lithos plan` against a running `lithos_tree`: what a reload would do, read-only.

#[path = "tree_support/mod.rs"]
mod tree_support;

use std::process::Command;
use std::time::Duration;

use tree_support::{root_or_skip, Fixture};

const SLEEP: &str = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 0\n\
                     executable: /bin/sleep\narguments: ['1000']\n";

fn plan(fixture: &Fixture) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lithos"))
        .arg("plan")
        .arg("-C")
        .arg(fixture.master())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn plan_with_running_tree() {
    if !root_or_skip("lithos_tree builds containers") {
        return;
    }
    let mut fixture = Fixture::new("plan");
    fixture.write_container("sleep", SLEEP);
    let entry = |instances: u32| {
        format!(
            "sleeper:\n  instances: {instances}\n  image: test.v1\n  config: /config/sleep.yaml\n"
        )
    };
    fixture.write_processes("sb", &entry(2));
    let tree_pid = fixture.start_tree();
    let running = fixture.wait_running(2, Duration::from_secs(20));

    let (code, stdout, stderr) = plan(&fixture);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("lithos_tree runs as pid {tree_pid}")),
        "{stderr}"
    );
    assert!(
        stdout.contains("0 to start, 0 to restart, 0 to stop, 2 unchanged"),
        "{stdout}"
    );

    fixture.write_processes("sb", &entry(3));
    let (code, stdout, _) = plan(&fixture);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains("+ start sb/sleeper.2 (not running)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 to start, 0 to restart, 0 to stop, 2 unchanged"),
        "{stdout}"
    );

    fixture.write_container("sleep", &SLEEP.replace("1000", "2000"));
    let (code, stdout, _) = plan(&fixture);
    assert_eq!(code, Some(2), "{stdout}");
    let pid = running["sb/sleeper.0"];
    assert!(
        stdout.contains(&format!(
            "~ restart sb/sleeper.0 (pid {pid}) (config changed; changed: arguments)"
        )),
        "{stdout}"
    );
    // Planning changed nothing: the same knots still run.
    assert_eq!(fixture.running(), running);
}
