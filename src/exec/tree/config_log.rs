//! The configuration history in config-log-dir: one line per sandbox at each load.
//!
//! Each line is `RFC3339-TIME JSON-OF-PROCESSES-CONFIG`, in `SANDBOX.log`, so `lithos_clean`
//! can tell which images were in use. A file that reaches [`ROTATE_SIZE`] is renamed to
//! `SANDBOX.log.1` (replacing the previous one) before the next line is written.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::timefmt::rfc3339;

/// Size at which a sandbox's config log is rotated: 10 MiB.
pub const ROTATE_SIZE: u64 = 10 << 20;

/// Error writing a config log line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLogError {
    /// The processes file could not be read or parsed as YAML.
    #[error("failed to read processes file {path}")]
    ReadProcesses {
        /// Processes file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The line could not be written or the file rotated.
    #[error("failed to write config log {path}")]
    Write {
        /// Log file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Converts a processes file to one line of JSON.
pub fn processes_json(path: &Path) -> Result<String, ConfigLogError> {
    let fail = |source| ConfigLogError::ReadProcesses {
        path: path.to_path_buf(),
        source,
    };
    let text = fs::read_to_string(path).map_err(fail)?;
    let value: serde_yaml::Value = if text.trim().is_empty() {
        serde_yaml::Value::Mapping(Default::default())
    } else {
        serde_yaml::from_str(&text).map_err(|error| fail(io::Error::other(error)))?
    };
    serde_json::to_string(&value).map_err(|error| fail(io::Error::other(error)))
}

/// Appends `TIME JSON` to `dir/SANDBOX.log`, rotating the file first when it is full.
pub fn append(
    dir: &Path,
    sandbox: &str,
    json: &str,
    now: SystemTime,
) -> Result<(), ConfigLogError> {
    let path = dir.join(format!("{sandbox}.log"));
    let fail = |source| ConfigLogError::Write {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(fail)?;
    if fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0) >= ROTATE_SIZE {
        fs::rename(&path, dir.join(format!("{sandbox}.log.1"))).map_err(fail)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(fail)?;
    writeln!(file, "{} {json}", rfc3339(now)).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_writes_time_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let processes = dir.path().join("web.yaml");
        fs::write(&processes, "app:\n  instances: 2\n  image: app\n").unwrap();
        let json = processes_json(&processes).unwrap();
        append(dir.path(), "web", &json, SystemTime::UNIX_EPOCH).unwrap();
        let text = fs::read_to_string(dir.path().join("web.log")).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:00Z {\"app\":{\"instances\":2,\"image\":\"app\"}}\n"
        );
    }

    #[test]
    fn full_log_is_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.log");
        fs::write(&path, vec![b'x'; ROTATE_SIZE as usize]).unwrap();
        append(dir.path(), "web", "{}", SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("web.log.1")).unwrap().len(),
            ROTATE_SIZE
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "1970-01-01T00:00:00Z {}\n"
        );
    }
}
