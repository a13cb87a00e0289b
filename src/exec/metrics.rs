//! The tree's metrics, exported after each pass of its loop in two ways: a Prometheus text
//! file for node_exporter's textfile collector, and the cantal mmap protocol (through
//! `libcantal`) that the original lithos spoke, so existing cantal dashboards keep working.
//!
//! The counters live in the persisted state ([`crate::state::Metrics`]), so they survive
//! reloads; this module only exports a [`MetricsSnapshot`] built from it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::state::{Observed, Persisted, ProcessCounters, ProcessKind};

/// Environment variable naming the cantal files (`PATH.values` and `PATH.meta`).
pub const CANTAL_PATH_VAR: &str = "CANTAL_PATH";

/// Error of a metrics export.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Prometheus file could not be written or renamed into place.
    #[error("failed to write metrics file {path}")]
    WritePrometheus {
        /// The metrics file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The cantal files could not be created.
    #[error("failed to publish cantal metrics at {path}")]
    StartCantal {
        /// The `CANTAL_PATH` prefix.
        path: PathBuf,
        /// Cause.
        #[source]
        source: libcantal::Error,
    },
}

/// Counters and gauges of one process entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessMetrics {
    /// Starts, deaths and failures.
    pub counters: ProcessCounters,
    /// Knots of the entry running now.
    pub running: u64,
}

/// Every metric of the tree at the end of one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// `master.restarts`: start-ups and re-execs of a tree on this runtime-dir after the
    /// first.
    pub restarts: u64,
    /// `master.sandboxes`: sandboxes configured.
    pub sandboxes: u64,
    /// `master.containers`: daemon instances configured.
    pub containers: u64,
    /// `master.queue`: pending actions of the current plan (waits excluded).
    pub queue: u64,
    /// `containers.started`, `.deaths` and `.failures`.
    pub total: ProcessCounters,
    /// `containers.running`: knots running.
    pub running: u64,
    /// `containers.unknown`: children of the tree that are not its knots.
    pub unknown: u64,
    /// Per process entry, keyed `SANDBOX/PROCESS`.
    pub per_process: BTreeMap<String, ProcessMetrics>,
}

impl MetricsSnapshot {
    /// Builds the snapshot from the persisted counters and the observed processes;
    /// `sandboxes`, `containers` and `queue` come from the tree's config and plan.
    pub fn from_state(
        persisted: &Persisted,
        observed: &Observed,
        sandboxes: u64,
        containers: u64,
        queue: u64,
    ) -> MetricsSnapshot {
        let mut per_process: BTreeMap<String, ProcessMetrics> = persisted
            .metrics
            .per_process
            .iter()
            .map(|(key, counters)| {
                let metrics = ProcessMetrics {
                    counters: *counters,
                    running: 0,
                };
                (key.clone(), metrics)
            })
            .collect();
        let mut running = 0;
        let mut unknown = 0;
        for process in observed.processes.iter().filter(|p| p.is_live()) {
            match &process.kind {
                ProcessKind::Knot { name, .. } => {
                    running += 1;
                    let key = format!("{}/{}", name.sandbox, name.process);
                    per_process.entry(key).or_default().running += 1;
                }
                ProcessKind::Unknown => unknown += 1,
                ProcessKind::Forking => {}
            }
        }
        MetricsSnapshot {
            restarts: persisted.tree_restarts.saturating_sub(1),
            sandboxes,
            containers,
            queue,
            total: persisted.metrics.total,
            running,
            unknown,
            per_process,
        }
    }

    /// Returns every metric as (cantal name, kind, value), in a stable order.
    pub fn entries(&self) -> Vec<(String, MetricKind, u64)> {
        use MetricKind::{Counter, Gauge};
        let mut entries = vec![
            ("master.restarts".to_string(), Counter, self.restarts),
            ("master.sandboxes".to_string(), Gauge, self.sandboxes),
            ("master.containers".to_string(), Gauge, self.containers),
            ("master.queue".to_string(), Gauge, self.queue),
        ];
        for (key, process) in &self.per_process {
            let prefix = format!("processes.{}", key.replacen('/', ".", 1));
            let counters = &process.counters;
            entries.push((format!("{prefix}.started"), Counter, counters.started));
            entries.push((format!("{prefix}.deaths"), Counter, counters.deaths));
            entries.push((format!("{prefix}.failures"), Counter, counters.failures));
            entries.push((format!("{prefix}.running"), Gauge, process.running));
        }
        entries.extend([
            (
                "containers.started".to_string(),
                Counter,
                self.total.started,
            ),
            ("containers.deaths".to_string(), Counter, self.total.deaths),
            (
                "containers.failures".to_string(),
                Counter,
                self.total.failures,
            ),
            ("containers.running".to_string(), Gauge, self.running),
            ("containers.unknown".to_string(), Gauge, self.unknown),
        ]);
        entries
    }
}

/// Whether a metric only grows or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Grows until the persisted state is lost.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Renders the snapshot in the Prometheus text exposition format.
pub fn render_prometheus(snapshot: &MetricsSnapshot) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let single = |value: u64| [(String::new(), value)];
    family(
        "lithos_master_restarts_total",
        "counter",
        "Start-ups and re-execs of the tree after the first.",
        &single(snapshot.restarts),
    );
    family(
        "lithos_master_sandboxes",
        "gauge",
        "Sandboxes configured.",
        &single(snapshot.sandboxes),
    );
    family(
        "lithos_master_containers",
        "gauge",
        "Daemon instances configured.",
        &single(snapshot.containers),
    );
    family(
        "lithos_master_queue",
        "gauge",
        "Pending actions of the current plan.",
        &single(snapshot.queue),
    );
    let per = |field: fn(&ProcessMetrics) -> u64| -> Vec<(String, u64)> {
        snapshot
            .per_process
            .iter()
            .map(|(key, metrics)| {
                let (sandbox, process) = key.split_once('/').unwrap_or((key, ""));
                let labels = format!(
                    "{{sandbox=\"{}\",process=\"{}\"}}",
                    escape_label(sandbox),
                    escape_label(process)
                );
                (labels, field(metrics))
            })
            .collect()
    };
    let families: [ProcessFamily; 4] = [
        ("started_total", "counter", "Knots started.", |m| {
            m.counters.started
        }),
        (
            "deaths_total",
            "counter",
            "Exits of the program or the knot.",
            |m| m.counters.deaths,
        ),
        (
            "failures_total",
            "counter",
            "Exits that count as failures.",
            |m| m.counters.failures,
        ),
        ("running", "gauge", "Knots running.", |m| m.running),
    ];
    for (suffix, kind, help, field) in families {
        family(&format!("lithos_process_{suffix}"), kind, help, &per(field));
    }
    let totals = [
        (
            "started_total",
            "counter",
            "Knots started, all processes.",
            snapshot.total.started,
        ),
        (
            "deaths_total",
            "counter",
            "Exits, all processes.",
            snapshot.total.deaths,
        ),
        (
            "failures_total",
            "counter",
            "Failures, all processes.",
            snapshot.total.failures,
        ),
        (
            "running",
            "gauge",
            "Knots running, all processes.",
            snapshot.running,
        ),
        (
            "unknown",
            "gauge",
            "Children of the tree that are not its knots.",
            snapshot.unknown,
        ),
    ];
    for (suffix, kind, help, value) in totals {
        family(
            &format!("lithos_containers_{suffix}"),
            kind,
            help,
            &single(value),
        );
    }
    out
}

/// A per-process metric family: name suffix, type, help text and how to read its value.
type ProcessFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ProcessMetrics) -> u64,
);

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the Prometheus file atomically: a temporary file in the same directory,
/// fsync, then rename, so the collector never reads half a file.
pub fn write_prometheus(path: &Path, snapshot: &MetricsSnapshot) -> Result<(), MetricsError> {
    let fail = |source| MetricsError::WritePrometheus {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_os_string();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let write = || -> io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut file = File::create(&temporary)?;
        file.write_all(render_prometheus(snapshot).as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&temporary);
        fail(source)
    })
}

/// Returns the cantal path: `CANTAL_PATH` from the environment, else `runtime-dir/metrics`
/// (files `metrics.values` and `metrics.meta` in runtime-dir).
pub fn cantal_path(runtime_dir: &Path) -> PathBuf {
    std::env::var_os(CANTAL_PATH_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| runtime_dir.join("metrics"))
}

/// A published cantal metric: a counter or a signed level.
enum CantalValue {
    Counter(libcantal::Counter),
    Level(libcantal::Integer),
}

impl CantalValue {
    fn as_value(&self) -> &dyn libcantal::Value {
        match self {
            CantalValue::Counter(counter) => counter,
            CantalValue::Level(level) => level,
        }
    }

    /// Moves the published value to `target`; a counter only ever grows by the difference.
    fn set(&self, target: u64) {
        match self {
            CantalValue::Counter(counter) => {
                let current = counter.get();
                if target > current {
                    counter.incr(target - current);
                }
            }
            CantalValue::Level(level) => level.set(target.min(i64::MAX as u64) as i64),
        }
    }
}

/// The cantal collection of one metric set.
struct Cantal {
    names: Vec<String>,
    values: &'static [CantalValue],
    _active: libcantal::ActiveCollection<'static>,
}

/// Exports snapshots to the Prometheus file and, when enabled, to cantal.
pub struct MetricsExporter {
    prometheus_file: PathBuf,
    cantal_path: Option<PathBuf>,
    cantal: Option<Cantal>,
}

impl MetricsExporter {
    /// Creates an exporter writing `prometheus_file` (the master's `metrics-file`) and, with
    /// `cantal_path` (see [`cantal_path`]), the cantal files.
    pub fn new(prometheus_file: PathBuf, cantal_path: Option<PathBuf>) -> MetricsExporter {
        MetricsExporter {
            prometheus_file,
            cantal_path,
            cantal: None,
        }
    }

    /// Exports `snapshot`; call after each pass of the tree's loop.
    ///
    /// The cantal files are created on the first call and again when the set of metrics
    /// changes (a process entry added or removed). `libcantal` takes its path from the
    /// `CANTAL_PATH` variable only, so this sets it in the process environment when it
    /// differs: call from the tree's main thread.
    pub fn export(&mut self, snapshot: &MetricsSnapshot) -> Result<(), MetricsError> {
        write_prometheus(&self.prometheus_file, snapshot)?;
        let Some(path) = self.cantal_path.clone() else {
            return Ok(());
        };
        let entries = snapshot.entries();
        let names: Vec<String> = entries.iter().map(|(name, _, _)| name.clone()).collect();
        if self
            .cantal
            .as_ref()
            .is_none_or(|cantal| cantal.names != names)
        {
            // Drop the old collection first: it removes its files.
            self.cantal = None;
            self.cantal = Some(start_cantal(&path, &entries)?);
        }
        if let Some(cantal) = &self.cantal {
            for (value, (_, _, target)) in cantal.values.iter().zip(&entries) {
                value.set(*target);
            }
        }
        Ok(())
    }
}

fn start_cantal(
    path: &Path,
    entries: &[(String, MetricKind, u64)],
) -> Result<Cantal, MetricsError> {
    let fail = |source| MetricsError::StartCantal {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    if std::env::var_os(CANTAL_PATH_VAR).as_deref() != Some(path.as_os_str()) {
        std::env::set_var(CANTAL_PATH_VAR, path);
    }
    // NOTE: the values and the collection are leaked once per metric set, because
    // libcantal's collection borrows them for as long as it publishes. The set changes
    // only when process entries are added or removed, which a reload (a re-exec) does.
    let values: &'static [CantalValue] = Box::leak(
        entries
            .iter()
            .map(|(_, kind, _)| match kind {
                MetricKind::Counter => CantalValue::Counter(libcantal::Counter::new()),
                MetricKind::Gauge => CantalValue::Level(libcantal::Integer::new()),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let collection: &'static Vec<(serde_json::Value, &'static dyn libcantal::Value)> =
        Box::leak(Box::new(
            entries
                .iter()
                .zip(values)
                .map(|((name, _, _), value)| {
                    (serde_json::json!({ "metric": name }), value.as_value())
                })
                .collect(),
        ));
    let active = libcantal::start(collection).map_err(fail)?;
    Ok(Cantal {
        names: entries.iter().map(|(name, _, _)| name.clone()).collect(),
        values,
        _active: active,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_escapes_labels() {
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
