//! `lithos_cmd` end to end: real containers, no tree running.

mod cmd_support;

use std::io::Write;
use std::process::{Command, Stdio};

use cmd_support::{root_or_skip, TestTree};

const PROCESSES: &str = "\
cat:
  kind: Command
  image: busybox
  config: /config/cat.yaml
say:
  kind: Command
  image: busybox
  config: /config/say.yaml
daemon:
  image: busybox
  config: /config/daemon.yaml
";

fn tree(cgroup: Option<&str>) -> TestTree {
    let tree = TestTree::new(cgroup, PROCESSES);
    tree.container(
        "cat",
        "kind: Command\ninteractive: true\nuser-id: 0\nexecutable: /bin/cat\n",
    );
    tree.container(
        "say",
        "kind: Command\nuser-id: 0\nexecutable: /bin/sh\n\
         arguments: [-c, 'echo said $LITHOS_NAME \"$@\"; exit $1', say]\n",
    );
    tree.container(
        "daemon",
        "kind: Daemon\nuser-id: 0\nexecutable: /bin/sleep\narguments: ['1000']\n",
    );
    tree
}

fn lithos_cmd(tree: &TestTree) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lithos_cmd"));
    command.arg("--master").arg(&tree.master);
    command
}

#[test]
fn cmd_interactive_pipeline() {
    if !root_or_skip("lithos_cmd builds containers") {
        return;
    }
    let tree = tree(Some(&format!(
        "lithos-test-cmd-{}.slice",
        std::process::id()
    )));
    let mut child = lithos_cmd(&tree)
        .args(["s", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi\n");
    let state = tree.root().join("run/state/s");
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state dir not cleaned: {left:?}");
}

#[test]
fn cmd_shell_pipeline() {
    if !root_or_skip("lithos_cmd builds containers") {
        return;
    }
    let tree = tree(None);
    let script = format!(
        "echo hi | {} --master {} s cat",
        env!("CARGO_BIN_EXE_lithos_cmd"),
        tree.master.display()
    );
    let output = Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi\n");
}

#[test]
fn cmd_writes_log_and_exit_code() {
    if !root_or_skip("lithos_cmd builds containers") {
        return;
    }
    let tree = tree(Some(&format!(
        "lithos-test-cmdlog-{}.slice",
        std::process::id()
    )));
    let output = lithos_cmd(&tree)
        .args(["s", "say", "7", "extra"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(7), "stderr: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "stdout is not the log: {:?}",
        output.stdout
    );
    let log = tree.stdio_log();
    let pid = output_pid(&log);
    assert!(
        log.contains(&format!("said s/cmd.say.{pid} 7 extra")),
        "log: {log}"
    );
    let success = lithos_cmd(&tree).args(["s", "say", "0"]).output().unwrap();
    assert_eq!(success.status.code(), Some(0));
}

/// Returns the pid in the first `cmd.say.PID` of the log.
fn output_pid(log: &str) -> String {
    let start = log.find("cmd.say.").expect("command name in log") + "cmd.say.".len();
    log[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

#[test]
fn cmd_rejects_unknown_and_daemon() {
    if !root_or_skip("the test tree holds a busybox image and devices") {
        return;
    }
    let tree = tree(None);
    let unknown = lithos_cmd(&tree).args(["s", "nope"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("commands: cat, say"), "{stderr}");
    let daemon = lithos_cmd(&tree).args(["s", "daemon"]).output().unwrap();
    assert_eq!(daemon.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&daemon.stderr).contains("is a daemon"));
    let sandbox = lithos_cmd(&tree).args(["x", "cat"]).output().unwrap();
    assert_eq!(sandbox.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&sandbox.stderr).contains("sandbox \"x\" not found"));
}

#[test]
fn cmd_log_flags() {
    if !root_or_skip("lithos_cmd builds containers") {
        return;
    }
    let tree = tree(None);
    let output = lithos_cmd(&tree)
        .args(["--log-stderr", "--log-level", "info", "s", "say", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("INFO lithos_cmd: started s/cmd.say."),
        "{stderr}"
    );
    let quiet = lithos_cmd(&tree)
        .args(["--log-stderr", "--log-level", "error", "s", "say", "0"])
        .output()
        .unwrap();
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    // Without --log-stderr the lines go to the master's log file.
    let _ = lithos_cmd(&tree).args(["s", "say", "0"]).output().unwrap();
    let master_log =
        std::fs::read_to_string(tree.root().join("log/master.log")).unwrap_or_default();
    assert!(master_log.contains("started s/cmd.say."), "{master_log}");
}

#[test]
fn cmd_forwards_sigterm_and_cleans_up() {
    if !root_or_skip("lithos_cmd builds containers") {
        return;
    }
    let cgroup = format!("lithos-test-cmdsig-{}.slice", std::process::id());
    let tree = tree(Some(&cgroup));
    tree.container(
        "nap",
        "kind: Command\nuser-id: 0\nexecutable: /bin/sleep\narguments: ['1000']\n",
    );
    std::fs::write(
        tree.root().join("configs/processes/s.yaml"),
        format!("{PROCESSES}nap:\n  kind: Command\n  image: busybox\n  config: /config/nap.yaml\n"),
    )
    .unwrap();
    let child = lithos_cmd(&tree)
        .args(["s", "nap"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let leaf = format!("s:cmd.nap.{pid}.scope");
    let cgroups =
        lithos::exec::cgroup::Cgroups::discover(std::path::Path::new("/proc"), &cgroup, &[])
            .unwrap();
    let started = cmd_support::eventually(std::time::Duration::from_secs(10), || {
        cgroups.instance_dirs(&leaf).iter().all(|dir| {
            std::fs::read_to_string(dir.join("cgroup.procs"))
                .is_ok_and(|procs| procs.lines().count() >= 2)
        })
    });
    assert!(
        started,
        "command cgroup {leaf} never held the knot and its program"
    );
    let ps = Command::new(env!("CARGO_BIN_EXE_lithos_ps"))
        .args(["--json", "-C"])
        .arg(&tree.master)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(report["commands"][0]["name"], format!("s/cmd.nap.{pid}"));
    assert_eq!(report["commands"][0]["state"], "command");
    let state_dir = tree.root().join(format!("run/state/s/cmd.nap.{pid}"));
    assert!(state_dir.exists(), "no state dir {}", state_dir.display());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(128 + 15),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for dir in cgroups.instance_dirs(&leaf) {
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    assert!(!state_dir.exists(), "state dir left behind");
    assert!(!tree
        .root()
        .join(format!("run/state/s/cmd.nap.{pid}.exit"))
        .exists());
}

#[test]
fn cmd_gets_its_tcp_port() {
    if !root_or_skip("lithos_cmd builds containers") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tree = TestTree::new(
        None,
        "listen:\n  kind: Command\n  image: busybox\n  config: /config/listen.yaml\n",
    );
    cmd_support::write(
        &tree.root().join("configs/sandboxes/s.yaml"),
        &format!(
            "image-dir: ../../images\nallow-users: [0]\nallow-groups: [0]\n\
             allow-tcp-ports: [{port}]\n"
        ),
    );
    tree.container(
        "listen",
        &format!(
            "kind: Command\ninteractive: true\nuser-id: 0\nexecutable: /bin/readlink\n\
             arguments: [/proc/self/fd/3]\ntcp-ports:\n  {port}: {{fd: 3, host: 127.0.0.1}}\n"
        ),
    );
    let output = lithos_cmd(&tree).args(["s", "listen"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    let target = String::from_utf8_lossy(&output.stdout);
    assert!(target.starts_with("socket:["), "fd 3 is {target:?}");
}
