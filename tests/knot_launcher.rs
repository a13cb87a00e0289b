//! `lithos_launch_test` and interactive containers, which keep the caller's stdio.

mod knot_support;

use std::process::Command;

#[test]
fn interactive_keeps_caller_stdio() {
    if !knot_support::root_or_skip("namespaces") {
        return;
    }
    let tmp = knot_support::container_root();
    let mut spec = knot_support::spec(
        tmp.path(),
        "sb/cmd.tty.1",
        "/bin/sh",
        &["-c", "echo hello-interactive"],
    );
    spec.container.interactive = true;
    spec.entry_kind = lithos::model::spec::EntryKind::Command;
    let path = tmp.path().join("spec.json");
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lithos_launch_test"))
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout.starts_with("knot pid "), "{stdout}");
    assert!(stdout.contains("hello-interactive\n"), "{stdout}");
    assert!(
        !stdout.contains("[lithos]"),
        "start line on an interactive terminal: {stdout}"
    );
    assert!(
        !spec.stdio_log.exists(),
        "stdio log opened for an interactive command"
    );
}

#[test]
fn launcher_rejects_bad_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("spec.json");
    std::fs::write(&path, "{}").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lithos_launch_test"))
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failed to read launch spec"), "{stderr}");
}
