//! Starting the program as pid 2: stdio, limits, user namespace, ids, capabilities,
//! environment, working directory and exec.
//!
//! The knot is single-threaded, so the forked child may allocate. It reports a failure
//! before exec as one text line on a close-on-exec pipe; end of file means exec worked.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{
    chdir, dup2, execve, fork, getpid, pipe2, setgid, setgroups, setuid, ForkResult, Gid, Pid, Uid,
};

use crate::model::spec::{IdMap, LaunchSpec};
use crate::secrets::DecryptedEnviron;

/// Error of starting the program.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A pipe to the child could not be created.
    #[error("failed to create a pipe")]
    Pipe(#[source] io::Error),
    /// `fork` failed.
    #[error("failed to fork the program process")]
    Fork(#[source] io::Error),
    /// The uid or gid map could not be written.
    #[error("failed to write {path}")]
    IdMap {
        /// `/proc/PID/uid_map` or `gid_map`.
        path: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The child failed before exec; the message names the step and value.
    #[error("{message}")]
    Child {
        /// One line from the child.
        message: String,
    },
}

/// Forks the program and returns its pid once it has executed the configured binary.
/// `output` receives stdout and stderr; `None` leaves the knot's own.
pub(crate) fn start(
    spec: &LaunchSpec,
    secrets: &DecryptedEnviron,
    output: Option<&OwnedFd>,
) -> Result<Pid, StartError> {
    let (error_read, error_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| StartError::Pipe(e.into()))?;
    let (ready_read, ready_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| StartError::Pipe(e.into()))?;
    let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| StartError::Pipe(e.into()))?;
    let user_namespace = !spec.container.uid_map.is_empty();
    // SAFETY: the knot has a single thread, so the child is a full copy that may
    // allocate. It ends in exec or _exit and never returns into the knot's code.
    match unsafe { fork() }.map_err(|e| StartError::Fork(e.into()))? {
        ForkResult::Child => {
            drop((error_read, ready_read, go_write));
            let Err(message) = run_child(
                spec,
                secrets,
                output.map(|o| o.as_raw_fd()),
                user_namespace,
                &ready_write,
                go_read,
            );
            let mut pipe = File::from(error_write);
            let _ = pipe.write_all(message.as_bytes());
            // SAFETY: _exit skips the knot's atexit handlers and buffered output, which
            // belong to the parent.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            drop((error_write, ready_write, go_read));
            if user_namespace {
                // The child writes a byte once it is in its user namespace. An empty read
                // means it failed before, and the error pipe carries the reason.
                let mut byte = [0u8; 1];
                if File::from(ready_read).read(&mut byte).unwrap_or(0) == 1 {
                    write_id_maps(child, &spec.container.uid_map, &spec.container.gid_map)?;
                    let _ = File::from(go_write).write_all(b"g");
                }
            }
            let mut message = String::new();
            let _ = File::from(error_read).read_to_string(&mut message);
            if message.is_empty() {
                Ok(child)
            } else {
                let _ = waitpid(child, None);
                Err(StartError::Child { message })
            }
        }
    }
}

/// Writes the uid and gid maps of the child. The knot stays root in the host's user
/// namespace, so it may map any id and need not deny setgroups first.
fn write_id_maps(child: Pid, uid_map: &[IdMap], gid_map: &[IdMap]) -> Result<(), StartError> {
    for (file, map) in [("gid_map", gid_map), ("uid_map", uid_map)] {
        let path = format!("/proc/{child}/{file}");
        let text: String = map
            .iter()
            .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count))
            .collect();
        // The map must arrive in one write(2); std's fs::write does that for short text.
        std::fs::write(&path, text).map_err(|source| StartError::IdMap { path, source })?;
    }
    Ok(())
}

fn run_child(
    spec: &LaunchSpec,
    secrets: &DecryptedEnviron,
    output: Option<RawFd>,
    user_namespace: bool,
    ready: &OwnedFd,
    go: OwnedFd,
) -> Result<Infallible, String> {
    let container = &spec.container;
    if let Some(fd) = output {
        dup2(fd, 1).map_err(|e| format!("failed to redirect stdout: {e}"))?;
        dup2(fd, 2).map_err(|e| format!("failed to redirect stderr: {e}"))?;
    }
    let limit = container.fileno_limit;
    setrlimit(Resource::RLIMIT_NOFILE, limit, limit)
        .map_err(|e| format!("failed to set RLIMIT_NOFILE to {limit}: {e}"))?;
    // Before the user namespace, which would lose the right to join a host-owned one.
    crate::exec::network::enter_program_namespace(spec)?;
    if user_namespace {
        unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("failed to create a user namespace: {e}"))?;
        File::from(ready.try_clone().map_err(|e| e.to_string())?)
            .write_all(b"r")
            .map_err(|e| format!("failed to notify the knot: {e}"))?;
        let mut byte = [0u8; 1];
        if File::from(go).read(&mut byte).unwrap_or(0) != 1 {
            return Err("the knot failed to write the uid and gid maps".to_string());
        }
    }
    if container.user_id != 0 {
        drop_bounding_set()?;
    }
    setgroups(&[]).map_err(|e| format!("failed to drop supplementary groups: {e}"))?;
    let (uid, gid) = (container.user_id, container.group_id);
    setgid(Gid::from_raw(gid)).map_err(|e| format!("failed to set group id {gid}: {e}"))?;
    setuid(Uid::from_raw(uid)).map_err(|e| format!("failed to set user id {uid}: {e}"))?;
    let workdir = &container.workdir;
    chdir(workdir)
        .map_err(|e| format!("failed to change directory to {}: {e}", workdir.display()))?;

    let argv = program_argv(spec)?;
    let envp = program_env(spec, secrets, getpid())?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| format!("failed to reset the signal mask: {e}"))?;
    // SAFETY: restoring the default action installs no Rust handler; the Rust runtime
    // ignores SIGPIPE, which exec would otherwise pass on to the program.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .map_err(|e| format!("failed to reset SIGPIPE: {e}"))?;
    let error = execve(&argv[0], &argv, &envp).unwrap_err();
    Err(format!(
        "failed to execute {}: {error}",
        container.executable
    ))
}

/// Empties the capability bounding set, so a non-root program gains no capability even
/// through a set-user-id or file-capability binary in the image.
fn drop_bounding_set() -> Result<(), String> {
    for capability in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes an integer and touches no memory of ours.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) };
        if ret < 0 {
            let error = io::Error::last_os_error();
            // EINVAL marks the first number past the kernel's last capability.
            if error.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(format!(
                "failed to drop capability {capability} from the bounding set: {error}"
            ));
        }
    }
    Ok(())
}

fn c_string(bytes: &[u8], what: &str) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("invalid {what}: contains a NUL byte"))
}

fn program_argv(spec: &LaunchSpec) -> Result<Vec<CString>, String> {
    let container = &spec.container;
    let mut argv = vec![c_string(container.executable.as_bytes(), "executable")?];
    for argument in &container.arguments {
        argv.push(c_string(argument.as_bytes(), "argument")?);
    }
    Ok(argv)
}

/// Builds the program's environment: `TERM`, `LITHOS_NAME`, `LITHOS_CONFIG`, the
/// configured `environ`, the `pid_environ` names set to the program's pid and the
/// decrypted `secret-environ`.
pub(crate) fn program_env(
    spec: &LaunchSpec,
    secrets: &DecryptedEnviron,
    pid: Pid,
) -> Result<Vec<CString>, String> {
    let mut env = Vec::new();
    if let Some(term) = std::env::var_os("TERM") {
        let mut entry = b"TERM=".to_vec();
        entry.extend_from_slice(term.as_bytes());
        env.push(c_string(&entry, "TERM")?);
    }
    let mut set = |name: &str, value: &[u8]| -> Result<(), String> {
        let mut entry = format!("{name}=").into_bytes();
        entry.extend_from_slice(value);
        env.push(c_string(&entry, name)?);
        Ok(())
    };
    set("LITHOS_NAME", spec.name.as_bytes())?;
    set("LITHOS_CONFIG", spec.config_path.as_os_str().as_bytes())?;
    for (name, value) in &spec.container.environ {
        set(name, value.as_bytes())?;
    }
    for name in &spec.container.pid_environ {
        set(name, pid.to_string().as_bytes())?;
    }
    // An error here names the variable, never its value.
    for (name, value) in secrets.iter() {
        set(name, value.as_bytes())?;
    }
    Ok(env)
}
