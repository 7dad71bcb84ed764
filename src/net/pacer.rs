//! Spreads video out at a multiple of its bitrate instead of sending each frame at once. A
//! keyframe is many times the size of the frames around it: sent in one burst, it overflows
//! a small bottleneck buffer (and loses fragments that must be asked for again), while the
//! link would have carried it paced a little. Audio and control never wait here. Sans-IO.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Video goes out at this multiple of the bitrate target (WebRTC's pacer uses 2.5).
pub const PACE_FACTOR: f64 = 2.5;
/// What may go out at once, as time at the pacing rate (always at least a datagram): enough
/// for a P-frame to leave at once, far less than a keyframe.
const BURST: Duration = Duration::from_millis(20);
/// Bytes held at most; beyond it datagrams are dropped (and counted): the encoder is far over
/// its target and the receiver will ask again for what it misses.
pub const MAX_BYTES: usize = 1 << 20;
/// Nothing waits here longer than about this: when the queue holds more (an encoder far over
/// its target, like MJPEG at its lowest quality), it goes out faster. Pacing smooths
/// bursts; it must never become a second jitter buffer.
pub const MAX_DELAY: Duration = Duration::from_millis(100);

/// A token bucket in front of the socket, for video datagrams.
#[derive(Debug)]
pub struct Pacer {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Bytes that may go out now; negative after a datagram bigger than the credit.
    credit: f64,
    /// Bytes per second.
    rate: f64,
    last: Option<Instant>,
    dropped: u64,
}

impl Pacer {
    /// A pacer for a video bitrate target of `bps`.
    pub fn new(bps: u32) -> Self {
        Self {
            queue: VecDeque::new(),
            bytes: 0,
            credit: 0.0,
            rate: pace_rate(bps),
            last: None,
            dropped: 0,
        }
    }

    /// Follows a new bitrate target.
    pub fn set_bitrate(&mut self, bps: u32) {
        self.rate = pace_rate(bps);
    }

    /// Queues a datagram; false when the queue was full and it was dropped.
    pub fn push(&mut self, datagram: Vec<u8>) -> bool {
        if self.bytes + datagram.len() > MAX_BYTES {
            self.dropped += 1;
            return false;
        }
        self.bytes += datagram.len();
        self.queue.push_back(datagram);
        true
    }

    /// Hands out what may be sent at `now`, in order.
    pub fn release(&mut self, now: Instant, mut send: impl FnMut(Vec<u8>)) {
        // fast enough to empty what is queued within MAX_DELAY
        let rate = self.rate.max(self.bytes as f64 / MAX_DELAY.as_secs_f64());
        let depth = (rate * BURST.as_secs_f64()).max(1500.0);
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last = Some(now);
        self.credit = (self.credit + elapsed.as_secs_f64() * rate).min(depth);
        if self.queue.is_empty() {
            // an idle link earns no more than one burst
            self.credit = self.credit.max(0.0);
            return;
        }
        // a datagram goes out while there is any credit, so a small frame never waits
        while self.credit > 0.0 {
            let Some(d) = self.queue.pop_front() else {
                break;
            };
            self.bytes -= d.len();
            self.credit -= d.len() as f64;
            send(d);
        }
    }

    /// How long what is queued takes to go out, ms.
    pub fn queued_ms(&self) -> f64 {
        if self.rate > 0.0 {
            (self.bytes as f64 / self.rate * 1000.0).min(MAX_DELAY.as_secs_f64() * 1000.0)
        } else {
            0.0
        }
    }

    /// Datagrams dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets what is queued (the call ended).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

/// Bytes per second for a bitrate target.
fn pace_rate(bps: u32) -> f64 {
    f64::from(bps) * PACE_FACTOR / 8.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the pacer on a 1 ms tick for `ms`; returns (time sent, bytes) of each datagram.
    fn drain(p: &mut Pacer, t0: Instant, from_ms: u64, ms: u64) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for t in from_ms..from_ms + ms {
            p.release(t0 + Duration::from_millis(t), |d| out.push((t, d.len())));
        }
        out
    }

    #[test]
    fn a_small_frame_goes_at_once() {
        let (t0, mut p) = (Instant::now(), Pacer::new(1_000_000));
        // a frame interval of idle link, then a 3-datagram P-frame
        drain(&mut p, t0, 0, 33);
        for _ in 0..3 {
            p.push(vec![0; 1200]);
        }
        let sent = drain(&mut p, t0, 33, 1);
        assert_eq!(sent.len(), 3, "within one tick");
    }

    #[test]
    fn a_keyframe_is_spread_at_two_and_a_half_times_the_bitrate() {
        let (t0, mut p) = (Instant::now(), Pacer::new(1_000_000));
        p.release(t0, |_| {});
        // 24 kB: 192 ms at 1 Mbit/s, ~77 ms at 2.5 (no credit saved up: the pacer is new)
        for _ in 0..20 {
            assert!(p.push(vec![0; 1200]));
        }
        assert!((p.queued_ms() - 76.8).abs() < 1.0, "{}", p.queued_ms());
        let sent = drain(&mut p, t0, 1, 400);
        assert_eq!(sent.len(), 20);
        let last = sent.last().map_or(0, |s| s.0);
        assert!((65..=80).contains(&last), "last datagram at {last} ms");
        // never more than a burst ahead of the rate
        for &(t, _) in &sent {
            let bytes: usize = sent.iter().filter(|s| s.0 <= t).map(|s| s.1).sum();
            let rate = 1_000_000.0 * PACE_FACTOR / 8.0;
            let allowed = (t as f64 / 1000.0) * rate + rate * BURST.as_secs_f64() + 1200.0;
            assert!(bytes as f64 <= allowed, "{bytes} B by {t} ms");
        }
    }

    #[test]
    fn an_encoder_far_over_its_target_is_not_held_back_more_than_max_delay() {
        let (t0, mut p) = (Instant::now(), Pacer::new(100_000));
        p.release(t0, |_| {});
        // 30 kB a frame against a 100 kbit/s target: paced at its rate this would queue for
        // seconds; each frame must still be gone within MAX_DELAY (and a bit)
        let mut sent = Vec::new();
        for f in 0..30u64 {
            for _ in 0..25 {
                p.push(vec![0; 1200]);
            }
            for t in f * 33..(f + 1) * 33 {
                p.release(t0 + Duration::from_millis(t + 1), |d| {
                    sent.push((f, t, d.len()))
                });
            }
            assert!(p.queued_ms() <= 100.0);
        }
        let max_wait = sent
            .iter()
            .map(|&(f, t, _)| t.saturating_sub(f * 33))
            .max()
            .unwrap_or(0);
        assert!(max_wait <= 130, "a datagram waited {max_wait} ms");
    }

    #[test]
    fn an_idle_spell_earns_only_one_burst_and_the_queue_is_bounded() {
        let (t0, mut p) = (Instant::now(), Pacer::new(1_000_000));
        p.release(t0, |_| {});
        drain(&mut p, t0, 1, 5_000);
        for _ in 0..20 {
            p.push(vec![0; 1200]);
        }
        // 20 ms at 2.5 Mbit/s = 6.25 kB of credit after 5 s idle: six datagrams, not twenty
        let first = drain(&mut p, t0, 5_001, 1);
        assert!(first.len() <= 6, "{}", first.len());
        let mut dropped = 0;
        for _ in 0..2_000 {
            if !p.push(vec![0; 1200]) {
                dropped += 1;
            }
        }
        assert!(dropped > 0 && p.dropped() == dropped);
        assert!(p.bytes <= MAX_BYTES);
        p.clear();
        assert_eq!(p.queued_ms(), 0.0);
    }
}
