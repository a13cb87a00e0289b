//! End-to-end tests of `lithos_switch` against a running `lithos_tree`.

mod tree_support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use tree_support::{entry, root_or_skip, Fixture};

const SLEEP: &str = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 1\n\
                     kill-timeout: 3\nexecutable: /bin/sleep\narguments: [\"3600\"]\n";

fn switch(fixture: &Fixture, args: &[&str], new_file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lithos_switch"))
        .arg("--master")
        .arg(fixture.master())
        .args(args)
        .arg("sb")
        .arg(new_file)
        .output()
        .expect("run lithos_switch")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn leftover_temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

fn running_fixture(tag: &str) -> Fixture {
    let mut fixture = Fixture::new(tag);
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", 2));
    fixture.start_tree();
    fixture.wait_running(2, Duration::from_secs(20));
    fixture
}

#[test]
fn switch_applies_new_file_and_waits() {
    if !root_or_skip("containers") {
        return;
    }
    let fixture = running_fixture("switch");
    let before = fixture.running();
    let new_file = fixture.root().join("new.yaml");
    std::fs::write(&new_file, entry("sleep", "sleep", 3)).unwrap();
    let output = switch(&fixture, &["--wait", "20"], &new_file);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("start   sb/sleep.2"), "{stdout}");
    assert!(stdout.contains("applied generation"), "{stdout}");
    let installed = std::fs::read_to_string(fixture.processes_path("sb")).unwrap();
    assert_eq!(installed, entry("sleep", "sleep", 3));
    let after = fixture.wait_running(3, Duration::from_secs(20));
    for (name, pid) in &before {
        assert_eq!(after.get(name), Some(pid));
    }
    assert!(leftover_temp_files(&fixture.root().join("config/processes")).is_empty());
}

#[test]
fn switch_rejects_invalid_file() {
    if !root_or_skip("containers") {
        return;
    }
    let fixture = running_fixture("switchbad");
    let before = fixture.running();
    let generation = fixture.status().unwrap().generation;
    let old = std::fs::read_to_string(fixture.processes_path("sb")).unwrap();
    let new_file = fixture.root().join("bad.yaml");
    std::fs::write(
        &new_file,
        "sleep:\n  image: test.v1\n  config: /config/missing.yaml\n",
    )
    .unwrap();
    let output = switch(&fixture, &[], &new_file);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(fixture.processes_path("sb")).unwrap(),
        old
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fixture.status().unwrap().generation,
        generation,
        "the tree was signalled"
    );
    assert_eq!(fixture.running(), before);
    assert!(leftover_temp_files(&fixture.root().join("config/processes")).is_empty());
}

#[test]
fn switch_dry_run_changes_nothing() {
    if !root_or_skip("containers") {
        return;
    }
    let fixture = running_fixture("switchdry");
    let generation = fixture.status().unwrap().generation;
    let old = std::fs::read_to_string(fixture.processes_path("sb")).unwrap();
    let new_file = fixture.root().join("new.yaml");
    std::fs::write(&new_file, "").unwrap();
    let output = switch(&fixture, &["--dry-run"], &new_file);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("stop    sb/sleep.0"), "{stdout}");
    assert!(stdout.contains("dry run"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(fixture.processes_path("sb")).unwrap(),
        old
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fixture.status().unwrap().generation, generation);
}

#[test]
fn switch_without_tree_reports_not_signalled() {
    if !root_or_skip("runtime dir") {
        return;
    }
    let fixture = Fixture::new("switchnotree");
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", 1));
    // A stale pid file naming a live process that is not a tree must not be signalled.
    std::fs::write(
        fixture.runtime_dir().join("master.pid"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let new_file = fixture.root().join("new.yaml");
    std::fs::write(&new_file, entry("sleep", "sleep", 2)).unwrap();
    let output = switch(&fixture, &[], &new_file);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));
    let installed = std::fs::read_to_string(fixture.processes_path("sb")).unwrap();
    assert_eq!(installed, entry("sleep", "sleep", 2));
}
