//! `status.json` in runtime-dir: what the last pass of the loop applied.
//!
//! Written atomically with mode 0644 after each pass, read by `lithos_switch --wait` and by
//! operators. `generation` increases by one with every config load (start and reload).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the status file in runtime-dir.
pub const STATUS_FILE: &str = "status.json";

/// Contents of `status.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Number of the config load this pass applied.
    pub generation: u64,
    /// Pid of the tree.
    pub pid: u32,
    /// Absolute path of the master config.
    pub master: PathBuf,
    /// Wall-clock time of the pass, RFC 3339.
    pub updated: String,
    /// The tree is stopping every container.
    pub stopping: bool,
    /// Load problems keyed by scope: `SANDBOX`, `SANDBOX/PROCESS` or `master`.
    pub errors: BTreeMap<String, Vec<String>>,
    /// Every instance the tree knows of, by `SANDBOX/PROCESS.N`.
    pub instances: BTreeMap<String, InstanceStatus>,
}

/// State of one instance in `status.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// `running`, `starting`, `stopping`, `waiting` (restart backoff) or `stopped`.
    pub state: String,
    /// Knot pid while it runs.
    pub pid: Option<i32>,
    /// Config fingerprint of what runs (or is to run).
    pub fingerprint: String,
    /// Number of starts recorded.
    pub starts: u64,
    /// The knot was started by an earlier tree that died, and adopted by this one.
    pub adopted: bool,
}

/// Error reading or writing the status file.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Writing, syncing or renaming failed.
    #[error("failed to write status file {path}")]
    Write {
        /// Status file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The file could not be read.
    #[error("failed to read status file {path}")]
    Read {
        /// Status file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The file is not valid status JSON.
    #[error("invalid status file {path}")]
    Parse {
        /// Status file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `status` to `runtime_dir/status.json` through a temporary file and a rename.
pub fn write(runtime_dir: &Path, status: &Status) -> Result<(), StatusError> {
    let path = runtime_dir.join(STATUS_FILE);
    let temporary = runtime_dir.join(".status.json.tmp");
    let write = || -> io::Result<()> {
        let mut file: File = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temporary)?;
        // One write: the serializer would make a system call per token, thousands per
        // pass with a hundred containers.
        let mut text = serde_json::to_vec_pretty(status)?;
        text.push(b'\n');
        file.write_all(&text)?;
        // The mode given to open() is masked by the umask; status.json is meant for everyone.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        fs::rename(&temporary, &path)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&temporary);
        StatusError::Write { path, source }
    })
}

/// Reads `runtime_dir/status.json`.
pub fn read(runtime_dir: &Path) -> Result<Status, StatusError> {
    let path = runtime_dir.join(STATUS_FILE);
    let text = fs::read_to_string(&path).map_err(|source| StatusError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| StatusError::Parse { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn status_round_trips_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let mut status = Status {
            generation: 3,
            ..Status::default()
        };
        status
            .errors
            .insert("web/app".into(), vec!["bad key".into()]);
        write(dir.path(), &status).unwrap();
        assert_eq!(read(dir.path()).unwrap(), status);
        let mode = fs::metadata(dir.path().join(STATUS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}
