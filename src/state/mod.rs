//! Observed state rebuilt from the kernel, and persisted state that the kernel cannot hold.
//!
//! [`observe`] reads `/proc` and the tree's cgroups into an [`Observed`] snapshot at every
//! pass of the supervisor loop. Nothing of it is cached, so a re-executed or restarted tree
//! starts from what really runs. [`Persisted`] keeps the few facts the kernel forgets (start times,
//! the first SIGTERM of a stop, exit records, the last good configuration) in `state.bin`.

pub mod clock;
mod exit_file;
mod observe;
mod persist;
mod procfs;
mod records;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::spec::InstanceName;

pub use exit_file::{exit_file_path, read_exit_file, KnotExit};
pub use observe::{observe, observe_known, ObserveError};
pub use persist::{PersistError, STATE_FORMAT_VERSION};
pub use procfs::{parse_knot_args, KnotArgs};
pub use records::{
    ExitRecord, GoodInstance, InstanceRecord, Metrics, Persisted, ProcessCounters, SandboxRecord,
};

/// Identity of a process: a pid alone may be recycled, pid plus start time may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcId {
    /// Process id in the tree's pid namespace.
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
}

impl std::fmt::Display for ProcId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)
    }
}

/// Reads the identity (pid and start time) of process `pid` from `PROC_ROOT/PID/stat`,
/// for recording a process the tree just started.
pub fn read_proc_id(proc_root: &std::path::Path, pid: i32) -> std::io::Result<ProcId> {
    let stat = procfs::read_stat(&proc_root.join(pid.to_string()))?.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed stat file")
    })?;
    Ok(ProcId {
        pid,
        start_time: stat.start_time,
    })
}

/// Locations the observer reads the kernel's view from; tests point them at fixture trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObserveRoots {
    /// The procfs mount, normally `/proc`.
    pub proc_root: PathBuf,
    /// The cgroup file system root, normally `/sys/fs/cgroup`.
    pub cgroup_root: PathBuf,
}

impl Default for ObserveRoots {
    fn default() -> Self {
        ObserveRoots {
            proc_root: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// Role of an observed process for the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessKind {
    /// A `lithos_knot` of this tree's master config.
    Knot {
        /// Instance the knot runs, from its `--name`.
        name: InstanceName,
        /// Config fingerprint, from its `--fingerprint`.
        fingerprint: String,
    },
    /// The tree's child between fork and exec: its command line still equals the tree's.
    Forking,
    /// The tree's child that is neither of the above (a zombie shows up here too, because
    /// a zombie has an empty command line).
    Unknown,
}

/// One process the reconciler has to account for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedProcess {
    /// Pid and start time.
    pub id: ProcId,
    /// Role of the process.
    pub kind: ProcessKind,
    /// The tree is its parent (so the tree reaps it); `false` for adopted knots.
    pub is_child: bool,
    /// The process has exited and waits to be reaped; it is not live.
    pub zombie: bool,
}

impl ObservedProcess {
    /// Returns true unless the process is a zombie.
    pub fn is_live(&self) -> bool {
        !self.zombie
    }
}

/// Snapshot of the tree's processes: its children and the knots of its master config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Processes sorted by pid.
    pub processes: Vec<ObservedProcess>,
}
