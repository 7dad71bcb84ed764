//! How much the speaker's ring holds beyond what the device's next request takes: the safety
//! margin against the call loop being late to refill it and against a request that comes
//! early or asks for more (see `refill`). It follows the underruns the way the jitter buffer's
//! target follows network jitter: up a millisecond at every underrun, and back down slowly
//! once they stop, so a quiet machine keeps the smallest delay and a busy one stops glitching.

use std::time::{Duration, Instant};

/// The margin never goes below this, ms.
pub const MIN_MARGIN_MS: f64 = 2.0;
/// Nor above this, ms.
pub const MAX_MARGIN_MS: f64 = 10.0;
/// Added at each underrun, ms.
const STEP_UP_MS: f64 = 1.0;
/// Taken off after each quiet spell, ms.
const STEP_DOWN_MS: f64 = 0.5;
/// A spell with no underrun that earns a step down.
const QUIET: Duration = Duration::from_secs(5);
/// After the speaker starts being fed, how long its underruns are the ring filling up for
/// the first time rather than late refills.
pub const WARM_UP: Duration = Duration::from_millis(500);

/// The adaptive margin, driven by the speaker's underrun counter.
#[derive(Debug, Clone)]
pub struct PlayoutMargin {
    margin_ms: f64,
    underruns: u64,
    quiet_since: Option<Instant>,
    fed_since: Option<Instant>,
}

impl Default for PlayoutMargin {
    fn default() -> Self {
        Self {
            margin_ms: MIN_MARGIN_MS,
            underruns: 0,
            quiet_since: None,
            fed_since: None,
        }
    }
}

impl PlayoutMargin {
    /// Feeds the speaker's underrun counter (cumulative) at `now`; returns the margin, ms.
    pub fn update(&mut self, now: Instant, underruns: u64) -> f64 {
        let new = underruns.saturating_sub(self.underruns);
        self.underruns = underruns;
        let fed_since = *self.fed_since.get_or_insert(now);
        if now.saturating_duration_since(fed_since) < WARM_UP {
            return self.margin_ms;
        }
        if new > 0 {
            // a burst of underruns in one tick is one late refill: one step
            self.margin_ms = (self.margin_ms + STEP_UP_MS).min(MAX_MARGIN_MS);
            self.quiet_since = Some(now);
        } else {
            let since = *self.quiet_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= QUIET {
                self.margin_ms = (self.margin_ms - STEP_DOWN_MS).max(MIN_MARGIN_MS);
                self.quiet_since = Some(now);
            }
        }
        self.margin_ms
    }

    /// The speaker is not being fed (its sound server is still starting): its underruns
    /// (cumulative counter) are no late refill, and feeding it starts a new warm-up.
    pub fn idle(&mut self, underruns: u64) {
        self.underruns = underruns;
        self.fed_since = None;
    }

    /// The current margin, ms.
    pub fn margin_ms(&self) -> f64 {
        self.margin_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        margin: &mut PlayoutMargin,
        t0: Instant,
        from_ms: u64,
        to_ms: u64,
        underrun_every_ms: Option<u64>,
        count: &mut u64,
    ) {
        for ms in (from_ms..to_ms).step_by(1) {
            if underrun_every_ms.is_some_and(|e| ms % e == 0) {
                *count += 1;
            }
            margin.update(t0 + Duration::from_millis(ms), *count);
        }
    }

    #[test]
    fn a_quiet_machine_keeps_the_minimum() {
        let (t0, mut m, mut n) = (Instant::now(), PlayoutMargin::default(), 0);
        run(&mut m, t0, 0, 60_000, None, &mut n);
        assert_eq!(m.margin_ms(), MIN_MARGIN_MS);
    }

    #[test]
    fn underruns_raise_it_to_the_cap_and_quiet_brings_it_back() {
        let (t0, mut m, mut n) = (Instant::now(), PlayoutMargin::default(), 0);
        // one underrun every 200 ms for 3 s: 15 steps, capped
        run(&mut m, t0, 0, 3_000, Some(200), &mut n);
        assert_eq!(m.margin_ms(), MAX_MARGIN_MS);
        // 10 s of quiet: two steps down only (slow on the way down)
        run(&mut m, t0, 3_000, 13_000, None, &mut n);
        assert!(
            (m.margin_ms() - (MAX_MARGIN_MS - 2.0 * STEP_DOWN_MS)).abs() < 1e-9,
            "{}",
            m.margin_ms()
        );
        // a long quiet spell returns to the minimum
        run(&mut m, t0, 13_000, 200_000, None, &mut n);
        assert_eq!(m.margin_ms(), MIN_MARGIN_MS);
    }

    #[test]
    fn a_burst_in_one_tick_is_one_step_and_a_restarted_counter_is_no_underrun() {
        let (t0, mut m) = (Instant::now(), PlayoutMargin::default());
        m.update(t0, 0);
        let t0 = t0 + WARM_UP;
        m.update(t0, 0);
        assert_eq!(
            m.update(t0 + Duration::from_millis(1), 5),
            MIN_MARGIN_MS + STEP_UP_MS
        );
        // the speaker was reopened: its counter restarts below ours, which is no underrun
        assert_eq!(
            m.update(t0 + Duration::from_millis(2), 0),
            MIN_MARGIN_MS + STEP_UP_MS
        );
        assert_eq!(
            m.update(t0 + Duration::from_millis(3), 1),
            MIN_MARGIN_MS + 2.0 * STEP_UP_MS
        );
    }

    #[test]
    fn underruns_while_idle_or_warming_up_are_not_late_refills() {
        let (t0, mut m) = (Instant::now(), PlayoutMargin::default());
        // the sound server starts: hundreds of underruns before anything is fed
        m.idle(300);
        // fed from now: the ring fills up, and underruns meanwhile are the first fill
        assert_eq!(m.update(t0, 340), MIN_MARGIN_MS);
        assert_eq!(m.update(t0 + WARM_UP / 2, 345), MIN_MARGIN_MS);
        // after the warm-up, one is a late refill
        assert_eq!(m.update(t0 + WARM_UP, 345), MIN_MARGIN_MS);
        assert_eq!(
            m.update(t0 + WARM_UP + Duration::from_millis(1), 346),
            MIN_MARGIN_MS + STEP_UP_MS
        );
        // idle again (the speaker restarted): a new warm-up
        m.idle(400);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(m.update(t1, 420), MIN_MARGIN_MS + STEP_UP_MS);
    }
}
