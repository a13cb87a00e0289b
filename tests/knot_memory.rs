//! The knot's resident memory while it supervises a program, through the test launcher.
//! Prints the numbers recorded in docs/benchmarks.md; debug builds use more than release,
//! so set `LITHOS_LAUNCHER=target/release/lithos_launch_test` to measure a release knot.

mod knot_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use std::io::BufRead;

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..].trim().to_string()
}

#[test]
fn knot_memory_reported() {
    if !knot_support::root_or_skip("namespaces") {
        return;
    }
    let tmp = knot_support::container_root();
    let spec = knot_support::spec(tmp.path(), "sb/mem.0", "/bin/sleep", &["2"]);
    let spec_path = tmp.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    // LITHOS_LAUNCHER points at another build, e.g. target/release/lithos_launch_test,
    // which runs the lithos_knot next to it.
    let launcher =
        std::env::var("LITHOS_LAUNCHER").unwrap_or(env!("CARGO_BIN_EXE_lithos_launch_test").into());
    let mut launcher = Command::new(launcher)
        .arg(&spec_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(launcher.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line
        .trim()
        .strip_prefix("knot pid ")
        .unwrap()
        .parse()
        .unwrap();
    let log = &spec.stdio_log;
    assert!(knot_support::eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("starting")
    }));
    std::thread::sleep(Duration::from_millis(300));
    let rss = status_field(pid, "VmRSS:");
    let anon = status_field(pid, "RssAnon:");
    println!("knot VmRSS {rss}, RssAnon {anon}");
    if let Ok(probe) = std::env::var("LITHOS_MEMORY_PROBE") {
        let _ = Command::new(probe).arg(pid.to_string()).status();
    }
    let status = launcher.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a daemon exiting 0 is a failure");
}
