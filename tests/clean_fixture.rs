//! `lithos_clean` on the fixture tree in `fixtures/clean`: which images are unused under
//! each history option, what deletion removes, and what it never touches.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use lithos::tools::clean::{plan, HistoryOptions};

/// Copies the fixture to a temporary directory and completes it: master.yaml with
/// absolute paths, a recent history line per sandbox, old image mtimes and a symlink.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clean/.");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&source)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let root = dir.path();
    fs::write(
        root.join("configs/master.yaml"),
        format!(
            "runtime-dir: {0}/run\ndefault-log-dir: {0}/log\nconfig-log-dir: config\n",
            root.display()
        ),
    )
    .unwrap();
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    append(
        &root.join("log/config/app.log"),
        &format!("{now} {{\"a\":{{\"image\":\"app-v3\",\"config\":\"/config/a.yaml\"}}}}\n"),
    );
    append(
        &root.join("log/config/web.log"),
        &format!("{now} {{\"w\":{{\"image\":\"web-v2\",\"config\":\"/config/w.yaml\",\"instances\":2}}}}\n"),
    );
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800);
    for group in ["main", "protected", "shared"] {
        for entry in fs::read_dir(root.join("images").join(group)).unwrap() {
            let file = fs::File::open(entry.unwrap().path()).unwrap();
            file.set_modified(old).unwrap();
        }
    }
    std::os::unix::fs::symlink("../protected/p1", root.join("images/main/link")).unwrap();
    dir
}

fn append(path: &Path, line: &str) {
    use std::io::Write;
    let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(line.as_bytes()).unwrap();
}

/// Runs lithos_clean on the fixture; returns the exit code, stdout and stderr.
fn clean(root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lithos_clean"))
        .arg("-C")
        .arg(root.join("configs/master.yaml"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Returns the image names (relative to images/main) in the output lines.
fn names(root: &Path, output: &str) -> Vec<String> {
    let main = root.join("images/main");
    output
        .lines()
        .filter_map(|line| {
            Path::new(line.split(' ').next_back()?)
                .strip_prefix(&main)
                .ok()
                .map(|p| p.display().to_string())
        })
        .collect()
}

#[test]
fn clean_default_lists_orphan_only() {
    let dir = fixture();
    let (code, stdout, stderr) = clean(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(names(dir.path(), &stdout), ["orphan"]);
    assert!(
        stderr.contains("warning: skipping") && stderr.contains("mixed2 (auto-clean false)"),
        "{stderr}"
    );
    assert!(
        dir.path().join("images/main/orphan").exists(),
        "dry run deleted"
    );
}

#[test]
fn clean_history_days() {
    let dir = fixture();
    let (_, stdout, _) = clean(dir.path(), &["--unused", "-D", "1"]);
    assert_eq!(
        names(dir.path(), &stdout),
        ["app-v1", "app-v2", "orphan", "web-v1"]
    );
    let (_, stdout, _) = clean(
        dir.path(),
        &["--unused", "--history-days", "1", "--vmin", "2"],
    );
    assert_eq!(names(dir.path(), &stdout), ["app-v1", "orphan"]);
    let (_, stdout, _) = clean(dir.path(), &["--unused", "-D", "100000"]);
    assert_eq!(names(dir.path(), &stdout), ["orphan"]);
}

#[test]
fn clean_versions_max() {
    let dir = fixture();
    let (_, stdout, _) = clean(dir.path(), &["--unused", "--vmax", "1"]);
    assert_eq!(
        names(dir.path(), &stdout),
        ["app-v1", "app-v2", "orphan", "web-v1"]
    );
    let (_, stdout, _) = clean(dir.path(), &["--unused", "--versions-max", "2"]);
    assert_eq!(names(dir.path(), &stdout), ["app-v1", "orphan"]);
}

#[test]
fn clean_used_lists_reasons() {
    let dir = fixture();
    let (code, stdout, _) = clean(dir.path(), &["--used", "-v"]);
    assert_eq!(code, Some(0));
    let used = names(dir.path(), &stdout.replace(" (", "\t("));
    assert!(stdout.contains("listed-v1 (used-images-list"), "{stdout}");
    assert!(
        stdout.contains("app-v3 (current config of sandbox app"),
        "{stdout}"
    );
    assert!(
        stdout.contains("app-v1 (config of sandbox app loaded at 2020-01-01T00:00:00Z"),
        "{stdout}"
    );
    assert!(!used.contains(&"orphan".to_string()), "{stdout}");
}

#[test]
fn clean_keep_recent() {
    let dir = fixture();
    let orphan = fs::File::open(dir.path().join("images/main/orphan")).unwrap();
    orphan.set_modified(SystemTime::now()).unwrap();
    let (_, stdout, _) = clean(dir.path(), &["--keep-recent", "1h"]);
    assert!(names(dir.path(), &stdout).is_empty(), "{stdout}");
    let (_, stdout, _) = clean(dir.path(), &["-v", "--keep-recent", "1h"]);
    assert!(
        stdout.contains("orphan (changed within --keep-recent)"),
        "{stdout}"
    );
}

#[test]
fn clean_delete_unused() {
    let dir = fixture();
    let root = dir.path();
    let (code, stdout, _) = clean(root, &["--delete-unused", "--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(
        root.join("images/main/orphan").exists(),
        "--dry-run deleted"
    );
    assert_eq!(names(root, &stdout), ["orphan"]);

    let (code, stdout, stderr) = clean(root, &["--delete-unused", "-D", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    for gone in ["app-v1", "app-v2", "web-v1", "orphan"] {
        assert!(!root.join("images/main").join(gone).exists(), "{gone} kept");
    }
    for kept in ["app-v3", "web-v2", "listed-v1", ".hidden"] {
        assert!(
            root.join("images/main").join(kept).exists(),
            "{kept} deleted"
        );
    }
    assert!(
        fs::symlink_metadata(root.join("images/main/link")).is_ok(),
        "symlink deleted"
    );
    assert!(root.join("images/protected/p1/config/README").exists());
    assert!(root.join("images/protected/p0").exists());
    assert!(root.join("images/shared/s1").exists());
    let line = stdout.lines().next().unwrap();
    let (stamp, rest) = line.split_once(' ').unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{line}"
    );
    assert!(rest.starts_with("deleted "), "{line}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
}

#[test]
fn clean_logs_of_removed_sandboxes() {
    let dir = fixture();
    let root = dir.path();
    let gone = root.join("log/config/gone.log");
    let (_, stdout, _) = clean(root, &["--clean-logs"]);
    assert!(stdout.contains(&gone.display().to_string()), "{stdout}");
    assert!(gone.exists());
    let (code, stdout, _) = clean(root, &["--clean-logs", "--delete-unused"]);
    assert_eq!(code, Some(0));
    assert!(!gone.exists());
    assert!(root.join("log/config/app.log").exists());
    assert!(stdout.contains("deleted config history"), "{stdout}");
}

#[test]
fn clean_broken_history_stops() {
    let dir = fixture();
    append(&dir.path().join("log/config/web.log"), "not a line\n");
    let (code, stdout, stderr) = clean(dir.path(), &["--delete-unused"]);
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("invalid line 3 in config history"),
        "{stderr}"
    );
    assert!(dir.path().join("images/main/orphan").exists());
}

#[test]
fn clean_running_container_kept() {
    let dir = fixture();
    let root = dir.path();
    let history = HistoryOptions {
        since: None,
        versions_min: 0,
        versions_max: 1000,
        recent_since: None,
    };
    let running: BTreeMap<PathBuf, String> =
        [(root.join("images/main/orphan"), "app/cmd.sh.7".to_string())].into();
    let report = plan(&root.join("configs/master.yaml"), &history, &running).unwrap();
    let main = report
        .dirs
        .iter()
        .find(|d| d.dir.ends_with("images/main"))
        .unwrap();
    assert!(main.unused.is_empty(), "{:?}", main.unused);
    assert_eq!(
        main.used[&root.join("images/main/orphan")],
        ["running container app/cmd.sh.7"]
    );
    let protected = report
        .dirs
        .iter()
        .find(|d| d.dir.ends_with("images/protected"))
        .unwrap();
    assert_eq!(protected.skipped.as_deref(), Some("auto-clean is false"));
}

#[path = "cmd_support/mod.rs"]
mod cmd_support;

#[test]
fn clean_finds_running_knot_image() {
    if !cmd_support::root_or_skip("spawn_knot builds a container") {
        return;
    }
    let tree = cmd_support::TestTree::new(
        None,
        "sleeper:\n  image: busybox\n  config: /config/sleeper.yaml\n",
    );
    tree.container(
        "sleeper",
        "kind: Daemon\nuser-id: 0\nexecutable: /bin/sleep\narguments: ['1000']\n",
    );
    let loaded =
        lithos::model::load_tree(&tree.master, &lithos::model::LoadOptions::default()).unwrap();
    let instance = loaded.desired_instances().next().unwrap().clone();
    fs::create_dir_all(instance.spec.state_dir.parent().unwrap()).unwrap();
    fs::create_dir_all(tree.root().join("mnt")).unwrap();
    fs::create_dir_all(tree.root().join("log/stdio")).unwrap();
    let request = lithos::exec::spawn::SpawnRequest {
        spec: &instance.spec,
        fingerprint: &instance.fingerprint,
        master: &loaded.master_path,
        knot_binary: Path::new(env!("CARGO_BIN_EXE_lithos_knot")),
        cgroups: None,
        sockets: &[],
        extra_env: &[],
    };
    let knot = lithos::exec::spawn::spawn_knot(&request).unwrap().pid;
    let image = fs::canonicalize(tree.root().join("images/busybox")).unwrap();
    let found = cmd_support::eventually(Duration::from_secs(10), || {
        lithos::tools::clean::running_images(Path::new("/proc"), None)
            .get(&image)
            .is_some_and(|name| name == "s/sleeper.0")
    });
    let pid = nix::unistd::Pid::from_raw(knot);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(pid, None);
    assert!(found, "image {} of knot {knot} not found", image.display());
}

#[test]
fn clean_keep_recent_history() {
    let dir = fixture();
    let root = dir.path();
    let now = chrono::Utc::now();
    let stamp = |time: chrono::DateTime<chrono::Utc>| time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let line = |time: String, image: &str| {
        format!("{time} {{\"a\":{{\"image\":\"{image}\",\"config\":\"/config/a.yaml\"}}}}\n")
    };
    // app-v2 was replaced by app-v3 half an hour ago; app-v1 years ago.
    let history = line("2020-01-01T00:00:00Z".into(), "app-v1")
        + &line(stamp(now - chrono::Duration::hours(5)), "app-v2")
        + &line(stamp(now - chrono::Duration::minutes(30)), "app-v3");
    fs::write(root.join("log/config/app.log"), history).unwrap();
    let (_, stdout, _) = clean(root, &["--unused", "--vmax", "1"]);
    assert_eq!(
        names(root, &stdout),
        ["app-v1", "app-v2", "orphan", "web-v1"]
    );
    // web-v1 was in use until web-v2 was loaded a moment ago, so it is recent too.
    let (_, stdout, _) = clean(root, &["--unused", "--vmax", "1", "--keep-recent", "1h"]);
    assert_eq!(names(root, &stdout), ["app-v1", "orphan"]);
    let (_, stdout, _) = clean(root, &["--unused", "-D", "0", "--keep-recent", "10m"]);
    assert_eq!(names(root, &stdout), ["app-v1", "app-v2", "orphan"]);
}
