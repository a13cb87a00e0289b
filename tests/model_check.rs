//! `lithos_check` as operators run it: exit status, output formats and flags.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Copies `lithos_check` into `dir/bin`, with stand-ins for its sibling binaries when
/// `siblings` is true, and returns its path.
fn install_check(dir: &Path, siblings: bool) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let check = bin.join("lithos_check");
    fs::copy(env!("CARGO_BIN_EXE_lithos_check"), &check).unwrap();
    if siblings {
        write(&bin.join("lithos_tree"), "");
        write(&bin.join("lithos_knot"), "");
    }
    check
}

/// Writes a tree with sandbox `app`; `port` is the value given to the web daemon.
fn tree(dir: &Path, port: &str) -> PathBuf {
    let root = dir.join("etc");
    write(
        &root.join("master.yaml"),
        &format!(
            "runtime-dir: {0}/run\ndefault-log-dir: {0}/log\n",
            dir.display()
        ),
    );
    write(
        &root.join("sandboxes/app.yaml"),
        &format!("image-dir: {}/images\nallow-users: [1]\nallow-groups: [0]\nallow-tcp-ports: [8000-8100]\n", dir.display()),
    );
    write(
        &root.join("processes/app.yaml"),
        &format!(
            "web:\n  image: web\n  config: /config/web.yaml\n  variables:\n    port: {port}\n"
        ),
    );
    write(
        &dir.join("images/web/config/web.yaml"),
        "variables:\n  port: !TcpPort\nuser-id: 1\nexecutable: /bin/true\ntcp-ports:\n  \"@{port}\": {fd: 3}\n",
    );
    root.join("master.yaml")
}

/// Runs the copied binary. Another test thread may fork while a copy is still open for
/// writing, which makes exec fail with ETXTBSY until that child execs, so retry briefly.
fn run(check: &Path, args: &[&str]) -> Output {
    for _ in 0..50 {
        match Command::new(check).args(args).output() {
            Ok(output) => return output,
            Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(error) => panic!("cannot run {}: {error}", check.display()),
        }
    }
    panic!("{} stayed busy for 5 s", check.display());
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn check_valid_tree_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let check = install_check(dir.path(), true);
    let master = tree(dir.path(), "8080");
    let output = run(&check, &["-C", master.to_str().unwrap(), "-v"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).is_empty());
}

#[test]
fn check_invalid_tree_lists_problems() {
    let dir = tempfile::tempdir().unwrap();
    let check = install_check(dir.path(), true);
    let master = tree(dir.path(), "9999");
    let output = run(&check, &["--config", master.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let expected = format!("{}:5:", dir.path().join("etc/processes/app.yaml").display());
    assert!(text.starts_with(&expected), "{text}");
    assert!(
        text.contains(
            "web.variables.port: port 9999 is not in the sandbox's allow-tcp-ports [8000-8100]"
        ),
        "{text}"
    );
}

#[test]
fn check_reports_missing_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let check = install_check(dir.path(), false);
    let master = tree(dir.path(), "8080");
    let output = run(&check, &["-C", master.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("lithos_tree not found next to lithos_check"),
        "{text}"
    );
    assert!(
        text.contains("lithos_knot not found next to lithos_check"),
        "{text}"
    );
}

#[test]
fn check_json_format() {
    let dir = tempfile::tempdir().unwrap();
    let check = install_check(dir.path(), true);
    let master = tree(dir.path(), "9999");
    let output = run(
        &check,
        &["-C", master.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(1));
    let problems: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let first = &problems[0];
    assert_eq!(first["key"], "web.variables.port");
    assert_eq!(first["line"], 5);
    assert_eq!(first["scope"]["Entry"][0], "app");
}

#[test]
fn check_alternate_processes_file() {
    let dir = tempfile::tempdir().unwrap();
    let check = install_check(dir.path(), true);
    let master = tree(dir.path(), "8080");
    let alternate = dir.path().join("new.yaml");
    write(
        &alternate,
        "web:\n  image: web\n  config: /config/web.yaml\n  instances: 2\n",
    );
    for flag in [
        "--sandbox",
        "--sandbox-name",
        "-T",
        "--tree",
        "--subtree-name",
    ] {
        let args = [
            "-C",
            master.to_str().unwrap(),
            flag,
            "app",
            "--alternate-config",
            alternate.to_str().unwrap(),
        ];
        let output = run(&check, &args);
        assert_eq!(output.status.code(), Some(1), "{flag}");
        assert!(
            stdout(&output).contains("variable \"port\" is declared"),
            "{flag}: {}",
            stdout(&output)
        );
    }
    let output = run(
        &check,
        &["-C", master.to_str().unwrap(), "--sandbox", "nope"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("sandbox \"nope\" not found"));
}

#[test]
fn check_container_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let check = install_check(dir.path(), false);
    let good = dir.path().join("good.yaml");
    write(
        &good,
        "variables:\n  port: !TcpPort\nexecutable: /bin/x\narguments: [\"@{port}\"]\n",
    );
    let bad = dir.path().join("bad.yaml");
    write(
        &bad,
        "executable: /bin/x\narguments: [\"@{undeclared}\"]\nwork-dir: /\n",
    );
    let output = run(&check, &["--check-container", good.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let output = run(
        &check,
        &[
            "--check-container",
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("did you mean \"workdir\"?"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_version_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_lithos_check"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).starts_with("lithos_check "));
}
