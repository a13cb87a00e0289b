//! Supervising the program: reaping, forwarding signals, the kill timeout, restarts in
//! place and the exit record.
//!
//! The knot waits on one signalfd with a single deadline, so it needs no thread and no
//! signal handler. As pid 1 of the namespace it reaps every zombie, orphans included.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::exit_codes;
use super::record::{ExitRecord, ExitStatus};
use super::{program, stdio};
use crate::model::spec::{EntryKind, LaunchSpec};
use crate::secrets::DecryptedEnviron;

/// Runs the program until the knot should exit, and returns the knot's exit code.
pub(crate) fn run(
    spec: &LaunchSpec,
    secrets: &DecryptedEnviron,
    log: &slog::Logger,
    signals: &SignalFd,
    record: &ExitRecord,
) -> i32 {
    let mut supervisor = Supervisor {
        spec,
        log,
        signals,
        shutdown_at: None,
        program: None,
        status: None,
    };
    loop {
        let output = match open_output(spec) {
            Ok(output) => output,
            Err(e) => return supervisor.fail_start(record, &e),
        };
        let started = Instant::now();
        stdio::start_line(output.as_ref(), spec);
        match program::start(spec, secrets, output.as_ref()) {
            Ok(pid) => supervisor.program = Some(pid),
            Err(e) => return supervisor.fail_start(record, &e),
        }
        slog::info!(log, "program started"; "pid" => supervisor.program.map(Pid::as_raw));
        let status = supervisor.wait_for_program();
        // The output of the last run is reopened at the next start, so logrotate works.
        let uptime = started.elapsed();
        if let Some(status) = status {
            stdio::death_line(output.as_ref(), spec, &status, uptime);
        }
        let shutting_down = supervisor.shutdown_at.is_some();
        let failure = status.is_some_and(|s| is_failure(spec, &s, shutting_down));
        slog::info!(log, "program exited"; "status" => ?status, "failure" => failure, "uptime_secs" => uptime.as_secs_f64());
        if shutting_down || !spec.container.restart_process_only {
            return supervisor.finish(record, status, failure);
        }
        // Restart in place, but no sooner than restart-timeout after the last start.
        if !supervisor.sleep_until(started + spec.container.restart_timeout) {
            return supervisor.finish(record, status, false);
        }
    }
}

struct Supervisor<'a> {
    spec: &'a LaunchSpec,
    log: &'a slog::Logger,
    signals: &'a SignalFd,
    /// When the knot stops waiting after SIGTERM or SIGINT: the kill timeout.
    shutdown_at: Option<Instant>,
    program: Option<Pid>,
    status: Option<ExitStatus>,
}

impl Supervisor<'_> {
    /// Waits until the program dies or the kill timeout passes; `None` on the timeout.
    fn wait_for_program(&mut self) -> Option<ExitStatus> {
        self.status = None;
        while self.status.is_none() {
            if !self.wait_signals(self.shutdown_at) {
                slog::warn!(self.log, "kill timeout passed, leaving the namespace to the kernel";
                    "kill_timeout_secs" => self.spec.container.kill_timeout.as_secs_f64());
                return None;
            }
        }
        self.program = None;
        self.status
    }

    /// Handles signals until `deadline`; returns false if the deadline passed or a
    /// shutdown was requested while no program runs.
    fn sleep_until(&mut self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            let wake = Some(self.shutdown_at.map_or(deadline, |s| s.min(deadline)));
            self.wait_signals(wake);
            if self.shutdown_at.is_some() {
                return false;
            }
        }
        true
    }

    /// Waits for signals until `deadline` and handles them; false if the deadline passed.
    fn wait_signals(&mut self, deadline: Option<Instant>) -> bool {
        let timeout = match deadline {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                // Round up so the loop does not spin on the last millisecond.
                let millis = left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1;
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => return deadline.is_none_or(|at| Instant::now() < at),
            Ok(_) => {}
            Err(nix::Error::EINTR) => return true,
            Err(e) => {
                slog::error!(self.log, "failed to wait for signals"; "error" => %e);
                std::thread::sleep(Duration::from_millis(100));
                return true;
            }
        }
        while let Ok(Some(info)) = self.signals.read_signal() {
            self.handle_signal(info.ssi_signo as i32, info.ssi_code);
        }
        true
    }

    fn handle_signal(&mut self, number: i32, code: i32) {
        match Signal::try_from(number) {
            Ok(Signal::SIGCHLD) => self.reap(),
            Ok(signal @ (Signal::SIGTERM | Signal::SIGINT)) => {
                slog::info!(self.log, "stopping the program"; "signal" => %signal);
                // An interactive program shares the knot's terminal, so a signal the
                // terminal sent (SI_KERNEL) has reached it already.
                let from_terminal = self.spec.container.interactive && code == libc::SI_KERNEL;
                if let (Some(pid), false) = (self.program, from_terminal) {
                    let _ = kill(pid, signal);
                }
                if self.shutdown_at.is_none() {
                    self.shutdown_at = Some(Instant::now() + self.spec.container.kill_timeout);
                }
            }
            _ => {}
        }
    }

    /// Reaps every zombie in the namespace and keeps the program's status.
    fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if Some(pid) == self.program => {
                    self.status = Some(ExitStatus::Code(code));
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if Some(pid) == self.program => {
                    self.status = Some(ExitStatus::Signal(signal as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn fail_start(&self, record: &ExitRecord, error: &dyn std::error::Error) -> i32 {
        super::report(self.log, self.spec, "failed to start the program", error);
        self.write_record(record, None, true);
        exit_codes::SETUP_FAILED
    }

    fn finish(&self, record: &ExitRecord, status: Option<ExitStatus>, failure: bool) -> i32 {
        // A program still running after the kill timeout dies with the namespace.
        let status = status.or(Some(ExitStatus::Signal(Signal::SIGKILL as i32)));
        self.write_record(record, status, failure);
        if failure {
            exit_codes::FAILURE
        } else {
            exit_codes::SUCCESS
        }
    }

    fn write_record(&self, record: &ExitRecord, status: Option<ExitStatus>, failure: bool) {
        if let Err(e) = record.write(status, failure) {
            slog::error!(self.log, "failed to write the exit record"; "error" => %e);
        }
    }
}

/// Tells whether a death counts as a failure. Deaths after SIGTERM or SIGINT reached the
/// knot, deaths by SIGTERM and `normal_exit_codes` are not failures. Exit code 0 is a
/// failure for daemons unless it is listed, and never for commands.
pub(crate) fn is_failure(spec: &LaunchSpec, status: &ExitStatus, terminated: bool) -> bool {
    match *status {
        _ if terminated => false,
        ExitStatus::Signal(signal) => signal != Signal::SIGTERM as i32,
        ExitStatus::Code(code) if spec.container.normal_exit_codes.contains(&code) => false,
        ExitStatus::Code(0) => spec.entry_kind == EntryKind::Daemon,
        ExitStatus::Code(_) => true,
    }
}

/// Opens `stdout_stderr_file` inside the container for one run. `None` means the knot's
/// own stdout and stderr: the stdio log, or the caller's terminal when interactive.
fn open_output(spec: &LaunchSpec) -> io::Result<Option<OwnedFd>> {
    match &spec.container.stdout_stderr_file {
        Some(path) if !spec.container.interactive => {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(path)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("failed to open {}: {e}", Path::new(path).display()),
                    )
                })?;
            Ok(Some(file.into()))
        }
        _ => Ok(None),
    }
}

/// Writes `text` to the program's output, or to the knot's stderr (the stdio log).
pub(crate) fn write_output(output: Option<&OwnedFd>, text: &str) {
    match output {
        Some(fd) => {
            if let Ok(copy) = fd.try_clone() {
                let _ = std::fs::File::from(copy).write_all(text.as_bytes());
            }
        }
        None => {
            let _ = io::stderr().write_all(text.as_bytes());
        }
    }
}
