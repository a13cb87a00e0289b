//! The end of a knot: its wait status when the tree is its parent, otherwise the exit record
//! the knot writes to `state-dir/SANDBOX/PROCESS.N.exit` before it exits.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Deserialize;

use crate::model::spec::InstanceName;
use crate::state::{ExitRecord, ProcId};

/// The exit record a knot writes for its program.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ExitFile {
    /// Pid of the knot that wrote it.
    pub pid: i32,
    /// Start time of that knot in clock ticks since boot.
    pub start_time: u64,
    /// Exit code of the program, if it exited.
    pub code: Option<i32>,
    /// Signal that ended the program, if any.
    pub signal: Option<i32>,
    /// Whether the exit counts as a failure.
    pub failure: bool,
    /// Time of the exit, seconds since boot.
    pub time: f64,
}

/// Returns the path of the exit record of `name`.
pub fn exit_file_path(state_dir: &Path, name: &InstanceName) -> PathBuf {
    state_dir
        .join(&name.sandbox)
        .join(format!("{}.{}.exit", name.process, name.index))
}

/// Reads the exit record of `name` if the knot `process` wrote it.
pub fn read_exit_file(state_dir: &Path, name: &InstanceName, process: ProcId) -> Option<ExitFile> {
    let text = fs::read_to_string(exit_file_path(state_dir, name)).ok()?;
    let record: ExitFile = serde_json::from_str(&text).ok()?;
    (record.pid == process.pid && record.start_time == process.start_time).then_some(record)
}

/// Reaps every exited child without blocking; returns their wait statuses by pid.
pub fn reap_children() -> BTreeMap<i32, WaitStatus> {
    let mut reaped = BTreeMap::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    reaped.insert(pid.as_raw(), status);
                }
            }
        }
    }
    reaped
}

/// The end of one knot, as the tree logs and records it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnotExit {
    /// The record handed to the persisted state.
    pub record: ExitRecord,
    /// Origin of the status.
    pub source: ExitSource,
}

/// Origin of a [`KnotExit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitSource {
    /// The knot's exit record: the program's own status.
    Record,
    /// The knot's wait status (no record, for example after SIGKILL of the knot).
    WaitStatus,
    /// Neither: an adopted knot that left no record.
    Unknown,
}

impl fmt::Display for KnotExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.record.code, self.record.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) if self.source == ExitSource::Record => {
                f.write_str("no program status (the container failed before its program ran)")
            }
            (None, None) => f.write_str("unknown status"),
        }
    }
}

/// Works out how `process` of `name` ended.
///
/// The program's status from the exit record wins, because the knot's own status only
/// describes the knot. Without a record, a knot that exited 0 or was stopped by the tree's
/// SIGTERM counts as a normal exit, anything else as a failure.
pub fn knot_exit(
    state_dir: &Path,
    name: &InstanceName,
    process: ProcId,
    wait_status: Option<&WaitStatus>,
    now: Duration,
) -> KnotExit {
    if let Some(file) = read_exit_file(state_dir, name, process) {
        let time = Duration::try_from_secs_f64(file.time).unwrap_or(now);
        return KnotExit {
            record: ExitRecord {
                time,
                failure: file.failure,
                code: file.code,
                signal: file.signal,
            },
            source: ExitSource::Record,
        };
    }
    let (code, signal, failure, source) = match wait_status {
        Some(WaitStatus::Exited(_, code)) => {
            (Some(*code), None, *code != 0, ExitSource::WaitStatus)
        }
        Some(WaitStatus::Signaled(_, signal, _)) => (
            None,
            Some(*signal as i32),
            *signal != nix::sys::signal::Signal::SIGTERM,
            ExitSource::WaitStatus,
        ),
        _ => (None, None, true, ExitSource::Unknown),
    };
    KnotExit {
        record: ExitRecord {
            time: now,
            failure,
            code,
            signal,
        },
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> InstanceName {
        InstanceName::new("web", "app", 0)
    }

    #[test]
    fn exit_record_of_same_knot_is_used() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("web")).unwrap();
        let text = r#"{"pid": 10, "start_time": 77, "code": 3, "signal": null, "failure": true, "time": 12.5}"#;
        fs::write(exit_file_path(dir.path(), &name()), text).unwrap();
        let process = ProcId {
            pid: 10,
            start_time: 77,
        };
        let exit = knot_exit(dir.path(), &name(), process, None, Duration::from_secs(20));
        assert_eq!(exit.source, ExitSource::Record);
        assert_eq!(exit.record.code, Some(3));
        assert!(exit.record.failure);
        assert_eq!(exit.record.time, Duration::from_millis(12_500));
    }

    #[test]
    fn exit_record_of_other_knot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("web")).unwrap();
        let text = r#"{"pid": 10, "start_time": 77, "code": 0, "signal": null, "failure": false, "time": 1.0}"#;
        fs::write(exit_file_path(dir.path(), &name()), text).unwrap();
        let process = ProcId {
            pid: 10,
            start_time: 78,
        };
        let exit = knot_exit(dir.path(), &name(), process, None, Duration::from_secs(2));
        assert_eq!(exit.source, ExitSource::Unknown);
        assert!(exit.record.failure);
    }
}
