//! The UDP socket laminar runs on. It is where hostile input is stopped: once in a call,
//! datagrams from anyone but the peer are counted and dropped before laminar sees them;
//! oversized datagrams are dropped always; every datagram is encrypted and authenticated by
//! the secure channel, so anything that fails is dropped before laminar; and one poll reads a
//! bounded number of datagrams so that a flood cannot stall a tick.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use laminar::DatagramSocket;
use socket2::{Domain, Protocol, Socket, Type};

use super::secure::{SecureEndpoint, SecureEvent, SecureStats};
use super::NetError;

/// Largest datagram accepted: our 1250-byte messages, laminar's headers and the 25 bytes of
/// encryption, with room.
pub const MAX_WIRE_DATAGRAM: usize = 1400;
/// Datagrams read in one poll at most; the rest wait for the next tick.
pub const MAX_READS_PER_POLL: usize = 4096;
/// Kernel buffer size asked for in each direction.
pub const KERNEL_BUFFER: usize = 4 << 20;
/// laminar's standard header: protocol id (2), packet type, delivery, ordering.
const LAMINAR_HEADER: usize = 5;
/// The protocol version string laminar 0.5 hashes into the first two bytes of every packet.
const LAMINAR_PROTOCOL: &[u8] = b"laminar-0.1.0";

/// CRC-16/X-25, the checksum laminar uses for its protocol id.
fn crc16_x25(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The first two bytes of every datagram laminar 0.5 sends.
pub fn laminar_protocol_id() -> [u8; 2] {
    crc16_x25(LAMINAR_PROTOCOL).to_be_bytes()
}

/// What the socket saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCounters {
    /// Datagrams handed to laminar.
    pub datagrams_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Datagrams from someone other than the peer during a call.
    pub dropped_foreign: u64,
    /// Datagrams too large to be ours.
    pub dropped_oversized: u64,
    /// Datagrams without laminar's header: not from a Prattle peer.
    pub dropped_malformed: u64,
}

/// Secure-channel events kept for the app at most; more means nobody is reading.
const MAX_EVENTS: usize = 64;

/// A non-blocking, encrypting UDP socket with a peer filter, for laminar's `ConnectionManager`.
pub struct FilteredSocket {
    socket: UdpSocket,
    peer: Option<SocketAddr>,
    reads_left: usize,
    buf: Box<[u8; 2048]>,
    counters: SocketCounters,
    protocol_id: [u8; 2],
    secure: SecureEndpoint,
    now: Instant,
    events: VecDeque<SecureEvent>,
}

impl std::fmt::Debug for FilteredSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilteredSocket")
            .field("socket", &self.socket)
            .field("peer", &self.peer)
            .field("counters", &self.counters)
            .finish()
    }
}

impl FilteredSocket {
    /// Binds `addr` with large kernel buffers, dual-stack for IPv6; `secure` seals and opens
    /// every datagram.
    pub fn bind(addr: SocketAddr, secure: SecureEndpoint) -> Result<Self, NetError> {
        let bind_err = |source: io::Error| {
            if source.kind() == io::ErrorKind::AddrInUse {
                NetError::PortInUse { port: addr.port() }
            } else {
                NetError::Bind { addr, source }
            }
        };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(bind_err)?;
        if addr.is_ipv6() {
            // best effort: some systems refuse dual-stack
            let _ = socket.set_only_v6(false);
        }
        // the kernel may cap these; a smaller buffer still works
        let _ = socket.set_recv_buffer_size(KERNEL_BUFFER);
        let _ = socket.set_send_buffer_size(KERNEL_BUFFER);
        socket.bind(&addr.into()).map_err(bind_err)?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        Ok(Self {
            socket: socket.into(),
            peer: None,
            reads_left: MAX_READS_PER_POLL,
            buf: Box::new([0; 2048]),
            counters: SocketCounters::default(),
            protocol_id: laminar_protocol_id(),
            secure,
            now: Instant::now(),
            events: VecDeque::new(),
        })
    }

    /// The socket's descriptor, to wait on (see [`super::loop_wait`]).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }

    /// Only datagrams from `peer` pass while it is set; `None` lets everyone knock.
    pub fn set_peer(&mut self, peer: Option<SocketAddr>) {
        self.peer = peer;
    }

    /// Starts a new poll at `now`: resets the per-poll read budget and runs the secure
    /// channel's timers.
    pub fn begin_poll(&mut self, now: Instant) {
        self.reads_left = MAX_READS_PER_POLL;
        self.now = now;
        self.secure.handle_timeout(now);
        self.flush_secure();
    }

    /// Sends the secure channel's handshake datagrams and keeps its events for the app.
    pub fn flush_secure(&mut self) {
        while let Some((to, datagram)) = self.secure.poll_transmit() {
            if let Ok(n) = self.socket.send_to(&datagram, to) {
                self.counters.datagrams_out += 1;
                self.counters.bytes_out += n as u64;
            }
        }
        while let Some(e) = self.secure.poll_event() {
            if self.events.len() < MAX_EVENTS {
                self.events.push_back(e);
            }
        }
    }

    /// The next secure-channel event (a session established, a code rejected…).
    pub fn poll_event(&mut self) -> Option<SecureEvent> {
        self.events.pop_front()
    }

    /// The secure channel, to close a session or read its state.
    pub fn secure_mut(&mut self) -> &mut SecureEndpoint {
        &mut self.secure
    }

    /// The secure channel's counters.
    pub fn secure_stats(&self) -> SecureStats {
        self.secure.stats()
    }

    /// Counters so far.
    pub fn counters(&self) -> SocketCounters {
        self.counters
    }
}

impl DatagramSocket for FilteredSocket {
    fn send_packet(&mut self, addr: &SocketAddr, payload: &[u8]) -> io::Result<usize> {
        let Some(sealed) = self.secure.seal(*addr, payload) else {
            // no session yet: start one; what laminar sends meanwhile is dropped, and the
            // call's messages repeat until they get through
            self.secure.connect(*addr, self.now);
            self.flush_secure();
            return Ok(payload.len());
        };
        let n = self.socket.send_to(&sealed, addr)?;
        self.counters.datagrams_out += 1;
        self.counters.bytes_out += n as u64;
        Ok(payload.len())
    }

    fn receive_packet<'a>(&mut self, buffer: &'a mut [u8]) -> io::Result<(&'a [u8], SocketAddr)> {
        loop {
            if self.reads_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.reads_left -= 1;
            let (n, from) = self.socket.recv_from(&mut self.buf[..])?;
            if n > MAX_WIRE_DATAGRAM || n > buffer.len() {
                self.counters.dropped_oversized += 1;
                continue;
            }
            if let Some(peer) = self.peer {
                if from != peer {
                    self.counters.dropped_foreign += 1;
                    continue;
                }
            }
            let Some(plain) = self.secure.handle_datagram(from, &self.buf[..n], self.now) else {
                // a handshake message (answered through flush_secure) or a dropped datagram,
                // counted by the secure channel
                self.flush_secure();
                continue;
            };
            let m = plain.len();
            if m < LAMINAR_HEADER || plain[..2] != self.protocol_id || m > buffer.len() {
                self.counters.dropped_malformed += 1;
                continue;
            }
            self.counters.datagrams_in += 1;
            self.counters.bytes_in += n as u64;
            buffer[..m].copy_from_slice(&plain);
            return Ok((&buffer[..m], from));
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn is_blocking_mode(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::secure::{Auth, Identity, SecureEndpoint};
    use crate::net::Transport;
    use std::time::{Duration, Instant};

    fn transport() -> Transport {
        let secure = SecureEndpoint::new(Identity::generate(), Auth::Tofu, Instant::now())
            .expect("endpoint");
        Transport::bind("127.0.0.1:0".parse().expect("literal"), secure).expect("bind")
    }

    /// Polls both transports until `done` or a second passes.
    fn pump(
        a: &mut Transport,
        b: &mut Transport,
        done: impl Fn(&mut Transport, &mut Transport) -> bool,
    ) {
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end && !done(a, b) {
            a.poll(Instant::now());
            b.poll(Instant::now());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn laminar_packets_pass_once_a_session_exists() {
        let mut a = transport();
        let mut b = transport();
        let to_b = b.local_addr().expect("addr");
        // laminar's packets pass only once the handshake made a session
        pump(&mut a, &mut b, |a, b| {
            a.send(to_b, b"hello".to_vec(), false);
            a.poll(Instant::now());
            b.poll(Instant::now());
            b.recv().is_some()
        });
        assert_eq!(
            b.counters().dropped_malformed,
            0,
            "decrypted laminar header checked"
        );
        assert!(b.counters().datagrams_in >= 1);
        assert_eq!(a.secure_stats().handshakes_completed, 1);
    }

    #[test]
    fn a_tap_sees_no_laminar_header_or_payload() {
        // what goes on the wire is the secure channel's, never laminar's plain header
        let mut a = transport();
        let tap = UdpSocket::bind("127.0.0.1:0").expect("bind");
        tap.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        a.send(tap.local_addr().expect("addr"), b"secret".to_vec(), false);
        a.poll(Instant::now());
        let mut buf = [0u8; 256];
        let (n, _) = tap.recv_from(&mut buf).expect("a handshake initiation");
        assert_ne!(buf[..2], laminar_protocol_id());
        assert!(!buf[..n].windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn strangers_junk_and_giants_are_counted_and_dropped() {
        let mut t = transport();
        let me = t.local_addr().expect("addr");
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut valid = laminar_protocol_id().to_vec();
        valid.extend_from_slice(&[0, 0, 0, 1, 2, 3]);
        stranger.send_to(b"junk", me).expect("send");
        stranger.send_to(&vec![0u8; 3000], me).expect("send");
        t.poll(Instant::now());
        std::thread::sleep(Duration::from_millis(50));
        t.poll(Instant::now());
        let c = t.counters();
        assert_eq!(c.dropped_oversized, 1);
        assert_eq!(
            t.secure_stats().dropped_malformed,
            1,
            "junk fails the secure channel"
        );
        t.set_peer(Some(peer.local_addr().expect("addr")));
        stranger.send_to(&valid, me).expect("send");
        std::thread::sleep(Duration::from_millis(50));
        t.poll(Instant::now());
        assert_eq!(t.counters().dropped_foreign, 1);
        assert_eq!(t.counters().datagrams_in, 0);
    }
}
