//! `lithos_cmd` next to a running `lithos_tree`: the tree's clean-up and reloads leave a
//! running command, its state dir and its cgroup alone.

#[path = "tree_support/mod.rs"]
mod tree_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tree_support::{eventually, root_or_skip, Fixture};

#[test]
fn cmd_survives_tree_reload() {
    if !root_or_skip("lithos_tree and lithos_cmd build containers") {
        return;
    }
    let mut fixture = Fixture::new("cmdtree");
    fixture.write_container(
        "sleep",
        "kind: Daemon\nuser-id: 0\ngroup-id: 0\nexecutable: /bin/sleep\narguments: ['1000']\n",
    );
    fixture.write_container(
        "nap",
        "kind: Command\nuser-id: 0\ngroup-id: 0\nexecutable: /bin/sleep\narguments: ['1000']\n",
    );
    fixture.write_processes(
        "sb",
        "sleeper:\n  image: test.v1\n  config: /config/sleep.yaml\n\
         nap:\n  kind: Command\n  image: test.v1\n  config: /config/nap.yaml\n",
    );
    fixture.start_tree();
    fixture.wait_running(1, Duration::from_secs(20));
    let generation = fixture.status().map_or(0, |status| status.generation);

    let mut command = Command::new(env!("CARGO_BIN_EXE_lithos_cmd"))
        .arg("--master")
        .arg(fixture.master())
        .args(["sb", "nap"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = command.id();
    let state_dir = fixture.root().join(format!("run/state/sb/cmd.nap.{pid}"));
    let started = eventually(Duration::from_secs(10), || state_dir.exists());
    assert!(started, "no state dir {}", state_dir.display());
    std::thread::sleep(Duration::from_millis(300));

    fixture.signal_tree(Signal::SIGQUIT);
    fixture.wait_generation_above(generation, Duration::from_secs(20));
    // A few passes after the reload.
    std::thread::sleep(Duration::from_millis(500));
    let still_running = command.try_wait().unwrap().is_none();
    let state_kept = state_dir.exists();
    let cgroups = lithos::exec::cgroup::Cgroups::discover(
        std::path::Path::new("/proc"),
        &fixture.cgroup_name,
        &[],
    )
    .unwrap();
    let leaf = format!("sb:cmd.nap.{pid}.scope");
    let cgroup_kept = cgroups.instance_dirs(&leaf).iter().all(|dir| dir.exists());

    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let status = command.wait().unwrap();
    let mut stderr = String::new();
    use std::io::Read;
    command
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        still_running,
        "lithos_cmd ended during the reload: {stderr}\n{}",
        fixture.log()
    );
    assert!(
        state_kept,
        "the tree removed the command's state dir\n{}",
        fixture.log()
    );
    assert!(cgroup_kept, "the tree removed the command's cgroup {leaf}");
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(!state_dir.exists(), "state dir left behind");
}
