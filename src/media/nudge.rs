//! An eventfd: a counter that one thread adds to with one write, no lock and no allocation,
//! and another waits on with `poll`. [`Wake`] is built on it.
//!
//! [`Wake`]: super::wake::Wake

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// The sending end, cheap to clone.
#[derive(Debug, Clone)]
pub struct Nudge(Arc<OwnedFd>);

impl Nudge {
    /// A new eventfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: a plain system call
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns
        Ok(Self(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Wakes whoever waits on it: no lock, no allocation, never blocks.
    pub fn nudge(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of a live u64 to our eventfd; it is non-blocking, and a
        // counter at its limit (2^64 - 2 nudges not taken) only fails the write
        let _ = unsafe { libc::write(self.fd(), (&raw const one).cast(), 8) };
    }

    /// Takes the pending nudges, so that the next one is an event again.
    pub fn take(&self) -> u64 {
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd
        let got = unsafe { libc::read(self.fd(), (&raw mut n).cast(), 8) };
        if got == 8 {
            n
        } else {
            0
        }
    }

    /// The descriptor, to wait on.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nudges_add_up_until_taken() {
        let n = Nudge::new().expect("eventfd");
        assert_eq!(n.take(), 0, "nothing yet");
        n.nudge();
        n.clone().nudge();
        assert_eq!(n.take(), 2);
        assert_eq!(n.take(), 0);
    }
}
