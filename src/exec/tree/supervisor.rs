//! The supervisor's state and its loop: observe, reconcile, execute, persist, sleep.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::wait::WaitStatus;
use slog::{debug, error, info, warn};

use super::notify::Notifier;
use super::signals::SignalWaiter;
use super::TreeError;
use crate::exec::cgroup::Cgroups;
use crate::exec::metrics::MetricsExporter;
use crate::exec::sockets::SocketTable;
use crate::model::spec::InstanceName;
use crate::model::ConfigTree;
use crate::reconcile::{self, Action, Desired, InstanceStates, Plan};
use crate::state::{self, clock, ObserveRoots, Observed, Persisted, ProcId, ProcessKind};

/// How long the loop waits before it retries a pass whose observation failed.
const OBSERVE_RETRY: Duration = Duration::from_secs(1);

/// Whether the tree runs its config or stops every container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Keeps the desired instances running.
    Running,
    /// Stops everything and exits; `send_term` is false after SIGINT, which the terminal
    /// delivered to the containers in the tree's process group (the others get SIGTERM).
    Stopping {
        /// Send SIGTERM to each container.
        send_term: bool,
    },
}

/// Everything the loop works with; built once per image of the tree.
pub struct Supervisor {
    pub(super) log: slog::Logger,
    pub(super) tree: ConfigTree,
    pub(super) desired: Desired,
    pub(super) persisted: Persisted,
    pub(super) state_file: PathBuf,
    pub(super) sockets: SocketTable,
    pub(super) cgroups: Option<Cgroups>,
    pub(super) roots: ObserveRoots,
    pub(super) knot_binary: PathBuf,
    pub(super) program: PathBuf,
    pub(super) args: Vec<OsString>,
    pub(super) lock: File,
    pub(super) signals: SignalWaiter,
    pub(super) notifier: Option<Notifier>,
    pub(super) mode: Mode,
    /// Pidfds of knots that are not the tree's children, so their exit wakes the loop.
    pub(super) watchers: BTreeMap<ProcId, OwnedFd>,
    /// Wait statuses of reaped children not yet matched to an instance.
    pub(super) reaped: BTreeMap<i32, WaitStatus>,
    /// Last error logged per instance, so a failure repeated each restart logs once.
    pub(super) reported: BTreeMap<InstanceName, String>,
    pub(super) passes: u64,
    /// Whether the first pass must look for knots that the persisted state does not know
    /// (a fresh start, or a state that failed to load), by scanning every process.
    pub(super) scan_for_orphans: bool,
    pub(super) last_notified_status: Option<String>,
    /// Writes that are failing now, so a full disk logs once, not at every pass.
    pub(super) failing_writes: FailingWrites,
    /// Cgroups of retired instances that were still busy, with the retries so far.
    pub(super) pending_cgroups: BTreeMap<InstanceName, u32>,
    /// Writes `metrics-file` and the cantal files after each pass.
    pub(super) metrics: MetricsExporter,
    /// The last metrics export failed and was logged.
    pub(super) metrics_failing: bool,
}

/// Attempts at removing a busy cgroup of a retired instance before giving up.
pub(super) const CGROUP_RETRIES: u32 = 50;

/// Pause between attempts at removing a busy cgroup.
const CGROUP_RETRY: Duration = Duration::from_millis(200);

/// The kinds of periodic write that failed at their last attempt.
#[derive(Debug, Default)]
pub(super) struct FailingWrites(std::cell::RefCell<std::collections::BTreeSet<&'static str>>);

impl FailingWrites {
    /// Records a failure of `kind`; returns true when it worked at the last attempt.
    pub(super) fn failed(&self, kind: &'static str) -> bool {
        self.0.borrow_mut().insert(kind)
    }

    /// Records a success of `kind`; returns true when it failed at the last attempt.
    pub(super) fn succeeded(&self, kind: &'static str) -> bool {
        self.0.borrow_mut().remove(kind)
    }
}

impl Supervisor {
    /// Runs the loop until a graceful stop has finished.
    pub fn run(&mut self) -> Result<(), TreeError> {
        loop {
            let received = self.signals.take();
            if received.terminate {
                self.begin_stop(true);
            }
            if received.interrupt {
                self.begin_stop(false);
            }
            if received.reload {
                self.reload();
            }
            let wake_at = self.pass();
            if matches!(self.mode, Mode::Stopping { .. }) && self.nothing_left() {
                self.finish_stop();
                return Ok(());
            }
            if wake_at.is_none_or(|at| at > clock::now()) {
                // Going idle: loading the config and the state, and every pass, leave freed
                // memory inside the heap; hand it back, as the tree idles far longer than
                // it works. Passes that follow at once skip this.
                // SAFETY: malloc_trim only releases free memory of the allocator.
                unsafe { libc::malloc_trim(0) };
            }
            self.sleep(wake_at)?;
        }
    }

    fn begin_stop(&mut self, send_term: bool) {
        if let Mode::Stopping { send_term: sending } = self.mode {
            // A SIGTERM after a SIGINT requests the signals that the SIGINT did not send.
            self.mode = Mode::Stopping {
                send_term: sending || send_term,
            };
            return;
        }
        let signal = if send_term { "SIGTERM" } else { "SIGINT" };
        info!(self.log, "stopping every container"; "signal" => signal);
        self.notify("STOPPING=1");
        self.mode = Mode::Stopping { send_term };
    }

    fn sleep(&mut self, wake_at: Option<Duration>) -> Result<(), TreeError> {
        let timeout = wake_at.map(|at| at.saturating_sub(clock::now()));
        let fds: Vec<_> = self.watchers.values().map(|fd| fd.as_fd()).collect();
        self.signals
            .wait(timeout, &fds)
            .map_err(TreeError::Signals)?;
        Ok(())
    }

    /// Runs one pass; returns when the loop must look again without an event.
    fn pass(&mut self) -> Option<Duration> {
        self.passes += 1;
        self.reaped.extend(super::exits::reap_children());
        let now = clock::now();
        let observed = match self.observe() {
            Ok(observed) => observed,
            Err(error) => {
                warn!(self.log, "failed to observe processes, retrying";
                    "error" => %error_chain(&error));
                return Some(now + OBSERVE_RETRY);
            }
        };
        // Children that exited after the reap above show up as zombies; reaping them now
        // gives their exits a wait status.
        self.reaped.extend(super::exits::reap_children());
        self.account_exits(&observed, now);
        self.track_adopted(&observed);
        self.persisted.prune_signals(&observed);
        let (plan, states) = self.plan(&observed, now);
        self.execute(&plan, &observed, now);
        let cgroups_pending = self.retry_cgroup_removals();
        self.release_unused_sockets();
        self.save_state();
        self.write_status(&states);
        self.export_metrics(&observed, &plan);
        if self.passes == 1 {
            self.notify("READY=1");
        }
        let changed = plan.actions.iter().any(|action| {
            matches!(
                action,
                Action::Spawn { .. } | Action::Signal { .. } | Action::Retire { .. }
            )
        });
        if changed {
            // The status above shows the state before the actions ran, so the next pass
            // comes at once to observe their effect. A SIGKILL is left out: the reconciler
            // repeats it until the process is gone, and that must not spin.
            return Some(now);
        }
        if cgroups_pending {
            let retry = now + CGROUP_RETRY;
            return Some(plan.wake_at.map_or(retry, |at| at.min(retry)));
        }
        plan.wake_at
    }

    fn observe(&self) -> Result<Observed, state::ObserveError> {
        let cgroup_dirs = self
            .cgroups
            .as_ref()
            .map(|cgroups| cgroups.base_dirs())
            .unwrap_or_default();
        let tree_pid = std::process::id() as i32;
        let master = &self.tree.master_path;
        // Only the first pass after a fresh start can find knots that the state does not
        // know; otherwise the children and the recorded knots are all there is.
        let mut observed = if self.passes <= 1 && self.scan_for_orphans {
            state::observe(&self.roots, tree_pid, master, &cgroup_dirs)?
        } else {
            let known: Vec<ProcId> = (self.persisted.instances.values())
                .filter_map(|record| record.process)
                .collect();
            state::observe_known(&self.roots, tree_pid, master, &cgroup_dirs, &known)?
        };
        drop_forking_knot_children(&self.roots.proc_root, &mut observed);
        claim_exiting_knots(&self.persisted, &mut observed);
        Ok(observed)
    }

    fn plan(&self, observed: &Observed, now: Duration) -> (Plan, InstanceStates) {
        let stopping = Desired {
            instances: BTreeMap::new(),
        };
        let desired = match self.mode {
            Mode::Running => &self.desired,
            Mode::Stopping { .. } => &stopping,
        };
        let (plan, states) =
            reconcile::reconcile_with_states(desired, observed, &self.persisted, now);
        for action in &plan.actions {
            debug!(self.log, "planned"; "action" => %action);
        }
        (plan, states)
    }

    /// Records the exit of every recorded knot that no longer runs.
    fn account_exits(&mut self, observed: &Observed, now: Duration) {
        let live: std::collections::BTreeSet<ProcId> = observed
            .processes
            .iter()
            .filter(|process| !process.zombie)
            .map(|process| process.id)
            .collect();
        let ended: Vec<(InstanceName, ProcId)> = self
            .persisted
            .instances
            .iter()
            .filter_map(|(name, record)| Some((name.clone(), record.process?)))
            .filter(|(_, process)| !live.contains(process))
            .collect();
        for (name, process) in ended {
            let status = self.reaped.remove(&process.pid);
            let state_dir = &self.tree.master.state_dir;
            let mut exit = super::exits::knot_exit(state_dir, &name, process, status.as_ref(), now);
            // A process the tree asked to stop is not a failure, whatever it died of (a
            // SIGKILL after kill-timeout included), as in the original.
            let stopped_by_tree = self.persisted.signals.contains_key(&process)
                || self
                    .persisted
                    .instances
                    .get(&name)
                    .is_some_and(|record| record.term_sent.is_some());
            if stopped_by_tree {
                exit.record.failure = false;
            }
            let uptime = self
                .persisted
                .instances
                .get(&name)
                .and_then(|record| record.last_start)
                .map(|start| format!("{:.1}s", now.saturating_sub(start).as_secs_f64()))
                .unwrap_or_else(|| "unknown".into());
            info!(self.log, "container exited";
                "instance" => %name, "pid" => process.pid, "status" => %exit,
                "failure" => exit.record.failure, "uptime" => uptime);
            self.watchers.remove(&process);
            self.persisted.record_exit_status(&name, exit.record);
        }
        // Statuses of children that were never recorded (a spawn that failed after the
        // fork) match no instance.
        self.reaped.clear();
    }

    /// Records knots found running without a matching record, and watches every knot that
    /// is not the tree's child through a pidfd.
    fn track_adopted(&mut self, observed: &Observed) {
        // A pidfd stays readable once its process exited, so a watcher whose process is no
        // longer observed would wake the loop forever.
        let live: std::collections::BTreeSet<ProcId> = observed
            .processes
            .iter()
            .filter(|process| !process.zombie)
            .map(|process| process.id)
            .collect();
        self.watchers.retain(|process, _| live.contains(process));
        for process in observed.processes.iter().filter(|process| !process.zombie) {
            let ProcessKind::Knot { name, fingerprint } = &process.kind else {
                continue;
            };
            let recorded = self
                .persisted
                .instances
                .get(name)
                .and_then(|record| record.process);
            if recorded.is_none() {
                info!(self.log, "adopting running container";
                    "instance" => %name, "pid" => process.id.pid);
                self.persisted.record_adopted(name, fingerprint, process.id);
            }
            if !process.is_child && !self.watchers.contains_key(&process.id) {
                self.watch(name, process.id);
            }
        }
    }

    fn watch(&mut self, name: &InstanceName, process: ProcId) {
        match super::pidfd::open(&self.roots.proc_root, process) {
            Ok(Some(pidfd)) => {
                self.watchers.insert(process, pidfd);
            }
            Ok(None) => {}
            Err(error) => {
                warn!(self.log, "failed to open a pidfd, exits are noticed late";
                    "instance" => %name, "pid" => process.pid, "error" => %error);
            }
        }
    }

    fn nothing_left(&self) -> bool {
        self.persisted.instances.is_empty()
    }

    fn finish_stop(&mut self) {
        self.sockets.close_all();
        self.save_state();
        info!(self.log, "every container stopped, exiting");
    }

    pub(super) fn notify(&self, message: &str) {
        if let Some(notifier) = &self.notifier {
            if let Err(error) = notifier.send(message) {
                debug!(self.log, "failed to notify the service manager"; "error" => %error);
            }
        }
    }

    pub(super) fn save_state(&self) {
        match self.persisted.save(&self.state_file) {
            Err(error) if self.failing_writes.failed("state") => {
                error!(self.log, "failed to save the state, a restart loses restart backoff; not logged again until it works";
                    "error" => %error_chain(&error));
            }
            Err(_) => {}
            Ok(()) if self.failing_writes.succeeded("state") => {
                info!(self.log, "saving the state works again");
            }
            Ok(()) => {}
        }
    }
}

/// Drops knots whose parent is a knot of the same instance.
///
/// Between its fork and exec, the program's process still carries the knot's command line,
/// so it looks like a second knot of the instance. The observer filters these only when the
/// parent knot is not the tree's child, so the tree filters the rest here.
fn drop_forking_knot_children(proc_root: &std::path::Path, observed: &mut Observed) {
    let knots: BTreeMap<i32, InstanceName> = observed
        .processes
        .iter()
        .filter_map(|process| match &process.kind {
            ProcessKind::Knot { name, .. } => Some((process.id.pid, name.clone())),
            _ => None,
        })
        .collect();
    observed.processes.retain(|process| {
        let ProcessKind::Knot { name, .. } = &process.kind else {
            return true;
        };
        if process.is_child {
            return true;
        }
        let parent = super::pidfd::parent_pid(proc_root, process.id.pid);
        parent.and_then(|ppid| knots.get(&ppid)) != Some(name)
    });
}

/// Attributes unknown processes that are knots the tree started to their instance.
///
/// A knot that is exiting has released its memory, so its `cmdline` reads empty and the
/// observer cannot name it. Its pid and start time still match the persisted record, so it
/// stays the instance's process until it is reaped; otherwise the instance would be
/// retired (or restarted) while its knot is still alive.
fn claim_exiting_knots(persisted: &Persisted, observed: &mut Observed) {
    let started: BTreeMap<ProcId, (&InstanceName, &str)> = persisted
        .instances
        .iter()
        .filter_map(|(name, record)| {
            let process = record.process?;
            Some((process, (name, record.fingerprint.as_str())))
        })
        .collect();
    for process in &mut observed.processes {
        if !matches!(process.kind, ProcessKind::Unknown) {
            continue;
        }
        if let Some((name, fingerprint)) = started.get(&process.id) {
            process.kind = ProcessKind::Knot {
                name: (*name).clone(),
                fingerprint: (*fingerprint).to_string(),
            };
        }
    }
}

/// Formats an error with its sources, `outer: inner: innermost`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
