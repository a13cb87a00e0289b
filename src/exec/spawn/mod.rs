//! Starting a `lithos_knot`, shared by the tree and `lithos_cmd`.
//!
//! [`spawn_knot`] creates the instance cgroups, clones the knot into new mount, pid, UTS
//! and IPC namespaces (on cgroup v2 straight into its group with `clone3` and
//! `CLONE_INTO_CGROUP`), and hands it the [`LaunchSpec`] as JSON on a memfd. The child
//! between clone and exec runs in a copy of a possibly multi-threaded caller, so it only
//! makes raw system calls on data prepared before the clone.

use std::ffi::{CString, OsStr};
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, Pid};

use crate::exec::cgroup::{CgroupError, Cgroups, Limits};
use crate::exec::sys::{CloneArgs, CLONE_INTO_CGROUP};
use crate::model::spec::LaunchSpec;

mod child;

use child::{read_child_error, run_child, ChildPlan, STEPS};

/// Everything needed to start one knot.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    /// The instantiated configuration handed to the knot.
    pub spec: &'a LaunchSpec,
    /// Fingerprint of `spec`, shown on the knot's command line.
    pub fingerprint: &'a str,
    /// Absolute path of the master config, shown on the knot's command line.
    pub master: &'a Path,
    /// Path of the `lithos_knot` binary.
    pub knot_binary: &'a Path,
    /// The tree's cgroups; `None`, or a spec without `cgroup`, starts the knot in the
    /// caller's groups.
    pub cgroups: Option<&'a Cgroups>,
    /// Listening sockets: fd number in the program (3 or more) and fd in the caller.
    pub sockets: &'a [(i32, RawFd)],
    /// Environment variables passed on to the knot besides `TERM` (logging settings).
    pub extra_env: &'a [(String, String)],
}

/// A knot that was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpawnedKnot {
    /// Pid of the knot in the caller's pid namespace.
    pub pid: i32,
}

/// Error of [`spawn_knot`].
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A socket's target fd is below 3 or used twice.
    #[error("invalid socket fd {fd}: expected a distinct number of 3 or more")]
    SocketFd {
        /// The rejected fd number.
        fd: i32,
    },
    /// An argument or variable contains a NUL byte.
    #[error("invalid {what}: contains a NUL byte")]
    Nul {
        /// Name of the argument or variable.
        what: String,
    },
    /// The instance cgroups could not be prepared.
    #[error("failed to prepare cgroup {leaf}")]
    Cgroup {
        /// Instance leaf group.
        leaf: String,
        /// Cause.
        #[source]
        source: CgroupError,
    },
    /// The v2 instance group could not be opened for `CLONE_INTO_CGROUP`.
    #[error("failed to open cgroup {path}")]
    OpenCgroup {
        /// Group directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The config memfd could not be created or written.
    #[error("failed to write the launch spec to a memfd")]
    ConfigFd {
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The stdio log could not be opened.
    #[error("failed to open stdio log {path}")]
    StdioLog {
        /// Log file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// `/dev/null` or the error pipe could not be opened.
    #[error("failed to open {what}")]
    Open {
        /// `/dev/null` or `error pipe`.
        what: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// `clone3` failed.
    #[error("failed to clone the knot process")]
    Clone {
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The child failed before exec; it has been reaped.
    #[error("failed to {step} in the knot child")]
    Child {
        /// Step that failed.
        step: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Starts a knot for `req.spec` and returns its pid once it has executed the knot binary.
///
/// The knot gets no parent-death signal, so it outlives the caller. Its stdin is
/// `/dev/null` and its stdout and stderr append to the stdio log, unless the spec is
/// `interactive`, which keeps the caller's. The sockets sit at their fd numbers and the
/// memfd with the spec at the number given by `--config-fd`. Every other descriptor is
/// closed with one `close_range`. The environment is cleared but for `TERM` and
/// `req.extra_env`. The command line is
/// `lithos_knot --name NAME --master MASTER --fingerprint HEX --config-fd N`.
///
/// The knot is the caller's child with exit signal SIGCHLD, so the caller reaps it. If
/// the child fails before exec, this function reaps it and returns [`SpawnError::Child`].
pub fn spawn_knot(req: &SpawnRequest<'_>) -> Result<SpawnedKnot, SpawnError> {
    spawn_knot_pending(req)?.finish()
}

/// Starts a knot like [`spawn_knot`] but returns right after the clone, so a caller that
/// starts many knots does not wait for each one's exec (and v1 cgroup attach) in turn.
/// [`PendingKnot::finish`] then reports whether the child reached its exec.
///
/// # Errors
/// As [`spawn_knot`], but for a failure of the child before its exec, which `finish`
/// returns.
pub fn spawn_knot_pending(req: &SpawnRequest<'_>) -> Result<PendingKnot, SpawnError> {
    let spec = req.spec;
    let mut targets: Vec<i32> = Vec::new();
    for &(fd, _) in req.sockets {
        if fd < 3 || targets.contains(&fd) {
            return Err(SpawnError::SocketFd { fd });
        }
        targets.push(fd);
    }
    let config_fd_number = targets.iter().copied().max().unwrap_or(2) + 1;

    let placement = match (req.cgroups, &spec.cgroup) {
        (Some(cgroups), Some(cgroup)) => {
            let limits = Limits {
                memory: spec.container.memory_limit,
                cpu_shares: spec.container.cpu_shares,
            };
            let placement = cgroups
                .prepare_instance(&cgroup.leaf, &limits)
                .map_err(|source| SpawnError::Cgroup {
                    leaf: cgroup.leaf.clone(),
                    source,
                })?;
            Some(placement)
        }
        _ => None,
    };
    let v2_group = match placement.as_ref().and_then(|p| p.v2_dir.as_ref()) {
        Some(dir) => Some(open_dir(dir).map_err(|source| SpawnError::OpenCgroup {
            path: dir.clone(),
            source,
        })?),
        None => None,
    };

    let config = write_config(spec)?;
    let mut fds = vec![(config.as_raw_fd(), config_fd_number)];
    fds.extend(req.sockets.iter().map(|&(target, source)| (source, target)));
    let mut stdio = Vec::new();
    if !spec.container.interactive {
        let null = OpenOptions::new()
            .read(true)
            .open("/dev/null")
            .map_err(|source| SpawnError::Open {
                what: "/dev/null",
                source,
            })?;
        let log = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&spec.stdio_log)
            .map_err(|source| SpawnError::StdioLog {
                path: spec.stdio_log.clone(),
                source,
            })?;
        fds.push((null.as_raw_fd(), 0));
        fds.push((log.as_raw_fd(), 1));
        fds.push((log.as_raw_fd(), 2));
        stdio.push(OwnedFd::from(null));
        stdio.push(OwnedFd::from(log));
    }

    let (error_read, error_write) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Open {
            what: "error pipe",
            source: e.into(),
        })?;
    let v1_procs = placement.map(|p| p.v1_procs).unwrap_or_default();
    let mut plan = build_plan(req, config_fd_number, &v1_procs)?;
    plan.first_free = fds.iter().map(|&(_, target)| target).max().unwrap_or(2) + 1;
    plan.fds = fds;
    plan.error_pipe = error_write.as_raw_fd();
    plan.new_session = !spec.container.interactive;

    let mut args = CloneArgs {
        flags: (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC)
            as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(group) = &v2_group {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = group.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without CLONE_VM and without a stack duplicates the caller like
    // fork(); `args` is initialised and its size passed. The child only runs
    // `run_child`, which makes raw system calls on `plan` and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        run_child(&plan);
    }
    if pid < 0 {
        return Err(SpawnError::Clone {
            source: io::Error::last_os_error(),
        });
    }
    drop(error_write);
    drop(config);
    drop(stdio);
    Ok(PendingKnot {
        knot: SpawnedKnot { pid: pid as i32 },
        error_pipe: error_read,
    })
}

/// A knot that was cloned but may still fail before it executes the knot binary, for
/// example while it joins its v1 cgroups (a write that can stall for milliseconds).
#[derive(Debug)]
pub struct PendingKnot {
    /// The cloned child.
    pub knot: SpawnedKnot,
    error_pipe: OwnedFd,
}

impl PendingKnot {
    /// Waits until the child has executed the knot binary; a child that failed before is
    /// reaped and its failed step returned.
    pub fn finish(self) -> Result<SpawnedKnot, SpawnError> {
        let pid = self.knot.pid;
        match read_child_error(self.error_pipe) {
            None => Ok(self.knot),
            Some((step, source)) => {
                // The child exits right after reporting, so this wait is short.
                let _ = waitpid(Pid::from_raw(pid), None);
                Err(SpawnError::Child {
                    step: STEPS.get(step as usize).copied().unwrap_or("start"),
                    source,
                })
            }
        }
    }
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    Ok(file.into())
}

fn write_config(spec: &LaunchSpec) -> Result<OwnedFd, SpawnError> {
    let fd = memfd_create(c"lithos-launch-spec", MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(|e| SpawnError::ConfigFd { source: e.into() })?;
    let mut file = std::fs::File::from(fd);
    // One write: the serializer writes each token on its own, a system call apiece.
    let json = serde_json::to_vec(spec).map_err(|e| SpawnError::ConfigFd { source: e.into() })?;
    io::Write::write_all(&mut file, &json).map_err(|source| SpawnError::ConfigFd { source })?;
    io::Seek::rewind(&mut file).map_err(|source| SpawnError::ConfigFd { source })?;
    Ok(file.into())
}

fn c_string(bytes: &[u8], what: &str) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::Nul {
        what: what.to_string(),
    })
}

fn build_plan(
    req: &SpawnRequest<'_>,
    config_fd: i32,
    v1_procs: &[PathBuf],
) -> Result<ChildPlan, SpawnError> {
    let binary = c_string(req.knot_binary.as_os_str().as_bytes(), "knot binary path")?;
    let args: [&OsStr; 9] = [
        OsStr::new("lithos_knot"),
        OsStr::new("--name"),
        OsStr::new(&req.spec.name),
        OsStr::new("--master"),
        req.master.as_os_str(),
        OsStr::new("--fingerprint"),
        OsStr::new(req.fingerprint),
        OsStr::new("--config-fd"),
        OsStr::new(""),
    ];
    let mut argv = Vec::new();
    for arg in &args[..8] {
        argv.push(c_string(arg.as_bytes(), "knot argument")?);
    }
    argv.push(c_string(config_fd.to_string().as_bytes(), "config fd")?);

    let mut envp = Vec::new();
    if let Some(term) = std::env::var_os("TERM") {
        let mut entry = b"TERM=".to_vec();
        entry.extend_from_slice(term.as_bytes());
        envp.push(c_string(&entry, "TERM")?);
    }
    for (name, value) in req.extra_env {
        envp.push(c_string(format!("{name}={value}").as_bytes(), name)?);
    }
    let v1_procs = v1_procs
        .iter()
        .map(|p| c_string(p.as_os_str().as_bytes(), "cgroup path"))
        .collect::<Result<Vec<_>, _>>()?;
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);
    Ok(ChildPlan {
        binary,
        _argv: argv,
        argv_ptrs,
        _envp: envp,
        envp_ptrs,
        v1_procs,
        fds: Vec::new(),
        first_free: 3,
        error_pipe: -1,
        new_session: true,
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Reads a launch spec written by [`spawn_knot`] from descriptor `fd` and closes it.
pub fn read_config_fd(fd: RawFd) -> io::Result<LaunchSpec> {
    // SAFETY: the knot owns the config descriptor from its command line and nothing else
    // uses it; the File closes it when dropped.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    serde_json::from_slice(&text).map_err(io::Error::from)
}
