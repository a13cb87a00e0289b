//! `lithos_knot`, pid 1 of each container: builds the container from the launch spec,
//! runs the program as pid 2 and supervises it.
//!
//! The knot starts in new mount, pid, UTS and IPC namespaces made by
//! [`crate::exec::spawn::spawn_knot`] and stays in the host's user and network namespaces.
//! The program gets its own user namespace when the spec has uid maps.

mod etc_files;
mod mounts;
mod program;
mod record;
mod stdio;
mod supervise;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, RawFd};
use std::path::PathBuf;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use slog::Drain;

pub use etc_files::EtcError;
pub use mounts::MountError;
pub use program::StartError;
pub use record::{ExitRecord, ExitStatus};

use crate::model::spec::LaunchSpec;
use crate::secrets::{DecryptedEnviron, SecretsError};

/// Exit codes of `lithos_knot`, which tell the tree whether the program's death was a
/// failure.
pub mod exit_codes {
    /// The program's death was not a failure: it died after SIGTERM or SIGINT reached the
    /// knot, by SIGTERM, with one of `normal-exit-codes`, or (commands only) with 0.
    pub const SUCCESS: i32 = 0;
    /// The program's death was a failure.
    pub const FAILURE: i32 = 1;
    /// Bad command line or unreadable launch spec.
    pub const USAGE: i32 = 2;
    /// The container or the program could not be started; the reason is one line in the
    /// knot's log file and in the stdio log.
    pub const SETUP_FAILED: i32 = 3;
}

/// Error of the container set-up before the program starts.
#[derive(Debug, thiserror::Error)]
pub enum KnotError {
    /// The instance's state dir could not be recreated.
    #[error("failed to recreate state dir {path}")]
    StateDir {
        /// Host path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The file system could not be built.
    #[error("failed to build the container file system")]
    Mount(#[source] MountError),
    /// `/etc/resolv.conf` or `/etc/hosts` failed.
    #[error("failed to set up /etc files")]
    Etc(#[source] EtcError),
    /// `secret-environ` could not be decrypted.
    #[error("failed to decrypt secret-environ")]
    Secrets(#[source] SecretsError),
    /// The bridged network failed.
    #[error("failed to set up the bridged network")]
    Network(#[source] crate::exec::network::NetworkError),
}

/// Command line of the knot: `--name NAME --master PATH --fingerprint HEX --config-fd N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnotArgs {
    /// Instance name, `SANDBOX/PROCESS.N` or `SANDBOX/cmd.NAME.PID`.
    pub name: String,
    /// Absolute path of the master config of the tree that owns this knot.
    pub master: PathBuf,
    /// Fingerprint of the launch spec.
    pub fingerprint: String,
    /// Descriptor to read the launch spec from.
    pub config_fd: RawFd,
}

/// Parses the knot's arguments (without argument zero).
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<KnotArgs, String> {
    let mut name = None;
    let mut master = None;
    let mut fingerprint = None;
    let mut config_fd = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let flag = flag.to_string_lossy().into_owned();
        let value = args
            .next()
            .ok_or_else(|| format!("missing value after {flag}"))?;
        match flag.as_str() {
            "--name" => name = Some(value.to_string_lossy().into_owned()),
            "--master" => master = Some(PathBuf::from(value)),
            "--fingerprint" => fingerprint = Some(value.to_string_lossy().into_owned()),
            "--config-fd" => {
                let text = value.to_string_lossy();
                config_fd = Some(
                    text.parse()
                        .map_err(|_| format!("invalid --config-fd {text:?}: expected a number"))?,
                );
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let missing = |what: &str| format!("missing {what}");
    Ok(KnotArgs {
        name: name.ok_or_else(|| missing("--name"))?,
        master: master.ok_or_else(|| missing("--master"))?,
        fingerprint: fingerprint.ok_or_else(|| missing("--fingerprint"))?,
        config_fd: config_fd.ok_or_else(|| missing("--config-fd"))?,
    })
}

/// Runs the knot with the process's arguments and returns its exit code.
pub fn main() -> i32 {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("lithos_knot: {e}");
            return exit_codes::USAGE;
        }
    };
    let spec = match crate::exec::spawn::read_config_fd(args.config_fd) {
        Ok(spec) if spec.name == args.name => spec,
        Ok(spec) => {
            eprintln!(
                "lithos_knot {}: launch spec is for {}, not {}",
                args.name, spec.name, args.name
            );
            return exit_codes::USAGE;
        }
        Err(e) => {
            eprintln!(
                "lithos_knot {}: failed to read the launch spec from fd {}: {e}",
                args.name, args.config_fd
            );
            return exit_codes::USAGE;
        }
    };
    // Before the knot opens any file, which could land on a number of an internal port.
    if let Err(e) = crate::exec::network::reserve_port_fds(&spec) {
        let cause = std::error::Error::source(&e).map(|c| format!(": {c}"));
        eprintln!(
            "lithos_knot {}: {e}{}",
            spec.name,
            cause.unwrap_or_default()
        );
        return exit_codes::SETUP_FAILED;
    }
    // Block the signals the knot handles before anything else, so a SIGTERM during the
    // set-up waits for the program instead of being dropped (pid 1 has no default action).
    let signals = match block_signals() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!(
                "lithos_knot {}: failed to set up signal handling: {e}",
                spec.name
            );
            return exit_codes::SETUP_FAILED;
        }
    };
    let log = match open_log(&spec) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "lithos_knot {}: failed to open log file {}: {e}",
                spec.name,
                spec.log_file.display()
            );
            return exit_codes::SETUP_FAILED;
        }
    };
    slog::info!(log, "knot starting"; "fingerprint" => &args.fingerprint, "master" => %args.master.display());
    // Opened before pivot_root hides the host's state dir.
    let record = match ExitRecord::prepare(&spec) {
        Ok(record) => record,
        Err(e) => {
            report(&log, &spec, "failed to prepare the exit record", &e);
            return exit_codes::SETUP_FAILED;
        }
    };
    let secrets = match set_up(&spec, &log) {
        Ok(secrets) => secrets,
        Err(e) => {
            report(&log, &spec, "failed to set up the container", &e);
            if let Err(e) = record.write(None, true) {
                slog::error!(log, "failed to write the exit record"; "error" => %e);
            }
            return exit_codes::SETUP_FAILED;
        }
    };
    // Set-up allocations are done; hand freed heap pages back, since a knot per container
    // multiplies every resident page.
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe { libc::malloc_trim(0) };
    supervise::run(&spec, &secrets, &log, &signals, &record)
}

/// Builds the container, in the order the kernel and the reference require, and returns
/// the decrypted `secret-environ`.
fn set_up(spec: &LaunchSpec, log: &slog::Logger) -> Result<DecryptedEnviron, KnotError> {
    // The key file is on the host, so this comes before pivot_root. It comes first so a
    // secret that does not decrypt fails the start before anything is mounted.
    let secrets = crate::secrets::decrypt_launch_spec(spec).map_err(KnotError::Secrets)?;
    // The state dir is per start: stale files of an earlier run must not reach the new one.
    recreate_state_dir(spec)?;
    // From the host's network namespace and file system, so the bridge and
    // after-setup-command are reachable; the program enters the namespace at its start.
    crate::exec::network::set_up(spec, log).map_err(KnotError::Network)?;
    // Propagation private, then the image read-only at the mount dir.
    let root = mounts::mount_image(spec).map_err(KnotError::Mount)?;
    // Volumes in path order, each on a mount point of the image or an earlier volume.
    mounts::mount_volumes(spec, root.as_fd()).map_err(KnotError::Mount)?;
    // /dev, a private devpts, /dev/shm and /proc of the new pid namespace.
    mounts::mount_system(spec, root.as_fd()).map_err(KnotError::Mount)?;
    // /etc files need the host's state dir, so they come before pivot_root.
    etc_files::set_up(spec, root.as_fd(), log).map_err(KnotError::Etc)?;
    // From here on only the container's files are reachable.
    mounts::pivot(spec).map_err(KnotError::Mount)?;
    slog::debug!(log, "container file system ready");
    Ok(secrets)
}

fn recreate_state_dir(spec: &LaunchSpec) -> Result<(), KnotError> {
    let fail = |source| KnotError::StateDir {
        path: spec.state_dir.clone(),
        source,
    };
    match fs::remove_dir_all(&spec.state_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail(e)),
        _ => {}
    }
    fs::create_dir_all(&spec.state_dir).map_err(fail)
}

fn block_signals() -> nix::Result<SignalFd> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(signal);
    }
    set.thread_block()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// Opens the knot's own log: syslog as `SYSLOG-NAME-SANDBOX` when the master config sets a
/// facility, the sandbox's `log-file` otherwise or when the syslog socket cannot be reached
/// (a missing syslog daemon must not keep a container from starting).
fn open_log(spec: &LaunchSpec) -> io::Result<slog::Logger> {
    let level =
        crate::exec::tree::logging::parse_level(&spec.log_level).unwrap_or(slog::Level::Warning);
    let context = slog::o!("name" => spec.name.clone());
    if let Some((facility, name)) = &spec.syslog {
        if let Ok(drain) = crate::exec::tree::logging::SyslogDrain::connect(facility, name) {
            let drain = slog::LevelFilter::new(drain.ignore_res(), level).fuse();
            return Ok(slog::Logger::root(drain, context));
        }
    }
    let file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&spec.log_file)?;
    let decorator = slog_term::PlainSyncDecorator::new(file);
    // A full disk drops log records instead of panicking the container's pid 1.
    let drain = slog_term::FullFormat::new(decorator).build().ignore_res();
    let drain = slog::LevelFilter::new(drain, level).fuse();
    Ok(slog::Logger::root(drain, context))
}

/// Reports a fatal error as one line, `CONTEXT: ERROR: CAUSE...`, in the log file and on
/// stderr, which is the stdio log.
pub(crate) fn report(
    log: &slog::Logger,
    spec: &LaunchSpec,
    context: &str,
    error: &dyn std::error::Error,
) {
    let mut line = format!("{context}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    slog::error!(log, "{}", line);
    eprintln!(
        "[lithos] {} {}: {line}",
        stdio::timestamp(std::time::SystemTime::now()),
        spec.name
    );
}
