//! Pictures and codecs: frames, the stamped test pattern, MJPEG — pure, no devices.

pub mod arrival;
pub mod codec;
pub mod frame;
pub mod h264;
pub mod jitter;
pub mod jpeg_rate;
pub mod ladder;
pub mod lip_sync;
pub mod loss_share;
pub mod mjpeg;
pub mod nudge;
pub mod openh264_encoder;
pub mod opus_codec;
pub mod pattern;
pub mod playout_margin;
pub mod priority;
pub mod probe;
pub mod rate;
pub mod refill;
pub mod scale;
pub mod sound_start;
pub mod sound_wait;
pub mod stamp;
pub mod stream_decoder;
pub mod timescale;
pub mod wake;
pub mod worker;
pub mod yuv;

pub use codec::{CodecError, EncodedFrame, VideoDecoder, VideoEncoder};
pub use frame::{PixelFormat, VideoFrame};
