//! A flapping container over ten minutes of simulated time with a fake clock: restarts
//! stay spaced by restart-timeout, also across reloads of the persisted state and config
//! changes, and a container that ran longer than restart-timeout restarts at once.

use std::time::Duration;

use lithos::model::spec::InstanceName;
use lithos::reconcile::testing::sample_instance;
use lithos::reconcile::{reconcile, Action, Desired, Plan};
use lithos::state::{clock, Observed, ObservedProcess, Persisted, ProcId, ProcessKind};

const RESTART: Duration = Duration::from_secs(10);
const KILL: Duration = Duration::from_secs(5);
const START: Duration = Duration::from_secs(1000);
const END: Duration = Duration::from_secs(1600);

/// The simulated world: one instance, its process and the tree's persisted state.
struct World {
    now: Duration,
    desired: Desired,
    observed: Observed,
    persisted: Persisted,
    /// When the running process exits on its own (or after SIGTERM).
    exit_at: Option<Duration>,
    starts: Vec<(Duration, String)>,
    /// Pseudo-random run lengths, cycled: mostly short, sometimes longer than restart-timeout.
    runtimes: std::iter::Cycle<std::vec::IntoIter<u64>>,
    next_pid: i32,
    state_file: tempfile::TempDir,
}

fn name() -> InstanceName {
    InstanceName::new("web", "app", 0)
}

fn desired(fingerprint: &str) -> Desired {
    [sample_instance(name(), fingerprint, RESTART, KILL)]
        .into_iter()
        .collect()
}

impl World {
    fn new() -> World {
        World {
            now: START,
            desired: desired("v1"),
            observed: Observed::default(),
            persisted: Persisted::default(),
            exit_at: None,
            starts: Vec::new(),
            runtimes: vec![0, 2, 1, 30, 3, 0, 12, 1, 45, 2].into_iter().cycle(),
            next_pid: 100,
            state_file: tempfile::tempdir().unwrap(),
        }
    }

    fn apply(&mut self, plan: &Plan) {
        for action in &plan.actions {
            match action {
                Action::Spawn { name, .. } => self.spawn(name),
                Action::Signal { target, .. } => {
                    self.persisted.record_signal(*target, self.now);
                    let soon = self.now + Duration::from_secs(1);
                    self.exit_at = self.exit_at.map(|at| at.min(soon));
                }
                Action::Kill { .. } => self.exit(),
                Action::Retire { name, .. } => self.persisted.forget(name),
                Action::Wait { .. } => {}
            }
        }
    }

    fn spawn(&mut self, name: &InstanceName) {
        assert!(
            self.observed.processes.is_empty(),
            "spawn while a process runs"
        );
        let ticks = self.now.as_secs() * clock::ticks_per_second();
        let id = ProcId {
            pid: self.next_pid,
            start_time: ticks,
        };
        self.next_pid += 1;
        let want = &self.desired.instances[name];
        self.persisted.record_spawn(want, id, self.now);
        let kind = ProcessKind::Knot {
            name: name.clone(),
            fingerprint: want.fingerprint.clone(),
        };
        self.observed.processes.push(ObservedProcess {
            id,
            kind,
            is_child: true,
            zombie: false,
        });
        self.exit_at = Some(self.now + Duration::from_secs(self.runtimes.next().unwrap()));
        self.starts.push((self.now, want.fingerprint.clone()));
    }

    fn exit(&mut self) {
        self.observed.processes.clear();
        self.persisted.record_exit(&name(), true, self.now);
        self.exit_at = None;
    }

    /// Simulates a SIGQUIT: the tree's memory is lost, and the state survives only in state.bin.
    fn reload(&mut self) {
        let path = self.state_file.path().join("state.bin");
        self.persisted.save(&path).unwrap();
        let (loaded, error) = Persisted::load(&path);
        assert!(error.is_none());
        self.persisted = loaded;
    }
}

fn run(reload_every: Duration, change_config_every: Option<Duration>) -> World {
    let mut world = World::new();
    let mut next_reload = START + reload_every;
    let mut next_change = change_config_every.map(|every| START + every);
    let mut generation = 0;
    while world.now < END {
        if world.exit_at.is_some_and(|at| at <= world.now) {
            world.exit();
        }
        if world.now >= next_reload {
            world.reload();
            next_reload += reload_every;
        }
        if next_change.is_some_and(|at| world.now >= at) {
            generation += 1;
            world.desired = desired(&format!("v{generation}"));
            next_change = next_change
                .zip(change_config_every)
                .map(|(at, every)| at + every);
        }
        let plan = reconcile(&world.desired, &world.observed, &world.persisted, world.now);
        world.apply(&plan);
        let timers = [plan.wake_at, Some(next_reload), next_change];
        let next_timer = timers
            .into_iter()
            .flatten()
            .filter(|at| *at > world.now)
            .min();
        // A process may exit at the instant it started; that exit is handled next round.
        let next = next_timer.into_iter().chain(world.exit_at).min();
        world.now = next.expect("some event is always ahead");
    }
    world
}

fn assert_spaced(world: &World) {
    assert!(
        world.starts.len() > 10,
        "only {} starts",
        world.starts.len()
    );
    for pair in world.starts.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= RESTART,
            "starts at {:?} and {:?} are {gap:?} apart",
            pair[0].0,
            pair[1].0
        );
    }
}

#[test]
fn flapping_restarts_are_spaced() {
    assert_spaced(&run(Duration::from_secs(3600), None));
}

#[test]
fn reloads_do_not_bypass_spacing() {
    assert_spaced(&run(Duration::from_millis(700), None));
}

#[test]
fn config_changes_do_not_bypass_spacing() {
    let world = run(Duration::from_secs(7), Some(Duration::from_secs(4)));
    assert_spaced(&world);
    let fingerprints: std::collections::BTreeSet<_> = world.starts.iter().map(|s| &s.1).collect();
    assert!(fingerprints.len() > 5, "config changes were applied");
}

#[test]
fn long_run_restarts_at_once() {
    let world = run(Duration::from_secs(3600), None);
    // The run lengths cycle through 0, 2, 1, 30 ...: the fourth start ran 30 s, longer than
    // restart-timeout, so the fifth start follows its exit without delay.
    let fourth = world.starts[3].0;
    let fifth = world.starts[4].0;
    assert_eq!(fifth - fourth, Duration::from_secs(30));
}
