//! Stage 3: a fresh local picture is encoded for the peer, while in a call.

use std::sync::Mutex;

use bevy_ecs::prelude::*;

use crate::components::{CallInfo, KeyframeFeedback, Local, Outgoing, VideoStream};
use crate::media::VideoEncoder;
use crate::proto::fragment::FrameMeta;
use crate::session::CallState;

/// The video encoder and the frame counter.
#[derive(Resource)]
pub struct Encoder {
    /// The codec (behind a mutex only to be `Sync`; it is never contended).
    pub codec: Mutex<Box<dyn VideoEncoder>>,
    /// Id of the next frame.
    pub next_frame_id: u32,
}

impl Encoder {
    /// Wraps an encoder.
    pub fn new(codec: Box<dyn VideoEncoder>) -> Self {
        Self {
            codec: Mutex::new(codec),
            next_frame_id: 0,
        }
    }
}

/// Encodes the local picture when it is new and a peer is there to see it.
pub fn encode(
    mut encoder: ResMut<Encoder>,
    call: Res<CallInfo>,
    mut feedback: ResMut<KeyframeFeedback>,
    local: Single<&VideoStream, With<Local>>,
    mut outgoing: ResMut<Outgoing>,
) {
    if call.state != CallState::Connected || !local.fresh {
        return;
    }
    let Some(frame) = &local.frame else { return };
    let force = std::mem::take(&mut feedback.send_keyframe);
    let encoder = &mut *encoder;
    let Ok(codec) = encoder.codec.get_mut() else {
        return;
    };
    if let Some(bps) = feedback.target_bitrate.take() {
        if let Err(e) = codec.set_target_bitrate(bps) {
            tracing::warn!("bitrate {bps}: {e}");
        }
    }
    match codec.encode(frame, force) {
        Ok(enc) => {
            let meta = FrameMeta {
                frame_id: encoder.next_frame_id,
                keyframe: enc.keyframe,
                codec: codec.codec(),
                width: frame.width as u16,
                height: frame.height as u16,
                capture_us: frame.capture_us,
            };
            encoder.next_frame_id = encoder.next_frame_id.wrapping_add(1);
            outgoing.frames.push((meta, enc.data));
        }
        Err(e) => tracing::warn!("encode failed: {e}"),
    }
}
