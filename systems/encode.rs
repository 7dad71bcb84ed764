//! Stage 3: a fresh local picture is encoded for the peer, while in a call.
//!
//! Encoding runs on a worker thread: the tick hands the picture over and sends what comes
//! back, so a slow frame never delays the audio or the other stages.

use bevy_ecs::prelude::*;
use std::sync::Arc;

use crate::components::{CallInfo, Clock, KeyframeFeedback, Local, Outgoing, VideoStream};
use crate::media::codec::{new_encoder, EncoderSettings};
use crate::media::frame::trace_stage;
use crate::media::ladder::{Ladder, Step};
use crate::media::scale::resize_bgr;
use crate::media::wake::Wake;
use crate::media::worker::Worker;
use crate::media::{CodecError, EncodedFrame, VideoEncoder, VideoFrame};
use crate::proto::fragment::FrameMeta;
use crate::proto::CodecId;
use crate::session::CallState;
use crate::stats::CallStats;

/// A picture is not encoded while the video already queued for the link takes more than this
/// share of a frame interval to go out: sent, it would wait behind that queue and come late,
/// as would the next one behind it. Under a 1 Mbit/s cap a new encoder's 480p IDR with its
/// parity took 50 ms to go out and held the next picture up 24 ms (36 ms capture to screen
/// against 8-12 ms for the rest); without it the picture after comes on time.
const HOLD_BACK_SHARE: f64 = 0.5;

/// One picture for the encoder thread.
struct Job {
    /// The camera's picture, shared with the self-view (a 720p picture is 2.7 MB to copy).
    frame: Arc<VideoFrame>,
    /// The size to send: the picture is shrunk to it first.
    size: (u32, u32),
    force_keyframe: bool,
    bitrate: Option<u32>,
    /// Only ready the encoder with this picture ([`VideoEncoder::prepare`]); nothing is sent.
    prepare: bool,
}

/// What the encoder thread made of it.
struct Done {
    width: u32,
    height: u32,
    capture_us: u64,
    /// The job only readied the encoder: `result` holds no picture.
    prepared: bool,
    result: Result<EncodedFrame, CodecError>,
}

/// The video encoder thread and the frame counter.
#[derive(Resource)]
pub struct Encoder {
    settings: EncoderSettings,
    codec: CodecId,
    worker: Option<Worker<Job, Done>>,
    /// Id of the next frame.
    pub next_frame_id: u32,
    /// A keyframe was asked for and not yet handed to the encoder.
    force_pending: bool,
    /// The bitrate the encoder should have, once set by the peer's reports.
    bitrate: Option<u32>,
    /// `bitrate` changed and was not yet handed to the encoder.
    bitrate_pending: bool,
    /// The size and frame rate sent follow the bitrate.
    ladder: Ladder,
    /// Camera frames offered while connected (every `divisor`-th is sent).
    camera_frames: u64,
    /// The frame-rate divisor the encoder's bitrate was last scaled for.
    divisor: u32,
    /// Signalled when a picture is encoded.
    wake: Option<Wake>,
    /// Readying the encoder at the call's start (see [`prepare`]).
    readying: Readying,
}

/// Where readying the encoder at a call's start stands: once per encoder.
#[derive(Default)]
enum Readying {
    /// Not asked for: no bitrate probed while the video is held.
    #[default]
    Idle,
    /// The call's start probed the path's bitrate and its video is held: the encoder is readied
    /// with the next picture.
    Pending,
    /// The encoder is being readied; the picture that came meanwhile, which it codes next.
    InFlight(Option<Job>),
    /// Readied.
    Done,
}

fn start(encoder: Box<dyn VideoEncoder>, wake: Option<Wake>) -> Option<Worker<Job, Done>> {
    let mut encoder = encoder;
    // one picture at a time: a picture that finds the encoder busy is dropped, not queued
    Worker::spawn_waking("video-encode", 1, wake, move |job: Job| {
        if let Some(bps) = job.bitrate {
            if let Err(e) = encoder.set_target_bitrate(bps) {
                tracing::warn!("bitrate {bps}: {e}");
            }
        }
        let (w, h) = job.size;
        let mut code = |frame: &VideoFrame| {
            if job.prepare {
                encoder.prepare(frame).map(|()| EncodedFrame::default())
            } else {
                encoder.encode(frame, job.force_keyframe)
            }
        };
        let result = if (job.frame.width, job.frame.height) == (w, h) {
            code(&job.frame)
        } else {
            resize_bgr(&job.frame, w, h).and_then(|small| code(&small))
        };
        Done {
            width: w,
            height: h,
            capture_us: job.frame.capture_us,
            prepared: job.prepare,
            result,
        }
    })
    .map_err(|e| tracing::warn!("video encoder thread: {e}"))
    .ok()
}

impl Encoder {
    /// Makes the encoder described by `settings` and its thread, which signals `wake` when a
    /// picture is done.
    pub fn new(settings: EncoderSettings, wake: Option<Wake>) -> Result<Self, CodecError> {
        let codec = new_encoder(settings)?;
        Ok(Self {
            settings,
            codec: codec.codec(),
            worker: start(codec, wake.clone()),
            wake,
            next_frame_id: 0,
            force_pending: false,
            bitrate: None,
            bitrate_pending: false,
            ladder: Ladder::new(
                (settings.width, settings.height),
                settings.fps,
                settings.codec,
            ),
            camera_frames: 0,
            divisor: 1,
            readying: Readying::Idle,
        })
    }

    /// The bitrate handed to the codec: its rate control budgets each frame at the camera's
    /// frame rate, so when only every `divisor`-th frame goes out it gets that much more.
    fn encoder_bitrate(&self) -> Option<u32> {
        self.bitrate.map(|b| b.saturating_mul(self.divisor))
    }

    fn worker(&mut self) -> Option<&mut Worker<Job, Done>> {
        if self.worker.as_ref().is_none_or(Worker::is_dead) {
            tracing::warn!("video encoder stopped; starting a new one");
            let mut settings = self.settings;
            if let Some(bps) = self.encoder_bitrate() {
                settings.bitrate = bps;
            }
            self.worker = new_encoder(settings)
                .map_err(|e| tracing::warn!("video encoder: {e}"))
                .ok()
                .and_then(|e| start(e, self.wake.clone()));
            // the peer's decoder needs a fresh start
            self.force_pending = true;
            self.readying = Readying::Idle;
        }
        self.worker.as_mut()
    }
}

/// Hands the local picture to the encoder when it is new and a peer is there to see it;
/// sends what the encoder finished.
pub fn encode(
    mut encoder: ResMut<Encoder>,
    clock: Res<Clock>,
    call: Res<CallInfo>,
    mut feedback: ResMut<KeyframeFeedback>,
    local: Single<&VideoStream, With<Local>>,
    mut outgoing: ResMut<Outgoing>,
    mut stats: ResMut<CallStats>,
) {
    let encoder = &mut *encoder;
    encoder.force_pending |= std::mem::take(&mut feedback.send_keyframe);
    let stepped = match feedback.target_bitrate.take() {
        Some(bps) => {
            encoder.bitrate = Some(bps);
            encoder.bitrate_pending = true;
            if std::mem::take(&mut feedback.bitrate_probed) {
                if matches!(encoder.readying, Readying::Idle) {
                    encoder.readying = Readying::Pending;
                }
                encoder.ladder.on_probed_bitrate(bps, clock.now)
            } else {
                encoder.ladder.on_bitrate(bps, clock.now)
            }
        }
        None => encoder.ladder.poll(clock.now),
    };
    if let Some(Step { size: (w, h), .. }) = stepped {
        let fps = encoder.ladder.fps();
        let kbps = encoder.bitrate.unwrap_or(0) / 1000;
        tracing::info!("sending {w}x{h} at {fps:.0} fps, {kbps} kbit/s");
    }
    let step = encoder.ladder.step();
    if step.divisor != encoder.divisor {
        encoder.divisor = step.divisor;
        encoder.bitrate_pending = true;
    }
    (stats.video_width, stats.video_height) = step.size;
    stats.video_fps = encoder.ladder.fps();
    let connected = call.state == CallState::Connected;
    prepare(encoder, connected && feedback.hold_video, &local, step.size);
    let sending = connected && !feedback.hold_video;
    if sending && local.fresh && local.frame.is_some() {
        encoder.camera_frames += 1;
    }
    let this_one = encoder
        .camera_frames
        .is_multiple_of(u64::from(step.divisor.max(1)));
    let new_picture = local
        .frame
        .as_ref()
        .filter(|_| sending && local.fresh && this_one);
    let queued = stats.pacer_queue_ms > HOLD_BACK_SHARE * 1000.0 / stats.video_fps.max(1.0);
    if new_picture.is_some() && queued {
        stats.frames_held_back += 1;
    }
    if let Some(frame) = new_picture.filter(|_| !queued) {
        let job = Job {
            frame: Arc::clone(frame),
            size: step.size,
            force_keyframe: encoder.force_pending,
            bitrate: encoder
                .encoder_bitrate()
                .filter(|_| encoder.bitrate_pending),
            prepare: false,
        };
        let capture_us = job.frame.capture_us;
        let submitted = encoder.worker().map(|w| {
            trace_stage("encode_in", capture_us);
            w.submit(job)
        });
        let taken = match submitted {
            Some(Ok(())) => true,
            Some(Err(job)) => match &mut encoder.readying {
                // the encoder is still readying itself: the picture goes to it next (a newer
                // one in its place)
                Readying::InFlight(next) => {
                    if next.replace(job).is_some() {
                        stats.frames_not_encoded += 1;
                    }
                    true
                }
                _ => {
                    stats.frames_not_encoded += 1;
                    false
                }
            },
            None => false,
        };
        if taken {
            encoder.force_pending = false;
            encoder.bitrate_pending = false;
        }
    }
    let codec = encoder.codec;
    let Some(w) = encoder.worker.as_mut() else {
        return;
    };
    while let Some(done) = w.try_next() {
        if done.prepared {
            if let Err(e) = done.result {
                tracing::warn!("readying the encoder: {e}");
            }
            let readying = std::mem::replace(&mut encoder.readying, Readying::Done);
            if let Readying::InFlight(Some(job)) = readying {
                if w.submit(job).is_err() {
                    stats.frames_not_encoded += 1;
                }
            }
            continue;
        }
        match done.result {
            // a frame finished after the call ended is not sent
            Ok(enc) if connected => {
                trace_stage("encode_out", done.capture_us);
                let meta = FrameMeta {
                    frame_id: encoder.next_frame_id,
                    keyframe: enc.keyframe,
                    codec,
                    width: done.width as u16,
                    height: done.height as u16,
                    capture_us: done.capture_us,
                };
                encoder.next_frame_id = encoder.next_frame_id.wrapping_add(1);
                outgoing.frames.push((meta, enc.data));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("encode failed: {e}"),
        }
    }
}

/// While the call's start holds its video (the path is probed) and the probe has set the
/// bitrate, readies the encoder with the camera's picture: H.264 then searches its first
/// keyframe's quantiser now rather than on the call's first picture, which it then codes at
/// once (480p: 8-11 ms sooner on screen, and so the pictures queued behind it on a slow path).
fn prepare(encoder: &mut Encoder, held: bool, local: &VideoStream, size: (u32, u32)) {
    if !matches!(encoder.readying, Readying::Pending) {
        return;
    }
    if !held {
        encoder.readying = Readying::Idle;
        return;
    }
    let Some(frame) = local.frame.as_ref() else {
        return;
    };
    let job = Job {
        frame: Arc::clone(frame),
        size,
        force_keyframe: false,
        bitrate: encoder
            .encoder_bitrate()
            .filter(|_| encoder.bitrate_pending),
        prepare: true,
    };
    if let Some(w) = encoder.worker() {
        // busy: the next tick tries again
        if w.submit(job).is_ok() {
            encoder.bitrate_pending = false;
            encoder.readying = Readying::InFlight(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::Clock;
    use crate::media::pattern::TestPattern;
    use std::time::{Duration, Instant};

    fn world() -> World {
        let mut world = World::new();
        let settings = EncoderSettings {
            codec: CodecId::H264,
            width: 320,
            height: 240,
            fps: 30,
            bitrate: 300_000,
            quality: 80,
        };
        world.insert_resource(Encoder::new(settings, None).expect("encoder"));
        let now = Instant::now();
        world.insert_resource(Clock { now, start: now });
        world.insert_resource(CallInfo {
            state: CallState::Connected,
            peer: None,
            dial: None,
            reachable_at: String::new(),
            sas: None,
            code: None,
            warning: None,
            fatal: None,
        });
        world.insert_resource(KeyframeFeedback::default());
        world.insert_resource(Outgoing::default());
        world.insert_resource(CallStats::default());
        world.spawn((Local, VideoStream::default()));
        world
    }

    /// Puts a new picture in the self-view, as the capture stage does.
    fn capture(world: &mut World, t: u32) {
        let frame = TestPattern::new(320, 240).render(t, u64::from(t) * 33_333);
        let mut q = world.query_filtered::<&mut VideoStream, With<Local>>();
        let mut stream = q.single_mut(world).expect("self-view");
        stream.frame = Some(Arc::new(frame));
        stream.fresh = true;
    }

    /// The start-of-call probe sets the bitrate to `bps`, as the network stage does.
    fn probed(world: &mut World, bps: u32) {
        let mut feedback = world.resource_mut::<KeyframeFeedback>();
        feedback.target_bitrate = Some(bps);
        feedback.bitrate_probed = true;
    }

    /// Runs the stage until the encoder's thread has handed back what it was given; how many
    /// frames went out.
    fn run_until_sent(world: &mut World, schedule: &mut Schedule) -> usize {
        run_until_idle(world, schedule).len()
    }

    /// Runs the stage until the encoder's thread has handed back what it was given; the frames
    /// that went out.
    fn run_until_idle(world: &mut World, schedule: &mut Schedule) -> Vec<(FrameMeta, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        schedule.run(world);
        // the picture is no longer new once the stages have seen it
        let mut q = world.query_filtered::<&mut VideoStream, With<Local>>();
        q.single_mut(world).expect("self-view").fresh = false;
        while world
            .resource::<Encoder>()
            .worker
            .as_ref()
            .is_some_and(|w| w.in_flight() > 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
            schedule.run(world);
        }
        std::mem::take(&mut world.resource_mut::<Outgoing>().frames)
    }

    #[test]
    fn a_picture_waits_out_a_queue_for_the_link_that_would_hold_it_up() {
        let mut world = world();
        let mut schedule = Schedule::default();
        schedule.add_systems(encode);
        let mut sent = Vec::new();
        // at 30 fps a picture is held back while what is queued takes over 16.7 ms to go
        for (t, queued_ms) in [(0, 0.0), (1, 40.0), (2, 16.0), (3, 17.0), (4, 0.0)] {
            world.resource_mut::<CallStats>().pacer_queue_ms = queued_ms;
            capture(&mut world, t);
            sent.push(run_until_sent(&mut world, &mut schedule));
            world.resource_mut::<Clock>().now += Duration::from_millis(33);
        }
        assert_eq!(sent, [1, 0, 1, 0, 1]);
        let stats = world.resource::<CallStats>();
        assert_eq!((stats.frames_held_back, stats.frames_not_encoded), (2, 0));
    }

    #[test]
    fn while_the_call_start_holds_the_video_the_encoder_is_readied_and_nothing_is_sent() {
        let mut world = world();
        let mut schedule = Schedule::default();
        schedule.add_systems(encode);
        // the path is probed: video held; the probe sets the bitrate
        world.resource_mut::<KeyframeFeedback>().hold_video = true;
        capture(&mut world, 0);
        assert_eq!(run_until_sent(&mut world, &mut schedule), 0);
        assert!(
            matches!(world.resource::<Encoder>().readying, Readying::Idle),
            "no bitrate probed yet"
        );
        probed(&mut world, 400_000);
        capture(&mut world, 1);
        assert_eq!(
            run_until_sent(&mut world, &mut schedule),
            0,
            "readied, not sent"
        );
        let encoder = world.resource::<Encoder>();
        assert!(matches!(encoder.readying, Readying::Done) && !encoder.bitrate_pending);
        // a later probe (a call resumed) does not ready the same encoder again
        probed(&mut world, 500_000);
        schedule.run(&mut world);
        assert!(matches!(
            world.resource::<Encoder>().readying,
            Readying::Done
        ));
        // the probe is over: the first picture goes, a keyframe
        world.resource_mut::<KeyframeFeedback>().hold_video = false;
        capture(&mut world, 2);
        let frames = run_until_idle(&mut world, &mut schedule);
        assert!(frames.len() == 1 && frames[0].0.keyframe);
        let stats = world.resource::<CallStats>();
        assert_eq!((stats.frames_held_back, stats.frames_not_encoded), (0, 0));
    }

    #[test]
    fn a_picture_that_comes_while_the_encoder_is_readied_goes_next_not_dropped() {
        let mut world = world();
        let mut schedule = Schedule::default();
        schedule.add_systems(encode);
        world.resource_mut::<KeyframeFeedback>().hold_video = true;
        probed(&mut world, 400_000);
        capture(&mut world, 0);
        schedule.run(&mut world);
        assert!(matches!(
            world.resource::<Encoder>().readying,
            Readying::InFlight(None)
        ));
        // the probe is over before the encoder is ready
        world.resource_mut::<KeyframeFeedback>().hold_video = false;
        capture(&mut world, 1);
        let frames = run_until_idle(&mut world, &mut schedule);
        assert!(frames.len() == 1 && frames[0].0.keyframe);
        assert_eq!(frames[0].0.capture_us, 33_333);
        assert_eq!(world.resource::<CallStats>().frames_not_encoded, 0);
        assert!(matches!(
            world.resource::<Encoder>().readying,
            Readying::Done
        ));
    }
}
