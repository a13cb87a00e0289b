//! `lithos_ps` against real processes: a stand-in tree with knot-like children, and real
//! knots started with `spawn_knot` while no tree runs.

mod cmd_support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use cmd_support::{eventually, root_or_skip, write, TestTree};
use lithos::tools::ps::collect;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// A process group this test started, killed when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Starts bash named `lithos_tree --config MASTER` with two knot-like children (argument
/// zero `lithos_knot`, each running a sleep) and one unknown child.
fn stand_in_tree(master: &Path) -> Group {
    let knot = |name: &str| {
        format!(
            "(exec -a lithos_knot /bin/sh -c 'sleep 1000; :' --name {name} --master {} --fingerprint ab) &",
            master.display()
        )
    };
    let script = format!(
        "{}\n{}\nsleep 1001 &\nwait\n",
        knot("s/a.0"),
        knot("s/old.0")
    );
    let child = Command::new("bash")
        .arg0("lithos_tree")
        .args(["-c", &script, "lithos_tree", "--config"])
        .arg(master)
        .process_group(0)
        .spawn()
        .expect("bash");
    Group(child)
}

fn ps_output(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lithos_ps"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn ps_stand_in_tree() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.yaml");
    let runtime = dir.path().join("run");
    write(&master, &format!("runtime-dir: {}\n", runtime.display()));
    let tree = stand_in_tree(&master);
    let tree_pid = tree.0.id() as i32;

    let ready = eventually(Duration::from_secs(5), || {
        let report = collect(Path::new("/proc"), Some(&master)).unwrap();
        report.trees.len() == 1
            && report.trees[0].instances.len() == 2
            && report.trees[0].unknown.len() == 1
            && report.trees[0]
                .instances
                .iter()
                .all(|i| i.processes.as_ref().is_some_and(|p| !p.children.is_empty()))
    });
    assert!(ready, "stand-in tree not seen by collect");
    let report = collect(Path::new("/proc"), Some(&master)).unwrap();
    let a_pid = report.trees[0].instances[0].pid.unwrap();
    let status = format!(
        r#"{{"generation": 4, "pid": {tree_pid}, "errors": {{"s/bad": ["bad.yaml:1:1: image: missing"]}},
            "instances": {{
              "s/a.0": {{"state": "running", "pid": {a_pid}, "fingerprint": "ab", "starts": 3}},
              "s/b.0": {{"state": "waiting", "pid": null, "fingerprint": "ef", "starts": 2}}
            }}}}"#
    );
    write(&runtime.join("status.json"), &status);

    let (code, json) = ps_output(&["--json", "-C", master.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tree_json = &value["trees"][0];
    assert_eq!(tree_json["pid"], tree_pid);
    assert_eq!(tree_json["generation"], 4);
    let instances = tree_json["instances"].as_array().unwrap();
    let names: Vec<&str> = instances
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s/a.0", "s/b.0", "s/old.0"]);
    assert_eq!(instances[0]["state"], "running");
    assert_eq!(instances[0]["restarts"], 2);
    assert_eq!(instances[1]["state"], "restarting");
    assert_eq!(instances[1]["pid"], serde_json::Value::Null);
    assert_eq!(instances[2]["state"], "stopping");
    let sleep = &instances[0]["processes"]["children"][0];
    assert!(
        sleep["cmdline"].as_str().unwrap().starts_with("sleep 1000"),
        "{sleep}"
    );
    assert!(tree_json["unknown"][0]["cmdline"]
        .as_str()
        .unwrap()
        .starts_with("sleep 1001"));

    let (code, text) = ps_output(&["--no-color", "--config", master.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains(&format!(
            "lithos_tree pid {tree_pid} master {}",
            master.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("s/a.0 pid {a_pid} running up")),
        "{text}"
    );
    assert!(text.contains("restarts 2"), "{text}");
    assert!(text.contains("s/b.0 pid - restarting"), "{text}");
    assert!(text.contains("unknown child pid"), "{text}");
    assert!(
        text.contains("error s/bad: bad.yaml:1:1: image: missing"),
        "{text}"
    );
    assert!(text.contains("└─ "), "{text}");
    assert!(!text.contains('\x1b'), "colors with --no-color: {text}");
    let (_, colored) = ps_output(&["--force-color", "-C", master.to_str().unwrap()]);
    assert!(colored.contains("\x1b[32mrunning\x1b[0m"), "{colored}");
}

#[test]
fn ps_reports_no_tree() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.yaml");
    let (code, text) = ps_output(&["-C", master.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(text, "no lithos_tree is running\n");
    let (_, json) = ps_output(&["--format", "json", "-C", master.to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["trees"], serde_json::json!([]));
}

#[test]
fn ps_monitor_refreshes() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.yaml");
    let child = Command::new(env!("CARGO_BIN_EXE_lithos_ps"))
        .args(["--monitor", "-C", master.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.matches("\x1b[H\x1b[2Jno lithos_tree is running")
            .count()
            >= 2,
        "{text:?}"
    );
}

#[test]
fn ps_unsupervised_real_knot() {
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
    let seen = eventually(Duration::from_secs(10), || {
        let report = collect(Path::new("/proc"), Some(&loaded.master_path)).unwrap();
        report.unsupervised.iter().any(|i| {
            i.pid == Some(knot)
                && i.processes
                    .as_ref()
                    .is_some_and(|p| p.children.iter().any(|c| c.cmdline.contains("sleep 1000")))
        })
    });
    let (_, json) = ps_output(&["--json", "-C", loaded.master_path.to_str().unwrap()]);
    let (_, text) = ps_output(&["-C", loaded.master_path.to_str().unwrap()]);
    nix::sys::signal::kill(Pid::from_raw(knot), Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(Pid::from_raw(knot), None);
    assert!(seen, "knot {knot} not reported as unsupervised");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let entry = &value["unsupervised"][0];
    assert_eq!(entry["name"], "s/sleeper.0");
    assert_eq!(entry["state"], "unsupervised");
    assert_eq!(entry["fingerprint"], instance.fingerprint.as_str());
    assert!(entry["memory_bytes"].as_u64().unwrap() > 0);
    assert!(text.contains("knots without a running tree:"), "{text}");
    assert!(
        text.contains(&format!("s/sleeper.0 pid {knot} unsupervised")),
        "{text}"
    );
}
