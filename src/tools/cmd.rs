//! `lithos_cmd SANDBOX NAME [ARGS...]`: runs a command entry of a sandbox in its own
//! container, with the sandbox's image rules, volumes, limits and secrets.
//!
//! The command is named `SANDBOX/cmd.NAME.PID` (PID of `lithos_cmd`), gets the cgroup
//! `SANDBOX:cmd.NAME.PID.scope` and the state dir `state-dir/SANDBOX/cmd.NAME.PID`. The
//! tree leaves knots with such names alone, and `lithos_cmd` removes the cgroup and the
//! state dir once the command has ended. No running tree is needed.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::exec::cgroup::{CgroupError, Cgroups};
use crate::exec::knot::exit_codes as knot_exit;
use crate::exec::network;
use crate::exec::sockets::{bind_listener, SocketError};
use crate::exec::spawn::{spawn_knot, SpawnError, SpawnRequest};
use crate::model::spec::{ContainerKind, EntryKind, InstanceName, LaunchSpec};
use crate::model::{
    fingerprint, load_tree, ConfigTree, EntryLoad, LoadOptions, SandboxLoad, Scope,
};
use crate::state::{read_exit_file, KnotExit};

use super::{sibling_binary, Level, ToolLog, DEFAULT_MASTER};

/// Exit status of `lithos_cmd` when it fails itself (config, spawn or container set-up);
/// any other status is the command's own.
pub const EXIT_ERROR: u8 = 125;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  N    the command's own exit code (0 on success)
  128+N  the command was killed by signal N
  125  lithos_cmd failed: invalid config, unknown sandbox or command, or the
       container could not be started or set up
  2    invalid command line";

/// Runs a one-off command of a sandbox in a container.
#[derive(Parser, Debug, Clone)]
#[command(name = "lithos_cmd", version, after_help = EXIT_CODES_HELP)]
pub struct Args {
    /// Master config file.
    #[arg(
        long = "master",
        short = 'C',
        visible_alias = "config",
        value_name = "FILE",
        default_value = DEFAULT_MASTER
    )]
    pub master: PathBuf,
    /// Log to stderr instead of the master log file.
    #[arg(long = "log-stderr")]
    pub log_stderr: bool,
    /// Log level: error, warn, info, debug or trace (default: the master's log-level).
    #[arg(long = "log-level", value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: Option<Level>,
    /// Sandbox name.
    pub sandbox: String,
    /// Process entry of kind Command in the sandbox's processes file.
    pub name: String,
    /// Arguments appended to the container's arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

fn parse_level(text: &str) -> Result<Level, String> {
    Level::parse(text).ok_or_else(|| {
        format!("invalid log level {text:?}: expected error, warn, info, debug or trace")
    })
}

/// Error of `lithos_cmd`.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The master config could not be loaded.
    #[error("failed to load master config {path}:\n{problems}")]
    LoadMaster {
        /// Master config path.
        path: PathBuf,
        /// Problems of the master config.
        problems: crate::model::Problems,
    },
    /// No sandbox of that name.
    #[error("sandbox {sandbox:?} not found; sandboxes: {known}")]
    FindSandbox {
        /// Requested sandbox.
        sandbox: String,
        /// Sandboxes of the tree, comma separated.
        known: String,
    },
    /// The sandbox or its processes file is invalid.
    #[error("sandbox {sandbox:?} failed to load:\n{problems}")]
    LoadSandbox {
        /// Sandbox name.
        sandbox: String,
        /// Problems of the sandbox.
        problems: String,
    },
    /// No entry of that name.
    #[error("process {name:?} not found in sandbox {sandbox:?}; commands: {known}")]
    FindEntry {
        /// Sandbox name.
        sandbox: String,
        /// Requested entry.
        name: String,
        /// Command entries of the sandbox, comma separated.
        known: String,
    },
    /// The entry is a daemon whose container cannot run as a command.
    #[error("process {name:?} of sandbox {sandbox:?} is a daemon: lithos_cmd runs entries of kind Command, or daemons whose container has kind CommandOrDaemon")]
    CheckKind {
        /// Sandbox name.
        sandbox: String,
        /// Entry name.
        name: String,
    },
    /// The entry or its container config is invalid.
    #[error("process {name:?} of sandbox {sandbox:?} failed to load:\n{problems}")]
    LoadEntry {
        /// Sandbox name.
        sandbox: String,
        /// Entry name.
        name: String,
        /// Problems of the entry.
        problems: String,
    },
    /// A directory the knot needs could not be created.
    #[error("failed to create directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The tree's cgroups could not be found or created.
    #[error("failed to set up cgroup {name}")]
    DiscoverCgroups {
        /// `cgroup-name` of the master config.
        name: String,
        /// Cause.
        #[source]
        source: CgroupError,
    },
    /// A listening socket of the command's tcp-ports could not be bound.
    #[error("failed to bind a tcp port of {name}")]
    Bind {
        /// Command name.
        name: String,
        /// Cause.
        #[source]
        source: SocketError,
    },
    /// The knot could not be started.
    #[error("failed to start the container of {name}")]
    Spawn {
        /// Command name.
        name: String,
        /// Cause.
        #[source]
        source: SpawnError,
    },
    /// Waiting for the knot failed.
    #[error("failed to wait for the container of {name}")]
    Wait {
        /// Command name.
        name: String,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// The container could not be set up, so the command never ran.
    #[error("failed to set up the container of {name}; see {log} and {stdio_log}")]
    SetUp {
        /// Command name.
        name: String,
        /// The knot's log file.
        log: PathBuf,
        /// The sandbox's stdio log.
        stdio_log: PathBuf,
    },
}

/// End of the command, as `lithos_cmd` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl CommandStatus {
    /// Returns the exit status of `lithos_cmd`: the code, or 128 plus the signal number,
    /// as a shell reports it.
    pub fn exit_status(self) -> u8 {
        match self {
            CommandStatus::Code(code) => (code & 0xff) as u8,
            CommandStatus::Signal(signal) => (128 + signal).clamp(0, 255) as u8,
        }
    }
}

/// Runs `lithos_cmd` and returns the command's exit status, or [`EXIT_ERROR`].
pub fn run(args: Args) -> ExitCode {
    let tree = match load_tree(&args.master, &LoadOptions::default()) {
        Ok(tree) => tree,
        Err(problems) => {
            let error = CmdError::LoadMaster {
                path: args.master.clone(),
                problems,
            };
            eprintln!("lithos_cmd: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let level = args
        .log_level
        .or_else(|| Level::parse(&tree.master.log_level))
        .unwrap_or(Level::Warn);
    let log = if args.log_stderr {
        ToolLog::stderr("lithos_cmd", level)
    } else {
        ToolLog::file_or_stderr("lithos_cmd", level, &tree.master.log_file)
    };
    match execute(&args, &tree, &log) {
        Ok(status) => ExitCode::from(status.exit_status()),
        Err(error) => {
            let message = error_chain(&error);
            log.error(&message);
            if !args.log_stderr {
                eprintln!("lithos_cmd: {message}");
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Formats an error with its causes, `error: cause: cause`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn execute(args: &Args, tree: &ConfigTree, log: &ToolLog) -> Result<CommandStatus, CmdError> {
    let pid = std::process::id();
    let spec = command_spec(tree, &args.sandbox, &args.name, pid, &args.args)?;
    prepare_dirs(&spec, tree)?;
    let cgroups = match (&tree.master.cgroup_name, &spec.cgroup) {
        (Some(name), Some(_)) => Some(
            Cgroups::discover(Path::new("/proc"), name, &tree.master.cgroup_controllers).map_err(
                |source| CmdError::DiscoverCgroups {
                    name: name.clone(),
                    source,
                },
            )?,
        ),
        _ => None,
    };
    let result = run_knot(&spec, tree, cgroups.as_ref(), log);
    clean_up(&spec, cgroups.as_ref(), log);
    result
}

/// Builds the spec of command `name` of `sandbox` for a `lithos_cmd` of pid `pid`:
/// named `SANDBOX/cmd.NAME.PID`, with its own state dir and cgroup, and `extra`
/// appended to the arguments.
pub fn command_spec(
    tree: &ConfigTree,
    sandbox: &str,
    name: &str,
    pid: u32,
    extra: &[String],
) -> Result<LaunchSpec, CmdError> {
    let entries = match tree.sandboxes.get(sandbox) {
        None => {
            return Err(CmdError::FindSandbox {
                sandbox: sandbox.to_string(),
                known: join_or_none(tree.sandboxes.keys()),
            })
        }
        Some(SandboxLoad::Failed) => {
            return Err(CmdError::LoadSandbox {
                sandbox: sandbox.to_string(),
                problems: problems_of(tree, sandbox, None),
            })
        }
        Some(SandboxLoad::Loaded { entries }) => entries,
    };
    let base = match entries.get(name) {
        None => {
            let commands = entries
                .iter()
                .filter(|(_, entry)| matches!(entry, EntryLoad::Command { .. }))
                .map(|(name, _)| name);
            return Err(CmdError::FindEntry {
                sandbox: sandbox.to_string(),
                name: name.to_string(),
                known: join_or_none(commands),
            });
        }
        Some(EntryLoad::Failed) => {
            return Err(CmdError::LoadEntry {
                sandbox: sandbox.to_string(),
                name: name.to_string(),
                problems: problems_of(tree, sandbox, Some(name)),
            })
        }
        Some(EntryLoad::Command { spec }) => spec.as_ref().clone(),
        Some(EntryLoad::Daemon { instances }) => match instances.first() {
            Some(first) if first.spec.container.kind == ContainerKind::CommandOrDaemon => {
                first.spec.as_ref().clone()
            }
            _ => {
                return Err(CmdError::CheckKind {
                    sandbox: sandbox.to_string(),
                    name: name.to_string(),
                })
            }
        },
    };
    Ok(rename_for_command(base, tree, name, pid, extra))
}

fn rename_for_command(
    mut spec: LaunchSpec,
    tree: &ConfigTree,
    name: &str,
    pid: u32,
    extra: &[String],
) -> LaunchSpec {
    let process = format!("cmd.{name}.{pid}");
    let old_name = std::mem::replace(&mut spec.name, format!("{}/{process}", spec.sandbox));
    spec.entry_kind = EntryKind::Command;
    spec.state_dir = tree.master.state_dir.join(&spec.sandbox).join(&process);
    if let Some(cgroup) = &mut spec.cgroup {
        cgroup.leaf = format!("{}:{process}.scope", spec.sandbox);
    }
    // The loader substituted `@{lithos:name}` with the name it instantiated the entry
    // under; the command runs under its own name.
    let container = &mut spec.container;
    for argument in &mut container.arguments {
        *argument = argument.replace(&old_name, &spec.name);
    }
    for value in container.environ.values_mut() {
        *value = value.replace(&old_name, &spec.name);
    }
    container.arguments.extend(extra.iter().cloned());
    spec
}

fn join_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Returns the tree's problems of a sandbox (and of one of its entries), one per line.
fn problems_of(tree: &ConfigTree, sandbox: &str, entry: Option<&str>) -> String {
    let lines: Vec<String> = tree
        .problems
        .0
        .iter()
        .filter(|problem| match &problem.scope {
            Scope::Master => true,
            Scope::Sandbox(name) => name == sandbox,
            Scope::Entry(name, process) => {
                name == sandbox && entry.is_none_or(|entry| entry == process)
            }
        })
        .map(|problem| format!("  {problem}"))
        .collect();
    lines.join("\n")
}

/// Creates the directories a knot expects to exist: its state dir's parent (where the
/// exit record goes), the log directories and the mount dir.
fn prepare_dirs(spec: &LaunchSpec, tree: &ConfigTree) -> Result<(), CmdError> {
    let dirs = [
        spec.state_dir.parent().map(Path::to_path_buf),
        spec.stdio_log.parent().map(Path::to_path_buf),
        spec.log_file.parent().map(Path::to_path_buf),
        Some(tree.master.mount_dir.clone()),
    ];
    for dir in dirs.into_iter().flatten() {
        fs::create_dir_all(&dir).map_err(|source| CmdError::CreateDir { path: dir, source })?;
    }
    Ok(())
}

/// The knot's pid, cleared once the knot has exited so no signal reaches a reused pid.
type Forwarding = Arc<Mutex<Option<Pid>>>;

fn run_knot(
    spec: &LaunchSpec,
    tree: &ConfigTree,
    cgroups: Option<&Cgroups>,
    log: &ToolLog,
) -> Result<CommandStatus, CmdError> {
    let knot_binary = sibling_binary("lithos_knot");
    let config_fingerprint = fingerprint(spec);
    // The command's host ports are bound here, as the tree binds a daemon's; internal ports
    // of a bridged sandbox are bound by the knot. A port that a daemon serves is busy, so
    // such a command fails with the address in the error.
    let listeners = network::host_ports(spec)
        .map(|port| bind_listener(port).map(|fd| (port.fd, fd)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CmdError::Bind {
            name: spec.name.clone(),
            source,
        })?;
    let sockets: Vec<(i32, RawFd)> = listeners
        .iter()
        .map(|(target, fd)| (*target, fd.as_raw_fd()))
        .collect();
    let request = SpawnRequest {
        spec,
        fingerprint: &config_fingerprint,
        master: &tree.master_path,
        knot_binary: &knot_binary,
        cgroups,
        sockets: &sockets,
        extra_env: &[],
    };
    let target: Forwarding = Arc::new(Mutex::new(None));
    // Registered before the spawn, so a signal that arrives meanwhile is not lost and
    // does not end lithos_cmd while the container runs.
    let signals = forward_signals(target.clone());
    let knot = spawn_knot(&request).map_err(|source| CmdError::Spawn {
        name: spec.name.clone(),
        source,
    })?;
    let pid = Pid::from_raw(knot.pid);
    if let Ok(mut slot) = target.lock() {
        *slot = Some(pid);
    }
    log.info(&format!(
        "started {} (knot pid {}): {} {}",
        spec.name,
        knot.pid,
        spec.container.executable,
        spec.container.arguments.join(" ")
    ));
    let knot_status = wait_knot(pid, &target).map_err(|source| CmdError::Wait {
        name: spec.name.clone(),
        source,
    });
    if let Some(handle) = signals {
        handle.close();
    }
    let knot_status = knot_status?;
    let status = command_status(spec, &tree.master.state_dir, knot_status)?;
    log.info(&format!("{} exited: {status:?}", spec.name));
    Ok(status)
}

/// Forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to the knot, which passes them on to the
/// command. A terminal's Ctrl-C reaches an interactive knot directly too; the knot treats
/// the second copy like the first.
fn forward_signals(target: Forwarding) -> Option<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT]).ok()?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for number in signals.forever() {
            let Ok(signal) = Signal::try_from(number) else {
                continue;
            };
            if let Ok(slot) = target.lock() {
                if let Some(pid) = *slot {
                    // The knot may have exited just now; nothing to forward then.
                    let _ = kill(pid, signal);
                }
            }
        }
    });
    Some(handle)
}

/// Waits for the knot to exit, clears the forwarding target, then reaps it.
fn wait_knot(pid: Pid, target: &Forwarding) -> Result<WaitStatus, nix::Error> {
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::Error::EINTR) => continue,
            Err(error) => return Err(error),
            Ok(_) => break,
        }
    }
    if let Ok(mut slot) = target.lock() {
        *slot = None;
    }
    loop {
        match waitpid(pid, None) {
            Err(nix::Error::EINTR) => continue,
            other => return other,
        }
    }
}

/// Returns the knot's exit record path, `state-dir/SANDBOX/cmd.NAME.PID.exit`.
fn exit_file(spec: &LaunchSpec) -> PathBuf {
    let mut name = spec
        .state_dir
        .file_name()
        .unwrap_or_default()
        .to_os_string();
    name.push(".exit");
    spec.state_dir.with_file_name(name)
}

/// Returns the command's own status from the knot's exit record, because the knot's
/// status only tells whether it was a failure.
fn command_status(
    spec: &LaunchSpec,
    state_dir: &Path,
    knot: WaitStatus,
) -> Result<CommandStatus, CmdError> {
    // A record left by an earlier command with the same pid is not this knot's.
    let record = spec
        .name
        .parse::<InstanceName>()
        .ok()
        .and_then(|name| read_exit_file(state_dir, &name).ok().flatten())
        .filter(|record| record.pid == knot.pid().map_or(0, Pid::as_raw));
    let set_up_failed = || CmdError::SetUp {
        name: spec.name.clone(),
        log: spec.log_file.clone(),
        stdio_log: spec.stdio_log.clone(),
    };
    match (record, knot) {
        (
            Some(KnotExit {
                code: Some(code), ..
            }),
            _,
        ) => Ok(CommandStatus::Code(code)),
        (
            Some(KnotExit {
                signal: Some(signal),
                ..
            }),
            _,
        ) => Ok(CommandStatus::Signal(signal)),
        (_, WaitStatus::Exited(_, knot_exit::SETUP_FAILED)) => Err(set_up_failed()),
        (_, WaitStatus::Exited(_, code)) => Ok(CommandStatus::Code(code)),
        (_, WaitStatus::Signaled(_, signal, _)) => Ok(CommandStatus::Signal(signal as i32)),
        _ => Err(set_up_failed()),
    }
}

/// Removes the command's state dir, exit record and cgroups. Failures are logged: the
/// command's status matters more than a leftover directory.
fn clean_up(spec: &LaunchSpec, cgroups: Option<&Cgroups>, log: &ToolLog) {
    match fs::remove_dir_all(&spec.state_dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => log.warn(&format!(
            "failed to remove state dir {}: {error}",
            spec.state_dir.display()
        )),
        _ => {}
    }
    let record = exit_file(spec);
    match fs::remove_file(&record) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => log.warn(&format!(
            "failed to remove exit record {}: {error}",
            record.display()
        )),
        _ => {}
    }
    let (Some(cgroups), Some(cgroup)) = (cgroups, &spec.cgroup) else {
        return;
    };
    // Processes of the ended pid namespace may still be leaving the group for a moment.
    let mut attempts = 0;
    loop {
        match cgroups.remove_instance(&cgroup.leaf) {
            Ok(()) => return,
            Err(_) if attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => {
                log.warn(&error_chain(&error));
                return;
            }
        }
    }
}
