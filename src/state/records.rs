//! The persisted state: what the kernel cannot tell a restarted tree.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::spec::{DesiredInstance, InstanceName, LaunchSpec};

use super::{Observed, ProcId};

/// Everything the tree keeps in `state.bin` across reloads, re-execs and crashes.
///
/// Times are [`Duration`]s since boot on `CLOCK_BOOTTIME` (see [`super::clock`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// Config generation: bumped by the tree at each load of the config tree.
    pub generation: u64,
    /// Per daemon instance: starts, stops and the spec it runs.
    pub instances: BTreeMap<InstanceName, InstanceRecord>,
    /// Per sandbox: the last desired state that loaded without error.
    pub sandboxes: BTreeMap<String, SandboxRecord>,
    /// Counters exported as metrics.
    pub metrics: Metrics,
    /// Number of times a tree started on this runtime dir (start-ups and re-execs).
    pub tree_restarts: u64,
    /// First SIGTERM of the current stop of every signalled process, also of those no
    /// record names (unknown children, duplicates, outdated knots adopted after a crash).
    pub signals: BTreeMap<ProcId, Duration>,
    /// Kernel boot id the times above belong to; empty when not known.
    pub boot_id: String,
}

/// Facts kept about one daemon instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// The knot last started for it, while it may still run.
    pub process: Option<ProcId>,
    /// Fingerprint of the spec `process` runs.
    pub fingerprint: String,
    /// Time of the last start; restart-timeout is measured from it.
    pub last_start: Option<Duration>,
    /// Number of starts since the record was created.
    pub starts: u64,
    /// Time of the first SIGTERM sent to `process` in its current stop.
    pub term_sent: Option<Duration>,
    /// kill-timeout of the spec `process` runs.
    pub kill_timeout: Duration,
    /// The spec `process` runs, for `lithos plan` diffs; `None` for an adopted knot whose
    /// spec was never recorded.
    pub spec: Option<Arc<LaunchSpec>>,
    /// Exit of the last process of this instance.
    pub last_exit: Option<ExitRecord>,
}

/// End of a process, as the tree saw it or as the knot wrote it in its exit file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Time of the exit (or of its discovery).
    pub time: Duration,
    /// The exit counts as a failure (not one of the normal exit codes).
    pub failure: bool,
    /// Exit code, when the program exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended the program.
    pub signal: Option<i32>,
}

/// Facts kept per sandbox.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// Per process entry, the desired instances of the last load without error, so a later
    /// failed load keeps running what worked.
    pub last_good: BTreeMap<String, Vec<GoodInstance>>,
}

/// A [`DesiredInstance`] in a form that can be stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoodInstance {
    /// Instance name.
    pub name: InstanceName,
    /// Fingerprint of `spec`.
    pub fingerprint: String,
    /// Minimum time between two starts.
    pub restart_timeout: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_timeout: Duration,
    /// The instantiated configuration.
    pub spec: Arc<LaunchSpec>,
}

impl From<&DesiredInstance> for GoodInstance {
    fn from(instance: &DesiredInstance) -> Self {
        GoodInstance {
            name: instance.name.clone(),
            fingerprint: instance.fingerprint.clone(),
            restart_timeout: instance.restart_timeout,
            kill_timeout: instance.kill_timeout,
            spec: instance.spec.clone(),
        }
    }
}

impl From<&GoodInstance> for DesiredInstance {
    fn from(good: &GoodInstance) -> Self {
        DesiredInstance {
            name: good.name.clone(),
            fingerprint: good.fingerprint.clone(),
            restart_timeout: good.restart_timeout,
            kill_timeout: good.kill_timeout,
            spec: good.spec.clone(),
        }
    }
}

/// Start, death and failure counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Totals over every process.
    pub total: ProcessCounters,
    /// Per process entry, keyed `SANDBOX/PROCESS`.
    pub per_process: BTreeMap<String, ProcessCounters>,
}

/// Counters of one process entry, or of all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCounters {
    /// Knots started.
    pub started: u64,
    /// Exits of the program or the knot.
    pub deaths: u64,
    /// Exits that count as failures.
    pub failures: u64,
}

impl Metrics {
    fn count(&mut self, name: &InstanceName, update: impl Fn(&mut ProcessCounters)) {
        update(&mut self.total);
        let key = format!("{}/{}", name.sandbox, name.process);
        update(self.per_process.entry(key).or_default());
    }
}

impl Persisted {
    /// Records that a knot was started for `instance`: a new process, a new start time,
    /// no SIGTERM yet.
    pub fn record_spawn(&mut self, instance: &DesiredInstance, process: ProcId, now: Duration) {
        let record = self
            .instances
            .entry(instance.name.clone())
            .or_insert_with(|| InstanceRecord::new(instance.kill_timeout));
        record.process = Some(process);
        record.fingerprint = instance.fingerprint.clone();
        record.last_start = Some(now);
        record.starts += 1;
        record.term_sent = None;
        record.kill_timeout = instance.kill_timeout;
        record.spec = Some(instance.spec.clone());
        self.metrics.count(&instance.name, |c| c.started += 1);
    }

    /// Records a SIGTERM sent to `process`; only the first one of a stop is kept, so the
    /// kill deadline never moves.
    ///
    /// The time goes into [`Persisted::signals`] and into every record whose process this
    /// is; normally one, but a stale record may name the process of another instance.
    pub fn record_signal(&mut self, process: ProcId, now: Duration) {
        let first = *self.signals.entry(process).or_insert(now);
        let records = self.instances.values_mut();
        for record in records.filter(|record| record.process == Some(process)) {
            record.term_sent.get_or_insert(first);
        }
    }

    /// Records that the recorded process of `name` ended; `failure` is true when the exit
    /// counts as a failure. See [`Persisted::record_process_exit`] for other processes.
    pub fn record_exit(&mut self, name: &InstanceName, failure: bool, now: Duration) {
        let exit = ExitRecord {
            time: now,
            failure,
            code: None,
            signal: None,
        };
        self.record_exit_status(name, exit);
    }

    /// Records that the process of `name` ended, with its exit code or signal.
    pub fn record_exit_status(&mut self, name: &InstanceName, exit: ExitRecord) {
        if let Some(record) = self.instances.get_mut(name) {
            if let Some(process) = record.process.take() {
                self.signals.remove(&process);
            }
            record.term_sent = None;
            record.last_exit = Some(exit);
        }
        self.metrics.count(name, |c| {
            c.deaths += 1;
            c.failures += u64::from(exit.failure);
        });
    }

    /// Records that `process` of instance `name` ended. Unlike [`Persisted::record_exit`]
    /// this leaves the record alone when `process` is not the recorded one (a duplicate or
    /// an outdated knot adopted after a crash); the death is counted either way.
    pub fn record_process_exit(&mut self, name: &InstanceName, process: ProcId, exit: ExitRecord) {
        let recorded = self.instances.get(name).and_then(|record| record.process);
        if recorded == Some(process) {
            self.record_exit_status(name, exit);
            return;
        }
        self.signals.remove(&process);
        self.metrics.count(name, |c| {
            c.deaths += 1;
            c.failures += u64::from(exit.failure);
        });
    }

    /// Records a running knot found without a matching record (after `state.bin` was lost),
    /// so its stop gets a kill deadline; the start time stays unknown.
    pub fn record_adopted(&mut self, name: &InstanceName, fingerprint: &str, process: ProcId) {
        let record = self
            .instances
            .entry(name.clone())
            .or_insert_with(|| InstanceRecord::new(Duration::from_secs(5)));
        if record.process != Some(process) {
            record.process = Some(process);
            record.fingerprint = fingerprint.to_string();
            record.term_sent = self.signals.get(&process).copied();
        }
    }

    /// Forgets an instance after it was retired. SIGTERM times stay in
    /// [`Persisted::signals`] until [`Persisted::prune_signals`] finds their process gone,
    /// because a stale record may name a process that still runs for another instance.
    pub fn forget(&mut self, name: &InstanceName) {
        self.instances.remove(name);
    }

    /// Drops SIGTERM times of processes that no longer run.
    pub fn prune_signals(&mut self, observed: &Observed) {
        let live: std::collections::BTreeSet<ProcId> = observed
            .processes
            .iter()
            .filter(|process| process.is_live())
            .map(|process| process.id)
            .collect();
        self.signals.retain(|id, _| live.contains(id));
    }

    /// Stores the desired instances of an entry that loaded without error.
    pub fn remember_good(&mut self, sandbox: &str, entry: &str, instances: &[DesiredInstance]) {
        let record = self.sandboxes.entry(sandbox.to_string()).or_default();
        let good = instances.iter().map(GoodInstance::from).collect();
        record.last_good.insert(entry.to_string(), good);
    }

    /// Returns the last good desired instances of an entry, if any load of it succeeded.
    pub fn last_good(&self, sandbox: &str, entry: &str) -> Option<Vec<DesiredInstance>> {
        let good = self.sandboxes.get(sandbox)?.last_good.get(entry)?;
        Some(good.iter().map(DesiredInstance::from).collect())
    }

    /// Makes the times match the running kernel: when `boot_id` differs from the recorded
    /// one, every time and process of a previous boot is dropped, because `CLOCK_BOOTTIME`
    /// and pids start over at boot. Returns true when something was dropped.
    pub fn set_boot_id(&mut self, boot_id: &str) -> bool {
        if self.boot_id == boot_id {
            return false;
        }
        let stale = !self.boot_id.is_empty();
        self.boot_id = boot_id.to_string();
        if stale {
            self.signals.clear();
            for record in self.instances.values_mut() {
                record.process = None;
                record.last_start = None;
                record.term_sent = None;
                record.last_exit = None;
            }
        }
        stale
    }
}

impl InstanceRecord {
    fn new(kill_timeout: Duration) -> Self {
        InstanceRecord {
            process: None,
            fingerprint: String::new(),
            last_start: None,
            starts: 0,
            term_sent: None,
            kill_timeout,
            spec: None,
            last_exit: None,
        }
    }
}
