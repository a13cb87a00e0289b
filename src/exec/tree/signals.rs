//! Signal delivery to the loop: signal-hook flags plus a self-pipe that wakes `poll`.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The signals the tree handles.
pub const HANDLED: [Signal; 5] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
];

/// Error setting up signal handling or waiting.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The self-pipe could not be created.
    #[error("failed to create the signal self-pipe")]
    CreatePipe(#[source] io::Error),
    /// signal-hook could not install a handler.
    #[error("failed to install a handler for {signal}")]
    Register {
        /// Signal name.
        signal: Signal,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The signal mask could not be changed.
    #[error("failed to change the signal mask")]
    Mask(#[source] nix::Error),
    /// `poll` failed for a reason other than an interruption.
    #[error("failed to poll for signals")]
    Poll(#[source] nix::Error),
}

/// Signals received since the last [`SignalWaiter::take`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// A child changed state.
    pub child: bool,
    /// Graceful stop requested: stop every container.
    pub terminate: bool,
    /// Interrupt: the containers got the signal too, wait for them.
    pub interrupt: bool,
    /// Reload requested by SIGQUIT or SIGHUP.
    pub reload: bool,
}

/// Flags set by signal handlers and a pipe the handlers write to.
pub struct SignalWaiter {
    wake: UnixStream,
    flags: [Arc<AtomicBool>; 5],
}

impl SignalWaiter {
    /// Installs the handlers, then unblocks the handled signals.
    ///
    /// Signals that arrived while they were blocked (across the tree's own `execve`) stay
    /// pending and reach the new handlers as soon as they are unblocked, so a reload burst
    /// never hits the default action of SIGQUIT.
    pub fn install() -> Result<SignalWaiter, SignalError> {
        let (wake, write_end) = UnixStream::pair().map_err(SignalError::CreatePipe)?;
        wake.set_nonblocking(true)
            .map_err(SignalError::CreatePipe)?;
        write_end
            .set_nonblocking(true)
            .map_err(SignalError::CreatePipe)?;
        let flags: [Arc<AtomicBool>; 5] = Default::default();
        for (signal, flag) in HANDLED.iter().zip(&flags) {
            let register = |source| SignalError::Register {
                signal: *signal,
                source,
            };
            signal_hook::flag::register(*signal as i32, Arc::clone(flag)).map_err(register)?;
            let writer = write_end.try_clone().map_err(SignalError::CreatePipe)?;
            signal_hook::low_level::pipe::register(*signal as i32, writer).map_err(register)?;
        }
        set_blocked(false)?;
        Ok(SignalWaiter { wake, flags })
    }

    /// Sleeps until a signal arrives, one of `watched` becomes readable, or `timeout` ends.
    ///
    /// Returns the indexes of the readable `watched` descriptors.
    pub fn wait(
        &self,
        timeout: Option<Duration>,
        watched: &[BorrowedFd<'_>],
    ) -> Result<Vec<usize>, SignalError> {
        if self.any_pending() {
            return Ok(Vec::new());
        }
        let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
        fds.extend(watched.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)));
        let timeout = match timeout {
            // Rounded up so the loop never wakes a millisecond before a deadline.
            Some(duration) => PollTimeout::try_from(duration + Duration::from_micros(999))
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(error) => return Err(SignalError::Poll(error)),
        }
        self.drain();
        let ready = fds[1..]
            .iter()
            .enumerate()
            .filter(|(_, fd)| fd.any().unwrap_or(false))
            .map(|(index, _)| index)
            .collect();
        Ok(ready)
    }

    /// Returns and clears the signals received so far.
    pub fn take(&self) -> Received {
        let take = |index: usize| self.flags[index].swap(false, Ordering::SeqCst);
        let hup = take(4);
        Received {
            child: take(0),
            terminate: take(1),
            interrupt: take(2),
            reload: take(3) || hup,
        }
    }

    fn any_pending(&self) -> bool {
        self.flags.iter().any(|flag| flag.load(Ordering::SeqCst))
    }

    fn drain(&self) {
        let mut buffer = [0u8; 256];
        while let Ok(count) = (&self.wake).read(&mut buffer) {
            if count == 0 {
                break;
            }
        }
    }
}

/// Blocks (or unblocks) the handled signals in the calling thread.
///
/// The tree blocks them right before its own `execve`: the mask survives the exec while the
/// handlers do not, so the new image sees the signals once it has installed its handlers.
pub fn set_blocked(blocked: bool) -> Result<(), SignalError> {
    let mut set = SigSet::empty();
    for signal in HANDLED {
        set.add(signal);
    }
    let how = if blocked {
        SigmaskHow::SIG_BLOCK
    } else {
        SigmaskHow::SIG_UNBLOCK
    };
    nix::sys::signal::pthread_sigmask(how, Some(&set), None).map_err(SignalError::Mask)
}
