//! Process handles that survive pid reuse: `pidfd_open`, `pidfd_send_signal`, `pidfd_getfd`.
//!
//! The tree watches knots it adopted (not its children, so it gets no SIGCHLD for them)
//! through their pidfds, which become readable when the process exits. Every signal goes
//! through a pidfd opened after checking the start time, so a recycled pid is never hit.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::signal::Signal;

use crate::state::ProcId;

/// Opens a pidfd for `process`, checking its start time; `Ok(None)` when it is gone.
pub fn open(proc_root: &Path, process: ProcId) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, process.pid, 0) };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            _ => Err(error),
        };
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // Checked after opening: if the start time matches now, the pidfd refers to that
    // process even if the pid is recycled later.
    match start_time(proc_root, process.pid) {
        Some(ticks) if ticks == process.start_time => Ok(Some(pidfd)),
        _ => Ok(None),
    }
}

/// Sends `signal` to `process`; returns false when the process is already gone.
pub fn send_signal(proc_root: &Path, process: ProcId, signal: Signal) -> io::Result<bool> {
    let Some(pidfd) = open(proc_root, process)? else {
        return Ok(false);
    };
    // SAFETY: pidfd_send_signal takes a valid pidfd, a signal number, a null siginfo and
    // zero flags.
    let result = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if result < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            _ => Err(error),
        };
    }
    Ok(true)
}

/// Duplicates descriptor `target` of the process behind `pidfd` into the tree.
pub fn get_fd(pidfd: &OwnedFd, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes a valid pidfd, a descriptor number and zero flags, and
    // returns a new close-on-exec descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reads the start time (clock ticks since boot) of `pid` from `/proc/PID/stat`.
pub fn start_time(proc_root: &Path, pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name in brackets may contain spaces and brackets, so fields are counted
    // from the last closing bracket: field 3 (state) is the first after it, field 22 the
    // 20th.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Reads the parent pid of `pid` from `/proc/PID/stat`.
pub fn parent_pid(proc_root: &Path, pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the direct children of `pid` from `/proc/PID/task/*/children`.
pub fn children(proc_root: &Path, pid: i32) -> Vec<i32> {
    let tasks = proc_root.join(pid.to_string()).join("task");
    let Ok(entries) = fs::read_dir(&tasks) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let text = fs::read_to_string(entry.path().join("children")).unwrap_or_default();
        found.extend(
            text.split_whitespace()
                .filter_map(|pid| pid.parse::<i32>().ok()),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable() {
        let pid = std::process::id() as i32;
        let ticks = start_time(Path::new("/proc"), pid).unwrap();
        let me = ProcId {
            pid,
            start_time: ticks,
        };
        assert!(open(Path::new("/proc"), me).unwrap().is_some());
        let wrong = ProcId {
            pid,
            start_time: ticks + 1,
        };
        assert!(open(Path::new("/proc"), wrong).unwrap().is_none());
    }

    #[test]
    fn signal_to_exited_child_reports_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let ticks = start_time(Path::new("/proc"), pid).unwrap();
        child.wait().unwrap();
        let process = ProcId {
            pid,
            start_time: ticks,
        };
        assert!(!send_signal(Path::new("/proc"), process, Signal::SIGTERM).unwrap());
    }
}
