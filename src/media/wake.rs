//! Wakes the call loop early: a thread that has something for the next tick (a finished
//! picture, a new camera frame, microphone samples) says so instead of waiting for the loop's
//! sleep to end.
//!
//! It is an eventfd, so that the loop waits for it and for its socket in one `ppoll`
//! ([`crate::net::loop_wait`]) with no thread in between. A datagram used to wake a thread
//! that woke the loop through a channel: three context switches per datagram (that thread
//! was preempted by the real-time loop it woke), ~430 a second per 480p peer.
//! Signalling takes no lock and never blocks, so a sound callback may do it; a signal while
//! one is pending costs no system call.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::nudge::Nudge;

/// The signalling end, cheap to clone.
#[derive(Debug, Clone)]
pub struct Wake {
    fd: Nudge,
    pending: Arc<AtomicBool>,
}

/// The loop's end: what it waits on, and takes the signals from.
#[derive(Debug)]
pub struct Woken {
    fd: Nudge,
    pending: Arc<AtomicBool>,
}

impl Wake {
    /// A wake signal and the end the loop waits on.
    pub fn new() -> io::Result<(Self, Woken)> {
        let fd = Nudge::new()?;
        let pending = Arc::new(AtomicBool::new(false));
        Ok((
            Self {
                fd: fd.clone(),
                pending: Arc::clone(&pending),
            },
            Woken { fd, pending },
        ))
    }

    /// Wakes the loop (a pending wake-up is enough: never blocks, no lock).
    pub fn signal(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.fd.nudge();
        }
    }
}

impl Woken {
    /// The descriptor that is readable while a signal is pending.
    pub fn fd(&self) -> RawFd {
        self.fd.fd()
    }

    /// Takes the pending signals: true if there were any. Whatever a thread made before it
    /// signalled is there for the loop once this returns.
    pub fn take(&self) -> bool {
        let counted = self.fd.take() > 0;
        // cleared after the read: a signal in between writes again, so none is lost
        self.pending.swap(false, Ordering::AcqRel) || counted
    }

    /// Waits up to `timeout` for a signal and takes it: true if one came. (The call loop
    /// waits on the socket as well: [`crate::net::loop_wait::LoopWait`].)
    pub fn wait(&self, timeout: Duration) -> bool {
        ppoll_readable(&[self.fd()], timeout).is_ok_and(|ready| ready[0]) && self.take()
    }
}

/// Waits until any of `fds` is readable or `timeout` passes (nanosecond resolution, unlike
/// `epoll_wait`'s milliseconds); says which were. An interrupted wait returns as a timeout.
pub fn ppoll_readable<const N: usize>(
    fds: &[RawFd; N],
    timeout: Duration,
) -> io::Result<[bool; N]> {
    let mut polled = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: `polled` holds N live pollfd entries and `ts` a valid timespec, both outliving
    // the call; no signal mask is given
    let n = unsafe {
        libc::ppoll(
            polled.as_mut_ptr(),
            N as libc::nfds_t,
            &raw const ts,
            std::ptr::null(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok([false; N])
        } else {
            Err(e)
        };
    }
    Ok(polled.map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_wakes_once_and_signals_after_taking_wake_again() {
        let (wake, woken) = Wake::new().expect("eventfd");
        assert!(!woken.wait(Duration::from_millis(20)), "nothing yet");
        wake.signal();
        wake.clone().signal();
        assert!(woken.wait(Duration::from_secs(2)), "woken");
        assert!(
            !woken.wait(Duration::from_millis(20)),
            "two signals, one wake-up"
        );
        let from = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            wake.signal();
        });
        assert!(
            woken.wait(Duration::from_secs(2)),
            "a thread's later signal"
        );
        from.join().expect("thread");
        assert!(!woken.take(), "taken");
    }
}
