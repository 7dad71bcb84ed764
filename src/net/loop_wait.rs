//! The call loop's one sleep: until a datagram lands on its socket, a thread signals it
//! ([`Wake`]), or its next tick is due, whichever comes first. A packet is then handled, and
//! its arrival stamped, when it arrives rather than at the next tick; laminar reads the
//! socket in the tick, so a datagram left unread (none is: every tick polls it) would only
//! make the next sleep end at once.
//!
//! Until session 18 a thread waited on the socket with epoll and woke the loop through a
//! channel; the loop waits on both itself now (see [`crate::media::wake`] for what it saved).
//!
//! [`Wake`]: crate::media::wake::Wake

use std::os::fd::RawFd;
use std::time::Duration;

use crate::media::wake::{ppoll_readable, Woken};

/// What ended a [`LoopWait::wait`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Woke {
    /// A datagram is there to read.
    pub datagram: bool,
    /// A thread signalled.
    pub signalled: bool,
}

/// The loop's socket and wake signal, waited on together.
#[derive(Debug)]
pub struct LoopWait {
    socket: RawFd,
    woken: Woken,
}

impl LoopWait {
    /// Waits on `socket` (a UDP socket's descriptor, which must stay open while this lives;
    /// -1 for none) and `woken`.
    pub fn new(socket: RawFd, woken: Woken) -> Self {
        Self { socket, woken }
    }

    /// Sleeps until a datagram is readable, a thread signals, or `timeout` passes, and takes
    /// the signal. A failing wait (it cannot, with valid descriptors) sleeps the timeout, so
    /// that the loop still ticks.
    pub fn wait(&self, timeout: Duration) -> Woke {
        match ppoll_readable(&[self.woken.fd(), self.socket], timeout) {
            Ok([signalled, datagram]) => Woke {
                datagram,
                signalled: signalled && self.woken.take(),
            },
            Err(e) => {
                tracing::debug!("loop wait failed: {e}");
                std::thread::sleep(timeout);
                Woke::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::wake::Wake;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    #[test]
    fn a_datagram_or_a_signal_ends_the_wait_and_silence_lasts_the_timeout() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (wake, woken) = Wake::new().expect("eventfd");
        let wait = LoopWait::new(rx.as_raw_fd(), woken);
        let start = Instant::now();
        assert_eq!(
            wait.wait(Duration::from_millis(30)),
            Woke::default(),
            "nothing came"
        );
        assert!(
            start.elapsed() >= Duration::from_millis(30),
            "slept the timeout"
        );
        for round in 0..3 {
            tx.send_to(b"hello", rx.local_addr().expect("addr"))
                .expect("send");
            let woke = wait.wait(Duration::from_secs(2));
            assert!(
                woke.datagram && !woke.signalled,
                "datagram {round}: {woke:?}"
            );
            // unread, it still ends the wait: the loop reads it next, as laminar does
            assert!(wait.wait(Duration::from_secs(2)).datagram, "still there");
            let mut buf = [0u8; 16];
            while rx.recv_from(&mut buf).is_ok() {}
        }
        for round in 0..3 {
            wake.signal();
            let woke = wait.wait(Duration::from_secs(2));
            assert!(woke.signalled && !woke.datagram, "signal {round}: {woke:?}");
        }
        assert_eq!(
            wait.wait(Duration::from_millis(30)),
            Woke::default(),
            "nothing more"
        );
    }

    #[test]
    fn without_a_socket_only_signals_and_time_end_it() {
        let (wake, woken) = Wake::new().expect("eventfd");
        let wait = LoopWait::new(-1, woken);
        assert_eq!(wait.wait(Duration::from_millis(10)), Woke::default());
        wake.signal();
        assert!(wait.wait(Duration::from_secs(2)).signalled);
    }
}
