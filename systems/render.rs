//! Stage 6: both pictures on screen the moment they are decoded, with the call's status;
//! then the numbers: shown frames, capture→shown latency, the stats line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;

use crate::components::{CallInfo, CameraOff, Clock, Local, Muted, Remote, VideoStream};
use crate::devices::window::{Overlay, PaneShow};
use crate::devices::window_thread::{Scene, WindowThread};
use crate::media::frame::{trace_stage, unix_micros, PixelFormat, VideoFrame};
use crate::media::h264::to_bgr_into;
use crate::media::pattern::TestPattern;
use crate::media::scale::resize_bgr;
use crate::media::stamp::{read_stamp, Picture, Rect, Stamp};
use crate::media::worker::Worker;
use crate::net::SocketCounters;
use crate::session::CallState;
use crate::stats::{CallStats, StatsLine, StatsWriter};
use crate::systems::network::Network;

/// How the window looks.
#[derive(Resource, Debug, Clone)]
pub struct RenderSettings {
    /// Self-view as a mirror.
    pub mirror: bool,
    /// Redraw at least this often (overlays, window exposure).
    pub idle_redraw: Duration,
    /// Our own `--size`: a peer showing the test pattern is assumed to render it at this size
    /// too, so a smaller picture it sends is compared with the source shrunk the same way.
    pub source_size: (u32, u32),
}

/// What was drawn last, to redraw only on change.
#[derive(Resource, Debug, Default)]
pub struct RenderState {
    last_draw: Option<Instant>,
    last_overlay: Overlay,
    last_title: String,
    psnr: PsnrProbe,
}

/// A shown test-pattern picture to compare with its source.
struct PsnrJob {
    shown: Arc<VideoFrame>,
    stamp: Stamp,
    source_size: (u32, u32),
}

/// Y-PSNR of shown test-pattern pictures against their source (the pattern is a function of
/// its stamp, so the receiver rebuilds it), measured now and then on a background thread:
/// rebuilding, converting and comparing a picture takes milliseconds, and the tick that
/// also feeds the speaker must not wait for a measurement.
#[derive(Default)]
struct PsnrProbe {
    worker: Option<Worker<PsnrJob, Option<f64>>>,
}

impl std::fmt::Debug for PsnrProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PsnrProbe")
            .field("running", &self.worker.is_some())
            .finish()
    }
}

impl PsnrProbe {
    /// Hands a picture over; skipped when the previous one is still being measured.
    fn offer(&mut self, job: PsnrJob) {
        if self.worker.as_ref().is_none_or(Worker::is_dead) {
            let mut meter = PsnrMeter::default();
            self.worker = Worker::spawn("psnr", 1, move |job| meter.measure(job))
                .map_err(|e| tracing::debug!("psnr thread: {e}"))
                .ok();
        }
        if let Some(w) = self.worker.as_mut() {
            let _ = w.submit(job);
        }
    }

    /// Adds what was measured since the last tick to `stats`.
    fn collect(&mut self, stats: &mut CallStats) {
        let Some(w) = self.worker.as_mut() else {
            return;
        };
        while let Some(db) = w.try_next() {
            if let Some(db) = db {
                stats.psnr_sum += db;
                stats.psnr_count += 1;
            }
        }
    }
}

/// The measuring end of [`PsnrProbe`]: its pictures' buffers kept from one measurement to the
/// next (new ones of 2.7 MB each, at 720p, cost their page faults every time): 2.0 ms a 720p
/// measurement, against 6.2 ms before, twice a second at a codec thread's priority.
#[derive(Default)]
struct PsnrMeter {
    /// The source, rebuilt from the stamp (BGR).
    source: Vec<u8>,
    /// The shown picture as BGR.
    shown: Vec<u8>,
}

impl PsnrMeter {
    fn measure(&mut self, job: PsnrJob) -> Option<f64> {
        let (sw, sh) = job.source_size;
        let f = &job.shown;
        to_bgr_into(f, &mut self.shown)?;
        let (no, at) = (job.stamp.frame_no, job.stamp.capture_us);
        TestPattern::new(sw, sh).render_into(no, at, &mut self.source);
        if (sw, sh) == (f.width, f.height) {
            return psnr_y(&self.source, &self.shown);
        }
        // the sender sent it smaller: compare with the source shrunk the same way
        let source = VideoFrame {
            width: sw,
            height: sh,
            data: std::mem::take(&mut self.source),
            capture_us: at,
            format: PixelFormat::Bgr,
        };
        let small = resize_bgr(&source, f.width, f.height);
        self.source = source.data;
        psnr_y(&small.ok()?.data, &self.shown)
    }
}

/// The window title for a call state.
pub fn title(call: &CallInfo) -> String {
    match (call.state, call.peer) {
        (CallState::Connected, Some(p)) => format!("Prattle — call with {p}"),
        (CallState::Lost, Some(p)) => format!("Prattle — reconnecting to {p}"),
        _ => match call.dial {
            Some(d) => format!("Prattle — calling {d}"),
            None => format!("Prattle — waiting on {}", call.reachable_at),
        },
    }
}

/// The status banner for a call state.
pub fn banner(call: &CallInfo, remote_has_video: bool, remote_camera_off: bool) -> Option<String> {
    if let Some(w) = &call.warning {
        return Some(w.clone());
    }
    let code = call
        .code
        .as_ref()
        .map(|c| format!(" - code {c}"))
        .unwrap_or_default();
    let waiting = match call.dial {
        Some(d) => format!("calling {d}..."),
        None => format!("waiting for a call on {}{code}", call.reachable_at),
    };
    match call.state {
        CallState::Waiting => Some(format!("Waiting for a call on {}{code}", call.reachable_at)),
        CallState::Dialing => Some(format!(
            "Connecting to {}...",
            call.dial.map(|d| d.to_string()).unwrap_or_default()
        )),
        CallState::PeerLeft => Some(format!("Peer left - {waiting}")),
        CallState::Lost => Some("Connection lost - reconnecting...".into()),
        CallState::Ended => Some("Call ended".into()),
        CallState::Connected if !remote_has_video && !remote_camera_off => {
            Some("Connected - waiting for video...".into())
        }
        CallState::Connected => None,
    }
}

/// The peer's video counts as flowing when its last picture is this recent.
const REMOTE_LIVE: Duration = Duration::from_millis(100);
/// A new self-view picture waits at most this long for the peer's next picture.
const SELF_VIEW_WAIT: Duration = Duration::from_millis(40);

type StreamItem = (&'static mut VideoStream, Has<CameraOff>, Has<Muted>);

/// Shows what is new; counts and times shown remote frames.
#[allow(clippy::too_many_arguments)]
pub fn render(
    window: Option<Res<WindowThread>>,
    settings: Res<RenderSettings>,
    mut state: ResMut<RenderState>,
    call: Res<CallInfo>,
    clock: Res<Clock>,
    mut stats: ResMut<CallStats>,
    mut local: Single<StreamItem, (With<Local>, Without<Remote>)>,
    mut remote: Single<StreamItem, (With<Remote>, Without<Local>)>,
) {
    state.psnr.collect(&mut stats);
    let (ref mut lstream, local_off, local_muted) = *local;
    let (ref mut rstream, remote_off, remote_muted) = *remote;
    let remote_new = rstream.fresh && rstream.frame.is_some();
    let connected = call.state == CallState::Connected;

    let remote_show = if connected && remote_off {
        PaneShow::Placeholder
    } else if connected && rstream.frame.is_some() {
        PaneShow::Video
    } else {
        PaneShow::Blank
    };
    let local_show = if local_off {
        PaneShow::Placeholder
    } else if lstream.frame.is_some() {
        PaneShow::Video
    } else {
        PaneShow::Blank
    };
    let overlay = Overlay {
        banner: banner(&call, rstream.frame.is_some(), remote_off),
        remote_label: connected
            .then(|| match (remote_off, remote_muted, rstream.stalled) {
                (true, true, _) => Some("camera off, muted".to_string()),
                (true, false, _) => Some("camera off".to_string()),
                (false, muted, true) => Some(format!(
                    "video stalled - waiting for a keyframe{}",
                    if muted { ", muted" } else { "" }
                )),
                (false, true, false) => Some("muted".to_string()),
                (false, false, false) => None,
            })
            .flatten(),
        footer: call
            .sas
            .as_ref()
            .filter(|_| connected)
            .map(|s| format!("compare aloud: {s}")),
        local_label: match (local_off, local_muted) {
            (true, true) => Some("camera off, muted".to_string()),
            (true, false) => Some("camera off".to_string()),
            (false, true) => Some("muted".to_string()),
            (false, false) => None,
        },
    };

    if let Some(w) = window {
        let t = title(&call);
        if t != state.last_title {
            w.set_title(&t);
            state.last_title = t;
        }
        let mut changed = overlay != state.last_overlay;
        if rstream.fresh {
            if let Some(f) = &rstream.frame {
                trace_stage("to_window", f.capture_us);
                w.put_remote(Arc::clone(f));
            }
            changed = true;
        }
        if lstream.fresh {
            if let Some(f) = &lstream.frame {
                w.put_local(Arc::clone(f));
            }
            // While the peer's video flows, the self-view is drawn with the peer's next
            // picture: one draw per frame instead of two, and a picture that arrives never
            // waits behind a draw of the self-view.
            let remote_live = remote_show == PaneShow::Video
                && rstream
                    .updated_at
                    .is_some_and(|t| clock.now.saturating_duration_since(t) < REMOTE_LIVE);
            let stale = state
                .last_draw
                .is_none_or(|t| clock.now.saturating_duration_since(t) >= SELF_VIEW_WAIT);
            changed |= !remote_live || stale;
        }
        let due = state
            .last_draw
            .is_none_or(|t| clock.now.saturating_duration_since(t) >= settings.idle_redraw);
        if changed || due {
            w.draw(Scene {
                remote: remote_show,
                local: local_show,
                mirror: settings.mirror,
                overlay: overlay.clone(),
            });
            state.last_draw = Some(clock.now);
            state.last_overlay = overlay;
        }
        // the numbers of what reached the screen
        for s in w.shown() {
            count_shown(
                &mut stats,
                &mut state.psnr,
                &settings,
                &s.frame,
                s.latency_us,
                s.at,
            );
        }
        stats.frames_superseded += w.take_replaced();
    } else if remote_new && remote_show == PaneShow::Video {
        if let Some(f) = &rstream.frame {
            let latency = unix_micros().saturating_sub(f.capture_us);
            count_shown(
                &mut stats,
                &mut state.psnr,
                &settings,
                f,
                latency,
                clock.now,
            );
        }
    }
    if !connected {
        stats.last_shown = None;
    }
    rstream.fresh = false;
    lstream.fresh = false;
}

/// Counts a remote picture shown `latency_us` after its capture, at `at`.
fn count_shown(
    stats: &mut CallStats,
    psnr: &mut PsnrProbe,
    settings: &RenderSettings,
    f: &Arc<VideoFrame>,
    latency_us: u64,
    at: Instant,
) {
    stats.frames_shown += 1;
    tracing::trace!(target: "frame_timing", "shown {} {latency_us}", f.capture_us);
    stats.latency_total.add(latency_us);
    stats.latency_window.add(latency_us);
    let pic = match f.planes() {
        Some((y, _, _)) => Picture::luma(y, f.width, f.height),
        None => Picture::bgr(&f.data, f.width, f.height),
    };
    if let Some(s) = read_stamp(&pic, Rect::full(f.width, f.height), false) {
        stats.last_remote_stamp = Some(s.frame_no);
        stats.remote_stamps_read += 1;
        // compare two pictures a second with their source, off the tick
        if stats.remote_stamps_read % 15 == 1 {
            psnr.offer(PsnrJob {
                shown: Arc::clone(f),
                stamp: s,
                source_size: settings.source_size,
            });
        }
    }
    if let Some(t) = stats.last_shown {
        let gap = at.saturating_duration_since(t).as_secs_f64() * 1000.0;
        stats.longest_freeze_ms = stats.longest_freeze_ms.max(gap);
    }
    stats.last_shown = Some(at);
}

/// Y-PSNR of two BGR pictures of the same size, dB (capped at 99 for identical pictures).
/// Luma is 0.114 B + 0.587 G + 0.299 R; the difference of two lumas is summed in thousandths,
/// exactly, in integers (a 720p picture in 1.0 ms where the same sum in floating point took 3.1).
pub fn psnr_y(a: &[u8], b: &[u8]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let mut se: u64 = 0;
    for (x, y) in a.chunks_exact(3).zip(b.chunks_exact(3)) {
        let d = |k: usize| i64::from(x[k]) - i64::from(y[k]);
        let milli = 114 * d(0) + 587 * d(1) + 299 * d(2);
        // at most 255 000 squared: far inside an i64
        se += milli.unsigned_abs().pow(2);
    }
    let n = (a.len() / 3) as f64;
    let mse = se as f64 / 1e6 / n;
    Some(if mse <= 1e-10 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    })
}

/// Where the stats lines go.
#[derive(Resource, Debug)]
pub struct StatsOutput {
    /// The file.
    pub writer: StatsWriter,
    /// When the next line is due.
    pub next: Instant,
    /// Time between lines.
    pub interval: Duration,
}

/// Builds the stats line for now.
pub fn stats_line(
    clock: &Clock,
    call: &CallInfo,
    net: &Network,
    stats: &CallStats,
    local: (bool, bool),
    remote: (bool, bool),
) -> StatsLine {
    let s: SocketCounters = net.transport.counters();
    let r = net.reassembler.stats();
    let sec = net.transport.secure_stats();
    StatsLine {
        t: clock
            .now
            .saturating_duration_since(clock.start)
            .as_secs_f64(),
        state: call.state.name(),
        peer: call.peer.map(|p| p.to_string()),
        camera_on: !local.0,
        muted: local.1,
        remote_camera_on: !remote.0,
        remote_muted: remote.1,
        frames_captured: stats.frames_captured,
        frames_sent: stats.frames_sent,
        frames_not_encoded: stats.frames_not_encoded,
        frames_held_back: stats.frames_held_back,
        frames_received: stats.frames_received,
        frames_shown: stats.frames_shown,
        frames_dropped: r.abandoned + stats.decode_errors + stats.frames_skipped,
        frames_superseded: stats.frames_superseded,
        bytes_sent: s.bytes_out,
        bytes_received: s.bytes_in,
        datagrams_dropped: s.dropped_foreign
            + s.dropped_oversized
            + s.dropped_malformed
            + sec.dropped_unauthenticated
            + sec.dropped_no_session
            + sec.dropped_replay
            + sec.dropped_malformed
            + sec.handshakes_rate_limited
            + stats.datagrams_malformed
            + stats.media_outside_call,
        latency_ms_p50: stats.latency_window.quantile_ms(0.5),
        latency_ms_p99: stats.latency_window.quantile_ms(0.99),
        latency_ms_p95_total: stats.latency_total.quantile_ms(0.95),
        longest_freeze_ms: stats.longest_freeze_ms,
        psnr_y_db: (stats.psnr_count > 0).then(|| stats.psnr_sum / stats.psnr_count as f64),
        latency_ms_p50_total: stats.latency_total.quantile_ms(0.5),
        latency_ms_p99_total: stats.latency_total.quantile_ms(0.99),
        remote_stamp: stats.last_remote_stamp,
        sas: call.sas.clone(),
        nacks_sent: stats.nacks_sent,
        video_kbps: stats.video_bitrate / 1000,
        video_width: stats.video_width,
        video_height: stats.video_height,
        video_fps: stats.video_fps,
        video_rtt_ms: stats.video_rtt_ms,
        pacer_queue_ms: stats.pacer_queue_ms,
        pacer_dropped: stats.pacer_dropped,
        pacer_path_kbps: stats.pacer_path_kbps,
        video_queue_ms: stats.video_queue_ms,
        video_jitter_ms: stats.video_jitter_ms,
        fragments_resent: stats.fragments_resent,
        parity_sent: stats.parity_sent,
        fragments_recovered: stats.fragments_recovered,
        fragments_not_resent: stats.fragments_not_resent,
        handshakes: net.transport.secure_stats().handshakes_completed,
        audio_sent: stats.audio_sent,
        audio_held_back: stats.audio_held_back,
        audio_received: stats.audio_received,
        audio_lost: stats.audio_lost,
        audio_recovered_fec: stats.audio_recovered_fec,
        audio_concealed: stats.audio_concealed,
        audio_late: stats.audio_late,
        jitter_delay_ms: stats.jitter_delay_ms,
        audio_accelerated_ms: stats.audio_accelerated_ms,
        speaker_underruns: stats.speaker_underruns,
        speaker_samples: stats.speaker_samples,
        speaker_buffered_ms: stats.speaker_buffered_ms,
        speaker_margin_ms: stats.speaker_margin_ms,
        speaker_device_ms: stats.speaker_device_ms,
        speaker_chunk_ms: stats.speaker_chunk_ms,
        mic_device_ms: stats.mic_device_ms,
        mic_chunk_ms: stats.mic_chunk_ms,
        mic_to_speaker_ms: stats.mic_to_speaker_ms,
        lip_sync_hold_ms: stats.lip_sync_hold_ms,
        audio_wait_ms: stats.audio_wait_ms,
        av_offset_ms: stats
            .mic_to_speaker_ms
            .zip(stats.latency_total.quantile_ms(0.5))
            .map(|(a, v)| a - v),
    }
}

/// Writes a stats line once a second.
#[allow(clippy::too_many_arguments)]
pub fn write_stats(
    out: Option<ResMut<StatsOutput>>,
    control: Res<crate::components::Control>,
    clock: Res<Clock>,
    call: Res<CallInfo>,
    net: Res<Network>,
    mut stats: ResMut<CallStats>,
    local: Single<(Has<CameraOff>, Has<Muted>), With<Local>>,
    remote: Single<(Has<CameraOff>, Has<Muted>), With<Remote>>,
) {
    let Some(mut out) = out else { return };
    // the last line is written by the app as it exits
    if control.quit || clock.now < out.next {
        return;
    }
    let interval = out.interval;
    out.next += interval;
    let line = stats_line(&clock, &call, &net, &stats, *local, *remote);
    if let Err(e) = out.writer.write(&line) {
        tracing::warn!("stats file: {e}");
    }
    stats.latency_window.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::h264::to_i420;
    use crate::media::stamp::Stamp;

    #[test]
    fn psnr_y_is_the_floating_point_luma_psnr() {
        let a: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let b: Vec<u8> = a
            .iter()
            .enumerate()
            .map(|(i, &v)| v.wrapping_add((i % 5) as u8))
            .collect();
        let luma =
            |p: &[u8]| 0.114 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.299 * f64::from(p[2]);
        let mse = a
            .chunks(3)
            .zip(b.chunks(3))
            .map(|(x, y)| (luma(x) - luma(y)).powi(2))
            .sum::<f64>()
            / 1000.0;
        let want = 10.0 * (255.0 * 255.0 / mse).log10();
        let got = psnr_y(&a, &b).unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        assert_eq!(psnr_y(&a, &a), Some(99.0));
        assert_eq!(psnr_y(&a, &b[..2997]), None);
        assert_eq!(psnr_y(&[], &[]), None);
    }

    #[test]
    fn the_meter_compares_a_shown_picture_with_its_source_again_and_again() {
        let mut meter = PsnrMeter::default();
        let mut job = |no: u32, shown: VideoFrame, source_size| {
            let stamp = Stamp {
                frame_no: no,
                capture_us: 1_000 + u64::from(no),
            };
            meter.measure(PsnrJob {
                shown: Arc::new(shown),
                stamp,
                source_size,
            })
        };
        for no in [3, 40] {
            let src = TestPattern::new(320, 240).render(no, 1_000 + u64::from(no));
            // the picture itself, and through I420: high; another picture's: low
            assert_eq!(job(no, src.clone(), (320, 240)), Some(99.0));
            let through = job(no, to_i420(&src).unwrap(), (320, 240)).unwrap();
            assert!((40.0..99.0).contains(&through), "{through}");
            let other = job(no + 7, src.clone(), (320, 240)).unwrap();
            assert!(other < 30.0, "{other}");
            // sent smaller: compared with the source shrunk the same way
            let small = resize_bgr(&src, 160, 120).unwrap();
            assert_eq!(job(no, small, (320, 240)), Some(99.0));
        }
    }
}
