//! Metrics export: the Prometheus file and the cantal files, read back and compared
//! with what happened to real knots.

mod cmd_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use lithos::exec::metrics::{write_prometheus, MetricsExporter, MetricsSnapshot};
use lithos::model::spec::InstanceName;
use lithos::reconcile::testing::sample_instance;
use lithos::state::{ObserveRoots, Observed, ObservedProcess, Persisted, ProcId, ProcessKind};

/// Parses a Prometheus text file into `name{labels}` to value.
fn read_prometheus(path: &Path) -> BTreeMap<String, u64> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// Reads cantal files `PATH.meta` and `PATH.values`: each meta line is
/// `TYPE SIZE[ SUFFIX]: JSON-NAME`, and the values follow each other in that order.
fn read_cantal(path: &Path) -> BTreeMap<String, i64> {
    let meta = fs::read_to_string(path.with_extension("meta")).unwrap();
    let values = fs::read(path.with_extension("values")).unwrap();
    let mut offset = 0;
    let mut result = BTreeMap::new();
    for line in meta.lines() {
        let (header, name) = line.split_once(": ").unwrap();
        let size: usize = header.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(size, 8, "{line}");
        let bytes: [u8; 8] = values[offset..offset + 8].try_into().unwrap();
        let name: serde_json::Value = serde_json::from_str(name).unwrap();
        result.insert(
            name["metric"].as_str().unwrap().to_string(),
            i64::from_ne_bytes(bytes),
        );
        offset += size;
    }
    result
}

fn knot(name: &InstanceName, pid: i32) -> ObservedProcess {
    ObservedProcess {
        id: ProcId { pid, start_time: 1 },
        kind: ProcessKind::Knot {
            name: name.clone(),
            fingerprint: "f".into(),
        },
        is_child: true,
        zombie: false,
    }
}

#[test]
fn metrics_prometheus_and_cantal() {
    let dir = tempfile::tempdir().unwrap();
    let mut persisted = Persisted {
        tree_restarts: 3,
        ..Persisted::default()
    };
    let names: Vec<InstanceName> = (0..3).map(|i| InstanceName::new("s", "web", i)).collect();
    for (index, name) in names.iter().enumerate() {
        let instance = sample_instance(name.clone(), "f", Duration::ZERO, Duration::ZERO);
        persisted.record_spawn(
            &instance,
            ProcId {
                pid: 100 + index as i32,
                start_time: 1,
            },
            Duration::ZERO,
        );
    }
    persisted.record_exit(&names[1], true, Duration::from_secs(1));
    let again = sample_instance(names[1].clone(), "f", Duration::ZERO, Duration::ZERO);
    persisted.record_spawn(
        &again,
        ProcId {
            pid: 200,
            start_time: 2,
        },
        Duration::from_secs(2),
    );
    let mut observed = Observed {
        processes: vec![
            knot(&names[0], 100),
            knot(&names[1], 200),
            knot(&names[2], 102),
        ],
    };
    observed.processes.push(ObservedProcess {
        id: ProcId {
            pid: 300,
            start_time: 3,
        },
        kind: ProcessKind::Unknown,
        is_child: true,
        zombie: false,
    });
    let snapshot = MetricsSnapshot::from_state(&persisted, &observed, 1, 3, 2);

    let prom = dir.path().join("metrics.prom");
    let cantal = dir.path().join("run/metrics");
    let mut exporter = MetricsExporter::new(prom.clone(), Some(cantal.clone()));
    exporter.export(&snapshot).unwrap();

    let values = read_prometheus(&prom);
    let labels = "{sandbox=\"s\",process=\"web\"}";
    assert_eq!(values["lithos_master_restarts_total"], 2);
    assert_eq!(values["lithos_master_sandboxes"], 1);
    assert_eq!(values["lithos_master_containers"], 3);
    assert_eq!(values["lithos_master_queue"], 2);
    assert_eq!(values[&format!("lithos_process_started_total{labels}")], 4);
    assert_eq!(values[&format!("lithos_process_deaths_total{labels}")], 1);
    assert_eq!(values[&format!("lithos_process_failures_total{labels}")], 1);
    assert_eq!(values[&format!("lithos_process_running{labels}")], 3);
    assert_eq!(values["lithos_containers_started_total"], 4);
    assert_eq!(values["lithos_containers_deaths_total"], 1);
    assert_eq!(values["lithos_containers_failures_total"], 1);
    assert_eq!(values["lithos_containers_running"], 3);
    assert_eq!(values["lithos_containers_unknown"], 1);
    assert!(!dir.path().join("metrics.prom.tmp").exists());

    let published = read_cantal(&cantal);
    assert_eq!(published["master.restarts"], 2);
    assert_eq!(published["master.queue"], 2);
    assert_eq!(published["processes.s.web.started"], 4);
    assert_eq!(published["processes.s.web.deaths"], 1);
    assert_eq!(published["processes.s.web.failures"], 1);
    assert_eq!(published["processes.s.web.running"], 3);
    assert_eq!(published["containers.started"], 4);
    assert_eq!(published["containers.running"], 3);
    assert_eq!(published["containers.unknown"], 1);

    // A later pass updates the mapped values in place.
    persisted.record_exit(&names[0], false, Duration::from_secs(3));
    observed.processes.remove(0);
    let later = MetricsSnapshot::from_state(&persisted, &observed, 1, 3, 1);
    exporter.export(&later).unwrap();
    let published = read_cantal(&cantal);
    assert_eq!(published["processes.s.web.deaths"], 2);
    assert_eq!(published["processes.s.web.failures"], 1);
    assert_eq!(published["containers.running"], 2);
    assert_eq!(published["master.queue"], 1);

    // A new process entry changes the metric set: the files are published again.
    let other = sample_instance(
        InstanceName::new("t", "db", 0),
        "g",
        Duration::ZERO,
        Duration::ZERO,
    );
    persisted.record_spawn(
        &other,
        ProcId {
            pid: 400,
            start_time: 4,
        },
        Duration::from_secs(4),
    );
    exporter
        .export(&MetricsSnapshot::from_state(&persisted, &observed, 2, 4, 0))
        .unwrap();
    let published = read_cantal(&cantal);
    assert_eq!(published["processes.t.db.started"], 1);
    assert_eq!(published["processes.s.web.started"], 4);
    assert_eq!(published["containers.started"], 5);
}

#[test]
fn metrics_from_real_knots() {
    if !cmd_support::root_or_skip("spawn_knot builds containers") {
        return;
    }
    let tree = cmd_support::TestTree::new(
        None,
        "web:\n  instances: 3\n  image: busybox\n  config: /config/web.yaml\n",
    );
    tree.container(
        "web",
        "kind: Daemon\nuser-id: 0\nexecutable: /bin/sleep\narguments: ['1000']\n",
    );
    let loaded =
        lithos::model::load_tree(&tree.master, &lithos::model::LoadOptions::default()).unwrap();
    let instances: Vec<_> = loaded.desired_instances().cloned().collect();
    assert_eq!(instances.len(), 3);
    fs::create_dir_all(instances[0].spec.state_dir.parent().unwrap()).unwrap();
    fs::create_dir_all(tree.root().join("mnt")).unwrap();
    fs::create_dir_all(tree.root().join("log/stdio")).unwrap();
    let spawn = |instance: &lithos::model::spec::DesiredInstance| -> i32 {
        let request = lithos::exec::spawn::SpawnRequest {
            spec: &instance.spec,
            fingerprint: &instance.fingerprint,
            master: &loaded.master_path,
            knot_binary: Path::new(env!("CARGO_BIN_EXE_lithos_knot")),
            cgroups: None,
            sockets: &[],
            extra_env: &[],
        };
        lithos::exec::spawn::spawn_knot(&request).unwrap().pid
    };
    let start_time = |pid: i32| -> u64 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(19).unwrap().parse().unwrap()
    };
    let mut persisted = Persisted::default();
    let mut pids = Vec::new();
    for instance in &instances {
        let pid = spawn(instance);
        persisted.record_spawn(
            instance,
            ProcId {
                pid,
                start_time: start_time(pid),
            },
            lithos::state::clock::now(),
        );
        pids.push(pid);
    }

    // SIGKILL the program of the second knot; the knot then exits with a failure.
    let program = program_of(pids[1]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(program),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pids[1]), None).unwrap();
    let failure = !matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0));
    assert!(failure, "knot status {status:?}");
    persisted.record_exit(&instances[1].name, failure, lithos::state::clock::now());
    let pid = spawn(&instances[1]);
    persisted.record_spawn(
        &instances[1],
        ProcId {
            pid,
            start_time: start_time(pid),
        },
        lithos::state::clock::now(),
    );
    pids[1] = pid;

    let observed = lithos::state::observe(
        &ObserveRoots::default(),
        std::process::id() as i32,
        &loaded.master_path,
        &[],
    )
    .unwrap();
    let snapshot = MetricsSnapshot::from_state(&persisted, &observed, 1, 3, 0);
    let prom = tree.root().join("run/metrics.prom");
    write_prometheus(&prom, &snapshot).unwrap();
    for pid in &pids {
        let pid = nix::unistd::Pid::from_raw(*pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    let values = read_prometheus(&prom);
    let labels = "{sandbox=\"s\",process=\"web\"}";
    assert_eq!(values[&format!("lithos_process_started_total{labels}")], 4);
    assert_eq!(values[&format!("lithos_process_deaths_total{labels}")], 1);
    assert_eq!(values[&format!("lithos_process_failures_total{labels}")], 1);
    assert_eq!(values[&format!("lithos_process_running{labels}")], 3);
    assert_eq!(values["lithos_containers_running"], 3);
    assert_eq!(values["lithos_containers_unknown"], 0);
}

/// Returns the pid of the first child of `knot`, waiting up to 10 s for it.
fn program_of(knot: i32) -> i32 {
    let mut found = None;
    let seen = cmd_support::eventually(Duration::from_secs(10), || {
        let children =
            fs::read_to_string(format!("/proc/{knot}/task/{knot}/children")).unwrap_or_default();
        found = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok());
        found.is_some()
    });
    assert!(seen, "knot {knot} has no program");
    found.unwrap()
}
