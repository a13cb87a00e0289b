//! `lithos plan` on a corpus example copied to a temporary directory, and the front
//! door's completions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Copies corpus example `py` into `dir` with its paths there; returns the master path,
/// or `None` when the corpus is not available.
fn example(dir: &Path) -> Option<PathBuf> {
    let example = Path::new("/work/shared/corpus/tailhook_lithos/examples/py");
    if !example.exists() {
        println!("skipped: corpus example {} not found", example.display());
        return None;
    }
    let master = dir.join("configs/master.yaml");
    let original = fs::read_to_string(example.join("configs/master.yaml")).unwrap();
    write(
        &master,
        &format!(
            "{original}\nruntime-dir: {0}/run\ndefault-log-dir: {0}/log\ndevfs-dir: {0}/dev\n",
            dir.display()
        ),
    );
    let images = dir.join("images");
    for sandbox in yaml_files(&example.join("configs/sandboxes")) {
        let text = fs::read_to_string(&sandbox).unwrap().replace(
            "image-dir: /var/lib/lithos/images",
            &format!("image-dir: {}", images.display()),
        );
        write(
            &dir.join("configs/sandboxes")
                .join(sandbox.file_name().unwrap()),
            &text,
        );
    }
    for processes in yaml_files(&example.join("configs/processes")) {
        let text = fs::read_to_string(&processes).unwrap();
        write(
            &dir.join("configs/processes")
                .join(processes.file_name().unwrap()),
            &text,
        );
        let entries: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        for entry in entries.as_mapping().unwrap().values() {
            let config_dir = images.join(entry["image"].as_str().unwrap()).join("config");
            for code in yaml_files(&example.join("code")) {
                write(
                    &config_dir.join(code.file_name().unwrap()),
                    &fs::read_to_string(&code).unwrap(),
                );
            }
        }
    }
    Some(master)
}

fn lithos(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lithos"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn plan_starts_everything_without_tree() {
    let dir = tempfile::tempdir().unwrap();
    let Some(master) = example(dir.path()) else {
        return;
    };
    let master = master.to_str().unwrap();
    let (code, stdout, stderr) = lithos(&["plan", "-C", master]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("no lithos_tree runs for this config"),
        "{stderr}"
    );
    assert!(
        stdout.contains("+ start socket/socket.0 (not running)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+ start socket/socket.1 (not running)"),
        "{stdout}"
    );
    assert!(stdout.contains("2 to start,"), "{stdout}");
    assert!(
        !dir.path().join("run").exists(),
        "plan wrote to runtime-dir"
    );

    let (code, json, _) = lithos(&["plan", "-C", master, "--format", "json", "-v"]);
    assert_eq!(code, Some(2));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["has_changes"], true);
    let entries = value["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{json}");
    assert_eq!(entries[0]["change"], "start");
    assert_eq!(entries[0]["instance"], "socket/socket.0");
    assert_eq!(entries[0]["reasons"], serde_json::json!(["not-running"]));
    assert_eq!(value["summary"]["start"], 2);
}

#[test]
fn plan_alternate_config_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(master) = example(dir.path()) else {
        return;
    };
    let alternate = dir.path().join("new-socket.yaml");
    write(
        &alternate,
        "socket:\n  instances: 0\n  image: py-example\n  config: /config/socket.yaml\n",
    );
    let (code, stdout, stderr) = lithos(&[
        "plan",
        "-C",
        master.to_str().unwrap(),
        "--sandbox",
        "socket",
        "--alternate-config",
        alternate.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("0 to start, 0 to restart, 0 to stop"),
        "{stdout}"
    );
}

#[test]
fn plan_invalid_master_fails() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.yaml");
    write(&master, "runtime-dir: relative\n");
    let (code, _, stderr) = lithos(&["plan", "-C", master.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("failed to load master config"), "{stderr}");
    let (code, _, _) = lithos(&["plan", "--sandbox", "x"]);
    assert_eq!(
        code,
        Some(2),
        "--sandbox without --alternate-config is a usage error"
    );
}

#[test]
fn front_door_completions() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, stdout, _) = lithos(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}");
        assert!(stdout.contains("lithos"), "{shell}");
        assert!(stdout.contains("plan"), "{shell}: {stdout}");
        assert!(stdout.contains("--delete-unused"), "{shell}");
    }
}

#[test]
fn front_door_shares_tool_flags() {
    let (code, stdout, _) = lithos(&["ps", "--json", "-C", "/nonexistent/master.yaml"]);
    assert_eq!(code, Some(0));
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value["trees"], serde_json::json!([]));
    let (code, _, stderr) = lithos(&["cmd", "--master", "/nonexistent/master.yaml", "s", "x"]);
    assert_eq!(code, Some(125));
    assert!(stderr.contains("failed to load master config"), "{stderr}");
}
