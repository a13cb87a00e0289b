//! Unit cases of the reconciler: one scenario per test, checked action by action.

use std::time::Duration;

use lithos::model::spec::InstanceName;
use lithos::reconcile::testing::sample_instance;
use lithos::reconcile::{reconcile, reconcile_with_states, Action, Desired, InstanceState, Reason};
use lithos::state::{Observed, ObservedProcess, Persisted, ProcId, ProcessKind};

const SEC: Duration = Duration::from_secs(1);
/// A "now" late enough that every fork in these tests is older than the fork grace.
const NOW: Duration = Duration::from_secs(10_000);

fn name(index: u32) -> InstanceName {
    InstanceName::new("s", "p", index)
}

fn desired(fingerprint: &str, count: u32) -> Desired {
    (0..count)
        .map(|i| sample_instance(name(i), fingerprint, 2 * SEC, 3 * SEC))
        .collect()
}

fn knot(pid: i32, index: u32, fingerprint: &str) -> ObservedProcess {
    ObservedProcess {
        id: ProcId {
            pid,
            start_time: pid as u64,
        },
        kind: ProcessKind::Knot {
            name: name(index),
            fingerprint: fingerprint.into(),
        },
        is_child: true,
        zombie: false,
    }
}

fn observed(processes: Vec<ObservedProcess>) -> Observed {
    Observed { processes }
}

#[test]
fn empty_system_starts_everything() {
    let plan = reconcile(
        &desired("a", 3),
        &Observed::default(),
        &Persisted::default(),
        NOW,
    );
    let spawns: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Spawn { .. }))
        .collect();
    assert_eq!(spawns.len(), 3);
    assert!(plan
        .actions
        .iter()
        .all(|a| a.reason() == Reason::NotRunning));
    assert_eq!(plan.wake_at, None);
}

#[test]
fn running_current_knot_is_left_alone() {
    let mut persisted = Persisted::default();
    let want = desired("a", 1);
    persisted.record_spawn(
        &want.instances[&name(0)],
        knot(10, 0, "a").id,
        NOW - 100 * SEC,
    );
    let (plan, states) =
        reconcile_with_states(&want, &observed(vec![knot(10, 0, "a")]), &persisted, NOW);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert!(matches!(
        states.get(&name(0)),
        Some(InstanceState::Running { .. })
    ));
}

#[test]
fn outdated_knot_gets_sigterm_and_no_replacement_yet() {
    let mut persisted = Persisted::default();
    let old = desired("old", 1);
    persisted.record_spawn(
        &old.instances[&name(0)],
        knot(10, 0, "old").id,
        NOW - 100 * SEC,
    );
    let plan = reconcile(
        &desired("new", 1),
        &observed(vec![knot(10, 0, "old")]),
        &persisted,
        NOW,
    );
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    assert!(matches!(
        &plan.actions[0],
        Action::Signal {
            reason: Reason::ConfigChanged,
            ..
        }
    ));
    assert_eq!(plan.wake_at, Some(NOW + 3 * SEC));
}

#[test]
fn kill_after_kill_timeout_from_first_sigterm() {
    let mut persisted = Persisted::default();
    let want = desired("a", 1);
    let id = knot(10, 0, "a").id;
    persisted.record_spawn(&want.instances[&name(0)], id, NOW - 100 * SEC);
    persisted.record_signal(id, NOW - 2 * SEC);
    let live = observed(vec![knot(10, 0, "a")]);
    let early = reconcile(&Desired::default(), &live, &persisted, NOW);
    assert!(matches!(
        &early.actions[..],
        [Action::Wait {
            reason: Reason::AwaitingExit,
            ..
        }]
    ));
    assert_eq!(early.wake_at, Some(NOW + SEC));
    let late = reconcile(&Desired::default(), &live, &persisted, NOW + SEC);
    assert!(matches!(
        &late.actions[..],
        [Action::Kill {
            reason: Reason::KillTimeout,
            ..
        }]
    ));
}

#[test]
fn restart_waits_for_restart_timeout_from_last_start() {
    let mut persisted = Persisted::default();
    let want = desired("a", 1);
    persisted.record_spawn(&want.instances[&name(0)], knot(10, 0, "a").id, NOW - SEC);
    persisted.record_exit(&name(0), true, NOW);
    let plan = reconcile(&want, &Observed::default(), &persisted, NOW);
    assert!(matches!(
        &plan.actions[..],
        [Action::Wait {
            reason: Reason::RestartTimeout,
            ..
        }]
    ));
    assert_eq!(plan.wake_at, Some(NOW + SEC));
    let later = reconcile(&want, &Observed::default(), &persisted, NOW + SEC);
    assert!(matches!(
        &later.actions[..],
        [Action::Spawn {
            reason: Reason::Exited,
            ..
        }]
    ));
}

#[test]
fn removed_instance_is_stopped_then_retired() {
    let mut persisted = Persisted::default();
    let want = desired("a", 1);
    persisted.record_spawn(
        &want.instances[&name(0)],
        knot(10, 0, "a").id,
        NOW - 100 * SEC,
    );
    let running = reconcile(
        &Desired::default(),
        &observed(vec![knot(10, 0, "a")]),
        &persisted,
        NOW,
    );
    assert!(matches!(
        &running.actions[..],
        [Action::Signal {
            reason: Reason::NotInConfig,
            ..
        }]
    ));
    persisted.record_exit(&name(0), false, NOW);
    let gone = reconcile(&Desired::default(), &Observed::default(), &persisted, NOW);
    assert!(matches!(&gone.actions[..], [Action::Retire { .. }]));
}

#[test]
fn unknown_child_gets_default_kill_timeout() {
    let stray = ObservedProcess {
        id: ProcId {
            pid: 77,
            start_time: 5,
        },
        kind: ProcessKind::Unknown,
        is_child: true,
        zombie: false,
    };
    let mut persisted = Persisted::default();
    let first = reconcile(
        &Desired::default(),
        &observed(vec![stray.clone()]),
        &persisted,
        NOW,
    );
    assert!(matches!(
        &first.actions[..],
        [Action::Signal {
            reason: Reason::UnknownChild,
            name: None,
            ..
        }]
    ));
    persisted.record_signal(stray.id, NOW);
    let before = reconcile(
        &Desired::default(),
        &observed(vec![stray.clone()]),
        &persisted,
        NOW + 4 * SEC,
    );
    assert!(matches!(&before.actions[..], [Action::Wait { .. }]));
    let after = reconcile(
        &Desired::default(),
        &observed(vec![stray]),
        &persisted,
        NOW + 5 * SEC,
    );
    assert!(matches!(&after.actions[..], [Action::Kill { .. }]));
}

#[test]
fn zombie_knot_is_not_running() {
    let mut zombie = knot(10, 0, "a");
    zombie.zombie = true;
    let plan = reconcile(
        &desired("a", 1),
        &observed(vec![zombie]),
        &Persisted::default(),
        NOW,
    );
    assert!(matches!(&plan.actions[..], [Action::Spawn { .. }]));
}

#[test]
fn recorded_forking_child_counts_as_starting() {
    let want = desired("a", 1);
    let child_id = ProcId {
        pid: 50,
        start_time: 99,
    };
    let mut persisted = Persisted::default();
    persisted.record_spawn(&want.instances[&name(0)], child_id, NOW);
    let forking = ObservedProcess {
        id: child_id,
        kind: ProcessKind::Forking,
        is_child: true,
        zombie: false,
    };
    let (plan, states) = reconcile_with_states(&want, &observed(vec![forking]), &persisted, NOW);
    assert!(!plan.has_changes(), "{:?}", plan.actions);
    assert!(matches!(
        states.get(&name(0)),
        Some(InstanceState::Starting { .. })
    ));
}

#[test]
fn duplicate_knots_keep_the_oldest() {
    let want = desired("a", 1);
    let mut persisted = Persisted::default();
    persisted.record_spawn(
        &want.instances[&name(0)],
        knot(20, 0, "a").id,
        NOW - 100 * SEC,
    );
    let plan = reconcile(
        &want,
        &observed(vec![knot(10, 0, "a"), knot(20, 0, "a")]),
        &persisted,
        NOW,
    );
    match &plan.actions[..] {
        [Action::Signal {
            target,
            reason: Reason::Duplicate,
            ..
        }] => assert_eq!(target.pid, 20),
        other => panic!("unexpected plan {other:?}"),
    }
}

/// A stale record of instance 0 holds the pid and start time of instance 1's knot: the
/// knot stays with the instance its command line names.
#[test]
fn stale_record_does_not_move_a_knot() {
    let want = desired("a", 2);
    let mut persisted = Persisted::default();
    let other = knot(20, 1, "a");
    persisted.record_spawn(&want.instances[&name(0)], other.id, NOW - 100 * SEC);
    persisted.record_spawn(&want.instances[&name(1)], other.id, NOW - 100 * SEC);
    let plan = reconcile(&want, &observed(vec![other]), &persisted, NOW);
    match &plan.actions[..] {
        [Action::Spawn { name: spawned, .. }] => assert_eq!(*spawned, name(0)),
        actions => panic!("unexpected plan {actions:?}"),
    }
}
