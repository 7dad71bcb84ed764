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
    /// How fast the interval's frames came in, from the spread of each frame's fragments
    /// (median, kbit/s); 0 when fewer than three frames of two or more fragments were timed,
    /// or when their rates disagree (jitter spread them, not a bottleneck).
    pub path_kbps: u32,
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
    /// The frame whose fragments are being timed: its id, when its first and its latest
    /// fragment arrived (µs), and the bytes that came after the first.
    spread: Option<(u32, u64, u64, u64)>,
    /// Rates of the frames timed this interval, bit/s.
    rates: Vec<u32>,
}

/// Frames timed per interval at most (a report interval holds a dozen at 30 fps).
const MAX_RATES: usize = 64;
/// Frames timed in an interval before its rate is told.
const MIN_RATES: usize = 3;
/// A bottleneck spreads every frame to its own rate, whatever the frame's size: the rates of
/// the middle half of the frames agree within this ratio. Jitter spreads them at random, which
/// says nothing of the path's rate (on the e2e bench's 30±10 ms row a first draft without this
/// check froze longer).
const AGREE: f64 = 0.67;

/// The median of the interval's frame rates (bit/s) in kbit/s, when they agree; else 0.
fn path_kbps(rates: &mut [u32]) -> u32 {
    if rates.len() < MIN_RATES {
        return 0;
    }
    rates.sort_unstable();
    let n = rates.len();
    let (low, mid, high) = (rates[n / 4], rates[n / 2], rates[(3 * n) / 4]);
    if f64::from(low) < f64::from(high) * AGREE {
        return 0;
    }
    (mid / 1000).max(1)
}

impl ArrivalStats {
    /// A fragment of `bytes` of `frame_id`, captured at `capture_us` on the sender's clock,
    /// arrived at `arrival_us` on ours (`now` on the monotonic clock).
    pub fn on_fragment(
        &mut self,
        frame_id: u32,
        bytes: usize,
        capture_us: u64,
        arrival_us: u64,
        now: Instant,
    ) {
        self.time_spread(frame_id, bytes as u64, arrival_us);
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

    /// The sender sends a frame's fragments back to back (or paced a little over the path's
    /// rate): a path slower than that spreads them out to its own rate. A fragment of an
    /// older frame (a resend) belongs to no burst.
    fn time_spread(&mut self, frame_id: u32, bytes: u64, arrival_us: u64) {
        match self.spread {
            Some((id, first, last, b)) if id == frame_id => {
                self.spread = Some((id, first, last.max(arrival_us), b.saturating_add(bytes)));
            }
            Some((id, first, last, b)) if frame_id.wrapping_sub(id) as i32 > 0 => {
                if b > 0 && self.rates.len() < MAX_RATES {
                    // all at once (one read of the socket): faster than we can time
                    let bps = b
                        .saturating_mul(8_000_000)
                        .checked_div(last.saturating_sub(first))
                        .map_or(u32::MAX, |r| r.min(u64::from(u32::MAX)) as u32);
                    self.rates.push(bps);
                }
                self.spread = Some((frame_id, arrival_us, arrival_us, 0));
            }
            Some(_) => {}
            None => self.spread = Some((frame_id, arrival_us, arrival_us, 0)),
        }
    }

    /// Closes the report interval at `now`.
    pub fn report(&mut self, now: Instant) -> ArrivalReport {
        let path_kbps = path_kbps(&mut self.rates);
        self.rates.clear();
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
            path_kbps,
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
                a.on_fragment(k, 700, capture, arrival, now);
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
        a.on_fragment(7, 700, 1_000, 2_000, t0);
        assert_eq!(a.report(t0 + Duration::from_millis(40)).echo, Some((7, 40)));
    }

    #[test]
    fn the_spread_of_each_frames_fragments_times_the_path() {
        let (t0, mut a) = (Instant::now(), ArrivalStats::default());
        // back to back on a fast path: 3 x 700 B, 200 us apart
        feed(&mut a, t0, 0..8, |_| 0);
        let fast = a.report(t0).path_kbps;
        assert!((25_000..30_000).contains(&fast), "{fast}");
        // a 1 Mbit/s bottleneck: 700 B every 5.6 ms; one frame's resend comes much later
        for k in 8..16u32 {
            let capture = 1_000_000 + u64::from(k) * 33_000;
            for i in 0..3u64 {
                let arrival = capture + 5_000 + i * 5_600;
                a.on_fragment(k, 700, capture, arrival, t0);
            }
            if k > 9 {
                a.on_fragment(k - 2, 700, capture - 66_000, capture + 20_000, t0);
            }
        }
        let slow = a.report(t0).path_kbps;
        assert!((950..1_050).contains(&slow), "{slow}");
        // a frame is timed when the next one starts (the last one goes in the next report),
        // and one frame is too few to tell
        a.on_fragment(40, 700, 0, 9_000_000, t0);
        assert_eq!(a.report(t0).path_kbps, 0);
        // nothing of two fragments or more: nothing timed
        a.on_fragment(41, 700, 0, 9_033_000, t0);
        a.on_fragment(42, 700, 0, 9_066_000, t0);
        assert_eq!(a.report(t0).path_kbps, 0);
        // jitter: each frame's two fragments 0.3-20 ms apart, at random
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for k in 50..60u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = 10_000_000 + u64::from(k) * 33_000;
            a.on_fragment(k, 700, 0, at, t0);
            a.on_fragment(k, 700, 0, at + 300 + seed % 20_000, t0);
        }
        assert_eq!(a.report(t0).path_kbps, 0);
    }
}
