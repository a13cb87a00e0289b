//! The observer over the fixture trees in `fixtures/proc` and `fixtures/cgroup`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lithos::model::spec::InstanceName;
use lithos::reconcile::testing::sample_instance;
use lithos::reconcile::{reconcile, Action, Desired, Reason};
use lithos::state::{
    clock, observe, ObserveRoots, Observed, ObservedProcess, Persisted, ProcId, ProcessKind,
};

const MASTER: &str = "/etc/lithos/master.yaml";

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

fn roots() -> ObserveRoots {
    ObserveRoots {
        proc_root: fixture("proc/tree"),
        cgroup_root: fixture("cgroup"),
    }
}

fn observe_with(cgroup_dirs: &[&str]) -> Observed {
    let dirs: Vec<PathBuf> = cgroup_dirs.iter().map(PathBuf::from).collect();
    observe(&roots(), 100, Path::new(MASTER), &dirs).expect("fixture tree is readable")
}

fn find(observed: &Observed, pid: i32) -> Option<&ObservedProcess> {
    observed.processes.iter().find(|p| p.id.pid == pid)
}

fn knot(name: &str, fingerprint: &str) -> ProcessKind {
    ProcessKind::Knot {
        name: name.parse().unwrap(),
        fingerprint: fingerprint.into(),
    }
}

#[test]
fn child_knot_with_logging_flags() {
    let observed = observe_with(&[]);
    let web = find(&observed, 101).expect("knot 101 observed");
    assert_eq!(web.kind, knot("s/web.0", "aaa"));
    assert!(web.is_child);
    assert!(!web.zombie);
    assert_eq!(web.id.start_time, 6000);
}

#[test]
fn zombie_child_is_flagged() {
    let observed = observe_with(&[]);
    let zombie = find(&observed, 102).expect("zombie observed");
    assert!(zombie.zombie);
    assert!(!zombie.is_live());
    assert_eq!(zombie.kind, ProcessKind::Unknown);
}

#[test]
fn child_mid_exec_is_forking() {
    let observed = observe_with(&[]);
    assert_eq!(find(&observed, 103).unwrap().kind, ProcessKind::Forking);
}

#[test]
fn foreign_children_are_unknown() {
    let observed = observe_with(&[]);
    assert_eq!(find(&observed, 104).unwrap().kind, ProcessKind::Unknown);
    assert_eq!(
        find(&observed, 105).unwrap().kind,
        ProcessKind::Unknown,
        "knot of another master"
    );
}

#[test]
fn orphaned_knot_found_by_proc_scan() {
    let observed = observe_with(&[]);
    let db = find(&observed, 200).expect("orphaned knot observed");
    assert_eq!(db.kind, knot("s/db.0", "ccc"));
    assert!(!db.is_child);
}

#[test]
fn foreign_processes_are_left_out() {
    let observed = observe_with(&[]);
    for pid in [1, 100, 201, 202, 300, 301, 400] {
        assert!(
            find(&observed, pid).is_none(),
            "pid {pid} must not be observed"
        );
    }
    assert_eq!(observed.processes.len(), 6, "{observed:?}");
}

#[test]
fn orphaned_knot_found_in_v2_cgroups() {
    let observed = observe_with(&["v2/system.slice/lithos.slice"]);
    let pids: Vec<i32> = observed.processes.iter().map(|p| p.id.pid).collect();
    assert_eq!(pids, vec![101, 102, 103, 104, 105, 200]);
    assert!(!find(&observed, 200).unwrap().is_child);
}

#[test]
fn orphaned_knot_found_in_v1_hierarchies() {
    let observed = observe_with(&["v1/memory/lithos.slice", "v1/cpu,cpuacct/lithos.slice"]);
    assert_eq!(find(&observed, 200).unwrap().kind, knot("s/db.0", "ccc"));
    assert_eq!(
        observed
            .processes
            .iter()
            .filter(|p| p.id.pid == 200)
            .count(),
        1
    );
}

#[test]
fn missing_cgroup_dir_holds_nothing() {
    let observed = observe_with(&["v2/no-such.slice"]);
    assert!(find(&observed, 200).is_none());
    assert!(
        find(&observed, 101).is_some(),
        "children come from /proc regardless"
    );
}

#[test]
fn missing_proc_root_is_an_error() {
    let roots = ObserveRoots {
        proc_root: fixture("proc/no-such-tree"),
        cgroup_root: fixture("cgroup"),
    };
    assert!(observe(&roots, 100, Path::new(MASTER), &[]).is_err());
}

#[test]
fn boot_id_from_fixture() {
    let id = clock::boot_id(&fixture("proc/tree")).unwrap();
    assert_eq!(id, "0f7c2a8e-4b7e-4a59-9d1c-3f0e2d9a6b11");
}

/// A recorded knot whose pid now belongs to nginx is not running: the instance starts again
/// and nginx is never signalled.
#[test]
fn reused_pid_is_not_taken_for_a_knot() {
    let observed = observe_with(&[]);
    let name: InstanceName = "s/web.2".parse().unwrap();
    let sec = Duration::from_secs(1);
    let instance = sample_instance(name.clone(), "aaa", sec, sec);
    let mut persisted = Persisted::default();
    let old_knot = ProcId {
        pid: 400,
        start_time: 111,
    };
    persisted.record_spawn(&instance, old_knot, Duration::from_secs(1));
    let desired: Desired = [instance].into_iter().collect();
    let plan = reconcile(
        &desired,
        &observed,
        &persisted,
        Duration::from_secs(100_000),
    );
    let spawned = plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::Spawn { name: n, reason: Reason::Exited } if *n == name));
    assert!(spawned, "{:?}", plan.actions);
    let signals_nginx = plan.actions.iter().any(|a| matches!(a, Action::Signal { target, .. } | Action::Kill { target, .. } if target.pid == 400));
    assert!(!signals_nginx);
}

#[test]
fn proc_id_of_fixture_process() {
    let id = lithos::state::read_proc_id(&fixture("proc/tree"), 200).unwrap();
    assert_eq!(
        id,
        ProcId {
            pid: 200,
            start_time: 3000
        }
    );
    assert!(lithos::state::read_proc_id(&fixture("proc/tree"), 999).is_err());
}
