//! Start-up steps of the tree: its directories, the runtime-dir lock and the pid file.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the lock file in runtime-dir.
pub const LOCK_FILE: &str = "master.lock";
/// Name of the pid file in runtime-dir.
pub const PID_FILE: &str = "master.pid";

/// Error of a start-up step.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A directory could not be created.
    #[error("failed to create directory {path}")]
    CreateDir {
        /// Directory path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The lock file could not be opened.
    #[error("failed to open lock file {path}")]
    OpenLock {
        /// Lock file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Another tree holds the lock on this runtime-dir.
    #[error(
        "another lithos_tree (pid {pid}) already runs on {runtime_dir}: stop it first or use another runtime-dir"
    )]
    AlreadyRunning {
        /// The runtime dir.
        runtime_dir: PathBuf,
        /// Pid from the pid file, or `unknown`.
        pid: String,
    },
    /// Locking failed for a reason other than another holder.
    #[error("failed to lock {path}")]
    Lock {
        /// Lock file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The pid file could not be written.
    #[error("failed to write pid file {path}")]
    WritePid {
        /// Pid file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The program path could not be made absolute.
    #[error("failed to resolve the path of the running program {argv0:?}")]
    ResolveProgram {
        /// Argument zero as given.
        argv0: PathBuf,
    },
}

/// Creates every directory in `dirs` with its parents.
pub fn create_dirs(dirs: &[&Path]) -> Result<(), SetupError> {
    for dir in dirs {
        fs::create_dir_all(dir).map_err(|source| SetupError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Takes the exclusive lock on `runtime_dir/master.lock`.
///
/// The lock is an `flock` on the open file description, so it lasts while any copy of the
/// descriptor is open: the tree keeps it across its own re-exec, and every child must close
/// it (the file is opened close-on-exec and knots close all unlisted descriptors).
pub fn acquire_lock(runtime_dir: &Path) -> Result<File, SetupError> {
    let path = runtime_dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| SetupError::OpenLock {
            path: path.clone(),
            source,
        })?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) => {
                let holder = read_pid(runtime_dir);
                // A tree killed a moment ago may leave a child between clone and exec (a
                // v1 cgroup attach takes milliseconds) holding a copy of the descriptor
                // until it closes them; a live tree in master.pid fails at once instead.
                let tree_alive = holder.is_some_and(super::switch::is_lithos_tree);
                if tree_alive || started.elapsed() >= LOCK_GRACE {
                    return Err(SetupError::AlreadyRunning {
                        runtime_dir: runtime_dir.to_path_buf(),
                        pid: holder
                            .map(|pid| pid.to_string())
                            .unwrap_or_else(|| "unknown".into()),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(TryLockError::Error(source)) => return Err(SetupError::Lock { path, source }),
        }
    }
}

/// How long start-up waits for the lock while no live tree is named in `master.pid`.
const LOCK_GRACE: Duration = Duration::from_secs(2);

/// Takes over the lock descriptor inherited across the tree's own re-exec.
///
/// # Safety
/// `fd` must be an open descriptor of the lock file that nothing else in this process owns.
pub unsafe fn adopt_lock(fd: RawFd) -> File {
    // SAFETY: the caller guarantees `fd` is open and unowned; see the function contract.
    let file = unsafe { File::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    file
}

/// Writes the current pid to `runtime_dir/master.pid`, replacing any stale file.
pub fn write_pid_file(runtime_dir: &Path) -> Result<(), SetupError> {
    let path = runtime_dir.join(PID_FILE);
    let temporary = runtime_dir.join(".master.pid.tmp");
    let write = || -> io::Result<()> {
        let mut file = File::create(&temporary)?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        fs::rename(&temporary, &path)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&temporary);
        SetupError::WritePid { path, source }
    })
}

/// Reads the pid stored in `runtime_dir/master.pid`.
pub fn read_pid(runtime_dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(runtime_dir.join(PID_FILE)).ok()?;
    text.trim().parse().ok()
}

/// Resolves argument zero to the absolute path the program was started by.
///
/// `/proc/self/exe` names the inode that runs now, which is the old binary after an upgrade
/// replaced the file; the path the operator started is the one whose contents run next.
pub fn resolve_program(argv0: &Path) -> Result<PathBuf, SetupError> {
    let fail = || SetupError::ResolveProgram {
        argv0: argv0.to_path_buf(),
    };
    if argv0.is_absolute() {
        return Ok(argv0.to_path_buf());
    }
    if argv0.components().count() > 1 {
        let cwd = std::env::current_dir().map_err(|_| fail())?;
        return Ok(cwd.join(argv0));
    }
    let search = std::env::var_os("PATH").ok_or_else(fail)?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(argv0))
        .find(|candidate| candidate.is_file() && candidate.is_absolute())
        .ok_or_else(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_reports_already_running() {
        let dir = tempfile::tempdir().unwrap();
        let _held = acquire_lock(dir.path()).unwrap();
        write_pid_file(dir.path()).unwrap();
        let error = acquire_lock(dir.path()).unwrap_err();
        assert!(
            matches!(error, SetupError::AlreadyRunning { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(&std::process::id().to_string()));
    }

    #[test]
    fn stale_pid_file_does_not_block_lock() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(PID_FILE), "1\n").unwrap();
        let _held = acquire_lock(dir.path()).unwrap();
        write_pid_file(dir.path()).unwrap();
        assert_eq!(read_pid(dir.path()), Some(std::process::id() as i32));
    }

    #[test]
    fn resolve_program_joins_relative_path() {
        let resolved = resolve_program(Path::new("target/lithos_tree")).unwrap();
        assert!(resolved.is_absolute());
        assert!(resolved.ends_with("target/lithos_tree"));
    }
}
