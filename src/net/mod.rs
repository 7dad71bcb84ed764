//! The network door: our UDP socket under laminar, and laminar's configuration.

pub mod loop_wait;
pub mod pacer;
pub mod secure;
pub mod socket;
pub mod transport;

pub use socket::{FilteredSocket, SocketCounters};
pub use transport::Transport;

use std::net::SocketAddr;

/// Why the network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The port is taken by another program.
    #[error("port {port} is already in use: pick another with --port")]
    PortInUse {
        /// The port asked for.
        port: u16,
    },
    /// The bind address is not one of this machine's.
    #[error("cannot bind {addr}: {source}; give one of this machine's addresses with --bind")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}
