//! The receiving side of one video stream: complete frames in, pictures (or the reason there
//! is none) out. Sans-IO; the decode stage runs it on a worker thread.

use super::codec::{new_decoder, new_encoder, EncoderSettings};
use super::pattern::TestPattern;
use super::{CodecError, VideoDecoder, VideoFrame};
use crate::proto::fragment::CompleteFrame;
use crate::proto::CodecId;

/// What became of one complete frame.
#[derive(Debug)]
pub enum DecodeOutcome {
    /// A picture to show.
    Picture(VideoFrame),
    /// A reference is missing, so the frame was not decoded (it would show garbage): a
    /// keyframe is needed.
    Skipped {
        /// The frame.
        frame_id: u32,
    },
    /// The frame did not decode (or decoded to the wrong size): a keyframe is needed.
    Failed {
        /// The frame.
        frame_id: u32,
    },
    /// The decoder took the frame without a picture to show (parameter sets only).
    NoPicture,
}

/// Pictures of the warm-up stream: a keyframe and predicted pictures after it, which use
/// the reference buffers the keyframe does not.
const WARM_UP_PICTURES: u32 = 3;

/// Decodes one stream in order, never handing out a picture whose reference is missing.
pub struct StreamDecoder {
    codec: Option<Box<dyn VideoDecoder>>,
    awaiting_keyframe: bool,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self {
            codec: None,
            awaiting_keyframe: true,
        }
    }
}

impl StreamDecoder {
    /// A new stream: nothing decodes until its first keyframe. The codec is kept: the
    /// keyframe starts it afresh, and its picture buffers stay allocated.
    pub fn reset(&mut self) {
        self.awaiting_keyframe = true;
    }

    /// Makes the `codec` decoder ready for `width`×`height` pictures before any arrives: a
    /// fresh H.264 decoder allocates its pictures on its first keyframe, and at 1280×720 that
    /// took it 4.7–5.2 ms against 1.6 ms once warmed on a stream of that size. A short stream
    /// of the test pattern goes through it; the real stream still waits for its keyframe.
    pub fn warm_up(&mut self, codec: CodecId, width: u32, height: u32) {
        if codec != CodecId::H264 {
            return;
        }
        let settings = EncoderSettings {
            codec,
            width,
            height,
            fps: 30,
            bitrate: 1_000_000,
            quality: 75,
        };
        let mut enc = match new_encoder(settings) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!("decoder warm-up: {e}");
                return;
            }
        };
        let mut pattern = TestPattern::new(width, height);
        for i in 0..WARM_UP_PICTURES {
            let Ok(frame) = enc.encode(&pattern.render(i, 0), false) else {
                break;
            };
            let Some(dec) = self.decoder_for(codec) else {
                break;
            };
            if let Err(e) = dec.decode_native(&frame.data) {
                tracing::debug!("decoder warm-up: {e}");
                break;
            }
        }
        self.awaiting_keyframe = true;
    }

    /// Nothing but a keyframe will decode now.
    pub fn awaiting_keyframe(&self) -> bool {
        self.awaiting_keyframe
    }

    fn decoder_for(&mut self, codec: CodecId) -> Option<&mut Box<dyn VideoDecoder>> {
        if self.codec.as_ref().map(|d| d.codec()) != Some(codec) {
            self.codec = new_decoder(codec);
        }
        self.codec.as_mut()
    }

    /// Decodes the next complete frame.
    pub fn decode(&mut self, frame: &CompleteFrame) -> DecodeOutcome {
        let meta = frame.meta;
        if frame.gap {
            self.awaiting_keyframe = true;
        }
        if self.awaiting_keyframe && !meta.keyframe {
            return DecodeOutcome::Skipped {
                frame_id: meta.frame_id,
            };
        }
        let Some(dec) = self.decoder_for(meta.codec) else {
            self.awaiting_keyframe = true;
            return DecodeOutcome::Failed {
                frame_id: meta.frame_id,
            };
        };
        let result = dec.decode_native(&frame.data).and_then(|mut pic| {
            if pic.width != u32::from(meta.width) || pic.height != u32::from(meta.height) {
                return Err(CodecError::SizeMismatch {
                    got_w: pic.width,
                    got_h: pic.height,
                    want_w: meta.width.into(),
                    want_h: meta.height.into(),
                });
            }
            pic.capture_us = meta.capture_us;
            Ok(pic)
        });
        match result {
            Ok(pic) => {
                self.awaiting_keyframe = false;
                DecodeOutcome::Picture(pic)
            }
            Err(CodecError::NoPicture) => DecodeOutcome::NoPicture,
            Err(e) => {
                tracing::debug!("frame {} not decoded: {e}", meta.frame_id);
                self.awaiting_keyframe = true;
                DecodeOutcome::Failed {
                    frame_id: meta.frame_id,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::fragment::FrameMeta;

    fn frames(n: u32) -> Vec<CompleteFrame> {
        let mut enc = new_encoder(EncoderSettings {
            codec: CodecId::H264,
            width: 160,
            height: 120,
            fps: 30,
            bitrate: 300_000,
            quality: 75,
        })
        .expect("encoder");
        let mut pattern = TestPattern::new(160, 120);
        (0..n)
            .map(|i| {
                let e = enc
                    .encode(&pattern.render(i, u64::from(i)), false)
                    .expect("encode");
                CompleteFrame {
                    meta: FrameMeta {
                        frame_id: i,
                        keyframe: e.keyframe,
                        codec: CodecId::H264,
                        width: 160,
                        height: 120,
                        capture_us: u64::from(i),
                    },
                    data: e.data,
                    gap: false,
                }
            })
            .collect()
    }

    #[test]
    fn a_gap_skips_until_the_next_keyframe() {
        let mut f = frames(4);
        assert!(f[0].meta.keyframe && !f[2].meta.keyframe);
        let mut d = StreamDecoder::default();
        assert!(matches!(d.decode(&f[0]), DecodeOutcome::Picture(p) if p.capture_us == 0));
        assert!(matches!(d.decode(&f[1]), DecodeOutcome::Picture(_)));
        f[3].gap = true;
        assert!(matches!(
            d.decode(&f[3]),
            DecodeOutcome::Skipped { frame_id: 3 }
        ));
        assert!(d.awaiting_keyframe());
        assert!(matches!(d.decode(&f[0]), DecodeOutcome::Picture(_)));
        assert!(!d.awaiting_keyframe());
    }

    #[test]
    fn a_warmed_decoder_still_waits_for_the_streams_keyframe() {
        // the warm-up's pictures are references a predicted picture of the real stream must
        // never be decoded against
        let f = frames(3);
        let mut d = StreamDecoder::default();
        d.warm_up(CodecId::H264, 160, 120);
        assert!(d.codec.is_some(), "the decoder is made");
        assert!(d.awaiting_keyframe());
        assert!(matches!(
            d.decode(&f[1]),
            DecodeOutcome::Skipped { frame_id: 1 }
        ));
        for (i, frame) in f.iter().enumerate() {
            let DecodeOutcome::Picture(p) = d.decode(frame) else {
                panic!("picture {i} not decoded");
            };
            assert_eq!((p.width, p.height, p.capture_us), (160, 120, i as u64));
        }
        // a new stream waits for its own keyframe again, on the same decoder
        d.reset();
        assert!(d.codec.is_some());
        assert!(matches!(
            d.decode(&f[2]),
            DecodeOutcome::Skipped { frame_id: 2 }
        ));
        // MJPEG has nothing to warm
        let mut m = StreamDecoder::default();
        m.warm_up(CodecId::Mjpeg, 160, 120);
        assert!(m.codec.is_none());
    }

    #[test]
    fn garbage_and_wrong_sizes_fail_and_wait_for_a_keyframe() {
        let f = frames(2);
        let mut d = StreamDecoder::default();
        let mut lying = f[0].clone();
        lying.meta.width = 320;
        assert!(matches!(
            d.decode(&lying),
            DecodeOutcome::Failed { frame_id: 0 }
        ));
        assert!(d.awaiting_keyframe());
        let mut junk = f[0].clone();
        junk.data = vec![0, 0, 0, 1, 0x65, 0xff, 0x13, 0x37];
        assert!(!matches!(d.decode(&junk), DecodeOutcome::Picture(_)));
        d.reset();
        assert!(matches!(d.decode(&f[0]), DecodeOutcome::Picture(_)));
        assert!(matches!(d.decode(&f[1]), DecodeOutcome::Picture(_)));
    }
}
