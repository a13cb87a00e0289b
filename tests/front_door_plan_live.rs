//! `lithos plan` against a knot that runs while no tree does: an up-to-date knot is
//! unchanged, an outdated one is restarted, and nothing is signalled.

mod cmd_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cmd_support::{root_or_skip, TestTree};

fn plan(master: &Path, json: bool) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lithos"));
    command.arg("plan").arg("-C").arg(master);
    if json {
        command.args(["--format", "json"]);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn plan_sees_running_knot() {
    if !root_or_skip("spawn_knot builds a container") {
        return;
    }
    let tree = TestTree::new(
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
    std::fs::create_dir_all(instance.spec.state_dir.parent().unwrap()).unwrap();
    std::fs::create_dir_all(tree.root().join("mnt")).unwrap();
    std::fs::create_dir_all(tree.root().join("log/stdio")).unwrap();
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
    // The knot shows up once it has executed; give it a moment to set up.
    std::thread::sleep(Duration::from_millis(300));

    let (unchanged_code, unchanged) = plan(&tree.master, false);
    tree.container(
        "sleeper",
        "kind: Daemon\nuser-id: 0\nexecutable: /bin/sleep\narguments: ['2000']\n",
    );
    let (changed_code, changed) = plan(&tree.master, false);
    let (_, json) = plan(&tree.master, true);
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(knot), None).is_ok();
    let pid = nix::unistd::Pid::from_raw(knot);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(pid, None);

    assert_eq!(unchanged_code, Some(0), "{unchanged}");
    assert!(
        unchanged.contains("0 to start, 0 to restart, 0 to stop, 1 unchanged"),
        "{unchanged}"
    );
    assert_eq!(changed_code, Some(2), "{changed}");
    assert!(
        changed.contains(&format!(
            "~ restart s/sleeper.0 (pid {knot}) (config changed"
        )),
        "{changed}"
    );
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["entries"][0]["change"], "restart");
    assert_eq!(value["entries"][0]["pid"], knot);
    assert!(alive, "lithos plan signalled the knot");
}
