//! The exit file a knot writes before it exits, `state-dir/SANDBOX/PROCESS.N.exit`: the
//! only way a tree that is not the knot's parent learns how its program ended.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::spec::InstanceName;

use super::{ExitRecord, ProcId};

/// Contents of a knot's exit file.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct KnotExit {
    /// Host pid of the knot that wrote the file.
    pub pid: i32,
    /// Start time of that knot, in clock ticks since boot.
    pub start_time: u64,
    /// Exit code of the program, when it exited.
    pub code: Option<i32>,
    /// Signal that ended the program, when one did.
    pub signal: Option<i32>,
    /// The knot counted the exit as a failure.
    pub failure: bool,
    /// Time of the exit in seconds since boot.
    pub time: f64,
}

impl KnotExit {
    /// Returns the knot's identity, to check the file belongs to the process that ended.
    pub fn process(&self) -> ProcId {
        ProcId {
            pid: self.pid,
            start_time: self.start_time,
        }
    }

    /// Converts the file into the record kept in the persisted state.
    pub fn to_record(&self) -> ExitRecord {
        ExitRecord {
            time: Duration::try_from_secs_f64(self.time).unwrap_or_default(),
            failure: self.failure,
            code: self.code,
            signal: self.signal,
        }
    }
}

/// Returns the path of the exit file of `name` below `state_dir`.
pub fn exit_file_path(state_dir: &Path, name: &InstanceName) -> PathBuf {
    let mut path = state_dir.join(name.state_subdir()).into_os_string();
    path.push(".exit");
    PathBuf::from(path)
}

/// Reads the exit file of `name`; `Ok(None)` when there is none.
///
/// # Errors
/// Fails when the file cannot be read or is not a valid exit record.
pub fn read_exit_file(state_dir: &Path, name: &InstanceName) -> io::Result<Option<KnotExit>> {
    let path = exit_file_path(state_dir, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_knot_writes() {
        let dir = tempfile::tempdir().unwrap();
        let name = InstanceName::new("s", "web", 2);
        std::fs::create_dir_all(dir.path().join("s")).unwrap();
        let text = r#"{"pid": 42, "start_time": 900, "code": null, "signal": 9, "failure": true, "time": 12.5}"#;
        std::fs::write(dir.path().join("s/web.2.exit"), text).unwrap();
        let exit = read_exit_file(dir.path(), &name).unwrap().unwrap();
        assert_eq!(
            exit.process(),
            ProcId {
                pid: 42,
                start_time: 900
            }
        );
        assert_eq!(exit.to_record().signal, Some(9));
        assert_eq!(exit.to_record().time, Duration::from_millis(12_500));
        assert!(
            read_exit_file(dir.path(), &InstanceName::new("s", "web", 3))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/web.0.exit"), "{").unwrap();
        assert!(read_exit_file(dir.path(), &InstanceName::new("s", "web", 0)).is_err());
    }
}
