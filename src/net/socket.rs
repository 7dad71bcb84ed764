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
}

/// A non-blocking UDP socket with a peer filter, for laminar's `ConnectionManager`.
#[derive(Debug)]
pub struct FilteredSocket {
    socket: UdpSocket,
    peer: Option<SocketAddr>,
    reads_left: usize,
    buf: Box<[u8; 2048]>,
    counters: SocketCounters,
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
