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
    /// The decoder took the bytes but has no picture to show yet (e.g. parameter sets only).
    #[error("no picture yet")]
    NoPicture,
    /// The picture or setting handed to the codec cannot be used (odd size, wrong length, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// Changes the target bitrate; codecs without one ignore it.
    fn set_target_bitrate(&mut self, _bps: u32) -> Result<(), CodecError> {
        Ok(())
    }
    /// Readies the encoder for its first picture, like `frame`, while nothing is sent yet
    /// (the call's start, while its path is probed), so that the first picture then codes at
    /// once; codecs with nothing to ready ignore it.
    fn prepare(&mut self, _frame: &VideoFrame) -> Result<(), CodecError> {
        Ok(())
    }
}

/// Turns bytes back into pictures.
pub trait VideoDecoder: Send {
    /// Which codec this is.
    fn codec(&self) -> CodecId;
    /// Decodes one frame to BGR; errors mean the caller should ask for a keyframe.
    fn decode(&mut self, data: &[u8]) -> Result<VideoFrame, CodecError>;
    /// Decodes one frame to the codec's own pixel format (I420 for H.264), which a renderer
    /// uploads without converting; by default the same as `decode`.
    fn decode_native(&mut self, data: &[u8]) -> Result<VideoFrame, CodecError> {
        self.decode(data)
    }
}

/// What an encoder is made for.
#[derive(Debug, Clone, Copy)]
pub struct EncoderSettings {
    /// Which codec.
    pub codec: CodecId,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target bitrate.
    pub bitrate: u32,
    /// Highest JPEG quality 1–100 (MJPEG; lower when the bitrate needs it).
    pub quality: u8,
}

/// An encoder for the settings.
pub fn new_encoder(s: EncoderSettings) -> Result<Box<dyn VideoEncoder>, CodecError> {
    Ok(match s.codec {
        CodecId::Mjpeg => Box::new(super::mjpeg::MjpegEncoder::new(s.quality, s.fps)),
        CodecId::H264 => Box::new(super::h264::H264Encoder::new(
            s.width,
            s.height,
            s.fps as f32,
            s.bitrate,
        )?),
    })
}

/// A decoder for `codec`, or `None` when this build cannot decode it.
pub fn new_decoder(codec: CodecId) -> Option<Box<dyn VideoDecoder>> {
    match codec {
        CodecId::Mjpeg => Some(Box::new(super::mjpeg::MjpegDecoder)),
        CodecId::H264 => super::h264::H264Decoder::new()
            .ok()
            .map(|d| Box::new(d) as Box<dyn VideoDecoder>),
    }
}
