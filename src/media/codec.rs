//! The seam every video codec fits behind.

use super::VideoFrame;
use crate::proto::CodecId;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The codec library failed.
    #[error("{codec:?} codec: {message}")]
    Backend {
        /// Which codec.
        codec: CodecId,
        /// What the library said.
        message: String,
    },
    /// The encoded bytes do not form a picture.
    #[error("undecodable frame")]
    Corrupt,
    /// The decoded picture does not have the size the sender announced.
    #[error("picture is {got_w}x{got_h}, expected {want_w}x{want_h}")]
    SizeMismatch {
        /// Decoded width.
        got_w: u32,
        /// Decoded height.
        got_h: u32,
        /// Announced width.
        want_w: u32,
        /// Announced height.
        want_h: u32,
    },
}

/// One encoded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Encoded bytes.
    pub data: Vec<u8>,
    /// Decodes without any earlier frame.
    pub keyframe: bool,
}

/// Turns pictures into bytes.
pub trait VideoEncoder: Send {
    /// Which codec this is.
    fn codec(&self) -> CodecId;
    /// Encodes one picture; `force_keyframe` asks for a frame that decodes on its own.
    fn encode(
        &mut self,
        frame: &VideoFrame,
        force_keyframe: bool,
    ) -> Result<EncodedFrame, CodecError>;
}

/// Turns bytes back into pictures.
pub trait VideoDecoder: Send {
    /// Which codec this is.
    fn codec(&self) -> CodecId;
    /// Decodes one frame; errors mean the caller should ask for a keyframe.
    fn decode(&mut self, data: &[u8]) -> Result<VideoFrame, CodecError>;
}

/// An encoder for `codec` with the given JPEG quality (1–100, MJPEG only).
pub fn new_encoder(codec: CodecId, quality: u8) -> Box<dyn VideoEncoder> {
    match codec {
        CodecId::Mjpeg | CodecId::H264 => Box::new(super::mjpeg::MjpegEncoder::new(quality)),
    }
}

/// A decoder for `codec`, or `None` when this build cannot decode it.
pub fn new_decoder(codec: CodecId) -> Option<Box<dyn VideoDecoder>> {
    match codec {
        CodecId::Mjpeg => Some(Box::new(super::mjpeg::MjpegDecoder)),
        CodecId::H264 => None,
    }
}
