//! The share of the peer's video fragments lost, as the receiver reports it: taken over at
//! least [`SAMPLE`] fragments, reaching back over past report intervals when the last one
//! had fewer. A 480p call at its usual bitrate carries 8–15 fragments in a 250 ms report, so
//! on a link losing 5 % at random a report now and then showed 12–29 % by chance; the
//! sender's rate controller took that for a full link and cut the bitrate, twice in a row at
//! times, and the picture stepped down a size or two (in 7 of the 16 directions of the H.264
//! rows with loss in session 24's four e2e tables). Over 96 fragments a 5 % loss reads 5 ± 2
//! %, and a link that starts losing half of them still shows over 10 % within two reports.
//! A call's first reports have not seen 96 yet: until the intervals kept are all there, what
//! they have not seen counts as arrived (in a simulation of 200 calls' first 3 s at 5 %, 51
//! at 480p and 24 at 720p had the bitrate cut on each interval's own share; with this share, 1
//! and 0; without that prior, 29 and 23). Sans-IO.

use std::collections::VecDeque;

/// Fragments (arrived or missing) a reported share is taken over at least.
pub const SAMPLE: u64 = 96;
/// Report intervals it may reach back over (3 s at 250 ms reports): older news says little
/// of the link now, however few fragments there were.
pub const INTERVALS: usize = 12;

/// Arrived and missing fragments of the last few report intervals.
#[derive(Debug, Default, Clone)]
pub struct LossShare {
    /// `(arrived, missing)` per interval, newest last.
    intervals: VecDeque<(u64, u64)>,
}

impl LossShare {
    /// Ends an interval in which `arrived` fragments came and `missing` were found missing;
    /// returns the share lost (0–1) over the newest intervals that together hold at least
    /// [`SAMPLE`] fragments (all [`INTERVALS`] of them when they hold fewer), 0 when none;
    /// over [`SAMPLE`] at least while fewer than [`INTERVALS`] intervals have ended.
    pub fn end_interval(&mut self, arrived: u64, missing: u64) -> f64 {
        if self.intervals.len() >= INTERVALS {
            self.intervals.pop_front();
        }
        self.intervals.push_back((arrived, missing));
        let (mut seen, mut lost) = (0u64, 0u64);
        for &(a, m) in self.intervals.iter().rev() {
            seen = seen.saturating_add(a).saturating_add(m);
            lost = lost.saturating_add(m);
            if seen >= SAMPLE {
                break;
            }
        }
        // a call's first seconds have not seen enough yet: what they have not seen counts as
        // arrived, until the intervals kept are all there
        let over = if self.intervals.len() < INTERVALS {
            seen.max(SAMPLE)
        } else {
            seen
        };
        if over == 0 {
            0.0
        } else {
            lost as f64 / over as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rate::{RateController, ReceiverReport};

    /// A link losing fragments at random, by a fixed pseudo-random sequence from `state`.
    struct Link {
        state: u64,
    }

    impl Link {
        /// Whether the next fragment is lost, at `permille` in a thousand.
        fn lost(&mut self, permille: u64) -> bool {
            self.state = self
                .state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.state >> 33) % 1000 < permille
        }

        /// One report interval of `n` fragments; returns (arrived, missing).
        fn interval(&mut self, n: u64, permille: u64) -> (u64, u64) {
            let missing = (0..n).filter(|_| self.lost(permille)).count() as u64;
            (n - missing, missing)
        }
    }

    /// Bitrate cuts by a rate controller fed `reports` reports from a call's start, each of
    /// `per` fragments (0.3 Mbit/s arriving, no queue) on a link losing 5 % at random;
    /// `windowed` reports the share as [`LossShare`] does, else each interval's own.
    fn cuts(windowed: bool, seed: u64, per: u64, reports: u32) -> usize {
        let mut link = Link { state: seed };
        let mut share = LossShare::default();
        let t0 = std::time::Instant::now();
        let mut rate = RateController::new(1_000_000, 100_000, 1_000_000);
        let mut cuts = 0;
        for k in 0..reports {
            let (arrived, missing) = link.interval(per, 50);
            let whole = share.end_interval(arrived, missing);
            let loss = if windowed {
                whole
            } else {
                missing as f64 / per as f64
            };
            let before = rate.bitrate();
            let now = t0 + std::time::Duration::from_millis(250 * u64::from(k));
            let report = ReceiverReport {
                loss: loss as f32,
                receive_bps: 300_000,
                queue_ms: 0,
            };
            if rate.on_report(report, now).is_some_and(|b| b < before) {
                cuts += 1;
            }
        }
        cuts
    }

    #[test]
    fn light_random_loss_on_a_thin_stream_cuts_no_bitrate() {
        // a minute of a 480p call's reports (10 fragments each)
        for seed in [7, 11, 13] {
            let (raw, windowed) = (cuts(false, seed, 10, 240), cuts(true, seed, 10, 240));
            // each interval on its own: a chance burst of two or three lost fragments reads
            // 20-30 % and cuts the bitrate several times a minute
            assert!(
                raw >= 3,
                "seed {seed}: {raw} cuts on each interval's own share"
            );
            assert!(windowed * 3 <= raw, "seed {seed}: {windowed} against {raw}");
        }
    }

    #[test]
    fn a_calls_first_seconds_of_light_random_loss_cut_no_bitrate() {
        // the first 3 s of 200 calls, at 480p's 10 fragments a report and 720p's 37
        for per in [10, 37] {
            let calls = |windowed| {
                (0..200u64)
                    .filter(|&seed| cuts(windowed, seed * 7919 + 1, per, 12) > 0)
                    .count()
            };
            let (raw, windowed) = (calls(false), calls(true));
            assert!(
                raw >= 20,
                "{per} a report: {raw} calls cut on each interval's own"
            );
            assert!(
                windowed <= 2,
                "{per} a report: {windowed} calls cut (raw: {raw})"
            );
        }
    }

    #[test]
    fn heavy_loss_shows_within_two_reports() {
        // from a call's start, on a thin stream
        let mut share = LossShare::default();
        let first = share.end_interval(5, 5);
        let second = share.end_interval(5, 5);
        assert!(second > 0.1, "{first:.3} then {second:.3}");
        // and later on
        let mut link = Link { state: 11 };
        let mut share = LossShare::default();
        for _ in 0..20 {
            let (a, m) = link.interval(10, 50);
            share.end_interval(a, m);
        }
        // the link starts losing half of what is sent
        let first = share.end_interval(5, 5);
        let second = share.end_interval(5, 5);
        assert!(second > 0.1, "{first:.3} then {second:.3}");
    }

    #[test]
    fn a_thick_stream_is_judged_on_its_last_interval_alone() {
        let mut share = LossShare::default();
        share.end_interval(100, 0);
        // SAMPLE fragments in the interval: enough on their own
        let missing = SAMPLE / 10;
        let expected = missing as f64 / SAMPLE as f64;
        assert!((share.end_interval(SAMPLE - missing, missing) - expected).abs() < 1e-9);
        // and nothing, reaching back over every interval kept: 0
        let mut empty = LossShare::default();
        assert_eq!(empty.end_interval(0, 0), 0.0);
        // a share reaches back over at most INTERVALS intervals
        let mut old = LossShare::default();
        old.end_interval(0, 5);
        for _ in 1..INTERVALS {
            old.end_interval(1, 0);
        }
        assert!(old.end_interval(1, 0) == 0.0, "the lost interval fell out");
    }
}
