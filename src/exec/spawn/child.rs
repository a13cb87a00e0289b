//! The knot child between clone and exec, and how it reports a failure.

use std::io::{self, Read};
use std::os::fd::{OwnedFd, RawFd};

use std::ffi::CString;

/// Steps of the child between clone and exec, reported back on the error pipe.
pub(super) const STEPS: &[&str] = &[
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
pub(super) struct ChildPlan {
    pub(super) binary: CString,
    /// Owns the strings `argv_ptrs` points into.
    pub(super) _argv: Vec<CString>,
    pub(super) argv_ptrs: Vec<*const libc::c_char>,
    /// Owns the strings `envp_ptrs` points into.
    pub(super) _envp: Vec<CString>,
    pub(super) envp_ptrs: Vec<*const libc::c_char>,
    pub(super) v1_procs: Vec<CString>,
    /// (source fd in the caller, fd number in the knot).
    pub(super) fds: Vec<(RawFd, RawFd)>,
    /// Highest fd number in the knot that is placed, plus one.
    pub(super) first_free: RawFd,
    pub(super) error_pipe: RawFd,
    pub(super) new_session: bool,
}

/// Reads the 8-byte step and errno the child writes when it fails; `None` when the pipe
/// closed on exec.
pub(super) fn read_child_error(pipe: OwnedFd) -> Option<(u32, io::Error)> {
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

/// Runs the knot child between clone and exec. It makes only raw system calls and never
/// allocates, because a lock of the multi-threaded parent may be held forever in this copy.
pub(super) fn run_child(plan: &ChildPlan) -> ! {
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
