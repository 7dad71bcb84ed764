//! When the speaker's ring gets its next frame: just before the callback that takes it, not
//! as soon as there is room. The sound server asks for one chunk at a steady pace, so the
//! next request is due one chunk after the last; a frame decoded the moment the ring runs
//! low would wait there most of a period (and behind a safety margin of older samples), a
//! frame decoded a little before the request waits only that little.

use std::time::{Duration, Instant};

/// The ring's surplus goes at most one sample in this many (1 %): 0.6 s for a 5 ms surplus.
pub const SURPLUS_SHARE: usize = 100;

/// What the refill aims for at one tick of the call loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refill {
    /// Fill the ring up to at least this many samples now.
    pub low_water: usize,
    /// Samples in the ring at a pop that are not extra delay: the frame after them still
    /// reaches the device in the next request. Above it, the ring's contents count as delay
    /// that playing slightly faster takes away.
    pub floor: usize,
    /// Time from now until the next request, when it is known.
    pub until_due: Option<Duration>,
    /// Frames are decoded just in time for the request (else as soon as the ring is low).
    pub timed: bool,
    /// Below this many samples a frame is taken even if its packet has not come (and is
    /// concealed); above it, up to `low_water`, only a frame whose packet is here.
    pub must: usize,
    /// When to look again, from now, once the ring holds `low_water`: a lead before the
    /// request the next frame is for (the next one, or the one after if the next one is
    /// within the lead and so already provided for). `None` while requests are not timed:
    /// then the ring has to be watched.
    pub next_in: Option<Duration>,
    /// Samples a request takes.
    pub chunk: usize,
    /// The time between requests, when they are timed.
    pub period: Option<Duration>,
    /// How long before a request its frame must be in the ring.
    pub lead: Duration,
}

impl Refill {
    /// When to look again, from now, once this tick's refill has left `buffered` samples in
    /// the ring: a lead before the first request the ring cannot serve beyond its margin.
    /// Requests smaller than a frame (2.5 ms ones for 5 ms frames) take a frame in several
    /// bites, and the loop need not wake for the bites the ring already holds.
    pub fn next_in_holding(&self, buffered: usize) -> Option<Duration> {
        let next_in = self.next_in?;
        let (Some(until_due), Some(period)) = (self.until_due, self.period) else {
            return Some(next_in);
        };
        // requests the ring serves, the next one counted as the first
        let served = buffered.saturating_sub(self.floor) / self.chunk.max(1);
        if served < 2 {
            return Some(next_in);
        }
        let first_unserved = until_due + period * u32::try_from(served).unwrap_or(u32::MAX);
        Some(first_unserved.saturating_sub(self.lead).max(next_in))
    }

    /// The delay, ms, that playing slightly faster should take away at a pop: the ring's
    /// surplus over its floor, and the jitter buffer's excess over its target (`jitter_ms`)
    /// unless that is under a frame (`frame_ms`). Timed pops are locked to the device's
    /// requests, so up to a frame of it is the phase between packets and requests: taking it
    /// away would only make the next frame due before its packet is here.
    pub fn excess_ms(&self, jitter_ms: f64, buffered: usize, rate: u32, frame_ms: f64) -> f64 {
        let over = (buffered as f64 - self.floor as f64) * 1000.0 / f64::from(rate.max(1));
        if self.timed && (0.0..=frame_ms).contains(&jitter_ms) {
            over
        } else {
            jitter_ms + over
        }
    }

    /// Samples of an `n`-sample frame that may be dropped when the ring holds `buffered`:
    /// timed pops keep what the next request takes, unless the jitter buffer is a whole
    /// frame (`frame_ms`) over its target, and take the ring's surplus away gently, at most
    /// one sample in [`SURPLUS_SHARE`]: a request that came early or asked for more leaves up
    /// to a frame of it now and then, and playing 4 % faster every time smears a steady tone.
    pub fn max_drop(&self, jitter_ms: f64, buffered: usize, n: usize, frame_ms: f64) -> usize {
        if self.timed && jitter_ms <= frame_ms {
            (buffered + n)
                .saturating_sub(self.low_water)
                .min(n / SURPLUS_SHARE)
        } else {
            n
        }
    }
}

/// Plans the refill at `now`.
///
/// `last_request` is when the device last took a chunk of `chunk` samples at `rate` Hz;
/// `lead` is how long before the next request the frame must be in the ring (the loop's
/// wake-up granularity and its lateness); `margin` is how many samples the ring holds
/// beyond what the next request takes, against requests that come early or ask for more.
/// Only a request no bigger than a `frame` (in samples) is waited for: a bigger one needs
/// several frames at once, the later ones long before their packets are due.
pub fn plan(
    now: Instant,
    last_request: Option<Instant>,
    chunk: usize,
    frame: usize,
    rate: u32,
    lead: Duration,
    margin: usize,
) -> Refill {
    let Some(last) = last_request.filter(|_| chunk > 0 && chunk <= frame && rate > 0) else {
        // keep a chunk and the margin in the ring at all times
        return Refill {
            low_water: chunk + margin,
            floor: chunk + margin,
            until_due: None,
            timed: false,
            must: chunk + margin,
            next_in: None,
            chunk,
            period: None,
            lead,
        };
    };
    let period = Duration::from_secs_f64(chunk as f64 / f64::from(rate));
    let due = last + period;
    let until_due = due.saturating_duration_since(now);
    let due_soon = until_due <= lead;
    let low_water = if due_soon {
        chunk + margin
    } else {
        // too early: a frame decoded now would wait in the ring; the margin alone stays,
        // for a request that comes early or asks for more (the server sometimes asks for
        // half a chunk between two)
        margin
    };
    Refill {
        low_water,
        floor: margin,
        until_due: Some(until_due),
        timed: true,
        // what the margin asks for can wait for its packet; the request itself cannot
        must: if due_soon { chunk } else { 0 },
        next_in: Some(if due_soon {
            // requests closer together than the lead: once a request, not continually
            let floor = if period < lead {
                period
            } else {
                Duration::ZERO
            };
            (until_due + period).saturating_sub(lead).max(floor)
        } else {
            until_due.saturating_sub(lead)
        }),
        chunk,
        period: Some(period),
        lead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const CHUNK: usize = 240; // 5 ms

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn without_a_request_seen_the_ring_keeps_a_chunk_and_the_margin() {
        let t = Instant::now();
        let r = plan(t, None, CHUNK, CHUNK, RATE, ms(3), 96);
        assert_eq!(r.low_water, CHUNK + 96);
        assert_eq!(r.floor, CHUNK + 96);
        assert_eq!(r.must, CHUNK + 96);
        assert_eq!(r.until_due, None);
        assert_eq!(r.next_in, None, "the ring is watched");
    }

    #[test]
    fn right_after_a_request_only_the_margin_is_kept() {
        let t = Instant::now();
        let r = plan(t + ms(1), Some(t), CHUNK, CHUNK, RATE, ms(3), 96);
        assert_eq!(r.low_water, 96);
        assert_eq!(r.floor, 96);
        assert_eq!(r.must, 0);
        assert_eq!(r.until_due, Some(ms(4)));
        // the frame for the next request is decoded the lead before it
        assert_eq!(r.next_in, Some(ms(1)));
    }

    #[test]
    fn within_the_lead_of_the_next_request_a_chunk_must_be_there() {
        let t = Instant::now();
        let r = plan(t + ms(2), Some(t), CHUNK, CHUNK, RATE, ms(3), 96);
        assert_eq!(r.low_water, CHUNK + 96);
        assert_eq!(r.floor, 96);
        assert_eq!(r.must, CHUNK);
        assert_eq!(r.until_due, Some(ms(3)));
        // provided for now: the one after is the next to decode for
        assert_eq!(r.next_in, Some(ms(5)));
        // the loop woken then finds it within the lead
        let later = plan(t + ms(7), Some(t + ms(5)), CHUNK, CHUNK, RATE, ms(3), 96);
        assert_eq!(later.must, CHUNK);
    }

    #[test]
    fn a_late_request_keeps_a_chunk_ready() {
        let t = Instant::now();
        let r = plan(t + ms(40), Some(t), CHUNK, CHUNK, RATE, ms(3), 96);
        assert_eq!(r.low_water, CHUNK + 96);
        assert_eq!(r.until_due, Some(Duration::ZERO));
        // it has its frame: next time is a period on, not at once again
        assert_eq!(r.next_in, Some(ms(2)));
    }

    #[test]
    fn requests_shorter_than_the_lead_are_looked_at_once_each_not_continually() {
        let t = Instant::now();
        // 1 ms requests (48 samples), a 3 ms lead: always due soon
        let r = plan(t + ms(1), Some(t), 48, CHUNK, RATE, ms(3), 96);
        assert!(r.timed);
        assert_eq!(r.must, 48);
        assert_eq!(r.next_in, Some(ms(1)));
    }

    #[test]
    fn a_frame_that_serves_several_small_requests_is_not_looked_at_before_each() {
        let t = Instant::now();
        // 2.5 ms requests (120 samples) for 5 ms frames, 1 ms after a request, a 1.5 ms lead
        let lead = Duration::from_micros(1500);
        let r = plan(t + ms(1), Some(t), 120, CHUNK, RATE, lead, 96);
        assert_eq!(r.until_due, Some(Duration::from_micros(1500)));
        // a frame and the margin: the next two requests are served, the loop comes back a
        // lead before the third
        assert_eq!(
            r.next_in_holding(96 + 240),
            Some(Duration::from_micros(1500 + 2 * 2500 - 1500))
        );
        // half a frame left: it serves the next request only, as planned
        assert_eq!(r.next_in_holding(96 + 120), r.next_in);
        assert_eq!(r.next_in_holding(0), r.next_in);
        // never sooner than planned
        let far = plan(t + ms(1), Some(t), 120, CHUNK, RATE, ms(4), 96);
        assert!(far.next_in_holding(96 + 240) >= far.next_in);
    }

    #[test]
    fn untimed_requests_are_watched_whatever_the_ring_holds() {
        let t = Instant::now();
        let r = plan(t, None, CHUNK, CHUNK, RATE, ms(3), 96);
        assert_eq!(r.next_in_holding(10 * CHUNK), None);
    }

    #[test]
    fn a_request_of_several_frames_is_not_waited_for() {
        let t = Instant::now();
        let r = plan(t + ms(1), Some(t), 4 * CHUNK, CHUNK, RATE, ms(3), 96);
        assert!(!r.timed);
        assert_eq!(r.low_water, 4 * CHUNK + 96);
        assert_eq!(r.floor, 4 * CHUNK + 96);
    }

    #[test]
    fn timed_pops_take_away_the_surplus_but_not_the_phase() {
        let t = Instant::now();
        let r = plan(t + ms(3), Some(t), CHUNK, CHUNK, RATE, ms(3), 96);
        assert!(r.timed);
        // 1 ms over the floor, the jitter buffer 3 ms over target: only the surplus goes
        assert!((r.excess_ms(3.0, 96 + 48, RATE, 5.0) - 1.0).abs() < 1e-9);
        // under target: it holds back
        assert!((r.excess_ms(-2.0, 96 + 48, RATE, 5.0) + 1.0).abs() < 1e-9);
        // over a frame: all of it
        assert!((r.excess_ms(7.0, 96 + 48, RATE, 5.0) - 8.0).abs() < 1e-9);
        // gently, and what the next request takes stays (97 + 240 - 336 = 1)
        assert_eq!(r.max_drop(3.0, 96 + 48, CHUNK, 5.0), CHUNK / SURPLUS_SHARE);
        assert_eq!(r.max_drop(3.0, 96 + 1, CHUNK, 5.0), 1);
        assert_eq!(r.max_drop(7.0, 96 + 48, CHUNK, 5.0), CHUNK);
    }

    #[test]
    fn untimed_pops_count_the_ring_below_its_mark_as_delay_gone() {
        let r = plan(Instant::now(), None, CHUNK, CHUNK, RATE, ms(3), 96);
        assert!(!r.timed);
        // 2 ms below the mark, 3 ms over target: 1 ms to take away
        assert!((r.excess_ms(3.0, CHUNK, RATE, 5.0) - 1.0).abs() < 1e-9);
        assert_eq!(r.max_drop(3.0, CHUNK, CHUNK, 5.0), CHUNK);
    }

    #[test]
    fn a_zero_chunk_falls_back_to_the_margin() {
        let t = Instant::now();
        let r = plan(t, Some(t), 0, CHUNK, RATE, ms(3), 96);
        assert_eq!(r.low_water, 96);
        assert_eq!(r.until_due, None);
    }
}
