//! Reload in place: the tree executes its own binary again with the same pid.
//!
//! The lock descriptor and the listening sockets survive the `execve` (close-on-exec is
//! cleared for them only right before it) and their numbers travel in an environment
//! variable. The command line stays the same, because the observer recognises the tree's
//! forking children by comparing command lines.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use super::signals;
use crate::exec::sockets::SocketTable;

/// Environment variable carrying inherited descriptors: `lock=N;sockets=A,B`.
pub const INHERITED_FDS_VAR: &str = "LITHOS_TREE_INHERITED_FDS";

/// Descriptors handed over by the previous image of the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inherited {
    /// The lock file descriptor.
    pub lock: Option<RawFd>,
    /// Listening sockets.
    pub sockets: Vec<RawFd>,
}

/// Error of a re-exec; the tree keeps running as it is.
#[derive(Debug, thiserror::Error)]
pub enum ReexecError {
    /// Close-on-exec could not be cleared.
    #[error("failed to keep descriptors open across exec")]
    KeepDescriptors(#[source] io::Error),
    /// An argument or the program path contains a NUL byte.
    #[error("invalid argument for exec: contains a NUL byte")]
    InvalidArgument,
    /// Signals could not be blocked before the exec.
    #[error("failed to block signals before exec")]
    BlockSignals(#[source] signals::SignalError),
    /// `execve` itself failed.
    #[error("failed to execute {program}")]
    Exec {
        /// Program path.
        program: PathBuf,
        /// Cause.
        #[source]
        source: nix::Error,
    },
}

/// Parses the value of [`INHERITED_FDS_VAR`].
pub fn parse_inherited(value: &str) -> Inherited {
    let mut inherited = Inherited::default();
    for part in value.split(';') {
        match part.split_once('=') {
            Some(("lock", fd)) => inherited.lock = fd.trim().parse().ok(),
            Some(("sockets", list)) => {
                inherited.sockets = list
                    .split(',')
                    .filter_map(|fd| fd.trim().parse().ok())
                    .collect();
            }
            _ => {}
        }
    }
    inherited
}

/// Formats the value of [`INHERITED_FDS_VAR`].
pub fn format_inherited(inherited: &Inherited) -> String {
    let sockets: Vec<String> = inherited.sockets.iter().map(|fd| fd.to_string()).collect();
    let lock = inherited.lock.map(|fd| fd.to_string()).unwrap_or_default();
    format!("lock={lock};sockets={}", sockets.join(","))
}

/// Reads and removes [`INHERITED_FDS_VAR`] from the environment.
pub fn take_inherited() -> Option<Inherited> {
    let value = std::env::var(INHERITED_FDS_VAR).ok()?;
    std::env::remove_var(INHERITED_FDS_VAR);
    Some(parse_inherited(&value))
}

/// Executes `program` with `args`, keeping the lock and the sockets open.
///
/// Returns only when the exec failed; close-on-exec and the signal mask are restored then.
pub fn reexec(
    program: &Path,
    args: &[OsString],
    lock: &File,
    sockets: &SocketTable,
) -> ReexecError {
    let program_c = match CString::new(program.as_os_str().as_bytes()) {
        Ok(program) => program,
        Err(_) => return ReexecError::InvalidArgument,
    };
    let args_c: Result<Vec<CString>, _> = args
        .iter()
        .map(|arg| CString::new(arg.as_bytes()))
        .collect();
    let Ok(args_c) = args_c else {
        return ReexecError::InvalidArgument;
    };
    let inherited = Inherited {
        lock: Some(lock.as_raw_fd()),
        sockets: sockets.descriptors(),
    };
    if let Err(error) = signals::set_blocked(true) {
        return ReexecError::BlockSignals(error);
    }
    let kept = set_close_on_exec(lock.as_raw_fd(), false).and_then(|()| sockets.keep_across_exec());
    if let Err(error) = kept {
        restore(lock, sockets);
        return ReexecError::KeepDescriptors(error);
    }
    std::env::set_var(INHERITED_FDS_VAR, format_inherited(&inherited));
    let source = match nix::unistd::execv(&program_c, &args_c) {
        Err(error) => error,
        Ok(never) => match never {},
    };
    std::env::remove_var(INHERITED_FDS_VAR);
    restore(lock, sockets);
    ReexecError::Exec {
        program: program.to_path_buf(),
        source,
    }
}

fn restore(lock: &File, sockets: &SocketTable) {
    let _ = set_close_on_exec(lock.as_raw_fd(), true);
    sockets.close_on_exec();
    let _ = signals::set_blocked(false);
}

fn set_close_on_exec(fd: RawFd, close: bool) -> io::Result<()> {
    let flags = if close {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))
        .map(drop)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_round_trips() {
        let inherited = Inherited {
            lock: Some(4),
            sockets: vec![5, 9],
        };
        assert_eq!(parse_inherited(&format_inherited(&inherited)), inherited);
    }

    #[test]
    fn inherited_without_sockets_parses() {
        let parsed = parse_inherited("lock=3;sockets=");
        assert_eq!(parsed.lock, Some(3));
        assert!(parsed.sockets.is_empty());
    }
}
