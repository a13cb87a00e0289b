//! `lithos_tree`: the supervisor loop and `lithos_switch`.
//!
//! The tree runs one loop: observe what runs, reconcile it with the desired state from the
//! config tree and the persisted state, execute the plan, persist, write `status.json`, and
//! sleep until the plan's wake-up or a signal. Reload (SIGQUIT, SIGHUP) re-executes the
//! binary with the same pid, and each image loads the config once, at its start.

pub mod config_log;
pub mod logging;
pub mod notify;
pub mod paths;
pub mod reexec;
pub mod setup;
pub mod signals;
pub mod status;
pub mod timefmt;

mod adopt;
pub mod desired;
mod executor;
pub mod exits;
pub mod pidfd;
mod report;
pub mod start;
pub mod supervisor;
pub mod switch;

use std::ffi::OsString;
use std::path::PathBuf;

/// Command-line settings of `lithos_tree`.
#[derive(Clone, Debug)]
pub struct TreeOptions {
    /// Path of master.yaml.
    pub config: PathBuf,
    /// Log to stderr instead of the master log file or syslog.
    pub log_stderr: bool,
    /// Overrides the master config's `log-level`.
    pub log_level: Option<String>,
    /// Argument zero, resolved to an absolute path for the re-exec.
    pub argv0: PathBuf,
    /// The full command line, passed unchanged to the re-exec.
    pub args: Vec<OsString>,
}

/// Exit codes of `lithos_tree`.
pub mod exit_codes {
    /// Stopped by SIGTERM or SIGINT after every container stopped.
    pub const STOPPED: i32 = 0;
    /// Invalid command line.
    pub const USAGE: i32 = 2;
    /// master.yaml could not be loaded.
    pub const BAD_MASTER: i32 = 3;
    /// Another lithos_tree holds the lock on the same runtime-dir.
    pub const ALREADY_RUNNING: i32 = 4;
    /// A start-up step failed: directories, log, lock, cgroups, signal handlers.
    pub const SETUP_FAILED: i32 = 5;
}

/// Error that ends `lithos_tree`.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// master.yaml could not be loaded.
    #[error("failed to load master config {path}:\n{problems}")]
    LoadMaster {
        /// master.yaml path.
        path: PathBuf,
        /// The problems, one per line.
        problems: String,
    },
    /// The logger could not be built.
    #[error("failed to set up logging")]
    Logging(#[source] logging::LoggingError),
    /// A start-up step failed.
    #[error("failed to start")]
    Setup(#[source] setup::SetupError),
    /// The tree's cgroups could not be set up.
    #[error("failed to set up the tree's cgroups")]
    Cgroups {
        /// Cause.
        #[source]
        source: crate::exec::cgroup::CgroupError,
    },
    /// Signal handling failed.
    #[error("failed to handle signals")]
    Signals(#[source] signals::SignalError),
}

impl TreeError {
    /// Returns the process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            TreeError::LoadMaster { .. } => exit_codes::BAD_MASTER,
            TreeError::Setup(setup::SetupError::AlreadyRunning { .. }) => {
                exit_codes::ALREADY_RUNNING
            }
            _ => exit_codes::SETUP_FAILED,
        }
    }
}
