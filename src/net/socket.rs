//! The UDP socket laminar runs on. It is where hostile input is stopped: once in a call,
//! datagrams from anyone but the peer are counted and dropped before laminar sees them;
//! oversized datagrams are dropped always; and one poll reads a bounded number of datagrams
//! so that a flood cannot stall a tick.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use laminar::DatagramSocket;
use socket2::{Domain, Protocol, Socket, Type};

use super::NetError;

/// Largest datagram accepted: our 1250-byte messages plus laminar's headers, with room.
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

/// A non-blocking UDP socket with a peer filter, for laminar's `ConnectionManager`.
#[derive(Debug)]
pub struct FilteredSocket {
    socket: UdpSocket,
    peer: Option<SocketAddr>,
    reads_left: usize,
    buf: Box<[u8; 2048]>,
    counters: SocketCounters,
    protocol_id: [u8; 2],
}

impl FilteredSocket {
    /// Binds `addr` with large kernel buffers, dual-stack for IPv6.
    pub fn bind(addr: SocketAddr) -> Result<Self, NetError> {
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
        })
    }

    /// Only datagrams from `peer` pass while it is set; `None` lets everyone knock.
    pub fn set_peer(&mut self, peer: Option<SocketAddr>) {
        self.peer = peer;
    }

    /// Starts a new poll: resets the per-poll read budget.
    pub fn begin_poll(&mut self) {
        self.reads_left = MAX_READS_PER_POLL;
    }

    /// Counters so far.
    pub fn counters(&self) -> SocketCounters {
        self.counters
    }
}

impl DatagramSocket for FilteredSocket {
    fn send_packet(&mut self, addr: &SocketAddr, payload: &[u8]) -> io::Result<usize> {
        let n = self.socket.send_to(payload, addr)?;
        self.counters.datagrams_out += 1;
        self.counters.bytes_out += n as u64;
        Ok(n)
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
            if n < LAMINAR_HEADER || self.buf[..2] != self.protocol_id {
                self.counters.dropped_malformed += 1;
                continue;
            }
            self.counters.datagrams_in += 1;
            self.counters.bytes_in += n as u64;
            buffer[..n].copy_from_slice(&self.buf[..n]);
            return Ok((&buffer[..n], from));
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
    use crate::net::Transport;
    use std::time::{Duration, Instant};

    #[test]
    fn protocol_id_matches_what_laminar_sends() {
        let sink = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sink.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut t = Transport::bind("127.0.0.1:0".parse().expect("literal")).expect("bind");
        let to = sink.local_addr().expect("addr");
        t.send(to, b"hello".to_vec(), false);
        t.send(to, b"hello".to_vec(), true);
        t.poll(Instant::now());
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let (n, _) = sink.recv_from(&mut buf).expect("laminar sent");
            assert!(n >= LAMINAR_HEADER);
            assert_eq!(buf[..2], laminar_protocol_id());
        }
    }

    #[test]
    fn strangers_junk_and_giants_are_counted_and_dropped() {
        let mut t = Transport::bind("127.0.0.1:0".parse().expect("literal")).expect("bind");
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
        assert_eq!((c.dropped_malformed, c.dropped_oversized), (1, 1));
        t.set_peer(Some(peer.local_addr().expect("addr")));
        stranger.send_to(&valid, me).expect("send");
        std::thread::sleep(Duration::from_millis(50));
        t.poll(Instant::now());
        assert_eq!(t.counters().dropped_foreign, 1);
        assert_eq!(t.counters().datagrams_in, 0);
    }
}
