//! The exit record: the program's last status, written where a tree that is not the
//! knot's parent can read it, `state-dir/SANDBOX/PROCESS.N.exit`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::renameat;
use nix::time::{clock_gettime, ClockId};

use crate::exec::sys;

use crate::model::spec::LaunchSpec;

/// How the program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

/// Where and for whom the exit record is written. The directory is opened before
/// `pivot_root`, since the host's state dir is not visible from the container.
#[derive(Debug)]
pub struct ExitRecord {
    dir: OwnedFd,
    name: OsString,
    pid: i32,
    start_time: u64,
}

impl ExitRecord {
    /// Opens the parent of the spec's state dir, creating it when missing, and reads the
    /// knot's host pid and start time from the host's `/proc/self`.
    pub fn prepare(spec: &LaunchSpec) -> io::Result<ExitRecord> {
        let state_dir = &spec.state_dir;
        let parent = state_dir.parent().unwrap_or(Path::new("/"));
        let mut name = state_dir.file_name().unwrap_or_default().to_os_string();
        name.push(".exit");
        // The first start of a sandbox finds no `state-dir/SANDBOX` yet.
        std::fs::create_dir_all(parent).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("failed to create {}: {e}", parent.display()),
            )
        })?;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(parent)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("failed to open {}: {e}", parent.display()),
                )
            })?;
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let pid: i32 = std::fs::read_link("/proc/self")?
            .to_string_lossy()
            .parse()
            .map_err(|_| io::Error::other("unexpected /proc/self link"))?;
        Ok(ExitRecord {
            dir: dir.into(),
            name,
            pid,
            start_time: start_time(&stat)
                .ok_or_else(|| io::Error::other("unexpected /proc/self/stat"))?,
        })
    }

    /// Returns the record's path relative to its directory.
    pub fn file_name(&self) -> PathBuf {
        PathBuf::from(&self.name)
    }

    /// Writes the record atomically: a temporary file, fsync, then rename.
    pub fn write(&self, status: Option<ExitStatus>, failure: bool) -> io::Result<()> {
        let (code, signal) = match status {
            Some(ExitStatus::Code(code)) => (code.to_string(), "null".to_string()),
            Some(ExitStatus::Signal(signal)) => ("null".to_string(), signal.to_string()),
            None => ("null".to_string(), "null".to_string()),
        };
        let time = clock_gettime(ClockId::CLOCK_BOOTTIME)?;
        let seconds = time.tv_sec() as f64 + time.tv_nsec() as f64 / 1e9;
        let text = format!(
            "{{\"pid\": {}, \"start_time\": {}, \"code\": {code}, \"signal\": {signal}, \"failure\": {failure}, \"time\": {seconds:.3}}}\n",
            self.pid, self.start_time
        );
        let mut temporary = self.name.clone();
        temporary.push(".tmp");
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        let fd = sys::openat2(
            self.dir.as_fd(),
            Path::new(&temporary),
            flags,
            0o644,
            sys::RESOLVE_BENEATH,
        )?;
        let mut file = File::from(fd);
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        let dir = Some(self.dir.as_raw_fd());
        renameat(dir, temporary.as_os_str(), dir, self.name.as_os_str())?;
        Ok(())
    }
}

/// Returns field 22 of `/proc/PID/stat`, the start time in clock ticks since boot.
fn start_time(stat: &str) -> Option<u64> {
    // The command name in field 2 may contain spaces, so count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}
