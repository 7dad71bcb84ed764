//! What the receiver measures of the peer's video as it arrives, for its reports: the jitter
//! of frame arrivals (RFC 3550's estimator) and the standing queue — how far the smallest
//! one-way delay of the last report interval sits above the smallest of the last 10 s. A
//! bottleneck's queue shows there long before it overflows into loss, and a link with a big
//! buffer never loses at all: it only gets slower. Sans-IO: times are inputs.

use std::collections::VecDeque;
use std::time::Instant;

/// Report intervals whose minimum delays make the base (10 s at 250 ms reports).
const BASE_WINDOWS: usize = 40;

/// The arrival measures of one report interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrivalReport {
    /// Smallest one-way delay of the interval above the smallest of the last 10 s, ms.
    pub queue_ms: u16,
    /// Inter-arrival jitter of frames, ms.
    pub jitter_ms: u16,
    /// The last frame heard from and how long ago, ms: the sender's round-trip clock.
    pub echo: Option<(u32, u16)>,
}

/// Running measures of the peer's video arrivals.
#[derive(Debug, Default)]
pub struct ArrivalStats {
    /// Smallest (arrival − capture) of this interval, µs (clocks of two machines: only
    /// differences mean anything).
    window_min: Option<i64>,
    /// The smallest of each past interval, newest last.
    minima: VecDeque<i64>,
    /// The frame last seen and its transit, µs.
    last_frame: Option<(u32, i64)>,
    /// RFC 3550 jitter, µs.
    jitter_us: f64,
    /// The frame last heard from, and when.
    echo: Option<(u32, Instant)>,
}

impl ArrivalStats {
    /// A fragment of `frame_id`, captured at `capture_us` on the sender's clock, arrived at
    /// `arrival_us` on ours (`now` on the monotonic clock).
    pub fn on_fragment(&mut self, frame_id: u32, capture_us: u64, arrival_us: u64, now: Instant) {
        let transit = arrival_us as i64 - capture_us as i64;
        self.window_min = Some(self.window_min.map_or(transit, |m| m.min(transit)));
        match self.last_frame {
            Some((id, _)) if id == frame_id => {}
            Some((_, prev)) => {
                // the first piece of each frame: its transit against the previous frame's
                let d = (transit - prev).unsigned_abs() as f64;
                self.jitter_us += (d - self.jitter_us) / 16.0;
                self.last_frame = Some((frame_id, transit));
            }
            None => self.last_frame = Some((frame_id, transit)),
        }
        self.echo = Some((frame_id, now));
    }

    /// Closes the report interval at `now`.
    pub fn report(&mut self, now: Instant) -> ArrivalReport {
        let queue_us = match self.window_min.take() {
            Some(m) => {
                if self.minima.len() >= BASE_WINDOWS {
                    self.minima.pop_front();
                }
                self.minima.push_back(m);
                let base = self.minima.iter().copied().min().unwrap_or(m);
                m - base
            }
            None => 0,
        };
        let ms = |us: f64| (us / 1000.0).round().clamp(0.0, f64::from(u16::MAX)) as u16;
        ArrivalReport {
            queue_ms: ms(queue_us as f64),
            jitter_ms: ms(self.jitter_us),
            echo: self.echo.map(|(id, at)| {
                let held = now.saturating_duration_since(at).as_millis();
                (id, held.min(u128::from(u16::MAX)) as u16)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Frames of 3 fragments every 33 ms; `extra(k)` is the queueing delay of frame k, µs.
    fn feed(
        a: &mut ArrivalStats,
        t0: Instant,
        frames: std::ops::Range<u32>,
        extra: impl Fn(u32) -> u64,
    ) {
        for k in frames {
            let capture = 1_000_000 + u64::from(k) * 33_000;
            for i in 0..3u64 {
                let arrival = capture + 5_000 + i * 200 + extra(k);
                let now = t0 + Duration::from_micros(arrival - 1_000_000);
                a.on_fragment(k, capture, arrival, now);
            }
        }
    }

    #[test]
    fn a_growing_queue_shows_and_a_steady_path_does_not() {
        let (t0, mut a) = (Instant::now(), ArrivalStats::default());
        // 2 s of a clean path, reported every 8 frames
        for w in 0..8 {
            feed(&mut a, t0, w * 8..w * 8 + 8, |_| 0);
            assert_eq!(a.report(t0).queue_ms, 0);
        }
        // then a bottleneck: each frame waits 4 ms more than the one before
        let mut last = 0;
        for w in 8..14 {
            feed(&mut a, t0, w * 8..w * 8 + 8, |k| u64::from(k - 63) * 4_000);
            let q = a.report(t0).queue_ms;
            assert!(q > last, "the queue grows: {q} after {last}");
            last = q;
        }
        assert!(last > 100, "{last}");
    }

    #[test]
    fn jitter_follows_rfc3550_and_a_constant_offset_is_no_jitter() {
        let (t0, mut a) = (Instant::now(), ArrivalStats::default());
        // a steady path
        feed(&mut a, t0, 0..100, |_| 0);
        assert_eq!(a.report(t0).jitter_ms, 0);
        // alternate frames 10 ms late: |D| = 10 ms every frame, J converges to 10 ms
        feed(
            &mut a,
            t0,
            100..400,
            |k| if k % 2 == 0 { 10_000 } else { 0 },
        );
        assert_eq!(a.report(t0).jitter_ms, 10);
    }

    #[test]
    fn echo_names_the_last_frame_and_how_long_ago() {
        let (t0, mut a) = (Instant::now(), ArrivalStats::default());
        assert_eq!(a.report(t0).echo, None);
        a.on_fragment(7, 1_000, 2_000, t0);
        assert_eq!(a.report(t0 + Duration::from_millis(40)).echo, Some((7, 40)));
    }
}
