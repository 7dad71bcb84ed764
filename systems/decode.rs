//! Stage 5: complete frames become pictures of the remote participant.

use std::sync::Mutex;

use bevy_ecs::prelude::*;

use crate::components::{Clock, Incoming, KeyframeFeedback, Remote, VideoStream};
use crate::media::codec::new_decoder;
use crate::media::{CodecError, VideoDecoder};
use crate::proto::CodecId;
use crate::stats::CallStats;

/// The video decoder, made for whatever codec the peer sends.
#[derive(Resource)]
pub struct Decoder {
    /// The current decoder (behind a mutex only to be `Sync`).
    pub codec: Mutex<Option<Box<dyn VideoDecoder>>>,
    /// A reference is missing: frames that need it would show garbage, so only a keyframe
    /// is decoded until one comes.
    pub awaiting_keyframe: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            codec: Mutex::new(None),
            awaiting_keyframe: true,
        }
    }
}

fn decoder_for(
    slot: &mut Option<Box<dyn VideoDecoder>>,
    codec: CodecId,
) -> Option<&mut Box<dyn VideoDecoder>> {
    if slot.as_ref().map(|d| d.codec()) != Some(codec) {
        *slot = new_decoder(codec);
    }
    slot.as_mut()
}

/// Decodes every complete frame in order; the newest good one is shown.
pub fn decode(
    mut decoder: ResMut<Decoder>,
    mut incoming: ResMut<Incoming>,
    mut feedback: ResMut<KeyframeFeedback>,
    mut stats: ResMut<CallStats>,
    clock: Res<Clock>,
    mut remote: Single<&mut VideoStream, With<Remote>>,
) {
    let decoder = &mut *decoder;
    if std::mem::take(&mut feedback.new_stream) {
        // a new call: nothing decodes until its first keyframe
        decoder.awaiting_keyframe = true;
        if let Ok(slot) = decoder.codec.get_mut() {
            *slot = None;
        }
    }
    let Ok(slot) = decoder.codec.get_mut() else {
        return;
    };
    for frame in incoming.frames.drain(..) {
        let meta = frame.meta;
        let Some(dec) = decoder_for(slot, meta.codec) else {
            stats.decode_errors += 1;
            continue;
        };
        if frame.gap {
            decoder.awaiting_keyframe = true;
        }
        if decoder.awaiting_keyframe && !meta.keyframe {
            // a reference is missing: decoding would show garbage
            stats.frames_skipped += 1;
            remote.stalled = true;
            feedback.need_keyframe = Some(meta.frame_id);
            continue;
        }
        let result = dec.decode(&frame.data).and_then(|mut pic| {
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
                decoder.awaiting_keyframe = false;
                remote.set(pic, clock.now);
            }
            Err(CodecError::NoPicture) => {}
            Err(e) => {
                tracing::debug!("frame {} not decoded: {e}", meta.frame_id);
                stats.decode_errors += 1;
                decoder.awaiting_keyframe = true;
                remote.stalled = true;
                feedback.need_keyframe = Some(meta.frame_id);
            }
        }
    }
}
