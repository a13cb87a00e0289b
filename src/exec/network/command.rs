//! `after-setup-command`, and the capability a bridged program keeps.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::model::spec::NetworkSpec;

/// How long the knot waits for `after-setup-command` before it kills the command and
/// starts the program anyway. The documented use, one `arping` or `ping`, takes about a
/// second.
pub const AFTER_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Replaces every `@{container_ip}` in `argument` with `address`.
pub fn substitute_container_ip(argument: &str, address: IpAddr) -> String {
    argument.replace("@{container_ip}", &address.to_string())
}

/// Runs `after-setup-command` in the container's network namespace, with the knot's
/// other namespaces (the host's file system, before the image is mounted), an empty
/// environment, stdin from `/dev/null` and the output in the stdio log. A failure, or a
/// command still running after [`AFTER_SETUP_TIMEOUT`], is logged and the set-up goes on.
pub(super) fn run_after_setup(
    network: &NetworkSpec,
    address: IpAddr,
    namespace: BorrowedFd<'_>,
    log: &slog::Logger,
) {
    let argv: Vec<String> = network
        .after_setup_command
        .iter()
        .map(|argument| substitute_container_ip(argument, address))
        .collect();
    let Some(program) = argv.first() else {
        return;
    };
    if !Path::new(program).is_absolute() {
        slog::error!(log, "after-setup-command skipped: its path must be absolute";
            "command" => ?argv);
        return;
    }

    let mut command = Command::new(program);
    command
        .args(&argv[1..])
        .env_clear()
        .stdin(Stdio::null())
        .current_dir("/");
    let namespace = namespace.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only makes system
    // calls on integers; it neither allocates nor takes locks.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(namespace, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The knot's inherited descriptors, such as the tree's listening sockets, must
            // not reach the command; marking them close-on-exec keeps std's own pipe.
            if libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let started = Instant::now();
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            slog::error!(log, "failed to start after-setup-command";
                "command" => ?argv, "error" => %e);
            return;
        }
    };
    match wait_with_timeout(child, started + AFTER_SETUP_TIMEOUT) {
        Ok(Some(status)) if status.success() => {
            slog::debug!(log, "after-setup-command done"; "command" => ?argv,
                "secs" => started.elapsed().as_secs_f64());
        }
        Ok(Some(status)) => {
            slog::error!(log, "after-setup-command failed"; "command" => ?argv,
                "status" => %status);
        }
        Ok(None) => {
            slog::error!(log, "after-setup-command timed out and was killed";
                "command" => ?argv, "timeout_secs" => AFTER_SETUP_TIMEOUT.as_secs());
        }
        Err(e) => {
            slog::error!(log, "failed to wait for after-setup-command";
                "command" => ?argv, "error" => %e);
        }
    }
}

/// Waits for `child` until `deadline`, then kills and reaps it and returns `None`. The
/// knot blocks SIGCHLD for its signalfd, so this polls instead of waiting for a signal.
fn wait_with_timeout(mut child: Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            result => {
                // Timed out, or waiting failed: the command must not outlive the set-up.
                let _ = child.kill();
                let _ = child.wait();
                return result.map(|_| None);
            }
        }
    }
}

/// `struct __user_cap_header_struct` of `linux/capability.h`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// One half of `struct __user_cap_data_struct[2]`: capabilities 0-31 or 32-63.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
// Capability numbers of `linux/capability.h`, which the libc crate does not export.
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;
const CAP_NET_BIND_SERVICE: u32 = 10;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;

/// Lets the program keep `CAP_NET_BIND_SERVICE` as an ambient capability through
/// `setuid` and `exec`. Until exec the process keeps only what the rest of the start
/// needs: `CAP_SETUID` and `CAP_SETGID` to change ids, `CAP_SETPCAP` to empty the
/// bounding set. After exec it has `CAP_NET_BIND_SERVICE` alone. `SECBIT_NO_SETUID_FIXUP`
/// stops setuid from clearing the ambient set and stays set in the program.
pub(super) fn keep_bind_service() -> Result<(), String> {
    let bit = |capability: u32| 1u32 << capability;
    let needed = bit(CAP_NET_BIND_SERVICE) | bit(CAP_SETUID) | bit(CAP_SETGID) | bit(CAP_SETPCAP);
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: needed,
            permitted: needed,
            inheritable: bit(CAP_NET_BIND_SERVICE),
        },
        CapData::default(),
    ];
    // SAFETY: capset reads the header and the two data structs, which live on our stack
    // for the duration of the call.
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) } != 0 {
        return Err(format!(
            "failed to limit capabilities to CAP_NET_BIND_SERVICE: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: PR_SET_SECUREBITS takes an integer and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0) } != 0 {
        return Err(format!(
            "failed to set SECBIT_NO_SETUID_FIXUP: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: PR_CAP_AMBIENT takes integers and touches no memory of ours.
    let raised = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE,
            CAP_NET_BIND_SERVICE as libc::c_ulong,
            0,
            0,
        )
    };
    if raised != 0 {
        return Err(format!(
            "failed to raise ambient CAP_NET_BIND_SERVICE: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}
