//! The systemd unit in `packaging/`: required settings, and `systemd-analyze verify` where
//! that tool exists.

use std::path::Path;
use std::process::Command;

fn unit_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/lithos.service"))
        .unwrap()
}

#[test]
fn unit_has_required_settings() {
    let unit = unit_text();
    for line in [
        "Type=notify",
        "Delegate=yes",
        "KillMode=process",
        "Restart=on-failure",
        "ExecReload=/bin/kill -QUIT $MAINPID",
        "ExecStart=/usr/bin/lithos_tree --config /etc/lithos/master.yaml",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}

#[test]
fn unit_passes_systemd_analyze() {
    let available = Command::new("systemd-analyze").arg("--version").output();
    if !available.is_ok_and(|o| o.status.success()) {
        println!("skipped: systemd-analyze not found (install systemd to verify the unit)");
        return;
    }
    // verify also checks that ExecStart names an executable; lithos_tree is installed
    // in /usr/bin only on a real host, so the copy points at a binary of this build.
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_text().replace("/usr/bin/lithos_tree", env!("CARGO_BIN_EXE_lithos"));
    let path = dir.path().join("lithos.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // verify exits 0 on settings it ignores, so any message is a failure too.
    let own: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("lithos.service"))
        .collect();
    assert!(own.is_empty(), "{stderr}");
}
