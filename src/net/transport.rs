//! laminar's `ConnectionManager` over our [`FilteredSocket`], reduced to what a call needs:
//! send a message reliably or not, poll, and take what arrived.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use laminar::{Config, ConnectionManager, Packet, SocketEvent, VirtualConnection};

use super::secure::{SecureEndpoint, SecureEvent, SecureStats};
use super::{FilteredSocket, NetError, SocketCounters};

/// laminar's configuration for a call.
pub fn laminar_config() -> Config {
    Config {
        // without heartbeats a muted, camera-off call would time out after 5 s
        heartbeat_interval: Some(Duration::from_millis(500)),
        idle_connection_timeout: Duration::from_secs(5),
        // each unestablished connection costs memory: let few strangers knock at once
        max_unestablished_connections: 4,
        ..Config::default()
    }
}

/// The call's transport.
pub struct Transport {
    manager: ConnectionManager<FilteredSocket, VirtualConnection>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("socket", self.manager.socket())
            .finish()
    }
}

impl Transport {
    /// Binds `addr`; `secure` encrypts and authenticates every datagram.
    pub fn bind(addr: SocketAddr, secure: SecureEndpoint) -> Result<Self, NetError> {
        let socket = FilteredSocket::bind(addr, secure)?;
        Ok(Self {
            manager: ConnectionManager::new(socket, laminar_config()),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        use laminar::DatagramSocket;
        self.manager.socket().local_addr().ok()
    }

    /// The socket's descriptor, to wait on (see [`super::loop_wait`]).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.manager.socket().raw_fd()
    }

    /// Restricts arrivals to `peer` (during a call) or opens them to all (`None`).
    pub fn set_peer(&mut self, peer: Option<SocketAddr>) {
        self.manager.socket_mut().set_peer(peer);
    }

    /// Queues a message; control goes reliable (laminar resends it), media unreliable.
    pub fn send(&mut self, to: SocketAddr, payload: Vec<u8>, reliable: bool) {
        let packet = if reliable {
            // unordered: ordered delivery would hold every newer message behind a lost one
            // until laminar's late resend; our messages carry their own order
            Packet::reliable_unordered(to, payload)
        } else {
            Packet::unreliable(to, payload)
        };
        // the receiver lives in the manager we own: sending cannot fail
        let _ = self.manager.event_sender().send(packet);
    }

    /// Sends what is queued and reads what arrived. Does not block.
    pub fn poll(&mut self, now: Instant) {
        self.manager.socket_mut().begin_poll(now);
        self.manager.manual_poll(now);
        self.manager.socket_mut().flush_secure();
    }

    /// The next secure-channel event.
    pub fn poll_secure_event(&mut self) -> Option<SecureEvent> {
        self.manager.socket_mut().poll_event()
    }

    /// The secure channel.
    pub fn secure_mut(&mut self) -> &mut SecureEndpoint {
        self.manager.socket_mut().secure_mut()
    }

    /// The secure channel's counters.
    pub fn secure_stats(&self) -> SecureStats {
        self.manager.socket().secure_stats()
    }

    /// The next datagram payload received, with its sender.
    pub fn recv(&mut self) -> Option<(SocketAddr, Box<[u8]>)> {
        loop {
            match self.manager.event_receiver().try_recv().ok()? {
                SocketEvent::Packet(p) => {
                    let addr = p.addr();
                    return Some((addr, p.payload().into()));
                }
                other => tracing::trace!(?other, "laminar event"),
            }
        }
    }

    /// Socket counters.
    pub fn counters(&self) -> SocketCounters {
        self.manager.socket().counters()
    }
}
