//! The decision: per instance a derived state, per process a stop state, each matched
//! exhaustively into actions.

use std::time::Duration;

use crate::model::spec::{DesiredInstance, InstanceName};
use crate::state::{clock, InstanceRecord, Observed, Persisted, ProcId};

use super::group::{merge, Grouped, Live};
use super::plan::{Action, InstanceState, InstanceStates, Plan, Reason};
use super::Desired;

/// kill-timeout for processes with no config of their own: unknown children, and knots
/// whose instance has neither a record nor a desired spec.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a child that has not called exec yet is looked at again.
pub const EXEC_RECHECK: Duration = Duration::from_millis(100);

/// How long after its start a child that has not called exec yet is waited for. Exec
/// follows fork within milliseconds; a child older than this is a fork of the tree that
/// never execs, and it stops holding back starts.
pub const FORK_GRACE: Duration = Duration::from_secs(5);

/// Delay after which a process sent SIGKILL is looked at again if no exit event comes.
pub const KILL_RECHECK: Duration = Duration::from_secs(1);

/// Progress of a process that has to stop.
enum StopState {
    /// Exec has not happened yet, so what it will run is unknown and it is never signalled.
    Forking { recheck: Option<Duration> },
    /// No SIGTERM yet.
    Unsignalled,
    /// SIGTERM sent; waiting until the deadline.
    Grace { deadline: Duration },
    /// The deadline passed.
    Overdue,
}

/// Everything one pass reads, plus the plan being built.
struct Pass<'a> {
    persisted: &'a Persisted,
    now: Duration,
    /// Some child that has not called exec yet is not attributed to any instance.
    unattributed_fork: Option<Duration>,
    plan: Plan,
    /// Derived instance states, collected only when asked for: cloning every name costs a
    /// fifth of a pass.
    states: Option<Vec<(InstanceName, InstanceState)>>,
}

/// Runs one pass; the states are collected when `with_states` is set.
pub(super) fn reconcile(
    desired: &Desired,
    observed: &Observed,
    persisted: &Persisted,
    now: Duration,
    with_states: bool,
) -> (Plan, Option<InstanceStates>) {
    let inputs = (desired, observed, persisted, now);
    match run_pass(inputs, with_states, false) {
        Ok(result) => result,
        // A stale record claimed a knot of another instance: redo the pass, comparing the
        // names before anything is decided.
        Err(Misattributed) => run_pass(inputs, with_states, true)
            .unwrap_or_else(|Misattributed| unreachable!("names were checked up front")),
    }
}

/// A record claimed a knot that names another instance.
struct Misattributed;

type Inputs<'a> = (&'a Desired, &'a Observed, &'a Persisted, Duration);

fn run_pass(
    (desired, observed, persisted, now): Inputs,
    with_states: bool,
    check_names: bool,
) -> Result<(Plan, Option<InstanceStates>), Misattributed> {
    let mut pass = Pass {
        persisted,
        now,
        unattributed_fork: None,
        plan: Plan::default(),
        states: with_states.then(Vec::new),
    };
    let mut grouped = Grouped::new(observed, persisted, check_names);
    for id in std::mem::take(&mut grouped.unknown) {
        pass.stop(id, None, Reason::UnknownChild, DEFAULT_KILL_TIMEOUT, None);
    }
    for id in std::mem::take(&mut grouped.unattributed_forks) {
        pass.note_unattributed_fork(id);
    }
    let mut processes = Vec::new();
    for (name, want, record) in merge(&desired.instances, &persisted.instances) {
        grouped.take(name, record, &mut processes);
        pass.decide(name, want, record, &processes);
    }
    if grouped.misattributed {
        return Err(Misattributed);
    }
    for (name, processes) in grouped.leftovers() {
        pass.decide(name, None, None, &processes);
    }
    Ok(pass.finish())
}

impl<'a> Pass<'a> {
    fn note_unattributed_fork(&mut self, id: ProcId) {
        if let Some(recheck) = self.fork_recheck(id) {
            self.unattributed_fork = Some(recheck);
            self.wait(None, recheck, Reason::AwaitingExec);
        }
    }

    /// Returns when to look at a forking child again, or `None` once its grace is over.
    fn fork_recheck(&self, id: ProcId) -> Option<Duration> {
        let started = clock::ticks_to_duration(id.start_time);
        (self.now < started + FORK_GRACE).then_some(self.now + EXEC_RECHECK)
    }

    /// Derives the state of one instance, plans the stop of its surplus processes and the
    /// action of the instance itself.
    fn decide(
        &mut self,
        name: &InstanceName,
        desired: Option<&DesiredInstance>,
        record: Option<&InstanceRecord>,
        processes: &[Live],
    ) {
        let term_sent = |id| self.term_sent(id, record).is_some();
        let keeper = desired.and_then(|want| pick_keeper(want, record, processes, term_sent));
        for process in processes {
            if Some(process.id) != keeper.map(|k| k.id) {
                let reason = surplus_reason(desired, process);
                let kill_timeout = kill_timeout_for(desired, record);
                self.stop(process.id, Some(name), reason, kill_timeout, record);
            }
        }
        let state = self.derive_state(desired, record, keeper, processes.len());
        self.act(name, desired, record, state);
        if let Some(states) = &mut self.states {
            states.push((name.clone(), state));
        }
    }

    fn derive_state(
        &self,
        desired: Option<&DesiredInstance>,
        record: Option<&InstanceRecord>,
        keeper: Option<Live>,
        live_count: usize,
    ) -> InstanceState {
        match (desired, keeper, live_count) {
            (None, _, 0) => InstanceState::Retiring,
            (None, _, 1..) => InstanceState::Stopping,
            (
                Some(_),
                Some(Live {
                    id,
                    fingerprint: Some(_),
                }),
                _,
            ) => InstanceState::Running { process: id },
            (
                Some(_),
                Some(Live {
                    id,
                    fingerprint: None,
                }),
                _,
            ) => InstanceState::Starting { process: id },
            (Some(_), None, 1..) => InstanceState::Replacing,
            (Some(want), None, 0) => {
                match (self.unattributed_fork, self.backoff_until(want, record)) {
                    (Some(_), _) => InstanceState::AwaitingExec,
                    (None, Some(until)) => InstanceState::Backoff { until },
                    (None, None) => InstanceState::Absent,
                }
            }
        }
    }

    /// Returns when restart-timeout since the last start ends, if it has not yet.
    fn backoff_until(
        &self,
        want: &DesiredInstance,
        record: Option<&InstanceRecord>,
    ) -> Option<Duration> {
        let until = record?.last_start? + want.restart_timeout;
        (self.now < until).then_some(until)
    }

    fn act(
        &mut self,
        name: &InstanceName,
        desired: Option<&DesiredInstance>,
        record: Option<&InstanceRecord>,
        state: InstanceState,
    ) {
        match state {
            InstanceState::Running { .. } | InstanceState::Replacing | InstanceState::Stopping => {}
            InstanceState::Starting { process } => {
                if let Some(recheck) = self.fork_recheck(process) {
                    self.wait(Some(name), recheck, Reason::AwaitingExec);
                }
            }
            InstanceState::Absent => {
                let reason = start_reason(desired, record);
                self.push(Action::Spawn {
                    name: name.clone(),
                    reason,
                });
            }
            InstanceState::Backoff { until } => {
                self.wait(Some(name), until, Reason::RestartTimeout)
            }
            InstanceState::AwaitingExec => {
                let recheck = self.now + EXEC_RECHECK;
                self.wait(Some(name), recheck, Reason::AwaitingExec);
            }
            InstanceState::Retiring => {
                // Without a record nothing of the instance is known to remain.
                if record.is_some() {
                    self.push(Action::Retire {
                        name: name.clone(),
                        reason: Reason::NotInConfig,
                    });
                }
            }
        }
    }

    /// Plans the next step of stopping `id`; `record` is its instance's record, if any.
    fn stop(
        &mut self,
        id: ProcId,
        name: Option<&InstanceName>,
        reason: Reason,
        kill_timeout: Duration,
        record: Option<&InstanceRecord>,
    ) {
        let name = name.cloned();
        match self.stop_state(id, reason, record, kill_timeout) {
            StopState::Forking {
                recheck: Some(until),
            } => self.wait(name.as_ref(), until, Reason::AwaitingExec),
            StopState::Forking { recheck: None } => {}
            StopState::Unsignalled => {
                self.wake(self.now + kill_timeout);
                self.push(Action::Signal {
                    target: id,
                    name,
                    reason,
                });
            }
            StopState::Grace { deadline } => {
                self.wait(name.as_ref(), deadline, Reason::AwaitingExit)
            }
            StopState::Overdue => {
                self.wake(self.now + KILL_RECHECK);
                self.push(Action::Kill {
                    target: id,
                    name,
                    reason: Reason::KillTimeout,
                });
            }
        }
    }

    fn stop_state(
        &self,
        id: ProcId,
        reason: Reason,
        record: Option<&InstanceRecord>,
        kill_timeout: Duration,
    ) -> StopState {
        if reason == Reason::AwaitingExec {
            return StopState::Forking {
                recheck: self.fork_recheck(id),
            };
        }
        let term_sent = self.term_sent(id, record);
        match term_sent {
            None => StopState::Unsignalled,
            Some(sent) if self.now < sent + kill_timeout => StopState::Grace {
                deadline: sent + kill_timeout,
            },
            Some(_) => StopState::Overdue,
        }
    }

    /// Returns the time of the first SIGTERM to `id` in its current stop, if one was sent.
    fn term_sent(&self, id: ProcId, record: Option<&InstanceRecord>) -> Option<Duration> {
        let recorded = record
            .filter(|record| record.process == Some(id))
            .and_then(|record| record.term_sent);
        recorded.or_else(|| self.persisted.signals.get(&id).copied())
    }

    fn wait(&mut self, name: Option<&InstanceName>, until: Duration, reason: Reason) {
        self.wake(until);
        self.push(Action::Wait {
            name: name.cloned(),
            until,
            reason,
        });
    }

    fn wake(&mut self, at: Duration) {
        let wake = self.plan.wake_at.get_or_insert(at);
        *wake = (*wake).min(at);
    }

    fn push(&mut self, action: Action) {
        self.plan.actions.push(action);
    }

    fn finish(mut self) -> (Plan, Option<InstanceStates>) {
        self.plan.actions.sort_by_key(Action::rank);
        let states = self.states.map(|mut states| {
            states.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            InstanceStates(states)
        });
        (self.plan, states)
    }
}

/// Chooses the one live process an instance keeps among the up-to-date ones: one that got
/// no SIGTERM yet (a duplicate already stopping must not leave the instance with none),
/// then one that has called exec, then the oldest. The oldest is a stable choice: a knot
/// started later never displaces it.
fn pick_keeper<'a>(
    want: &DesiredInstance,
    record: Option<&InstanceRecord>,
    processes: &[Live<'a>],
    term_sent: impl Fn(ProcId) -> bool,
) -> Option<Live<'a>> {
    let recorded_fingerprint = record.map(|record| record.fingerprint.as_str());
    let is_current = |process: &&Live| match process.fingerprint {
        Some(fingerprint) => fingerprint == want.fingerprint,
        None => recorded_fingerprint == Some(want.fingerprint.as_str()),
    };
    processes
        .iter()
        .filter(is_current)
        .min_by_key(|process| {
            let id = process.id;
            let forking = process.fingerprint.is_none();
            (term_sent(id), forking, id.start_time, id.pid)
        })
        .copied()
}

/// Returns why a live process that is not kept has to go.
fn surplus_reason(desired: Option<&DesiredInstance>, process: &Live) -> Reason {
    match (desired, process.fingerprint) {
        (_, None) => Reason::AwaitingExec,
        (None, Some(_)) => Reason::NotInConfig,
        (Some(want), Some(fingerprint)) if want.fingerprint != fingerprint => Reason::ConfigChanged,
        (Some(_), Some(_)) => Reason::Duplicate,
    }
}

/// Returns the kill-timeout of the config a process of the instance runs: the recorded
/// one (the spec it was started with), else the desired one.
fn kill_timeout_for(
    desired: Option<&DesiredInstance>,
    record: Option<&InstanceRecord>,
) -> Duration {
    match (record, desired) {
        (Some(record), _) => record.kill_timeout,
        (None, Some(want)) => want.kill_timeout,
        (None, None) => DEFAULT_KILL_TIMEOUT,
    }
}

/// Returns why an instance with nothing running starts.
fn start_reason(desired: Option<&DesiredInstance>, record: Option<&InstanceRecord>) -> Reason {
    match (desired, record) {
        (_, None) => Reason::NotRunning,
        (_, Some(record)) if record.last_start.is_none() => Reason::NotRunning,
        (Some(want), Some(record)) if record.fingerprint != want.fingerprint => {
            Reason::ConfigChanged
        }
        (_, Some(_)) => Reason::Exited,
    }
}
