//! Sender-side bandwidth adaptation from the receiver's reports: back off fast on loss, creep
//! up slowly while the link is clean — sans-IO, time as an input.

use std::time::{Duration, Instant};

/// What the receiver saw over the last report interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceiverReport {
    /// Share of video fragments missing (0–1).
    pub loss: f32,
    /// Video bits per second that arrived.
    pub receive_bps: u32,
}

/// Least time between two decreases (about a round trip plus a report).
const DOWN_EVERY: Duration = Duration::from_millis(400);
/// Least time between two increases.
const UP_EVERY: Duration = Duration::from_millis(500);

/// The video bitrate target.
#[derive(Debug, Clone)]
pub struct RateController {
    min: u32,
    max: u32,
    current: u32,
    last_change: Option<Instant>,
}

impl RateController {
    /// Starts at `start`, never below `min` nor above `max`.
    pub fn new(start: u32, min: u32, max: u32) -> Self {
        Self {
            min,
            max: max.max(min),
            current: start.clamp(min, max.max(min)),
            last_change: None,
        }
    }

    /// The current target, bit/s.
    pub fn bitrate(&self) -> u32 {
        self.current
    }

    /// Takes a report; returns the new target when it changed.
    pub fn on_report(&mut self, r: ReceiverReport, now: Instant) -> Option<u32> {
        let since = self
            .last_change
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        let next = if r.loss > 0.07 && since >= DOWN_EVERY {
            // heavy loss: the link is full. Go below what actually arrived.
            let by_rate = (f64::from(r.receive_bps) * 0.85) as u32;
            let by_factor = (f64::from(self.current) * 0.7) as u32;
            by_rate.min(by_factor).max(by_factor / 2)
        } else if r.loss < 0.02 && since >= UP_EVERY {
            (f64::from(self.current) * 1.08) as u32 + 10_000
        } else {
            return None;
        };
        let next = next.clamp(self.min, self.max);
        if next == self.current {
            return None;
        }
        self.current = next;
        self.last_change = Some(now);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link of `cap` bit/s: what is sent above it is lost.
    fn report(sent: u32, cap: u32) -> ReceiverReport {
        let arrived = sent.min(cap);
        ReceiverReport {
            loss: 1.0 - arrived as f32 / sent.max(1) as f32,
            receive_bps: arrived,
        }
    }

    #[test]
    fn bitrate_falls_under_a_rate_cap_and_climbs_back_after_it() {
        let mut rc = RateController::new(1_500_000, 150_000, 2_500_000);
        let t0 = Instant::now();
        let mut now = t0;
        let step = Duration::from_millis(250);
        // 10 s under a 1 Mbit/s cap
        for _ in 0..40 {
            now += step;
            rc.on_report(report(rc.bitrate(), 1_000_000), now);
        }
        // it probes up to the cap and backs off past it: it never sits far above
        assert!(
            rc.bitrate() <= 1_100_000,
            "at most 10 % over the cap: {}",
            rc.bitrate()
        );
        assert!(rc.bitrate() >= 500_000, "not collapsed: {}", rc.bitrate());
        // the cap lifts: back up within 15 s
        for _ in 0..60 {
            now += step;
            rc.on_report(report(rc.bitrate(), 10_000_000), now);
        }
        assert!(rc.bitrate() >= 1_500_000, "climbed back: {}", rc.bitrate());
        assert!(rc.bitrate() <= 2_500_000);
    }

    #[test]
    fn stays_within_bounds_and_does_not_flap_on_light_loss() {
        let mut rc = RateController::new(1_000_000, 200_000, 1_200_000);
        let mut now = Instant::now();
        let mut changes = 0;
        for _ in 0..100 {
            now += Duration::from_millis(250);
            let light = ReceiverReport {
                loss: 0.05,
                receive_bps: rc.bitrate(),
            };
            if rc.on_report(light, now).is_some() {
                changes += 1;
            }
        }
        assert_eq!(
            changes, 0,
            "5 % loss is repaired by resends, not by the bitrate"
        );
        for _ in 0..100 {
            now += Duration::from_millis(250);
            rc.on_report(report(rc.bitrate(), 1), now);
        }
        assert_eq!(rc.bitrate(), 200_000);
    }
}
