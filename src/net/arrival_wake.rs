//! Wakes the call loop the moment a datagram lands instead of at its next 1 ms tick: a thread
//! waits on the socket with edge-triggered epoll and never reads it (laminar reads, on the
//! tick). A packet is then handled, and its arrival stamped, when it arrives. It watches a
//! [`Nudge`] too: the microphone's callback, which must not take the loop's channel lock.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::media::nudge::Nudge;
use crate::media::worker::Wake;

/// How often the waiting thread looks whether it should stop, ms.
const STOP_CHECK_MS: i32 = 50;
/// The epoll tag of the nudge's descriptor (the socket's is 0).
const NUDGED: u64 = 1;

/// The thread that signals arrivals; stopped and joined on drop.
pub struct ArrivalWake {
    stop: Arc<AtomicBool>,
    epoll: RawFd,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ArrivalWake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrivalWake").finish_non_exhaustive()
    }
}

impl ArrivalWake {
    /// Signals `wake` whenever a datagram arrives on `socket` (a UDP socket's descriptor,
    /// which must stay open while this lives) or `nudge` is nudged.
    pub fn spawn(socket: RawFd, wake: Wake, nudge: Option<Nudge>) -> io::Result<Self> {
        // SAFETY: plain system calls on descriptors we own or were given; `ev` outlives the call
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: as above
        let mut nudge_ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: NUDGED,
        };
        // SAFETY: as above
        if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, socket, &mut ev) } < 0
            || nudge.as_ref().is_some_and(|n| {
                // SAFETY: as above
                (unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, n.fd(), &mut nudge_ev) }) < 0
            })
        {
            let e = io::Error::last_os_error();
            // SAFETY: `epoll` is ours and not used after this
            unsafe { libc::close(epoll) };
            return Err(e);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("net-arrival".into())
            .spawn(move || {
                let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
                while !stopping.load(Ordering::Relaxed) {
                    // SAFETY: `events` holds 4 entries and lives across the call
                    let n =
                        unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 4, STOP_CHECK_MS) };
                    if n > 0 {
                        let ready = &events[..n as usize];
                        if let Some(nudge) = nudge.as_ref().filter(|_| {
                            ready.iter().any(|e| {
                                let tag = e.u64;
                                tag == NUDGED
                            })
                        }) {
                            nudge.take();
                        }
                        wake.signal();
                    }
                }
            });
        match thread {
            Ok(t) => Ok(Self {
                stop,
                epoll,
                thread: Some(t),
            }),
            Err(e) => {
                // SAFETY: `epoll` is ours and not used after this
                unsafe { libc::close(epoll) };
                Err(e)
            }
        }
    }
}

impl Drop for ArrivalWake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // SAFETY: the thread that used it has ended
        unsafe { libc::close(self.epoll) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn a_datagram_wakes_the_loop_and_silence_does_not() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (wake, woken) = Wake::new();
        let nudge = Nudge::new().expect("eventfd");
        let _aw = ArrivalWake::spawn(rx.as_raw_fd(), wake, Some(nudge.clone())).expect("epoll");
        assert!(
            woken.recv_timeout(Duration::from_millis(200)).is_err(),
            "nothing arrived"
        );
        for round in 0..3 {
            tx.send_to(b"hello", rx.local_addr().expect("addr"))
                .expect("send");
            assert!(
                woken.recv_timeout(Duration::from_secs(2)).is_ok(),
                "woken by datagram {round}"
            );
            // the loop reads it, as laminar would
            let mut buf = [0u8; 16];
            while rx.recv_from(&mut buf).is_ok() {}
        }
        // and a nudge wakes it each time, not just the first
        for round in 0..3 {
            nudge.nudge();
            assert!(
                woken.recv_timeout(Duration::from_secs(2)).is_ok(),
                "woken by nudge {round}"
            );
        }
        assert!(
            woken.recv_timeout(Duration::from_millis(200)).is_err(),
            "nothing more"
        );
    }
}
