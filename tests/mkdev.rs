//! `lithos_mkdev DIR` on a temporary directory, as root (mknod needs CAP_MKNOD).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn mkdev(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lithos_mkdev"))
        .arg(dir)
        .output()
        .unwrap()
}

fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        println!("skipped: needs root (mknod)");
        false
    }
}

#[test]
fn mkdev_creates_devfs() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("dev");
    let output = mkdev(&dev);
    assert!(output.status.success(), "{output:?}");
    for &(name, major, minor) in lithos::exec::mkdev::DEVICES {
        let meta = fs::symlink_metadata(dev.join(name)).unwrap();
        assert!(meta.file_type().is_char_device(), "{name}");
        assert_eq!(meta.rdev(), nix::sys::stat::makedev(major, minor), "{name}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o666, "{name}");
    }
    assert_eq!(
        fs::read_link(dev.join("ptmx")).unwrap(),
        Path::new("pts/ptmx")
    );
    assert!(dev.join("pts").is_dir());
    assert_eq!(
        fs::metadata(dev.join("shm")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn mkdev_is_idempotent() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("dev");
    assert!(mkdev(&dev).status.success());
    let before: Vec<_> = fs::read_dir(&dev)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let output = mkdev(&dev);
    assert!(output.status.success(), "{output:?}");
    let after: Vec<_> = fs::read_dir(&dev)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len());
}

#[test]
fn mkdev_reports_conflict() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("dev");
    fs::create_dir(&dev).unwrap();
    fs::write(dev.join("null"), "not a device").unwrap();
    let output = mkdev(&dev);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("null exists but is not character device 1:3"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(dev.join("null")).unwrap(),
        "not a device"
    );
}

#[test]
fn mkdev_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_lithos_mkdev"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
