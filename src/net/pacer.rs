//! Spreads video out at a multiple of its bitrate instead of sending each frame at once. A
//! keyframe is many times the size of the frames around it: sent in one burst, it overflows
//! a small bottleneck buffer (and loses fragments that must be asked for again), while the
//! link would have carried it paced a little. Audio and control never wait here. Sans-IO.
//!
//! Parity goes after the pictures: a picture that comes while parity for the one before is
//! still queued goes first (WebRTC's pacer does the same). On a slow path the call's first
//! keyframe left its parity queued when the next picture came, and that picture waited for
//! it at the bottleneck: under a 1 Mbit/s cap 9 ms more for a parity that is needed only
//! when a datagram of the keyframe is lost.
//!
//! On a path slower than the pace (the receiver times how fast each frame's fragments came
//! in), a frame sent at once waits at the bottleneck whatever we do, and the sound sent
//! while it drains waits behind all of it: under a 1 Mbit/s cap a 480p frame with its parity
//! took 11-28 ms, and the sound's jitter buffer had to cover that. There the video goes out
//! one datagram at a time, a little over the path's rate: the frame takes as long as before,
//! and sound waits behind one fragment at most. The path is timed by the receiver's reports
//! and by the start-of-call probe (a burst that came in slower than it went), and a report
//! that cannot time it (frames of one datagram) leaves it paced for ten seconds more: under a
//! 1 Mbit/s cap the call's first keyframe and its first frames with parity then no longer
//! hold the sound up by 10-30 ms, which the sound's jitter buffer used to cover for seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Video goes out at this multiple of the bitrate target (WebRTC's pacer uses 2.5).
pub const PACE_FACTOR: f64 = 2.5;
/// What may go out at once, as time at the pacing rate (always at least a datagram): enough
/// for a P-frame to leave at once, far less than a keyframe.
const BURST: Duration = Duration::from_millis(20);
/// A path timed at under this share of the pace is slower than it: pace to the path.
const PATH_BELOW: f64 = 0.9;
/// Paced to a path, video goes this much faster than the path was timed (so that a path
/// that got faster shows: its frames come in at the pace, and pacing stops).
const OVER_PATH: f64 = 1.15;
/// Paced to a path, video never goes slower than this multiple of its bitrate: the queue of
/// a bitrate over the path must build at the bottleneck, where the receiver sees it.
const OVER_BITRATE: f64 = 1.1;
/// A path timed slow stays paced to this long after its last timing while reports cannot
/// tell its rate (frames of one datagram cannot be timed): a frame and its parity sent at
/// once still queue there, and the sound behind them. Under a 1 Mbit/s cap the sound's
/// first second came up to 30 ms late when every untimed report stopped the pacing. The
/// hold outlasts a call's first parity (which goes off after 5 s of a clean link): with a
/// hold of 1 s the 480p frame and its parity went at once from the call's second second on,
/// the sound's jitter buffer covered 13-18 ms instead of 8-10, and lip sync held the pictures
/// back for it. A path that got faster meanwhile costs a single-datagram frame its time at
/// the old rate; a frame of two datagrams or more times the path again.
const PATH_HOLD: Duration = Duration::from_secs(10);

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
    /// Parity, which goes when no picture's datagram waits.
    parity: VecDeque<Vec<u8>>,
    /// Bytes queued, pictures and parity.
    bytes: usize,
    /// Bytes that may go out now; negative after a datagram bigger than the credit.
    credit: f64,
    last: Option<Instant>,
    dropped: u64,
    /// The bitrate target, bit/s.
    bps: u32,
    /// The path's rate as the receiver timed it, bytes/s, while it is slower than the pace;
    /// with when it was timed.
    path: Option<(f64, Instant)>,
    /// Video sent that the path, at its timed rate, had not carried yet: bytes, as of when.
    backlog: (f64, Option<Instant>),
}

impl Pacer {
    /// A pacer for a video bitrate target of `bps`.
    pub fn new(bps: u32) -> Self {
        Self {
            queue: VecDeque::new(),
            parity: VecDeque::new(),
            bytes: 0,
            credit: 0.0,
            last: None,
            dropped: 0,
            bps,
            path: None,
            backlog: (0.0, None),
        }
    }

    /// Follows a new bitrate target.
    pub fn set_bitrate(&mut self, bps: u32) {
        self.bps = bps;
    }

    /// The pacing rate, bytes/s.
    fn rate(&self) -> f64 {
        pace_rate(self.bps, self.path.map(|(p, _)| p))
    }

    /// The receiver timed our frames coming in at `kbps` at `now` (0: it could not tell a
    /// path's rate: too few frames of two datagrams or more, or spread at random by jitter;
    /// a path timed slow in the last 10 s stays paced to). A start-of-call probe
    /// that came in slower than it went times the path too.
    pub fn on_path(&mut self, kbps: u32, now: Instant) {
        if kbps == 0 {
            self.path = self
                .path
                .filter(|(_, at)| now.saturating_duration_since(*at) < PATH_HOLD);
            return;
        }
        let timed = f64::from(kbps) * 1000.0 / 8.0;
        // sent at once, a frame goes as fast as the path takes it: compare with the pace
        self.path = (timed < self.rate() * PATH_BELOW).then_some((timed, now));
    }

    /// Forgets the path's rate (a new call, or one resumed on a path that may have changed).
    pub fn forget_path(&mut self) {
        self.path = None;
    }

    /// The path's rate video is paced to, bit/s, if any.
    pub fn path_bps(&self) -> Option<u32> {
        self.path.map(|(p, _)| (p * 8.0) as u32)
    }

    /// Bytes of the video sent that the path it is paced to has not carried yet by `now`,
    /// at its timed rate (0 when not paced to a path: what went out has gone at once). What
    /// is sent behind it, unpaced (the sound), waits at the bottleneck about this long.
    pub fn path_backlog(&self, now: Instant) -> f64 {
        match (self.path, self.backlog.1) {
            (Some((rate, _)), Some(at)) => {
                let carried = now.saturating_duration_since(at).as_secs_f64() * rate;
                (self.backlog.0 - carried).max(0.0)
            }
            _ => 0.0,
        }
    }

    /// Queues a datagram of a picture (or one sent again); false when the queue was full and
    /// it was dropped.
    pub fn push(&mut self, datagram: Vec<u8>) -> bool {
        self.admit(&datagram) && {
            self.queue.push_back(datagram);
            true
        }
    }

    /// Queues a parity datagram, which goes after every picture's datagram queued before or
    /// after it; false when the queue was full and it was dropped.
    pub fn push_parity(&mut self, datagram: Vec<u8>) -> bool {
        self.admit(&datagram) && {
            self.parity.push_back(datagram);
            true
        }
    }

    /// Whether `datagram` fits in the queue (counted if so, counted as dropped if not).
    fn admit(&mut self, datagram: &[u8]) -> bool {
        if self.bytes + datagram.len() > MAX_BYTES {
            self.dropped += 1;
            return false;
        }
        self.bytes += datagram.len();
        true
    }

    /// Hands out what may be sent at `now`, in order.
    pub fn release(&mut self, now: Instant, mut send: impl FnMut(Vec<u8>)) {
        // fast enough to empty what is queued within MAX_DELAY
        let rate = self.rate().max(self.bytes as f64 / MAX_DELAY.as_secs_f64());
        // paced to a path: a datagram at a time (one goes while there is any credit)
        let depth = if self.path.is_some() {
            1.0
        } else {
            (rate * BURST.as_secs_f64()).max(1500.0)
        };
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last = Some(now);
        self.credit = (self.credit + elapsed.as_secs_f64() * rate).min(depth);
        if self.is_empty() {
            // an idle link earns no more than one burst
            self.credit = self.credit.max(0.0);
            return;
        }
        // a datagram goes out while there is any credit, so a small frame never waits
        while self.credit > 0.0 {
            let Some(d) = self.queue.pop_front().or_else(|| self.parity.pop_front()) else {
                break;
            };
            self.bytes -= d.len();
            self.credit -= d.len() as f64;
            let left = self.path_backlog(now);
            self.backlog = (left + d.len() as f64, Some(now));
            send(d);
        }
    }

    /// When the next queued datagram may go, if any is queued (call [`Self::release`] then).
    pub fn next_due(&self) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        let last = self.last?;
        if self.credit > 0.0 {
            return Some(last);
        }
        let rate = self.rate().max(self.bytes as f64 / MAX_DELAY.as_secs_f64());
        // a datagram goes once the credit is over zero: a byte past the debt
        Some(last + Duration::from_secs_f64((1.0 - self.credit) / rate.max(1.0)))
    }

    /// Whether no video waits here.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.parity.is_empty()
    }

    /// How long what is queued takes to go out, ms.
    pub fn queued_ms(&self) -> f64 {
        let rate = self.rate();
        if rate > 0.0 {
            (self.bytes as f64 / rate * 1000.0).min(MAX_DELAY.as_secs_f64() * 1000.0)
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
        self.parity.clear();
        self.bytes = 0;
        self.backlog = (0.0, None);
    }
}

/// Bytes per second for a bitrate target, and a path slower than the pace (bytes/s).
fn pace_rate(bps: u32, path: Option<f64>) -> f64 {
    let bytes = f64::from(bps) / 8.0;
    match path {
        Some(p) => (p * OVER_PATH).max(bytes * OVER_BITRATE),
        None => bytes * PACE_FACTOR,
    }
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
    fn woken_only_when_it_says_a_datagram_is_due_it_sends_as_on_a_fine_tick() {
        for path_kbps in [0, 600] {
            let (t0, mut p) = (Instant::now(), Pacer::new(1_000_000));
            p.release(t0, |_| {});
            p.on_path(path_kbps, t0);
            assert_eq!(p.next_due(), None, "nothing queued: nothing due");
            for _ in 0..20 {
                p.push(vec![0; 1200]);
            }
            let (mut now, mut sent, mut wakes) = (t0, Vec::new(), 0);
            while let Some(due) = p.next_due() {
                assert!(due >= now, "due in the past");
                now = due;
                wakes += 1;
                let before = sent.len();
                p.release(now, |d| sent.push((now, d.len())));
                assert!(
                    sent.len() > before,
                    "woken at its due time, a datagram goes"
                );
                assert!(wakes <= 20, "one wake-up a datagram at most");
            }
            assert_eq!(sent.len(), 20);
            // the spread the 1 ms tick gives, without the tick (a little shorter: a tick
            // sends up to a millisecond after the due time, and paced to a path, where the
            // bucket holds a byte, that millisecond is lost to each datagram)
            let mut q = Pacer::new(1_000_000);
            q.release(t0, |_| {});
            q.on_path(path_kbps, t0);
            for _ in 0..20 {
                q.push(vec![0; 1200]);
            }
            let ticked = drain(&mut q, t0, 1, 400);
            let woken_ms = sent
                .last()
                .map_or(0.0, |s| s.0.duration_since(t0).as_secs_f64() * 1000.0);
            let ticked_ms = ticked.last().map_or(0, |s| s.0) as f64;
            assert!(
                woken_ms <= ticked_ms + 1.0 && woken_ms >= ticked_ms * 0.9,
                "path {path_kbps}: {woken_ms:.1} ms against {ticked_ms} ms on a 1 ms tick"
            );
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

    #[test]
    fn on_a_path_slower_than_the_pace_a_frame_goes_a_datagram_at_a_time() {
        let (t0, mut p) = (Instant::now(), Pacer::new(800_000));
        // frames came in at 1 Mbit/s: slower than 2.5 x 800 kbit/s
        p.on_path(1_000, t0);
        assert_eq!(p.path_bps(), Some(1_000_000));
        drain(&mut p, t0, 0, 33);
        for _ in 0..3 {
            p.push(vec![0; 700]);
        }
        let sent = drain(&mut p, t0, 33, 40);
        assert_eq!(sent.len(), 3);
        // 700 B at 1.15 Mbit/s: ~4.9 ms apart, the first at once
        assert_eq!(sent[0].0, 33);
        for w in sent.windows(2) {
            assert!((4..=6).contains(&(w[1].0 - w[0].0)), "{sent:?}");
        }
    }

    #[test]
    fn a_path_that_keeps_up_with_the_pace_is_not_paced_to() {
        let (t0, mut p) = (Instant::now(), Pacer::new(800_000));
        let at = |ms| t0 + Duration::from_millis(ms);
        // at once, frames came in at 5 Mbit/s: faster than the pace
        p.on_path(5_000, at(0));
        assert_eq!(p.path_bps(), None);
        // slower: paced to it; reports that cannot tell keep it for a while, then frames go
        // at once again
        p.on_path(900, at(250));
        assert_eq!(p.path_bps(), Some(900_000));
        p.on_path(0, at(500));
        p.on_path(0, at(1_000));
        assert_eq!(p.path_bps(), Some(900_000));
        // through a call's first parity (off after 5 s of a clean link), frame and parity
        // sent at once would hold the sound up
        p.on_path(0, at(5_750));
        assert_eq!(p.path_bps(), Some(900_000));
        p.on_path(0, at(250) + PATH_HOLD);
        assert_eq!(p.path_bps(), None);
        // paced, frames come in at the pace: the path may be faster, so send at once again
        p.on_path(900, at(1_500));
        p.on_path(1_030, at(1_750));
        assert_eq!(p.path_bps(), None);
        // a new call times its path anew
        p.on_path(900, at(2_000));
        p.forget_path();
        assert_eq!(p.path_bps(), None);
    }

    #[test]
    fn paced_to_a_slow_path_it_knows_what_the_path_has_not_carried_yet() {
        let (t0, mut p) = (Instant::now(), Pacer::new(800_000));
        let ms = |n| t0 + Duration::from_millis(n);
        p.on_path(1_000, t0);
        // a 4.5 kB keyframe and its parity, paced out from 150 ms on at 1.15 Mbit/s
        drain(&mut p, t0, 0, 150);
        for _ in 0..5 {
            p.push(vec![0; 1_120]);
        }
        drain(&mut p, t0, 150, 35);
        assert!(p.is_empty(), "out by 185 ms");
        // the pacer is empty, but 1 Mbit/s carries 5.6 kB in 45 ms (from 150 ms on): 1.2 kB
        // are still on their way
        let left = p.path_backlog(ms(185));
        assert!((1_000.0..1_500.0).contains(&left), "{left}");
        // the next picture (2.2 kB and its parity) goes from 186 ms on..
        for _ in 0..3 {
            p.push(vec![0; 1_120]);
        }
        drain(&mut p, t0, 186, 30);
        assert!(p.is_empty());
        assert!(p.path_backlog(ms(215)) > 300.0);
        // ..and all of it has crossed by 150 ms + 8.96 kB at 125 kB/s = 222 ms
        assert!(p.path_backlog(ms(220)) > 0.0);
        assert_eq!(p.path_backlog(ms(223)), 0.0);
        // not paced to a path: what went out has gone at once
        let mut fast = Pacer::new(800_000);
        fast.release(t0, |_| {});
        for _ in 0..5 {
            fast.push(vec![0; 1_120]);
        }
        drain(&mut fast, t0, 1, 20);
        assert!(fast.is_empty());
        assert_eq!(fast.path_backlog(ms(21)), 0.0);
    }

    #[test]
    fn a_picture_goes_before_the_parity_still_queued_for_the_one_before() {
        let (t0, mut p) = (Instant::now(), Pacer::new(800_000));
        p.on_path(1_000, t0);
        p.release(t0, |_| {});
        // a keyframe of four datagrams and its parity; the next picture comes 30 ms on
        for _ in 0..4 {
            p.push(vec![1; 1_100]);
        }
        p.push_parity(vec![2; 1_100]);
        let mut sent = drain(&mut p, t0, 1, 30);
        p.push(vec![3; 900]);
        assert!(
            !p.push_parity(vec![2; MAX_BYTES]),
            "the queue stays bounded"
        );
        p.push_parity(vec![4; 900]);
        sent.extend(drain(&mut p, t0, 31, 100));
        assert!(p.is_empty());
        let order: Vec<usize> = sent.iter().map(|s| s.1).collect();
        assert_eq!(order, [1_100, 1_100, 1_100, 1_100, 900, 1_100, 900]);
        assert_eq!(p.dropped(), 1);
    }

    #[test]
    fn paced_to_a_path_video_still_goes_a_little_over_its_bitrate() {
        let (t0, mut p) = (Instant::now(), Pacer::new(1_000_000));
        p.on_path(500, t0);
        // 1.1 x 1 Mbit/s beats 1.15 x 500 kbit/s: 11 kB take ~80 ms, not ~150
        for _ in 0..10 {
            p.push(vec![0; 1100]);
        }
        let sent = drain(&mut p, t0, 0, 200);
        let last = sent.last().map_or(0, |s| s.0);
        assert!((70..=85).contains(&last), "last datagram at {last} ms");
    }

    /// A FIFO bottleneck of `bps`: when a datagram of `bytes` sent at `t_us` has gone through.
    struct Bottleneck {
        bps: f64,
        free_us: f64,
    }

    impl Bottleneck {
        fn pass(&mut self, t_us: f64, bytes: usize) -> f64 {
            self.free_us = self.free_us.max(t_us) + bytes as f64 * 8.0 / self.bps * 1e6;
            self.free_us
        }
    }

    #[test]
    fn under_a_cap_sound_waits_behind_a_fragment_not_a_frame() {
        use crate::media::arrival::ArrivalStats;
        let t0 = Instant::now();
        let (mut p, mut arrival) = (Pacer::new(800_000), ArrivalStats::default());
        let mut link = Bottleneck {
            bps: 1_000_000.0,
            free_us: 0.0,
        };
        // (time sent, ms) of the sound's worst wait and of each frame's last fragment
        let (mut sound_waits, mut frames) = (Vec::new(), Vec::new());
        let mut sent_frame = 0u64;
        for t in 0..3_000u64 {
            let now = t0 + Duration::from_millis(t);
            let t_us = t as f64 * 1000.0;
            if t % 5 == 0 {
                let own = 80.0 * 8.0 / link.bps * 1e6;
                sound_waits.push((t, (link.pass(t_us, 80) - t_us - own) / 1000.0));
            }
            if t % 33 == 0 {
                for _ in 0..2 {
                    p.push(vec![0; 700]);
                }
            }
            let mut out = Vec::new();
            p.release(now, |d| out.push(d));
            for d in out {
                let at = link.pass(t_us, d.len());
                let frame = (t - t % 33) / 33;
                arrival.on_fragment(frame as u32, d.len(), frame * 33_000, at as u64, now);
                sent_frame = frame;
                frames.push((frame, (at / 1000.0) - (frame * 33) as f64));
            }
            if t % 250 == 249 {
                p.on_path(arrival.report(now).path_kbps, now);
            }
        }
        assert!(sent_frame > 80);
        assert!(p
            .path_bps()
            .is_some_and(|b| (850_000..1_000_000).contains(&b)));
        let worst = |from: u64, to: u64| {
            sound_waits
                .iter()
                .filter(|w| (from..to).contains(&w.0))
                .map(|w| w.1)
                .fold(0.0, f64::max)
        };
        // before the first report a frame went at once and sound waited behind all of it
        assert!(worst(0, 250) > 10.0, "{}", worst(0, 250));
        // paced to the path: behind one 700 B fragment (5.6 ms) at most
        assert!(worst(500, 3_000) < 6.5, "{}", worst(500, 3_000));
        // and a frame takes about as long as the link needs for it (11.2 ms)
        let slowest = frames
            .iter()
            .filter(|f| f.0 > 15)
            .map(|f| f.1)
            .fold(0.0, f64::max);
        assert!(slowest < 14.0, "{slowest}");
    }

    /// The sound's worst wait behind video at a 1 Mbit/s bottleneck over `ms`, with a frame of
    /// one 900 B datagram and its 900 B parity copy every 33 ms (reports cannot time such
    /// frames); the path timed at 950 kbit/s at the start when `timed`.
    fn sound_wait_behind_copies(timed: bool, ms: u64) -> f64 {
        let t0 = Instant::now();
        let mut p = Pacer::new(800_000);
        if timed {
            p.on_path(950, t0);
        }
        let mut link = Bottleneck {
            bps: 1_000_000.0,
            free_us: 0.0,
        };
        let mut worst = 0.0f64;
        for t in 0..ms {
            let now = t0 + Duration::from_millis(t);
            let t_us = t as f64 * 1000.0;
            if t % 5 == 0 {
                let own = 80.0 * 8.0 / link.bps * 1e6;
                worst = worst.max((link.pass(t_us, 80) - t_us - own) / 1000.0);
            }
            if t % 33 == 0 {
                p.push(vec![0; 900]);
                p.push(vec![0; 900]);
            }
            p.release(now, |d| {
                link.pass(t_us, d.len());
            });
            if t % 250 == 249 {
                p.on_path(0, now);
            }
        }
        worst
    }

    #[test]
    fn a_path_timed_slow_stays_paced_while_its_frames_cannot_be_timed() {
        // sent at once, a frame and its copy hold the sound up for both (14.4 ms)...
        let unpaced = sound_wait_behind_copies(false, 900);
        assert!(unpaced > 12.0, "{unpaced}");
        // ...paced to the path the probe timed, for one datagram at most (7.2 ms)
        let paced = sound_wait_behind_copies(true, 900);
        assert!(paced < 8.0, "{paced}");
    }
}
