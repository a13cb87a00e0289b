//! The pure reconciler: desired, observed and persisted state in, a plan out.
//!
//! [`reconcile`] derives an [`InstanceState`] for every instance the inputs mention and
//! turns it into [`Action`]s with an exhaustive match, so the decision for each combination
//! of inputs is visible in one place. The supervisor executes the plan, records what it did in
//! [`Persisted`], observes again and calls [`reconcile`] again: the loop is level
//! triggered, and the reconciler never learns what woke it.

mod decide;
mod group;
mod plan;
mod render;
pub mod testing;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::spec::{DesiredInstance, InstanceName};
use crate::state::{Observed, Persisted};

pub use decide::{DEFAULT_KILL_TIMEOUT, EXEC_RECHECK, FORK_GRACE, KILL_RECHECK};
pub use plan::{Action, InstanceState, InstanceStates, Plan, Reason};
pub use render::{
    plan_entries, render_plan, render_plan_json, render_plan_text, spec_changes, Change, PlanEntry,
    PlanFormat,
};

/// The daemon instances the config tree requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// Instances by name.
    pub instances: BTreeMap<InstanceName, DesiredInstance>,
}

impl FromIterator<DesiredInstance> for Desired {
    fn from_iter<I: IntoIterator<Item = DesiredInstance>>(iter: I) -> Self {
        Desired {
            instances: iter
                .into_iter()
                .map(|instance| (instance.name.clone(), instance))
                .collect(),
        }
    }
}

/// Decides what the tree does now to move the observed state towards the desired one.
///
/// Pure: no I/O, no clock (`now` is the caller's [`crate::state::clock::now`]), no logging.
///
/// # Guarantees
/// - At most one live process per instance: an instance is spawned only when no live
///   process (knot or not-yet-exec'ed child) is attributed to it and no unattributed child
///   between fork and exec (younger than [`FORK_GRACE`]) exists. An outdated knot is
///   stopped, and its replacement starts in a later pass, once it has exited.
/// - A live, up-to-date knot of a desired instance is never signalled while it is the only
///   one. When several run, one is kept and the others are stopped as duplicates. The kept
///   one is chosen in this order: not yet sent SIGTERM, a knot before a child that has not
///   called exec, the oldest.
/// - Every SIGTERM targets a knot that is not in the config, outdated or duplicate, or an
///   unknown child. SIGTERM is planned only while no first SIGTERM time is recorded for
///   that process (pid and start time), so a stop gets one SIGTERM across reloads.
/// - SIGKILL only when `now >= first SIGTERM + kill-timeout`, where kill-timeout is the one
///   recorded at spawn (the config the process runs), else the desired one, else
///   [`DEFAULT_KILL_TIMEOUT`] (always for unknown children).
/// - No spawn before `last start + restart-timeout` (the desired restart-timeout): the gap
///   between two starts, measured from the last start, without exponential growth.
/// - A child between fork and exec is never signalled; it gets a wait of [`EXEC_RECHECK`]
///   while it is younger than [`FORK_GRACE`].
/// - Zombies count as not running.
/// - `wake_at` is the earliest deadline in the plan (waits, the kill deadline of a process
///   signalled now, a recheck after SIGKILL). It is later than `now`, except that a
///   kill-timeout of zero makes it equal: SIGKILL is then due in the next pass. Every wait
///   ends later than `now`.
/// - The result depends on the inputs only; equal inputs give equal plans.
///
/// # Assumptions
/// - `observed` holds the tree's children and the knots of its own master config only.
/// - The supervisor records every executed spawn with [`Persisted::record_spawn`], every
///   SIGTERM with [`Persisted::record_signal`], exits with [`Persisted::record_exit`] and
///   retirements with [`Persisted::forget`], before it reconciles again.
/// - All times share the `CLOCK_BOOTTIME` base of the current boot.
pub fn reconcile(
    desired: &Desired,
    observed: &Observed,
    persisted: &Persisted,
    now: Duration,
) -> Plan {
    decide::reconcile(desired, observed, persisted, now, false).0
}

/// Runs [`reconcile`] and also returns the derived state of every instance the inputs
/// mention (for `status.json` and `lithos plan`); the plan is the one [`reconcile`] returns.
pub fn reconcile_with_states(
    desired: &Desired,
    observed: &Observed,
    persisted: &Persisted,
    now: Duration,
) -> (Plan, InstanceStates) {
    let (plan, states) = decide::reconcile(desired, observed, persisted, now, true);
    (plan, states.unwrap_or_default())
}
