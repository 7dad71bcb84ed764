//! The wire: message types, their encoding, and frame fragmentation — pure, no IO.

pub mod fragment;
pub mod history;
pub mod message;
pub mod parity;
pub mod wire;

pub use fragment::{fragment_frame, NackRequest, Reassembler, ReassemblyEvent};
pub use history::SendHistory;
pub use message::{
    AudioFrame, CodecId, Message, ParityFragment, ProbePacket, ProbeResult, StateSnapshot,
    VideoFragment,
};

/// Why a received datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The datagram ended before a field did.
    #[error("truncated datagram")]
    Truncated,
    /// The datagram does not start with our magic bytes.
    #[error("not a Prattle datagram")]
    Foreign,
    /// A protocol version we do not speak.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// A message kind we do not know.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// Bytes left over after the message.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// A field holds a value outside its allowed range.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
    /// The message would not fit in one datagram.
    #[error("message of {0} bytes exceeds the datagram limit")]
    Oversized(usize),
}
