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
        /// Which argument or variable.
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

/// Steps of the child between clone and exec, reported back on the error pipe.
const STEPS: &[&str] = &[
    "join a v1 cgroup",
    "duplicate a descriptor",
    "close inherited descriptors",
    "start a new session",
    "execute the knot binary",
];
const STEP_CGROUP: u32 = 0;
const STEP_DUP: u32 = 1;
const STEP_CLOSE: u32 = 2;
const STEP_SETSID: u32 = 3;
const STEP_EXEC: u32 = 4;

/// Everything the child needs, prepared before the clone so it never allocates.
struct ChildPlan {
    binary: CString,
    /// Owns the strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// Owns the strings `envp_ptrs` points into.
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    v1_procs: Vec<CString>,
    /// (source fd in the caller, fd number in the knot).
    fds: Vec<(RawFd, RawFd)>,
    /// Highest fd number in the knot that is placed, plus one.
    first_free: RawFd,
    error_pipe: RawFd,
    new_session: bool,
}

/// Starts a knot for `req.spec` and returns its pid once it has executed the knot binary.
///
/// The knot gets no parent-death signal, so it outlives the caller. Its descriptors are
/// stdin from `/dev/null` and stdout and stderr on the appended stdio log (both left as
/// the caller's when the spec is `interactive`), the sockets at their fd numbers and the
/// memfd with the spec at the number given by `--config-fd`; every other descriptor is
/// closed with one `close_range`. The environment is cleared but for `TERM` and
/// `req.extra_env`. The command line is
/// `lithos_knot --name NAME --master MASTER --fingerprint HEX --config-fd N`.
pub fn spawn_knot(req: &SpawnRequest<'_>) -> Result<SpawnedKnot, SpawnError> {
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
    let pid = pid as i32;
    match read_child_error(error_read) {
        None => Ok(SpawnedKnot { pid }),
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
    serde_json::to_writer(&mut file, spec)
        .map_err(|e| SpawnError::ConfigFd { source: e.into() })?;
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

/// Reads the 8-byte step and errno the child writes when it fails; `None` when the pipe
/// closed on exec.
fn read_child_error(pipe: OwnedFd) -> Option<(u32, io::Error)> {
    let mut file = std::fs::File::from(pipe);
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if filled < buf.len() {
        return None;
    }
    let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Some((step, io::Error::from_raw_os_error(errno)))
}

/// Reports `step` with the current errno on the error pipe and exits the child.
fn child_fail(error_pipe: RawFd, step: u32) -> ! {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&step.to_ne_bytes());
    buf[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write and _exit are async-signal-safe and `buf` lives on our stack.
    unsafe {
        libc::write(error_pipe, buf.as_ptr().cast(), buf.len());
        libc::_exit(127)
    }
}

/// The knot child between clone and exec. Only raw system calls, no allocation, since a
/// lock of the multi-threaded parent may be held forever in this copy.
fn run_child(plan: &ChildPlan) -> ! {
    let mut error_pipe = plan.error_pipe;
    for procs in &plan.v1_procs {
        // SAFETY: `procs` is a valid C string; the fd is closed right after the write.
        let ok = unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            let written = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            if fd >= 0 {
                libc::close(fd);
            }
            written
        };
        if !ok {
            child_fail(error_pipe, STEP_CGROUP);
        }
    }

    // Move every source out of the way first, above every target, so a source that sits
    // on another entry's target is not overwritten before it is copied.
    let above = plan.first_free + 1;
    let mut moved = [0 as RawFd; 64];
    if plan.fds.len() > moved.len() {
        // SAFETY: setting errno is how the failure reason reaches child_fail.
        unsafe { *libc::__errno_location() = libc::EMFILE };
        child_fail(error_pipe, STEP_DUP);
    }
    for (slot, &(source, _)) in moved.iter_mut().zip(&plan.fds) {
        // SAFETY: fcntl on a descriptor the parent keeps open until exec.
        *slot = unsafe { libc::fcntl(source, libc::F_DUPFD_CLOEXEC, above) };
        if *slot < 0 {
            child_fail(error_pipe, STEP_DUP);
        }
    }
    // SAFETY: as above; the error pipe moves to `first_free`, just above the targets.
    let pipe = unsafe { libc::fcntl(error_pipe, libc::F_DUPFD_CLOEXEC, above) };
    if pipe < 0 {
        child_fail(error_pipe, STEP_DUP);
    }
    error_pipe = pipe;
    for (&temporary, &(_, target)) in moved.iter().zip(&plan.fds) {
        // SAFETY: dup2 onto a number we own in this child; it clears close-on-exec.
        if unsafe { libc::dup2(temporary, target) } < 0 {
            child_fail(error_pipe, STEP_DUP);
        }
    }
    // SAFETY: dup3 moves the error pipe to a fixed number, keeping close-on-exec.
    if unsafe { libc::dup3(error_pipe, plan.first_free, libc::O_CLOEXEC) } < 0 {
        child_fail(error_pipe, STEP_DUP);
    }
    error_pipe = plan.first_free;
    // Close the gaps between 3 and the highest target (a handful at most), then in one
    // call everything above the error pipe, however high RLIMIT_NOFILE is.
    for fd in 3..plan.first_free {
        if !plan.fds.iter().any(|&(_, target)| target == fd) {
            // SAFETY: closing a descriptor that is not one of the knot's.
            unsafe { libc::close(fd) };
        }
    }
    if crate::exec::sys::close_from(plan.first_free + 1).is_err() {
        child_fail(error_pipe, STEP_CLOSE);
    }

    // SAFETY: setsid has no memory effects; a knot detached from the caller's session
    // gets no terminal signals meant for the caller.
    if plan.new_session && unsafe { libc::setsid() } < 0 {
        child_fail(error_pipe, STEP_SETSID);
    }
    // SAFETY: resetting the signal mask and SIGPIPE (ignored by the Rust runtime) so the
    // knot starts with default signal handling; `set` is initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // SAFETY: all pointers come from CStrings in `plan`, the arrays are null-terminated.
    unsafe {
        libc::execve(
            plan.binary.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        );
    }
    child_fail(error_pipe, STEP_EXEC)
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
