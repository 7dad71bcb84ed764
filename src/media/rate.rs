//! Sender-side bandwidth adaptation from the receiver's reports: back off fast on loss or on
//! a queue standing on the path, creep up slowly while the link is clean — sans-IO, time as
//! an input.

use std::time::{Duration, Instant};

/// What the receiver saw over the last report interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceiverReport {
    /// Share of video fragments missing (0–1).
    pub loss: f32,
    /// Video bits per second that arrived.
    pub receive_bps: u32,
    /// Standing queue on the path (smallest one-way delay of the interval above the smallest
    /// of the last seconds), ms.
    pub queue_ms: u16,
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
    /// Loss smoothed over the last few reports: a short report of a lossy but uncongested
    /// link often shows a burst by chance.
    loss: Option<f32>,
    /// When the last report came, or (before any) when video started going out.
    heard: Option<Instant>,
    /// When video last went out.
    sent: Option<Instant>,
    /// Reports in a row that saw a standing queue.
    queued: u32,
    /// Reports in a row whose queue grew, and the last queue reported.
    rising: u32,
    /// Reports in a row whose queue grew at all ([`CREEP_MS`] or more).
    creeping: u32,
    /// Reports in a row with a queue of [`PROBE_QUEUE_MS`] or more.
    standing: u32,
    last_queue_ms: u16,
    /// What arrived the last time the link was full (the link's rate, as far as we know),
    /// and when that was.
    link: Option<(u32, Instant)>,
    /// The last increase: when, and from what.
    raised_from: Option<(Instant, u32)>,
}

/// Sending video and hearing no report for this long means the reports are lost on a
/// link so full that they cannot get through: back off without them.
const SILENCE: Duration = Duration::from_secs(1);

/// Smoothed loss above which the link counts as full.
const BACK_OFF_LOSS: f32 = 0.1;
/// Sending under this share of the target is sending what the encoder had, not what the
/// target allowed: then loss alone does not make what arrived the link's rate.
const APP_LIMITED: f64 = 0.6;
/// Loss of this share or more in one report is a full or broken link, whatever was sent.
const HEAVY_LOSS: f32 = 0.5;
/// Smoothed loss under which the bitrate may probe upwards: light random loss (which
/// resends repair) must not pin a call at its slow-start rate; a full link shows as a
/// standing queue or as loss well above this.
const PROBE_LOSS: f32 = 0.075;
/// Weight of the newest report in the smoothed loss.
const LOSS_WEIGHT: f32 = 0.25;
/// A standing queue this long (ms) in two reports in a row means the link is full: a link
/// with a big buffer gets slower long before it loses anything (a keyframe's burst alone
/// lasts one report).
const BACK_OFF_QUEUE_MS: u16 = 40;
/// Reports in a row with a standing queue before backing off.
const BACK_OFF_QUEUED_REPORTS: u32 = 2;
/// ...and while the video sends far under its target (see [`APP_LIMITED`]). Then what
/// arrives is what the encoder had, not what the link carries, and backing off to it cut a
/// 480p call under 5 % loss and 30 ± 10 ms jitter from 1000 to 350 kbit/s and 480x360 in
/// one report (2 of the 24 lossy H.264 calls of session 25's e2e tables); a stall of the
/// sending or relaying process looks like a queue for a report or two, and a link slower
/// than what is sent keeps its queue growing.
const APP_LIMITED_QUEUED_REPORTS: u32 = 3;
/// Standing queue under which the bitrate may probe upwards, ms.
const PROBE_QUEUE_MS: u16 = 15;
/// A queue growing this much (ms) from one report to the next, twice in a row, means the
/// link is full even when its base delay is unknown (a queue since the call started).
const RISE_MS: u16 = 20;
/// A queue that grew by this much (ms) or more in each of [`CREEP_REPORTS`] reports in a row,
/// and stands at [`PROBE_QUEUE_MS`] or more, means the bitrate sits a few percent over the
/// link: too little to trip [`RISE_MS`], enough to fill a 100 ms buffer in two seconds, and
/// with frames arriving in bursts on top of the standing queue, the loss starts at half that.
const CREEP_MS: u16 = 2;
const CREEP_REPORTS: u32 = 3;
/// A queue of [`PROBE_QUEUE_MS`] or more in this many reports in a row (2 s), neither growing
/// nor over [`BACK_OFF_QUEUE_MS`], is a bitrate sitting right at the link's rate: every frame
/// waits behind it for good. The bitrate steps down by [`DRAIN_FACTOR`] to drain it.
const STANDING_REPORTS: u32 = 8;
const DRAIN_FACTOR: f64 = 0.9;
/// Below this share of the last known link rate (or before the link was ever full) the
/// bitrate climbs fast (×1.25 a step).
const FAST_CLIMB_BELOW: f64 = 0.7;
/// An increase is undone when a report this soon after it shows a queue of
/// [`PROBE_QUEUE_MS`] or more that grew since the report before: a step 20 % over the link
/// fills a 100 ms buffer within two reports, before "full" could be called.
const UNDO_WITHIN: Duration = Duration::from_millis(600);
/// For this long after the link was found full the bitrate climbs no higher than
/// [`HEADROOM`] of what it carried then. Probing over a link's rate is what builds its
/// queue: every frame behind a probe waits (the 720p rows under the e2e bench's 1 Mbit/s cap
/// had their p95 from probes every 2 s), and a link's rate seldom changes every few seconds.
const HOLD: Duration = Duration::from_secs(8);
/// The share of the link's known rate the bitrate holds at during [`HOLD`].
const HEADROOM: f64 = 0.9;
/// A step above [`HEADROOM`] of the link's known rate, once the hold is over.
const PROBE_STEP: f64 = 1.04;
/// Sending this much over the link's known rate without a queue makes that rate stale.
const STALE_OVER: f64 = 1.1;

impl RateController {
    /// Where a call starts on a link it knows nothing of: a third of the most it may use (at
    /// least 300 kbit/s), climbing from there by a quarter every half second while the link
    /// keeps up — about 2.5 s to the top on a clean link, instead of seconds of queue and
    /// loss on a slow one.
    pub fn start_for(min: u32, max: u32) -> u32 {
        (max / 3).max(300_000).clamp(min, max.max(min))
    }

    /// Starts at `start`, never below `min` nor above `max`.
    pub fn new(start: u32, min: u32, max: u32) -> Self {
        Self {
            min,
            max: max.max(min),
            current: start.clamp(min, max.max(min)),
            last_change: None,
            loss: None,
            heard: None,
            sent: None,
            queued: 0,
            rising: 0,
            creeping: 0,
            standing: 0,
            last_queue_ms: 0,
            link: None,
            raised_from: None,
        }
    }

    /// The current target, bit/s.
    pub fn bitrate(&self) -> u32 {
        self.current
    }

    /// The most the video may use, bit/s.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// A probe found that the path carries `bps` now (`full`: and no more). The target
    /// jumps up to 90 % of it, and a path found full is known as full, as if a report
    /// had found it so: the slow start would only overshoot it. A step that turns out too
    /// far is undone like any other. Returns the new target when it changed.
    pub fn on_probe(&mut self, bps: u32, full: bool, now: Instant) -> Option<u32> {
        let next = ((f64::from(bps) * HEADROOM) as u32).clamp(self.min, self.max);
        if full {
            self.link = Some((bps, now));
        } else if self
            .link
            .is_some_and(|(l, _)| f64::from(next) >= f64::from(l) * STALE_OVER)
        {
            self.link = None;
        }
        if next == self.current || (next < self.current && !full) {
            return None;
        }
        self.raised_from = (next > self.current).then_some((now, self.current));
        self.current = next;
        self.last_change = Some(now);
        Some(next)
    }

    /// The reported loss, smoothed over the last few reports (0–1).
    pub fn loss(&self) -> f32 {
        self.loss.unwrap_or(0.0)
    }

    /// Video went out now.
    pub fn on_sent(&mut self, now: Instant) {
        if self
            .sent
            .is_none_or(|t| now.saturating_duration_since(t) > SILENCE)
        {
            // (re)starting: reports are due from now on
            self.heard = Some(now);
        }
        self.sent = Some(now);
    }

    /// Checks that reports still come while video goes out; halves the target (once a
    /// second) when they stopped. Returns the new target when it changed.
    pub fn on_tick(&mut self, now: Instant) -> Option<u32> {
        let sending = self
            .sent
            .is_some_and(|t| now.saturating_duration_since(t) < SILENCE / 2);
        let silent = self
            .heard
            .is_some_and(|t| now.saturating_duration_since(t) >= SILENCE);
        if !sending || !silent {
            return None;
        }
        self.heard = Some(now);
        let next = (self.current / 2).clamp(self.min, self.max);
        self.last_change = Some(now);
        (next != self.current).then(|| {
            self.current = next;
            next
        })
    }

    /// Takes a report; returns the new target when it changed.
    pub fn on_report(&mut self, r: ReceiverReport, now: Instant) -> Option<u32> {
        self.heard = Some(now);
        let since = self
            .last_change
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        let raw = if r.loss.is_finite() {
            r.loss.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let loss = self.loss.map_or(raw, |l| l + LOSS_WEIGHT * (raw - l));
        self.loss = Some(loss);
        self.queued = if r.queue_ms > BACK_OFF_QUEUE_MS {
            self.queued + 1
        } else {
            0
        };
        self.rising = if r.queue_ms >= self.last_queue_ms.saturating_add(RISE_MS) {
            self.rising + 1
        } else {
            0
        };
        self.creeping = if r.queue_ms >= self.last_queue_ms.saturating_add(CREEP_MS) {
            self.creeping + 1
        } else {
            0
        };
        self.standing = if r.queue_ms >= PROBE_QUEUE_MS {
            self.standing + 1
        } else {
            0
        };
        let grew = r.queue_ms > self.last_queue_ms;
        self.last_queue_ms = r.queue_ms;
        let overshot = self
            .raised_from
            .filter(|(t, _)| now.saturating_duration_since(*t) <= UNDO_WITHIN)
            .filter(|_| grew && r.queue_ms >= PROBE_QUEUE_MS)
            .map(|(_, before)| before);
        // what was sent, as far as the report tells (what arrived, and the share lost): far
        // under the target, the encoder had no more to send (an easy picture at its QP floor)
        let sent = f64::from(r.receive_bps) / (1.0 - f64::from(raw)).max(f64::EPSILON);
        let app_limited = raw < HEAVY_LOSS && sent < f64::from(self.current) * APP_LIMITED;
        let (reports, creep) = if app_limited {
            (APP_LIMITED_QUEUED_REPORTS, CREEP_REPORTS + 1)
        } else {
            (BACK_OFF_QUEUED_REPORTS, CREEP_REPORTS)
        };
        let queue_full = self.queued >= reports
            || self.rising >= reports
            || (self.creeping >= creep && r.queue_ms >= PROBE_QUEUE_MS);
        let full = loss > BACK_OFF_LOSS || queue_full;
        let next = if full && since >= DOWN_EVERY && app_limited && !queue_full {
            // loss on a link the video barely used: no queue says the link is full, and what
            // arrived says nothing of its rate (taking it for the link's rate pinned a 480p
            // call at 200 kbit/s and 480x360 for 8 s after one report's chance burst)
            (f64::from(self.current) * 0.7) as u32
        } else if full && since >= DOWN_EVERY {
            // heavy loss or a queue: the link is full. Go below what actually arrived by
            // what the queue holds, so that it drains in about a second.
            self.link = Some((r.receive_bps, now));
            let queue_s = f64::from(r.queue_ms) / 1000.0;
            let by_rate = (f64::from(r.receive_bps) * (0.85 - queue_s)).max(0.0) as u32;
            let by_factor = (f64::from(self.current) * 0.7) as u32;
            by_rate.min(by_factor).max(by_factor / 2)
        } else if self.standing >= STANDING_REPORTS && since >= DOWN_EVERY {
            // a queue that stands: what arrives is the link's rate, and a little less drains it
            self.standing = 0;
            self.link = Some((r.receive_bps, now));
            (f64::from(self.current) * DRAIN_FACTOR) as u32
        } else if let Some(before) = overshot {
            // the last step went over the link: back to where it came from, and what arrives
            // now is what the link carries
            self.link = Some((r.receive_bps, now));
            let under = (f64::from(r.receive_bps) * HEADROOM) as u32;
            before.min(self.current).min(under.max(self.min))
        } else if loss < PROBE_LOSS && r.queue_ms < PROBE_QUEUE_MS && since >= UP_EVERY {
            // until the link was first found full nothing is known of it: climb fast (a
            // slow start); later, fast only well under what it carried then
            // well over the rate the link was last found full at, with no queue: the link
            // got faster, and what is known of it is stale
            if self
                .link
                .is_some_and(|(l, _)| f64::from(self.current) >= f64::from(l) * STALE_OVER)
            {
                self.link = None;
            }
            let far_below = self
                .link
                .is_none_or(|(l, _)| f64::from(self.current) < f64::from(l) * FAST_CLIMB_BELOW);
            // near a link found full lately: up to the headroom under its rate, no further
            let ceiling = self
                .link
                .filter(|(_, t)| now.saturating_duration_since(*t) < HOLD)
                .map_or(u32::MAX, |(l, _)| (f64::from(l) * HEADROOM) as u32);
            if self.current >= ceiling {
                return None;
            }
            // over the headroom (the hold is over): probe in small steps
            let probing = self
                .link
                .is_some_and(|(l, _)| f64::from(self.current) >= f64::from(l) * HEADROOM);
            if far_below {
                ((f64::from(self.current) * 1.25) as u32).min(ceiling)
            } else if grew {
                // near the link's rate a queue that grows, however short, means the last step
                // crossed it: the next one (8 % more) would fill a 100 ms buffer in a second
                return None;
            } else if probing {
                (f64::from(self.current) * PROBE_STEP) as u32
            } else {
                ((f64::from(self.current) * 1.08) as u32 + 10_000).min(ceiling)
            }
        } else {
            return None;
        };
        let next = next.clamp(self.min, self.max);
        if next == self.current {
            return None;
        }
        self.raised_from = (next > self.current).then_some((now, self.current));
        self.current = next;
        self.last_change = Some(now);
        Some(next)
    }
}

/// Share of the bitrate target that resent video may take: on a full link, resends that
/// the link cannot carry only cause more loss, and more resend requests.
const RESEND_SHARE: f64 = 0.3;
/// Resends may come in a burst of this much time's worth.
const RESEND_BURST: Duration = Duration::from_millis(200);

/// A token bucket for resent video.
#[derive(Debug, Clone, Default)]
pub struct ResendBudget {
    tokens: f64,
    last: Option<Instant>,
}

impl ResendBudget {
    /// Whether `bytes` may be resent now at a bitrate target of `bitrate_bps`; takes them
    /// from the budget when so.
    pub fn allow(&mut self, bytes: usize, bitrate_bps: u32, now: Instant) -> bool {
        let rate = f64::from(bitrate_bps) * RESEND_SHARE / 8.0;
        let cap = (rate * RESEND_BURST.as_secs_f64()).max(1500.0);
        let dt = self
            .last
            .map_or(RESEND_BURST, |t| now.saturating_duration_since(t));
        self.last = Some(now);
        self.tokens = (self.tokens + rate * dt.as_secs_f64()).min(cap);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link of `cap` bit/s with a 100 ms drop-tail buffer: what is sent above it is lost,
    /// and while it overflows its buffer is full.
    fn report(sent: u32, cap: u32) -> ReceiverReport {
        let arrived = sent.min(cap);
        ReceiverReport {
            loss: 1.0 - arrived as f32 / sent.max(1) as f32,
            receive_bps: arrived,
            queue_ms: if sent > cap { 100 } else { 0 },
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
        // it probes up to the cap and backs off past it: it never sits far above (loss-based
        // control holds while the loss stays under 10 %, i.e. up to 11 % over the cap)
        assert!(
            rc.bitrate() <= 1_120_000,
            "at most 12 % over the cap: {}",
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
    fn chance_loss_while_the_encoder_sends_little_does_not_pin_the_bitrate() {
        // an easy picture makes 200 kbit/s of a 1 Mbit/s target; the call's first report
        // has a chance burst (1 of 4 fragments), then 5 % random loss and no queue
        let mut rc = RateController::new(1_000_000, 100_000, 1_000_000);
        let mut now = Instant::now();
        let lossy = |loss| ReceiverReport {
            loss,
            receive_bps: 190_000,
            queue_ms: 3,
        };
        rc.on_report(lossy(0.25), now);
        assert!(rc.bitrate() >= 700_000, "cut by a factor: {}", rc.bitrate());
        for _ in 0..20 {
            now += Duration::from_millis(250);
            rc.on_report(lossy(0.05), now);
        }
        assert_eq!(rc.bitrate(), 1_000_000, "back at the top within 5 s");
        // the same arriving rate with a queue standing is a full link: below what arrived
        // (at most a halving of sorts a step)
        for _ in 0..4 {
            now += Duration::from_millis(500);
            rc.on_report(
                ReceiverReport {
                    queue_ms: 80,
                    ..lossy(0.05)
                },
                now,
            );
        }
        assert!(rc.bitrate() <= 190_000, "under the link: {}", rc.bitrate());
    }

    #[test]
    fn after_a_deep_cap_lifts_the_bitrate_climbs_fast_again() {
        // 120 kbit/s for 10 s, then a clean link: the rate known from the cap must not keep
        // the climb at probing steps (4 % a step: 43 s from 120 kbit/s to 1.5 Mbit/s)
        let mut rc = RateController::new(500_000, 50_000, 1_500_000);
        let mut now = Instant::now();
        let step = Duration::from_millis(250);
        for _ in 0..40 {
            now += step;
            rc.on_report(report(rc.bitrate(), 120_000), now);
        }
        assert!(rc.bitrate() <= 140_000, "under the cap: {}", rc.bitrate());
        let mut reports = 0;
        while rc.bitrate() < 1_500_000 && reports < 200 {
            now += step;
            reports += 1;
            rc.on_report(report(rc.bitrate(), 10_000_000), now);
        }
        assert!(
            reports <= 80,
            "back at the top {} s after the cap lifted",
            reports / 4
        );
    }

    #[test]
    fn a_probe_takes_the_bitrate_up_at_once_and_a_full_path_is_held_under() {
        let now = Instant::now();
        let mut rc = RateController::new(800_000, 50_000, 5_500_000);
        // room for 4.8 Mbit/s: straight to 90 % of it
        assert_eq!(rc.on_probe(4_800_000, false, now), Some(4_320_000));
        // a smaller finding that is not the path's rate never lowers it
        assert_eq!(rc.on_probe(2_000_000, false, now), None);
        // room for more than the most: the most
        assert_eq!(rc.on_probe(9_000_000, false, now), Some(5_500_000));

        // a path found full at 1 Mbit/s: the bitrate holds under it instead of a slow start
        // over it, for as long as a report finding it full would hold it
        let mut rc = RateController::new(800_000, 50_000, 5_500_000);
        assert_eq!(rc.on_probe(1_000_000, true, now), Some(900_000));
        let mut t = now;
        for _ in 0..24 {
            t += Duration::from_millis(250);
            rc.on_report(report(rc.bitrate(), 1_000_000), t);
            assert_eq!(rc.bitrate(), 900_000, "held under the path's rate");
        }
        // and a full path slower than the start lowers it at once
        let mut rc = RateController::new(500_000, 50_000, 1_500_000);
        assert_eq!(rc.on_probe(300_000, true, now), Some(270_000));
    }

    /// A bottleneck of `cap` bit/s with a drop-tail buffer of `buffer_bits`, as a fluid, on
    /// 250 ms reports; the receiver's base delay already holds `base_bits` of queue.
    struct FluidLink {
        cap: f64,
        buffer_bits: f64,
        backlog_bits: f64,
        base_ms: f64,
        lost_bits: f64,
    }

    impl FluidLink {
        fn new(cap: f64, buffer_bits: f64, base_bits: f64) -> Self {
            Self {
                cap,
                buffer_bits,
                backlog_bits: base_bits,
                base_ms: base_bits / cap * 1000.0,
                lost_bits: 0.0,
            }
        }

        /// A call allowed 1.5 Mbit/s from its slow start, `reports` reports long; returns the
        /// controller, and the queue (ms) and the bitrate (kbit/s) after each report.
        fn slow_start(&mut self, reports: usize) -> (RateController, Vec<u32>, Vec<u32>) {
            let mut rc = RateController::new(
                RateController::start_for(50_000, 1_500_000),
                50_000,
                1_500_000,
            );
            let mut now = Instant::now();
            let (mut queues, mut rates) = (Vec::new(), Vec::new());
            for _ in 0..reports {
                now += Duration::from_millis(250);
                let (r, queue_ms) = self.step(&rc);
                queues.push(queue_ms as u32);
                rc.on_report(r, now);
                rates.push(rc.bitrate() / 1000);
            }
            (rc, queues, rates)
        }

        /// Carries 250 ms of `rc`'s video; returns the report and the queue, ms.
        fn step(&mut self, rc: &RateController) -> (ReceiverReport, f64) {
            let sent = f64::from(rc.bitrate()) * 0.25;
            self.backlog_bits += sent;
            let out = self.backlog_bits.min(self.cap * 0.25);
            self.backlog_bits -= out;
            let overflow = (self.backlog_bits - self.buffer_bits).max(0.0);
            self.backlog_bits -= overflow;
            self.lost_bits += overflow;
            let queue_ms = self.backlog_bits / self.cap * 1000.0;
            let report = ReceiverReport {
                loss: (overflow / sent) as f32,
                receive_bps: (out * 4.0) as u32,
                queue_ms: (queue_ms - self.base_ms).max(0.0) as u16,
            };
            (report, queue_ms)
        }
    }

    #[test]
    fn a_link_with_a_big_buffer_backs_off_on_its_queue_before_any_loss() {
        // 1 Mbit/s with 2 s of buffer: sending above it loses nothing for a long while, the
        // backlog just grows
        let mut link = FluidLink::new(1_000_000.0, 2_000_000.0, 0.0);
        let mut rc = RateController::new(1_500_000, 150_000, 2_500_000);
        let mut now = Instant::now();
        let mut worst_queue_ms = 0.0f64;
        for report in 0..240 {
            now += Duration::from_millis(250);
            let (r, queue_ms) = link.step(&rc);
            if report > 20 {
                worst_queue_ms = worst_queue_ms.max(queue_ms);
            }
            rc.on_report(r, now);
        }
        assert_eq!(link.lost_bits, 0.0, "the buffer never overflowed");
        assert!(
            worst_queue_ms < 250.0,
            "the queue stays short once settled: {worst_queue_ms:.0} ms"
        );
        assert!(
            (700_000..=1_100_000).contains(&rc.bitrate()),
            "near the link's rate: {}",
            rc.bitrate()
        );
    }

    #[test]
    fn a_queue_from_the_first_second_is_caught_by_its_growth() {
        // 1.5 Mbit/s into 500 kbit/s from the start, behind a keyframe's worth of queue: the
        // receiver's base delay already includes a queue, so it reports the growth only; the
        // bitrate must still fall within about a second, and climb back fast to near the
        // link's rate after over-shooting
        let mut link = FluidLink::new(500_000.0, 1e12, 200_000.0);
        let mut rc = RateController::new(1_500_000, 50_000, 1_500_000);
        let mut now = Instant::now();
        let (mut fell_at, mut lowest) = (None, u32::MAX);
        for report in 0..80 {
            now += Duration::from_millis(250);
            let (r, _) = link.step(&rc);
            rc.on_report(r, now);
            if fell_at.is_none() && rc.bitrate() < 1_500_000 {
                fell_at = Some(report);
            }
            lowest = lowest.min(rc.bitrate());
        }
        assert!(
            fell_at.is_some_and(|r| r <= 4),
            "fell at report {fell_at:?}"
        );
        assert!(
            (300_000..=520_000).contains(&rc.bitrate()),
            "back near the link's rate after 20 s: {} (lowest {lowest})",
            rc.bitrate()
        );
    }

    #[test]
    fn a_slow_start_into_a_shallow_buffer_stops_before_it_overflows() {
        // 800 kbit/s with 100 ms of buffer (the relay's default), a call allowed 1.5 Mbit/s:
        // the slow start's last step goes 20 % over, and is undone before the buffer fills;
        // later probes above the link's rate are undone the same way
        let mut link = FluidLink::new(800_000.0, 80_000.0, 0.0);
        let (rc, queues, rates) = link.slow_start(80);
        assert_eq!(
            link.lost_bits, 0.0,
            "no loss; queues {queues:?}, rates {rates:?}"
        );
        assert!(
            (550_000..=850_000).contains(&rc.bitrate()),
            "near the link's rate: {rates:?}"
        );
    }

    #[test]
    fn a_bitrate_a_few_percent_over_the_link_backs_off_while_the_queue_is_short() {
        // 3 % over a 1 Mbit/s link with 100 ms of buffer: the queue creeps up 7.5 ms a report,
        // never 20 ms at once; it must be caught well before it stands at 40 ms
        let mut link = FluidLink::new(1_000_000.0, 100_000.0, 0.0);
        let mut rc = RateController::new(1_030_000, 50_000, 1_030_000);
        let mut now = Instant::now();
        let mut queues = Vec::new();
        while rc.bitrate() == 1_030_000 && queues.len() < 40 {
            now += Duration::from_millis(250);
            let (r, queue_ms) = link.step(&rc);
            queues.push(queue_ms as u32);
            rc.on_report(r, now);
        }
        assert!(rc.bitrate() < 1_000_000, "backed off: {queues:?}");
        assert!(queues.iter().all(|&q| q < 30), "caught early: {queues:?}");
    }

    #[test]
    fn probing_at_the_link_rate_stops_while_the_queue_creeps_up() {
        // 1 Mbit/s with 100 ms of buffer, for 15 s: after the slow start, every probe that
        // crosses the link's rate makes the queue creep; the next step must wait, not add
        // another 8 % and fill the buffer
        let mut link = FluidLink::new(1_000_000.0, 100_000.0, 0.0);
        let (rc, queues, _) = link.slow_start(60);
        let settled = &queues[20..];
        let worst_jump = settled
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .max()
            .unwrap_or(0);
        assert_eq!(link.lost_bits, 0.0, "no loss; queues {queues:?}");
        // (without the hold each crossing step added 25-30 ms in one report)
        assert!(worst_jump <= 5, "no step fills the queue: {queues:?}");
        assert!(
            settled.iter().all(|&q| q < 20),
            "the queue stays short: {queues:?}"
        );
        assert!(
            (750_000..=1_050_000).contains(&rc.bitrate()),
            "near the link's rate: {}",
            rc.bitrate()
        );
    }

    #[test]
    fn a_link_found_full_is_probed_again_only_after_a_hold() {
        // 1 Mbit/s with 100 ms of buffer, for 30 s: after the slow start the bitrate holds at
        // the headroom under the link's rate, and probes over it once per hold. Before the
        // hold it climbed back over the link every 2-4 s: 64 of these 100 reports saw a queue.
        let mut link = FluidLink::new(1_000_000.0, 100_000.0, 0.0);
        let (_, queues, rates) = link.slow_start(120);
        let settled = &queues[20..];
        let queued = settled.iter().filter(|&&q| q > 0).count();
        assert!(queued <= 15, "{queued} reports with a queue: {queues:?}");
        let mut held: Vec<u32> = rates[20..].to_vec();
        held.sort_unstable();
        assert!(
            (850..=1000).contains(&held[held.len() / 2]),
            "the median bitrate sits just under the link: {rates:?}"
        );
        assert_eq!(link.lost_bits, 0.0);
    }

    #[test]
    fn a_clean_link_reaches_the_top_within_three_seconds_of_a_slow_start() {
        let max = 1_500_000;
        let start = RateController::start_for(50_000, max);
        assert_eq!(start, 500_000);
        let mut rc = RateController::new(start, 50_000, max);
        let mut now = Instant::now();
        for _ in 0..12 {
            now += Duration::from_millis(250);
            rc.on_report(report(rc.bitrate(), 10_000_000), now);
        }
        assert_eq!(rc.bitrate(), max);
        assert_eq!(RateController::start_for(50_000, 400_000), 300_000);
        assert_eq!(RateController::start_for(50_000, 200_000), 200_000);
    }

    #[test]
    fn a_queue_that_stands_without_growing_is_drained() {
        // sending exactly the link's 1 Mbit/s behind 30 ms of queue: under the back-off
        // threshold and never growing, so only its standing for 2 s gives it away
        let mut link = FluidLink::new(1_000_000.0, 100_000.0, 0.0);
        link.backlog_bits = 30_000.0;
        let mut rc = RateController::new(1_000_000, 50_000, 1_000_000);
        let mut now = Instant::now();
        let mut queues = Vec::new();
        for _ in 0..24 {
            now += Duration::from_millis(250);
            let (r, queue_ms) = link.step(&rc);
            queues.push(queue_ms as u32);
            rc.on_report(r, now);
        }
        assert!(queues[..6].iter().all(|&q| q >= 25), "it stood: {queues:?}");
        assert!(queues[12..].iter().all(|&q| q < 15), "drained: {queues:?}");
        assert!(rc.bitrate() >= 850_000, "not collapsed: {}", rc.bitrate());
        assert_eq!(link.lost_bits, 0.0);
    }

    #[test]
    fn one_report_with_a_queue_is_a_burst_not_a_full_link() {
        let mut rc = RateController::new(1_000_000, 150_000, 1_000_000);
        let mut now = Instant::now();
        let mut r = ReceiverReport {
            loss: 0.0,
            receive_bps: 1_000_000,
            queue_ms: 120,
        };
        now += Duration::from_secs(1);
        assert_eq!(rc.on_report(r, now), None, "a keyframe's burst");
        r.queue_ms = 0;
        now += Duration::from_millis(250);
        assert_eq!(rc.on_report(r, now), None);
        r.queue_ms = 120;
        now += Duration::from_millis(250);
        assert_eq!(rc.on_report(r, now), None);
        now += Duration::from_millis(250);
        assert!(
            rc.on_report(r, now).is_some_and(|b| b < 1_000_000),
            "two in a row: full"
        );
    }

    #[test]
    fn a_stall_while_the_encoder_sends_little_is_not_a_slow_link() {
        // 480p at its QP floor sends 300 kbit/s under a 1 Mbit/s target; the relay stalls
        // for half a second: two reports see a queue of 45-60 ms, then it is gone
        let mut rc = RateController::new(1_000_000, 150_000, 1_000_000);
        let mut now = Instant::now() + Duration::from_secs(5);
        for q in [0, 0, 25, 45, 60, 0, 0, 0] {
            now += Duration::from_millis(250);
            let r = ReceiverReport {
                loss: 0.05,
                receive_bps: 285_000,
                queue_ms: q,
            };
            rc.on_report(r, now);
            assert_eq!(rc.bitrate(), 1_000_000, "cut after a queue of {q} ms");
        }
        // a link slower than what is sent: its queue keeps growing, and the bitrate is cut
        // to what arrives within a second
        let mut cut = None;
        for (k, q) in [0u16, 60, 125, 190, 250, 310].into_iter().enumerate() {
            now += Duration::from_millis(250);
            let r = ReceiverReport {
                loss: 0.0,
                receive_bps: 200_000,
                queue_ms: q,
            };
            if rc.on_report(r, now).is_some() && cut.is_none() {
                cut = Some((k, rc.bitrate()));
            }
        }
        let (k, bps) = cut.expect("cut on a growing queue");
        assert!(k <= 4, "after {k} reports");
        assert!(bps <= 700_000, "cut to {bps}");
    }

    #[test]
    fn random_five_percent_loss_in_short_reports_leaves_the_bitrate_alone() {
        // 250 ms reports of ~40 fragments each, every fragment lost with p = 5 %
        let mut rc = RateController::new(1_000_000, 150_000, 1_000_000);
        let mut now = Instant::now();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut lowest = rc.bitrate();
        for _ in 0..400 {
            now += Duration::from_millis(250);
            let lost = (0..40)
                .filter(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % 100 < 5
                })
                .count();
            let r = ReceiverReport {
                loss: lost as f32 / 40.0,
                receive_bps: rc.bitrate(),
                queue_ms: 0,
            };
            rc.on_report(r, now);
            lowest = lowest.min(rc.bitrate());
        }
        assert!(lowest >= 700_000, "backed off to {lowest} on random loss");
    }

    #[test]
    fn silence_while_sending_halves_the_bitrate_once_a_second() {
        let mut rc = RateController::new(2_000_000, 150_000, 2_000_000);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // reports keep coming: nothing happens
        for n in (0..3000).step_by(33) {
            rc.on_sent(ms(n));
            if n % 250 < 33 {
                rc.on_report(report(rc.bitrate(), 10_000_000), ms(n));
            }
            assert_eq!(rc.on_tick(ms(n)), None);
        }
        // they stop while video goes on: halved after 1 s, then once a second
        let mut changes = Vec::new();
        for n in (3000..6000).step_by(33) {
            rc.on_sent(ms(n));
            if let Some(b) = rc.on_tick(ms(n)) {
                changes.push((n, b));
            }
        }
        // (the last report came at 2772 ms)
        let when: Vec<u64> = changes.iter().map(|c| c.0).collect();
        let rates: Vec<u32> = changes.iter().map(|c| c.1).collect();
        assert_eq!(when, vec![3792, 4815, 5838]);
        assert_eq!(rates, vec![1_000_000, 500_000, 250_000]);
        // no video going out (camera off): silence is expected
        let mut idle = RateController::new(2_000_000, 150_000, 2_000_000);
        idle.on_sent(t0);
        assert_eq!(idle.on_tick(ms(5000)), None);
    }

    #[test]
    fn resends_keep_to_a_share_of_the_bitrate() {
        let mut b = ResendBudget::default();
        let t0 = Instant::now();
        let mut sent = 0usize;
        // asked for far more than allowed: 1200-byte fragments every ms for 10 s at 1 Mbit/s
        for ms in 0..10_000u64 {
            if b.allow(1200, 1_000_000, t0 + Duration::from_millis(ms)) {
                sent += 1200;
            }
        }
        let bps = sent as f64 * 8.0 / 10.0;
        assert!((280_000.0..=320_000.0).contains(&bps), "{bps} bit/s resent");
        // an idle budget allows a burst, not an unbounded one
        let later = t0 + Duration::from_secs(60);
        let burst = (0..100).filter(|_| b.allow(1200, 1_000_000, later)).count();
        assert!((5..=7).contains(&burst), "burst of {burst}");
    }

    #[test]
    fn light_loss_without_a_queue_never_backs_off_and_bounds_hold() {
        let mut rc = RateController::new(1_000_000, 200_000, 1_200_000);
        let mut now = Instant::now();
        let mut lowest = rc.bitrate();
        for _ in 0..100 {
            now += Duration::from_millis(250);
            let light = ReceiverReport {
                loss: 0.05,
                receive_bps: rc.bitrate(),
                queue_ms: 0,
            };
            rc.on_report(light, now);
            lowest = lowest.min(rc.bitrate());
        }
        // 5 % loss with no queue is a lossy link, not a full one: resends repair it, and the
        // bitrate may still climb (a call that started low must not stay there)
        assert_eq!(lowest, 1_000_000, "never backed off");
        assert_eq!(rc.bitrate(), 1_200_000, "climbed to the top");
        for _ in 0..100 {
            now += Duration::from_millis(250);
            rc.on_report(report(rc.bitrate(), 1), now);
        }
        assert_eq!(rc.bitrate(), 200_000);
    }
}
