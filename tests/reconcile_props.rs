//! Property tests of the reconciler: invariants over generated desired, observed and
//! persisted states.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lithos::model::spec::InstanceName;
use lithos::reconcile::testing::sample_instance;
use lithos::reconcile::{reconcile, Action, Desired, Plan, DEFAULT_KILL_TIMEOUT, FORK_GRACE};
use lithos::state::{
    clock, InstanceRecord, Observed, ObservedProcess, Persisted, ProcId, ProcessKind,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const NOW: Duration = Duration::from_secs(1000);
const FINGERPRINTS: [&str; 2] = ["f1", "f2"];

#[derive(Clone)]
struct Scenario {
    desired: Desired,
    observed: Observed,
    persisted: Persisted,
}

/// Prints a scenario without the specs, which are the same in every case.
impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, want) in &self.desired.instances {
            let (restart, kill) = (want.restart_timeout, want.kill_timeout);
            writeln!(
                f,
                "desired {name} {} restart {restart:?} kill {kill:?}",
                want.fingerprint
            )?;
        }
        for process in &self.observed.processes {
            writeln!(f, "observed {process:?}")?;
        }
        for (name, record) in &self.persisted.instances {
            let InstanceRecord {
                process,
                fingerprint,
                last_start,
                term_sent,
                kill_timeout,
                ..
            } = record;
            writeln!(f, "record {name} {process:?} {fingerprint} start {last_start:?} term {term_sent:?} kill {kill_timeout:?}")?;
        }
        writeln!(f, "signals {:?}", self.persisted.signals)
    }
}

#[derive(Clone, Debug)]
struct ProcPlan {
    /// 0: knot, 1: child between fork and exec, 2: zombie knot.
    kind: u8,
    fingerprint: usize,
    age_ticks: u64,
    stray_term_ago: Option<u64>,
}

#[derive(Clone, Debug)]
struct RecordPlan {
    fingerprint: usize,
    last_start_ago: Option<u64>,
    term_ago: Option<u64>,
    kill_timeout: u64,
    /// Index into the instance's processes (0 to 2; beyond its processes a dead one), or
    /// from 4 on into the processes of the instances built before (a stale record).
    process: Option<usize>,
}

#[derive(Clone, Debug)]
struct InstancePlan {
    desired: Option<(usize, u64, u64)>,
    processes: Vec<ProcPlan>,
    record: Option<RecordPlan>,
}

fn proc_plan() -> impl Strategy<Value = ProcPlan> {
    (
        0u8..3,
        0usize..2,
        0u64..1000,
        proptest::option::of(0u64..15),
    )
        .prop_map(|(kind, fingerprint, age_ticks, stray_term_ago)| ProcPlan {
            kind,
            fingerprint,
            age_ticks,
            stray_term_ago,
        })
}

fn record_plan() -> impl Strategy<Value = RecordPlan> {
    (
        0usize..2,
        proptest::option::of(0u64..30),
        proptest::option::of(0u64..15),
        0u64..10,
        proptest::option::of(0usize..6),
    )
        .prop_map(
            |(fingerprint, last_start_ago, term_ago, kill_timeout, process)| RecordPlan {
                fingerprint,
                last_start_ago,
                term_ago,
                kill_timeout,
                process,
            },
        )
}

fn instance_plan() -> impl Strategy<Value = InstancePlan> {
    (
        proptest::option::of((0usize..2, 0u64..20, 0u64..10)),
        proptest::collection::vec(proc_plan(), 0..3),
        proptest::option::of(record_plan()),
    )
        .prop_map(|(desired, processes, record)| InstancePlan {
            desired,
            processes,
            record,
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(instance_plan(), 1..7),
        proptest::collection::vec((any::<bool>(), proptest::option::of(0u64..10)), 0..3),
    )
        .prop_map(|(instances, unknown)| build(&instances, &unknown))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn now_ticks() -> u64 {
    NOW.as_secs() * clock::ticks_per_second()
}

fn build(instances: &[InstancePlan], unknown: &[(bool, Option<u64>)]) -> Scenario {
    let mut scenario = Scenario {
        desired: Desired::default(),
        observed: Observed::default(),
        persisted: Persisted::default(),
    };
    let mut next_pid = 100;
    let mut all_ids: Vec<ProcId> = Vec::new();
    for (index, plan) in instances.iter().enumerate() {
        let name = InstanceName::new("s", ["a", "b"][index % 2], index as u32 / 2);
        if let Some((fingerprint, restart, kill)) = plan.desired {
            let instance = sample_instance(
                name.clone(),
                FINGERPRINTS[fingerprint],
                secs(restart),
                secs(kill),
            );
            scenario.desired.instances.insert(name.clone(), instance);
        }
        let mut ids = Vec::new();
        for process in &plan.processes {
            let id = ProcId {
                pid: next_pid,
                start_time: now_ticks() - process.age_ticks,
            };
            next_pid += 1;
            ids.push(id);
            all_ids.push(id);
            let kind = match process.kind {
                1 => ProcessKind::Forking,
                _ => ProcessKind::Knot {
                    name: name.clone(),
                    fingerprint: FINGERPRINTS[process.fingerprint].into(),
                },
            };
            let observed = ObservedProcess {
                id,
                kind,
                is_child: true,
                zombie: process.kind == 2,
            };
            scenario.observed.processes.push(observed);
            if let Some(ago) = process.stray_term_ago {
                scenario.persisted.signals.insert(id, NOW - secs(ago));
            }
        }
        if let Some(record) = &plan.record {
            let dead = |i: usize| ProcId {
                pid: 99_000 + i as i32,
                start_time: 1,
            };
            let process = record.process.map(|i| match i {
                0..4 => ids.get(i).copied().unwrap_or(dead(i)),
                _ => all_ids.get(i - 4).copied().unwrap_or(dead(i)),
            });
            let instance_record = InstanceRecord {
                process,
                fingerprint: FINGERPRINTS[record.fingerprint].into(),
                last_start: record.last_start_ago.map(|ago| NOW - secs(ago)),
                starts: 1,
                term_sent: record.term_ago.map(|ago| NOW - secs(ago)),
                kill_timeout: secs(record.kill_timeout),
                spec: None,
                last_exit: None,
            };
            scenario.persisted.instances.insert(name, instance_record);
        }
    }
    for (zombie, term_ago) in unknown {
        let id = ProcId {
            pid: next_pid,
            start_time: 5,
        };
        next_pid += 1;
        scenario.observed.processes.push(ObservedProcess {
            id,
            kind: ProcessKind::Unknown,
            is_child: true,
            zombie: *zombie,
        });
        if let Some(ago) = term_ago {
            scenario.persisted.signals.insert(id, NOW - secs(*ago));
        }
    }
    scenario
}

/// The instance a live process belongs to, as the reconciler must attribute it.
fn owner(scenario: &Scenario, process: &ObservedProcess) -> Option<InstanceName> {
    match &process.kind {
        ProcessKind::Knot { name, .. } => Some(name.clone()),
        ProcessKind::Forking => scenario
            .persisted
            .instances
            .iter()
            .find(|(_, record)| record.process == Some(process.id))
            .map(|(name, _)| name.clone()),
        ProcessKind::Unknown => None,
    }
}

fn live(scenario: &Scenario) -> impl Iterator<Item = &ObservedProcess> {
    scenario.observed.processes.iter().filter(|p| !p.zombie)
}

fn is_current(scenario: &Scenario, process: &ObservedProcess) -> bool {
    let ProcessKind::Knot { name, fingerprint } = &process.kind else {
        return false;
    };
    scenario
        .desired
        .instances
        .get(name)
        .is_some_and(|want| &want.fingerprint == fingerprint)
}

fn term_sent(scenario: &Scenario, target: ProcId) -> Option<Duration> {
    let process = scenario.observed.processes.iter().find(|p| p.id == target);
    let owner = process.and_then(|process| owner(scenario, process));
    let record = owner.and_then(|name| scenario.persisted.instances.get(&name));
    let recorded = record
        .filter(|record| record.process == Some(target))
        .and_then(|record| record.term_sent);
    recorded.or_else(|| scenario.persisted.signals.get(&target).copied())
}

/// The kill-timeout a stop of a process of `name` uses: recorded, else desired, else the
/// default (always for unknown children).
fn kill_timeout(scenario: &Scenario, name: Option<&InstanceName>) -> Duration {
    let Some(name) = name else {
        return DEFAULT_KILL_TIMEOUT;
    };
    let record = scenario
        .persisted
        .instances
        .get(name)
        .map(|r| r.kill_timeout);
    let want = scenario.desired.instances.get(name).map(|w| w.kill_timeout);
    record.or(want).unwrap_or(DEFAULT_KILL_TIMEOUT)
}

fn signalled(plan: &Plan) -> BTreeSet<ProcId> {
    plan.actions
        .iter()
        .filter_map(|action| match action {
            Action::Signal { target, .. } | Action::Kill { target, .. } => Some(*target),
            _ => None,
        })
        .collect()
}

/// Executes a plan the way the supervisor does, at the same instant.
fn apply(scenario: &Scenario, plan: &Plan) -> Scenario {
    let mut next = scenario.clone();
    let mut next_pid = 50_000;
    for action in &plan.actions {
        match action {
            Action::Spawn { name, .. } => {
                let id = ProcId {
                    pid: next_pid,
                    start_time: now_ticks(),
                };
                next_pid += 1;
                let want = &scenario.desired.instances[name];
                next.persisted.record_spawn(want, id, NOW);
                let kind = ProcessKind::Knot {
                    name: name.clone(),
                    fingerprint: want.fingerprint.clone(),
                };
                next.observed.processes.push(ObservedProcess {
                    id,
                    kind,
                    is_child: true,
                    zombie: false,
                });
            }
            Action::Signal { target, .. } => next.persisted.record_signal(*target, NOW),
            Action::Kill { target, .. } => {
                let process = next
                    .observed
                    .processes
                    .iter_mut()
                    .find(|p| p.id == *target)
                    .unwrap();
                process.zombie = true;
            }
            Action::Retire { name, .. } => next.persisted.forget(name),
            Action::Wait { .. } => {}
        }
    }
    next
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/reconcile_props.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn second_pass_adds_no_signals(scenario in scenario()) {
        let plan = reconcile(&scenario.desired, &scenario.observed, &scenario.persisted, NOW);
        let killed: BTreeSet<InstanceName> = plan.actions.iter().filter_map(|a| match a {
            Action::Kill { name: Some(name), .. } => Some(name.clone()),
            _ => None,
        }).collect();
        let after = apply(&scenario, &plan);
        let again = reconcile(&after.desired, &after.observed, &after.persisted, NOW);
        for action in &again.actions {
            match action {
                // With a kill-timeout of zero, SIGKILL follows SIGTERM at the same instant.
                Action::Kill { target, name, .. }
                    if term_sent(&after, *target) == Some(NOW)
                        && kill_timeout(&after, name.as_ref()).is_zero() => {}
                Action::Signal { .. } | Action::Kill { .. } => prop_assert!(false, "new signal {action}"),
                // A SIGKILL ends a process at once, so its instance may be replaced or retired.
                Action::Spawn { name, .. } | Action::Retire { name, .. } => {
                    prop_assert!(killed.contains(name), "new {action}")
                }
                Action::Wait { .. } => {}
            }
        }
    }

    #[test]
    fn never_two_live_processes(scenario in scenario()) {
        let plan = reconcile(&scenario.desired, &scenario.observed, &scenario.persisted, NOW);
        let mut spawned = BTreeSet::new();
        let fork_pending = live(&scenario).any(|p| {
            p.kind == ProcessKind::Forking
                && owner(&scenario, p).is_none()
                && NOW < clock::ticks_to_duration(p.id.start_time) + FORK_GRACE
        });
        for action in &plan.actions {
            if let Action::Spawn { name, .. } = action {
                prop_assert!(spawned.insert(name.clone()), "{name} spawned twice");
                prop_assert!(!fork_pending, "{name} spawned while a fork is pending");
                let running = live(&scenario).any(|p| owner(&scenario, p).as_ref() == Some(name));
                prop_assert!(!running, "{name} spawned while a process of it is live");
            }
        }
    }

    #[test]
    fn signals_only_surplus_processes(scenario in scenario()) {
        let plan = reconcile(&scenario.desired, &scenario.observed, &scenario.persisted, NOW);
        let targets = signalled(&plan);
        for target in &targets {
            let process = scenario.observed.processes.iter().find(|p| p.id == *target).unwrap();
            prop_assert!(!process.zombie, "zombie {target} signalled");
            prop_assert!(process.kind != ProcessKind::Forking, "forking {target} signalled");
            if is_current(&scenario, process) {
                let name = owner(&scenario, process);
                let rivals = live(&scenario).filter(|p| owner(&scenario, p) == name && p.id != *target);
                prop_assert!(rivals.count() > 0, "only up-to-date knot {target} signalled");
            }
        }
        let mut current: BTreeMap<InstanceName, Vec<ProcId>> = BTreeMap::new();
        for process in live(&scenario).filter(|p| is_current(&scenario, p)) {
            current.entry(owner(&scenario, process).unwrap()).or_default().push(process.id);
        }
        for (name, ids) in current {
            let fresh: Vec<&ProcId> = ids.iter().filter(|id| term_sent(&scenario, **id).is_none()).collect();
            let spared = fresh.iter().filter(|id| !targets.contains(**id)).count();
            let expected = usize::from(!fresh.is_empty());
            prop_assert_eq!(spared, expected, "{} must keep one up-to-date knot", name);
        }
    }

    #[test]
    fn sigkill_only_after_deadline_and_sigterm_once(scenario in scenario()) {
        let plan = reconcile(&scenario.desired, &scenario.observed, &scenario.persisted, NOW);
        for action in &plan.actions {
            match action {
                Action::Signal { target, .. } => {
                    prop_assert_eq!(term_sent(&scenario, *target), None, "second SIGTERM to {}", target);
                }
                Action::Kill { target, name, .. } => {
                    let sent = term_sent(&scenario, *target);
                    prop_assert!(sent.is_some(), "SIGKILL without SIGTERM to {target}");
                    let timeout = kill_timeout(&scenario, name.as_ref());
                    prop_assert!(NOW >= sent.unwrap() + timeout, "SIGKILL to {target} before its deadline");
                }
                _ => {}
            }
        }
    }

    #[test]
    fn no_spawn_before_backoff_deadline(scenario in scenario()) {
        let plan = reconcile(&scenario.desired, &scenario.observed, &scenario.persisted, NOW);
        for action in &plan.actions {
            if let Action::Spawn { name, .. } = action {
                let want = &scenario.desired.instances[name];
                let last = scenario.persisted.instances.get(name).and_then(|r| r.last_start);
                if let Some(last) = last {
                    prop_assert!(NOW >= last + want.restart_timeout, "{name} spawned in backoff");
                }
            }
        }
    }

    #[test]
    fn wake_at_is_in_the_future(scenario in scenario()) {
        let plan = reconcile(&scenario.desired, &scenario.observed, &scenario.persisted, NOW);
        let zero_kill_timeout = scenario.desired.instances.values().any(|w| w.kill_timeout.is_zero())
            || scenario.persisted.instances.values().any(|r| r.kill_timeout.is_zero());
        if let Some(wake) = plan.wake_at {
            prop_assert!(wake > NOW || (wake == NOW && zero_kill_timeout));
        }
        for action in &plan.actions {
            if let Action::Wait { until, .. } = action {
                prop_assert!(*until > NOW);
                prop_assert!(plan.wake_at.is_some_and(|wake| wake <= *until));
            }
        }
    }

    #[test]
    fn tree_reexec_gives_same_decisions(scenario in scenario()) {
        let plan = reconcile(&scenario.desired, &scenario.observed, &scenario.persisted, NOW);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        scenario.persisted.save(&path).unwrap();
        let (reloaded, error) = Persisted::load(&path);
        prop_assert!(error.is_none());
        let again = reconcile(&scenario.desired, &scenario.observed, &reloaded, NOW);
        prop_assert_eq!(plan, again);
    }

    /// After a crash of the tree, its knots are no longer its children and its other children
    /// are gone from view. Decisions about knots stay the same.
    #[test]
    fn tree_crash_gives_same_decisions(scenario in scenario()) {
        let mut before = scenario.clone();
        before.observed.processes.retain(|p| matches!(p.kind, ProcessKind::Knot { .. }) && !p.zombie);
        let mut after = before.clone();
        for process in &mut after.observed.processes {
            process.is_child = false;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        before.persisted.save(&path).unwrap();
        after.persisted = Persisted::load(&path).0;
        let plan = reconcile(&before.desired, &before.observed, &before.persisted, NOW);
        let again = reconcile(&after.desired, &after.observed, &after.persisted, NOW);
        prop_assert_eq!(plan, again);
    }
}
