//! Stage 5: complete frames become pictures of the remote participant.
//!
//! Decoding runs on a worker thread: the tick hands frames over and collects pictures, so a
//! slow frame never delays the audio or the other stages.

use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;

use crate::components::{
    CallInfo, Clock, Incoming, KeyframeFeedback, NextTick, Remote, VideoStream, VideoSync,
};
use crate::media::frame::{trace_stage, unix_micros};
use crate::media::stream_decoder::{DecodeOutcome, StreamDecoder};
use crate::media::wake::Wake;
use crate::media::worker::Worker;
use crate::media::VideoFrame;
use crate::proto::fragment::CompleteFrame;
use crate::proto::CodecId;
use crate::session::CallState;
use crate::stats::CallStats;

/// Frames handed to the decoder and not yet collected, at most.
const DECODE_QUEUE: usize = 8;

enum Job {
    /// Before any call: get the decoder ready for pictures of this codec and size.
    WarmUp(CodecId, u32, u32),
    /// A new call: forget the old stream.
    Reset,
    Frame(CompleteFrame),
}

/// Jobs and outcomes carry the generation they belong to.
type DecodeWorker = Worker<(u64, Job), (u64, DecodeOutcome)>;

/// The video decoder thread.
#[derive(Resource, Default)]
pub struct Decoder {
    worker: Option<DecodeWorker>,
    /// Outcomes of jobs handed in before the last reset are ignored.
    generation: u64,
    /// A frame could not be handed over: the next one follows a gap.
    gap: bool,
    /// Signalled when a frame is decoded.
    wake: Option<Wake>,
}

impl Decoder {
    /// A decoder whose thread signals `wake` when a frame is decoded, and starts by getting
    /// ready for `expect` (codec, width, height): what this side sends, which the peer's
    /// defaults are likely to match.
    pub fn new(wake: Option<Wake>, expect: Option<(CodecId, u32, u32)>) -> Self {
        let mut d = Self {
            wake,
            ..Self::default()
        };
        if let Some((codec, w, h)) = expect {
            let g = d.generation;
            if let Some(worker) = d.worker() {
                let _ = worker.submit((g, Job::WarmUp(codec, w, h)));
            }
        }
        d
    }

    fn worker(&mut self) -> Option<&mut DecodeWorker> {
        if self.worker.as_ref().is_none_or(Worker::is_dead) {
            if self.worker.is_some() {
                tracing::warn!("video decoder stopped; starting a new one");
            }
            let mut stream = StreamDecoder::default();
            let wake = self.wake.clone();
            self.worker =
                Worker::spawn_waking("video-decode", DECODE_QUEUE, wake, move |(g, job)| {
                    (
                        g,
                        match job {
                            Job::WarmUp(codec, w, h) => {
                                stream.warm_up(codec, w, h);
                                DecodeOutcome::NoPicture
                            }
                            Job::Reset => {
                                stream.reset();
                                DecodeOutcome::NoPicture
                            }
                            Job::Frame(f) => stream.decode(&f),
                        },
                    )
                })
                .map_err(|e| tracing::warn!("video decoder thread: {e}"))
                .ok();
            // a fresh decoder has no reference: everything waits for a keyframe
            self.gap = true;
        }
        self.worker.as_mut()
    }
}

/// Hands every complete frame to the decoder in order; shows the newest good picture when
/// its sound is due (see [`VideoSync`]).
#[allow(clippy::too_many_arguments)]
pub fn decode(
    mut decoder: ResMut<Decoder>,
    mut incoming: ResMut<Incoming>,
    mut feedback: ResMut<KeyframeFeedback>,
    mut stats: ResMut<CallStats>,
    mut sync: ResMut<VideoSync>,
    call: Res<CallInfo>,
    clock: Res<Clock>,
    mut next: ResMut<NextTick>,
    mut remote: Single<&mut VideoStream, With<Remote>>,
) {
    let decoder = &mut *decoder;
    if call.state != CallState::Connected {
        sync.0.clear();
    }
    if std::mem::take(&mut feedback.new_stream) {
        sync.0.clear();
        decoder.generation += 1;
        let g = decoder.generation;
        if let Some(w) = decoder.worker() {
            if w.submit((g, Job::Reset)).is_err() {
                // the queue is full of the old stream: start over with a new decoder
                decoder.worker = None;
            }
        }
    }
    for mut frame in incoming.frames.drain(..) {
        let g = decoder.generation;
        if decoder.worker().is_none() {
            break;
        }
        frame.gap |= std::mem::take(&mut decoder.gap);
        let meta = frame.meta;
        let Some(w) = decoder.worker.as_mut() else {
            break;
        };
        trace_stage("decode_in", meta.capture_us);
        if w.submit((g, Job::Frame(frame))).is_err() {
            // the decoder is behind: drop the frame; what follows needs a keyframe
            stats.frames_skipped += 1;
            decoder.gap = true;
            remote.stalled = true;
            feedback.need_keyframe = Some(meta.frame_id);
        }
    }
    let now_us = unix_micros();
    if let Some(w) = decoder.worker.as_mut() {
        while let Some((g, outcome)) = w.try_next() {
            if g != decoder.generation {
                continue;
            }
            match outcome {
                DecodeOutcome::Picture(pic) => {
                    let capture_us = pic.capture_us;
                    trace_stage("decode_out", capture_us);
                    let shown = sync.0.push(pic, capture_us, now_us, clock.now);
                    stats.lip_sync_hold_ms = sync.0.last_hold_us() as f64 / 1000.0;
                    if let Some(pic) = shown {
                        show(&mut remote, &mut stats, pic, clock.now);
                    }
                }
                DecodeOutcome::NoPicture => {}
                DecodeOutcome::Skipped { frame_id } => {
                    flush(&mut sync, &mut remote, &mut stats, clock.now);
                    stats.frames_skipped += 1;
                    remote.stalled = true;
                    feedback.need_keyframe = Some(frame_id);
                }
                DecodeOutcome::Failed { frame_id } => {
                    flush(&mut sync, &mut remote, &mut stats, clock.now);
                    stats.decode_errors += 1;
                    remote.stalled = true;
                    feedback.need_keyframe = Some(frame_id);
                }
            }
        }
    }
    let released = sync.0.release(now_us);
    stats.frames_superseded += released.superseded;
    if let Some(pic) = released.show {
        show(&mut remote, &mut stats, pic, clock.now);
    }
    if let Some(due_us) = sync.0.next_due_us() {
        next.by(clock.now + Duration::from_micros(due_us.saturating_sub(now_us)));
    }
}

/// Puts the held pictures up at once: the stream just broke, and the stall mark must stay
/// on the last good picture.
fn flush(sync: &mut VideoSync, remote: &mut VideoStream, stats: &mut CallStats, now: Instant) {
    let released = sync.0.release(u64::MAX);
    stats.frames_superseded += released.superseded;
    if let Some(pic) = released.show {
        show(remote, stats, pic, now);
    }
}

/// Puts a picture up, counting the one it replaces if that was never drawn.
fn show(remote: &mut VideoStream, stats: &mut CallStats, pic: VideoFrame, now: Instant) {
    if remote.fresh && remote.frame.is_some() {
        stats.frames_superseded += 1;
    }
    remote.set(pic, now);
}
