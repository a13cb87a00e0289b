//! The reconciler's output: a plan of actions, each with the reason shown to operators.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::model::spec::InstanceName;
use crate::state::ProcId;

/// Actions the tree should take now, and the time to look again.
#[must_use = "a plan does nothing until the supervisor executes it"]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Actions in execution order: kills and signals first, then retirements, spawns and
    /// waits.
    pub actions: Vec<Action>,
    /// Earliest deadline at which reconciling again may decide something new, even if
    /// nothing else happens (no exit, no reload); `None` when only an event can.
    pub wake_at: Option<Duration>,
}

impl Plan {
    /// Returns true when the plan starts, signals, kills or retires something.
    pub fn has_changes(&self) -> bool {
        self.actions
            .iter()
            .any(|action| !matches!(action, Action::Wait { .. }))
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a knot for the instance.
    Spawn {
        /// Instance to start.
        name: InstanceName,
        /// Why.
        reason: Reason,
    },
    /// Send SIGTERM; the supervisor records the time with `Persisted::record_signal`, so
    /// no second SIGTERM is planned for this stop.
    Signal {
        /// Process to signal.
        target: ProcId,
        /// Instance the process belongs to; `None` for an unknown child.
        name: Option<InstanceName>,
        /// Why.
        reason: Reason,
    },
    /// Send SIGKILL; nothing is recorded, the process just has to disappear.
    Kill {
        /// Process to kill.
        target: ProcId,
        /// Instance the process belongs to; `None` for an unknown child.
        name: Option<InstanceName>,
        /// Why.
        reason: Reason,
    },
    /// Remove the state dir and the cgroups of an instance that is gone, then forget it.
    Retire {
        /// Instance to retire.
        name: InstanceName,
        /// Why.
        reason: Reason,
    },
    /// Do nothing for this instance or process until `until` (or an event).
    Wait {
        /// Instance concerned; `None` for a child not attributed to any instance.
        name: Option<InstanceName>,
        /// Deadline, always later than the `now` the plan was made at.
        until: Duration,
        /// Why.
        reason: Reason,
    },
}

impl Action {
    /// Returns the instance the action concerns, if any.
    pub fn name(&self) -> Option<&InstanceName> {
        match self {
            Action::Spawn { name, .. } | Action::Retire { name, .. } => Some(name),
            Action::Signal { name, .. } | Action::Kill { name, .. } | Action::Wait { name, .. } => {
                name.as_ref()
            }
        }
    }

    /// Returns the reason of the action.
    pub fn reason(&self) -> Reason {
        match self {
            Action::Spawn { reason, .. }
            | Action::Signal { reason, .. }
            | Action::Kill { reason, .. }
            | Action::Retire { reason, .. }
            | Action::Wait { reason, .. } => *reason,
        }
    }

    /// Returns the execution rank: lower ranks run first.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Action::Kill { .. } => 0,
            Action::Signal { .. } => 1,
            Action::Retire { .. } => 2,
            Action::Spawn { .. } => 3,
            Action::Wait { .. } => 4,
        }
    }
}

/// Formats an optional instance name as ` NAME` or nothing.
struct OptName<'a>(&'a Option<InstanceName>);

impl fmt::Display for OptName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " {name}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Spawn { name, reason } => write!(f, "start {name} ({reason})"),
            Action::Signal {
                target,
                name,
                reason,
            } => write!(f, "SIGTERM {target}{} ({reason})", OptName(name)),
            Action::Kill {
                target,
                name,
                reason,
            } => write!(f, "SIGKILL {target}{} ({reason})", OptName(name)),
            Action::Retire { name, reason } => write!(f, "retire {name} ({reason})"),
            Action::Wait {
                name,
                until,
                reason,
            } => write!(
                f,
                "wait{} until {:.3}s ({reason})",
                OptName(name),
                until.as_secs_f64()
            ),
        }
    }
}

/// Cause of an action. Its text is shown by `lithos plan` and in the tree's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The instance never ran (or its record was lost).
    NotRunning,
    /// The instance's process exited.
    Exited,
    /// The running process has another config fingerprint than the desired one.
    ConfigChanged,
    /// The instance is no longer in the config.
    NotInConfig,
    /// kill-timeout passed since the first SIGTERM.
    KillTimeout,
    /// restart-timeout has not passed since the last start.
    RestartTimeout,
    /// A child of the tree that is neither a knot of its master nor forking.
    UnknownChild,
    /// A second live process of an instance that already has an up-to-date one.
    Duplicate,
    /// SIGTERM was sent; the process gets until kill-timeout to exit.
    AwaitingExit,
    /// A child of the tree has not called exec yet; it is never signalled meanwhile.
    AwaitingExec,
}

impl Reason {
    /// Returns the operator-facing text of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotRunning => "not running",
            Reason::Exited => "exited",
            Reason::ConfigChanged => "config changed",
            Reason::NotInConfig => "not in config",
            Reason::KillTimeout => "kill timeout",
            Reason::RestartTimeout => "restart-timeout not elapsed",
            Reason::UnknownChild => "unknown child",
            Reason::Duplicate => "duplicate process",
            Reason::AwaitingExit => "waiting for exit after SIGTERM",
            Reason::AwaitingExec => "child has not called exec yet",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The derived state of every instance the inputs of a pass mention, sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceStates(pub Vec<(InstanceName, InstanceState)>);

impl InstanceStates {
    /// Returns the state of `name`, if the inputs mention it.
    pub fn get(&self, name: &InstanceName) -> Option<&InstanceState> {
        self.0
            .binary_search_by(|(probe, _)| probe.cmp(name))
            .ok()
            .map(|index| &self.0[index].1)
    }
}

/// The state of one instance, derived from the inputs of one reconcile pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum InstanceState {
    /// Desired, and an up-to-date knot runs.
    Running {
        /// The knot.
        #[serde(skip)]
        process: ProcId,
    },
    /// Desired, and the tree's child started for it has not called exec yet.
    Starting {
        /// The child.
        #[serde(skip)]
        process: ProcId,
    },
    /// Desired, but only processes that must stop first run (outdated or duplicate).
    Replacing,
    /// Desired, nothing runs, and it may start now.
    Absent,
    /// Desired, nothing runs, and restart-timeout since the last start has not passed.
    Backoff {
        /// When it may start.
        #[serde(skip)]
        until: Duration,
    },
    /// Desired and nothing runs, but a child of the tree that has not called exec yet may
    /// turn out to be this instance, so starting waits.
    AwaitingExec,
    /// Not desired, and processes of it still run.
    Stopping,
    /// Not desired, nothing runs, and its record, state dir and cgroup remain.
    Retiring,
}
