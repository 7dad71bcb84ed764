//! Call statistics: counters, a latency histogram, and the once-a-second JSON line.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use bevy_ecs::prelude::Resource;
use serde::Serialize;

/// Latency histogram: 100 µs bins up to 5 s.
#[derive(Debug, Clone)]
pub struct Histogram {
    bins: Vec<u32>,
    count: u64,
}

const BIN_US: u64 = 100;
const BINS: usize = 50_000;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            bins: vec![0; BINS],
            count: 0,
        }
    }
}

impl Histogram {
    /// Adds one sample in microseconds (clamped to the last bin).
    pub fn add(&mut self, us: u64) {
        let i = ((us / BIN_US) as usize).min(BINS - 1);
        self.bins[i] += 1;
        self.count += 1;
    }
    /// Samples so far.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The `p`-quantile (0–1) in milliseconds, at bin resolution; `None` when empty.
    pub fn quantile_ms(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let target = ((self.count as f64 * p).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.bins.iter().enumerate() {
            seen += u64::from(n);
            if seen >= target {
                return Some(((i as u64 * BIN_US + BIN_US / 2) as f64) / 1000.0);
            }
        }
        None
    }
    /// Empties it.
    pub fn clear(&mut self) {
        self.bins.iter_mut().for_each(|b| *b = 0);
        self.count = 0;
    }
}

/// Counters of the whole call.
#[derive(Resource, Debug, Default)]
pub struct CallStats {
    /// Pictures taken from the camera.
    pub frames_captured: u64,
    /// Frames encoded and handed to the network.
    pub frames_sent: u64,
    /// Pictures not encoded because the encoder was still busy with the one before.
    pub frames_not_encoded: u64,
    /// Pictures not encoded because the video queued for the link would have held them up
    /// (see `systems::encode`).
    pub frames_held_back: u64,
    /// Frames completely received.
    pub frames_received: u64,
    /// Remote frames decoded and shown.
    pub frames_shown: u64,
    /// Remote frames decoded with an error.
    pub decode_errors: u64,
    /// Remote frames not decoded because a frame they depend on was lost.
    pub frames_skipped: u64,
    /// Remote frames decoded but replaced by a newer one before they could be drawn: after a
    /// hole is repaired, the frames held behind it arrive together and only the newest is
    /// drawn (drawing the others would only delay it).
    pub frames_superseded: u64,
    /// Resend requests sent for missing video fragments.
    pub nacks_sent: u64,
    /// Our video bitrate target, bit/s.
    pub video_bitrate: u32,
    /// The picture size we send (it steps down when the bitrate is too low for the full size).
    pub video_width: u32,
    /// See `video_width`.
    pub video_height: u32,
    /// Frames a second we send (a third of the camera's at the lowest step).
    pub video_fps: f64,
    /// Round trip of our video to the peer and its report back (smoothed), ms.
    pub video_rtt_ms: Option<f64>,
    /// Standing queue on the path of our video, as the peer last reported it, ms.
    pub video_queue_ms: u16,
    /// Arrival jitter of our video frames at the peer, as it last reported it, ms.
    pub video_jitter_ms: u16,
    /// Video waiting in the pacer, as time to send it at the pacing rate, ms.
    pub pacer_queue_ms: f64,
    /// Video datagrams dropped because the pacer's queue was full.
    pub pacer_dropped: u64,
    /// The path's rate our video is paced to, as the peer timed our frames coming in, kbit/s;
    /// `None` while frames go out at once (the path keeps up with the pace).
    pub pacer_path_kbps: Option<u32>,
    /// Video fragments sent again because the peer asked.
    pub fragments_resent: u64,
    /// Parity fragments sent with our video (forward error correction, on under loss).
    pub parity_sent: u64,
    /// Fragments of the peer's video lost and rebuilt from parity on arrival.
    pub fragments_recovered: u64,
    /// Resend requests not answered: resends may take only 30 % of the bitrate target.
    pub fragments_not_resent: u64,
    /// Datagrams that did not decode as messages.
    pub datagrams_malformed: u64,
    /// Media from someone not in the call.
    pub media_outside_call: u64,
    /// capture→shown latency of every shown frame.
    pub latency_total: Histogram,
    /// capture→shown latency since the last stats line.
    pub latency_window: Histogram,
    /// Frame number read from the stamp of the last shown remote picture.
    pub last_remote_stamp: Option<u32>,
    /// Shown remote pictures whose stamp could be read.
    pub remote_stamps_read: u64,
    /// When the last remote frame was shown.
    pub last_shown: Option<std::time::Instant>,
    /// Longest time between two shown remote frames in a call, ms.
    pub longest_freeze_ms: f64,
    /// Sum and count of Y-PSNR measurements of stamped pictures against the regenerated source.
    pub psnr_sum: f64,
    /// See `psnr_sum`.
    pub psnr_count: u64,
    /// Audio packets sent.
    pub audio_sent: u64,
    /// Audio packets not sent at a call's start, before the path's probe and the first
    /// picture were out (see `media::sound_start`).
    pub audio_held_back: u64,
    /// Audio packets received from the peer.
    pub audio_received: u64,
    /// Audio packets never received in time.
    pub audio_lost: u64,
    /// Of the lost packets, those played from the copy the next packet carried.
    pub audio_recovered_fec: u64,
    /// Missing packets concealed (PLC).
    pub audio_concealed: u64,
    /// Audio packets dropped as late, duplicate or overflowing.
    pub audio_late: u64,
    /// Audio waiting in the jitter buffer, ms.
    pub jitter_delay_ms: f64,
    /// Audio dropped by playing slightly faster to bring the delay down, ms.
    pub audio_accelerated_ms: f64,
    /// Speaker callbacks that ran out of samples since it was first fed.
    pub speaker_underruns: u64,
    /// Samples the speaker has taken so far.
    pub speaker_samples: u64,
    /// Audio waiting in the speaker's ring, ms.
    pub speaker_buffered_ms: f64,
    /// How far above one callback's worth the speaker's ring is kept (adapts to underruns), ms.
    pub speaker_margin_ms: f64,
    /// How long the sound system holds a sample from the speaker's callback to the ear, ms.
    pub speaker_device_ms: f64,
    /// Samples the speaker's latest callback took, as ms.
    pub speaker_chunk_ms: f64,
    /// How long the sound system held a sample from the microphone to its callback, ms.
    pub mic_device_ms: f64,
    /// Samples the microphone's latest callback brought, as ms.
    pub mic_chunk_ms: f64,
    /// Estimated mouth-to-ear delay on our side (frame, jitter buffer, rings, devices), ms.
    pub mic_to_speaker_ms: Option<f64>,
    /// How long the last picture of the peer was held back to keep step with its sound, ms.
    pub lip_sync_hold_ms: f64,
    /// How much longer the peer's sound waits to keep step with its late pictures, ms.
    pub audio_wait_ms: f64,
}

/// One line of the stats file.
#[derive(Debug, Serialize)]
pub struct StatsLine {
    /// Seconds since start.
    pub t: f64,
    /// Call state.
    pub state: &'static str,
    /// Peer address, in a call.
    pub peer: Option<String>,
    /// Our camera delivers.
    pub camera_on: bool,
    /// Our microphone is muted.
    pub muted: bool,
    /// The peer's camera delivers.
    pub remote_camera_on: bool,
    /// The peer's microphone is muted.
    pub remote_muted: bool,
    /// See [`CallStats`].
    pub frames_captured: u64,
    /// See [`CallStats`].
    pub frames_sent: u64,
    /// See [`CallStats`].
    pub frames_not_encoded: u64,
    /// See [`CallStats`].
    pub frames_held_back: u64,
    /// See [`CallStats`].
    pub frames_received: u64,
    /// See [`CallStats`].
    pub frames_shown: u64,
    /// Frames lost in reassembly (incomplete or late) or undecodable.
    pub frames_dropped: u64,
    /// See [`CallStats`].
    pub frames_superseded: u64,
    /// Bytes sent on the socket.
    pub bytes_sent: u64,
    /// Bytes received on the socket (accepted datagrams).
    pub bytes_received: u64,
    /// Datagrams dropped: foreign sender, oversized, or malformed.
    pub datagrams_dropped: u64,
    /// capture→shown latency median over the last second, ms.
    pub latency_ms_p50: Option<f64>,
    /// capture→shown latency 99th percentile over the last second, ms.
    pub latency_ms_p99: Option<f64>,
    /// capture→shown latency 95th percentile over the whole call, ms.
    pub latency_ms_p95_total: Option<f64>,
    /// Longest time between two shown remote frames during the call, ms.
    pub longest_freeze_ms: f64,
    /// Mean Y-PSNR of shown test-pattern pictures against the source regenerated from their stamp, dB.
    pub psnr_y_db: Option<f64>,
    /// capture→shown latency median over the whole call, ms.
    pub latency_ms_p50_total: Option<f64>,
    /// capture→shown latency 99th percentile over the whole call, ms.
    pub latency_ms_p99_total: Option<f64>,
    /// Frame number stamped in the last shown remote picture (test pattern only).
    pub remote_stamp: Option<u32>,
    /// The words both sides show for this call's encryption session.
    pub sas: Option<String>,
    /// See [`CallStats`].
    pub nacks_sent: u64,
    /// Our video bitrate target, kbit/s (H.264; the peer's reports steer it).
    pub video_kbps: u32,
    /// Width of the pictures we send.
    pub video_width: u32,
    /// Height of the pictures we send.
    pub video_height: u32,
    /// Frames a second we send.
    pub video_fps: f64,
    /// See [`CallStats`].
    pub video_rtt_ms: Option<f64>,
    /// See [`CallStats`].
    pub video_queue_ms: u16,
    /// See [`CallStats`].
    pub video_jitter_ms: u16,
    /// See [`CallStats`].
    pub pacer_queue_ms: f64,
    /// See [`CallStats`].
    pub pacer_dropped: u64,
    /// See [`CallStats`].
    pub pacer_path_kbps: Option<u32>,
    /// See [`CallStats`].
    pub fragments_resent: u64,
    /// See [`CallStats`].
    pub parity_sent: u64,
    /// See [`CallStats`].
    pub fragments_recovered: u64,
    /// See [`CallStats`].
    pub fragments_not_resent: u64,
    /// Secure-channel handshakes completed.
    pub handshakes: u64,
    /// See [`CallStats`].
    pub audio_sent: u64,
    /// See [`CallStats`].
    pub audio_held_back: u64,
    /// See [`CallStats`].
    pub audio_received: u64,
    /// See [`CallStats`].
    pub audio_lost: u64,
    /// See [`CallStats`].
    pub audio_recovered_fec: u64,
    /// See [`CallStats`].
    pub audio_concealed: u64,
    /// See [`CallStats`].
    pub audio_late: u64,
    /// See [`CallStats`].
    pub jitter_delay_ms: f64,
    /// See [`CallStats`].
    pub audio_accelerated_ms: f64,
    /// See [`CallStats`].
    pub speaker_underruns: u64,
    /// See [`CallStats`].
    pub speaker_samples: u64,
    /// See [`CallStats`].
    pub speaker_buffered_ms: f64,
    /// See [`CallStats`].
    pub speaker_margin_ms: f64,
    /// See [`CallStats`].
    pub speaker_device_ms: f64,
    /// See [`CallStats`].
    pub speaker_chunk_ms: f64,
    /// See [`CallStats`].
    pub mic_device_ms: f64,
    /// See [`CallStats`].
    pub mic_chunk_ms: f64,
    /// See [`CallStats`].
    pub mic_to_speaker_ms: Option<f64>,
    /// See [`CallStats`].
    pub lip_sync_hold_ms: f64,
    /// See [`CallStats`].
    pub audio_wait_ms: f64,
    /// How much later the peer's sound is heard than its picture is seen, ms (negative: sound first).
    pub av_offset_ms: Option<f64>,
}

/// Appends stats lines to a file.
#[derive(Debug)]
pub struct StatsWriter {
    out: BufWriter<File>,
}

impl StatsWriter {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            out: BufWriter::new(File::create(path)?),
        })
    }

    /// Writes one line and flushes it, so that a reader sees whole lines.
    pub fn write(&mut self, line: &StatsLine) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for ms in 1..=100u64 {
            h.add(ms * 1000);
        }
        let p50 = h.quantile_ms(0.5).expect("some");
        let p99 = h.quantile_ms(0.99).expect("some");
        assert!((p50 - 50.0).abs() < 0.2, "{p50}");
        assert!((p99 - 99.0).abs() < 0.2, "{p99}");
        h.add(u64::MAX);
        assert!(h.quantile_ms(1.0).expect("some") < 5001.0);
    }
}
