//! The ECS vocabulary: participants of the call and their streams, and the resources the
//! stages hand to each other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bevy_ecs::prelude::*;

use crate::media::lip_sync::LipSync;
use crate::media::VideoFrame;
use crate::proto::fragment::{CompleteFrame, FrameMeta};
use crate::session::CallState;

/// Someone in the call.
#[derive(Component, Debug, Clone)]
pub struct Participant {
    /// How they are named on screen.
    pub name: String,
}

/// The person at this machine.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct Local;

/// The person at the other end.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct Remote;

/// A participant's newest picture.
#[derive(Component, Debug, Default)]
pub struct VideoStream {
    /// The picture to show, shared (not copied) with the encoder and the window thread.
    pub frame: Option<Arc<VideoFrame>>,
    /// `frame` changed since the renderer last looked.
    pub fresh: bool,
    /// When `frame` last changed.
    pub updated_at: Option<Instant>,
    /// The stream broke (a frame was lost or undecodable): `frame` is the last good picture,
    /// shown marked as stalled until a keyframe arrives.
    pub stalled: bool,
}

impl VideoStream {
    /// Replaces the picture.
    pub fn set(&mut self, frame: VideoFrame, now: Instant) {
        self.frame = Some(Arc::new(frame));
        self.fresh = true;
        self.updated_at = Some(now);
        self.stalled = false;
    }
    /// Forgets the picture, so that nothing stale is shown.
    pub fn clear(&mut self) {
        self.frame = None;
        self.fresh = true;
        self.updated_at = None;
        self.stalled = false;
    }
}

/// The participant's camera is off (or not delivering).
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct CameraOff;

/// The participant's microphone is muted.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct Muted;

/// The time of this tick.
#[derive(Resource, Debug, Clone, Copy)]
pub struct Clock {
    /// Now.
    pub now: Instant,
    /// When the app started.
    pub start: Instant,
}

/// When the call loop runs next at the latest. Each tick starts with it
/// [`crate::app::IDLE_TICK`] ahead; a system with something due sooner (a paced datagram, a
/// probe's datagram, a resend request, the speaker's next frame, a held picture) brings it
/// forward. Threads with work for the loop (camera, codecs, datagrams, microphone) wake it
/// before that.
#[derive(Resource, Debug, Clone, Copy)]
pub struct NextTick(pub Instant);

impl NextTick {
    /// The loop must run again by `t`.
    pub fn by(&mut self, t: Instant) {
        self.0 = self.0.min(t);
    }

    /// The loop must run again by `t`, if anything is due.
    pub fn by_opt(&mut self, t: Option<Instant>) {
        if let Some(t) = t {
            self.by(t);
        }
    }
}

/// What the user asked for through keys.
#[derive(Resource, Debug)]
pub struct Control {
    /// End the call and exit.
    pub quit: bool,
    /// The user wants the camera on.
    pub camera_wanted: bool,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            quit: false,
            camera_wanted: true,
        }
    }
}

/// Where the call stands, for every stage to read.
#[derive(Resource, Debug, Clone)]
pub struct CallInfo {
    /// The session's state.
    pub state: CallState,
    /// The peer, in a call.
    pub peer: Option<SocketAddr>,
    /// Who we dial, if anyone.
    pub dial: Option<SocketAddr>,
    /// Where peers reach us, as shown to the user.
    pub reachable_at: String,
    /// The words both sides show for this session, to compare aloud.
    pub sas: Option<String>,
    /// The one-time pairing code this side shows while waiting (code mode).
    pub code: Option<String>,
    /// A security warning to show until the call changes (a changed key, a wrong code).
    pub warning: Option<String>,
    /// Why the call cannot go on; the app exits with it.
    pub fatal: Option<String>,
}

/// Encoded frames waiting to be sent.
#[derive(Resource, Debug, Default)]
pub struct Outgoing {
    /// In capture order.
    pub frames: Vec<(FrameMeta, Vec<u8>)>,
}

/// Complete frames received and waiting to be decoded.
#[derive(Resource, Debug, Default)]
pub struct Incoming {
    /// In frame order.
    pub frames: Vec<CompleteFrame>,
}

/// The peer's pictures, held back to keep step with its sound (see [`LipSync`]).
#[derive(Resource, Debug)]
pub struct VideoSync(pub LipSync<VideoFrame>);

/// Requests between the decoder and the encoder, carried by the network.
#[derive(Resource, Debug, Default)]
pub struct KeyframeFeedback {
    /// The peer asked us for a keyframe.
    pub send_keyframe: bool,
    /// We could not decode this frame of the peer's and need a keyframe.
    pub need_keyframe: Option<u32>,
    /// A new call started: the decoder starts over.
    pub new_stream: bool,
    /// The bitrate the encoder should now aim at.
    pub target_bitrate: Option<u32>,
    /// The target comes from a probe of the path: the picture may grow to it at once.
    pub bitrate_probed: bool,
    /// The path is being probed at the start of a call: no picture is encoded until its rate
    /// is known, so that none queues behind a burst, and the first keyframe has its size.
    pub hold_video: bool,
}
