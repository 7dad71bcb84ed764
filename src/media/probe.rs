//! Finds how fast the path is at the start of a call, instead of seconds of slow start: the
//! sender sends a short burst of padding datagrams at a set rate, the receiver times their
//! arrival, and a path slower than the burst spreads it out to its own rate (its queue
//! drains at that rate). A burst that gets through whole is followed by one twice as fast,
//! up to a little over the most the video may use (as WebRTC's initial probing does). MJPEG
//! at 720p needs 16 Mbit/s and a slow start from 0.8 Mbit/s took 7 s to get there, sending
//! small pictures all that time. Sans-IO: time is an input.

use std::time::{Duration, Instant};

use crate::proto::message::{ProbePacket, ProbeResult, MAX_DATAGRAM, MAX_PROBE_PACKETS};

/// Bytes of one probe datagram.
pub const PROBE_SIZE: u16 = 1200;
const _: () = assert!(PROBE_SIZE as usize <= MAX_DATAGRAM);
/// A burst lasts at least this long at its rate...
const BURST_TIME: Duration = Duration::from_millis(15);
/// ...and has at least this many datagrams.
const MIN_PACKETS: u16 = 5;
/// The first burst goes at this multiple of the bitrate the call starts at.
const FIRST_FACTOR: f64 = 3.0;
/// A burst that got through is followed by one this much faster.
const NEXT_FACTOR: f64 = 2.0;
/// A burst got through when it arrived at this share of its rate or more.
const GOT_THROUGH: f64 = 0.8;
/// A burst arriving at this share of its rate or less was spread out by a path slower than
/// it: its arrival rate is the path's. (Between the two, a busy receiver may have noticed
/// the last datagrams late: nothing is concluded.)
const SPREAD: f64 = 0.67;
/// The fastest burst, as a multiple of the most the video may use: one that gets through
/// shows room for all of it.
const TOP_FACTOR: f64 = 1.25;
/// A result not back this long after the burst's last datagram is not coming (lost).
const RESULT_WAIT: Duration = Duration::from_millis(500);
/// Video and sound wait for the probing at the start of a call at most this long (three or
/// four bursts on a fast path take 40–100 ms; see also `media::sound_start`).
pub const MEDIA_HOLD: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Copy)]
struct Burst {
    cluster: u16,
    bps: u32,
    count: u16,
    sent: u16,
    start: Instant,
}

impl Burst {
    fn new(cluster: u16, bps: u32, now: Instant) -> Self {
        let per_burst = f64::from(bps) * BURST_TIME.as_secs_f64() / 8.0 / f64::from(PROBE_SIZE);
        let count = (per_burst.ceil() as u16).clamp(MIN_PACKETS, MAX_PROBE_PACKETS);
        Self {
            cluster,
            bps,
            count,
            sent: 0,
            start: now,
        }
    }

    /// When datagram `index` is due.
    fn due(&self, index: u16) -> Instant {
        let gap = f64::from(PROBE_SIZE) * 8.0 / f64::from(self.bps.max(1));
        self.start + Duration::from_secs_f64(gap * f64::from(index))
    }
}

/// What a burst found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The path carries at least this much, bit/s (at most the burst's own rate).
    pub bps: u32,
    /// The burst was spread out: `bps` is the path's rate, no more.
    pub full: bool,
    /// The burst came in evenly and slower than it went: `bps` is about the path's rate
    /// (video is paced to it), though perhaps not all the room there is.
    pub slowed: bool,
}

/// The sender's side: sends the bursts and reads the receiver's results.
#[derive(Debug, Default)]
pub struct Prober {
    next_cluster: u16,
    burst: Option<Burst>,
    /// When the probing started.
    started: Option<Instant>,
}

impl Prober {
    /// Starts probing a path the call starts on at `current` bit/s, up to a little over
    /// `max`; nothing to probe when `current` is already the most.
    pub fn start(&mut self, current: u32, max: u32, now: Instant) {
        let bps = (f64::from(current) * FIRST_FACTOR).min(f64::from(max) * TOP_FACTOR) as u32;
        self.burst = (current < max && bps > current).then(|| self.burst(bps, now));
        self.started = Some(now);
    }

    /// Whether video and sound should wait for the probing still: until it ends, for
    /// [`MEDIA_HOLD`] at most.
    pub fn holds_media(&self, now: Instant) -> bool {
        self.burst.is_some()
            && self
                .started
                .is_some_and(|t| now.saturating_duration_since(t) < MEDIA_HOLD)
    }

    fn burst(&mut self, bps: u32, now: Instant) -> Burst {
        let b = Burst::new(self.next_cluster, bps, now);
        self.next_cluster = self.next_cluster.wrapping_add(1);
        b
    }

    /// Whether a burst is going out or its result is awaited.
    pub fn probing(&self) -> bool {
        self.burst.is_some()
    }

    /// When the burst's next datagram is due, while one is going out.
    pub fn next_due(&self) -> Option<Instant> {
        self.burst
            .as_ref()
            .filter(|b| b.sent < b.count)
            .map(|b| b.due(b.sent))
    }

    /// The datagrams due at `now`, in order; gives up on a result that never came.
    pub fn poll(&mut self, now: Instant, mut send: impl FnMut(ProbePacket)) {
        let Some(b) = self.burst.as_mut() else { return };
        while b.sent < b.count && b.due(b.sent) <= now {
            send(ProbePacket {
                cluster: b.cluster,
                index: b.sent,
                count: b.count,
                size: PROBE_SIZE,
            });
            b.sent += 1;
        }
        if b.sent == b.count && now.saturating_duration_since(b.due(b.count - 1)) > RESULT_WAIT {
            self.burst = None;
        }
    }

    /// The receiver timed a burst: returns what it found of the path, and sends a faster
    /// burst next if this one got through and `max` is not reached yet.
    pub fn on_result(&mut self, t: ProbeResult, max: u32, now: Instant) -> Option<Found> {
        let ProbeResult {
            cluster,
            kbps,
            even,
        } = t;
        let b = self
            .burst
            .filter(|b| b.cluster == cluster && b.sent == b.count)?;
        let got = u32::try_from(u64::from(kbps) * 1000)
            .unwrap_or(u32::MAX)
            .min(b.bps);
        let top = (f64::from(max) * TOP_FACTOR) as u32;
        self.burst = (f64::from(got) >= f64::from(b.bps) * GOT_THROUGH && b.bps < top).then(|| {
            let next = (f64::from(b.bps) * NEXT_FACTOR).min(f64::from(top)) as u32;
            self.burst(next, now)
        });
        Some(Found {
            bps: got,
            full: even && f64::from(got) <= f64::from(b.bps) * SPREAD,
            slowed: even && f64::from(got) < f64::from(b.bps) * GOT_THROUGH,
        })
    }
}

/// A result is sent once the whole burst arrived, or this long after its last datagram.
const SETTLE: Duration = Duration::from_millis(50);
/// Datagrams of a burst that must arrive for its rate to be told.
const MIN_ARRIVED: u32 = 3;

#[derive(Debug, Clone)]
struct Arrivals {
    cluster: u16,
    count: u16,
    /// When each datagram arrived, by its index (a duplicate counts once).
    at: [Option<Instant>; MAX_PROBE_PACKETS as usize],
    first: Instant,
    last: Instant,
    /// Bytes that arrived after the first datagram.
    bytes: u64,
    told: bool,
}

/// The receiver's side: times the bursts.
#[derive(Debug, Default)]
pub struct ProbeMeter {
    arrivals: Option<Arrivals>,
}

impl ProbeMeter {
    /// A datagram of a burst arrived at `now`. A new burst replaces the one before.
    pub fn on_probe(&mut self, p: ProbePacket, now: Instant) {
        let ProbePacket {
            cluster,
            index,
            count,
            size,
        } = p;
        if index >= count || index >= MAX_PROBE_PACKETS {
            return;
        }
        let a = match &mut self.arrivals {
            Some(a) if a.cluster == cluster => a,
            _ => self.arrivals.insert(Arrivals {
                cluster,
                count,
                at: [None; MAX_PROBE_PACKETS as usize],
                first: now,
                last: now,
                bytes: 0,
                told: false,
            }),
        };
        let i = usize::from(index);
        if a.told || a.at[i].is_some() {
            return;
        }
        if a.at.iter().any(Option::is_some) {
            a.bytes += u64::from(size);
        }
        a.at[i] = Some(now);
        a.last = now;
    }

    /// What a burst showed, once, when it is all in or has settled.
    pub fn result(&mut self, now: Instant) -> Option<ProbeResult> {
        let a = self.arrivals.as_mut().filter(|a| !a.told)?;
        let arrived = a.at.iter().flatten().count() as u32;
        if arrived < u32::from(a.count) && now.saturating_duration_since(a.last) < SETTLE {
            return None;
        }
        a.told = true;
        if arrived < MIN_ARRIVED {
            return None;
        }
        let span = a.last.saturating_duration_since(a.first).as_secs_f64();
        let kbps = if span > 0.0 {
            (a.bytes as f64 * 8.0 / span / 1000.0).min(f64::from(u32::MAX)) as u32
        } else {
            u32::MAX
        };
        Some(ProbeResult {
            cluster: a.cluster,
            kbps,
            even: evenly_spaced(&a.at),
        })
    }
}

/// A gap between two datagrams under this share of the mean gap is not even.
const EVEN_GAP: f64 = 1.0 / 3.0;

/// Whether the datagrams that arrived did so in order, with no gap much shorter than the
/// mean (gaps over a lost datagram count per datagram).
fn evenly_spaced(at: &[Option<Instant>]) -> bool {
    let mut arrived = at.iter().enumerate().filter_map(|(i, t)| t.map(|t| (i, t)));
    let Some(first) = arrived.next() else {
        return false;
    };
    let (mut prev, mut last) = (first, first);
    let mut shortest = f64::MAX;
    for (i, t) in arrived {
        if t < prev.1 {
            return false;
        }
        let gap = t.duration_since(prev.1).as_secs_f64() / (i - prev.0) as f64;
        shortest = shortest.min(gap);
        prev = (i, t);
        last = prev;
    }
    let mean = last.1.duration_since(first.1).as_secs_f64() / (last.0 - first.0).max(1) as f64;
    mean > 0.0 && shortest >= mean * EVEN_GAP
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bottleneck of `cap` bit/s with an unlimited queue between `prober` and `meter`, then
    /// a random delay of up to `jitter` for each datagram, and a receiver that notices
    /// datagrams `tick` late at most: runs probing to its end and returns what was found.
    fn probe_path(start: u32, max: u32, cap: f64, tick: Duration, jitter: Duration) -> Vec<Found> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut random = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1_000_000) as f64 / 1e6
        };
        let mut prober = Prober::default();
        let mut meter = ProbeMeter::default();
        let t0 = Instant::now();
        let mut now = t0;
        prober.start(start, max, now);
        let mut link_free = t0;
        let mut in_flight: Vec<(Instant, ProbePacket)> = Vec::new();
        let mut found = Vec::new();
        while prober.probing() && now < t0 + Duration::from_secs(5) {
            prober.poll(now, |p| {
                let at =
                    link_free.max(now) + Duration::from_secs_f64(f64::from(p.size) * 8.0 / cap);
                link_free = at;
                in_flight.push((at + jitter.mul_f64(random()), p));
            });
            // the receiver sees what arrived by its last tick, in the order it arrived
            let seen = now
                - Duration::from_nanos(
                    now.duration_since(t0).as_nanos() as u64 % tick.as_nanos() as u64,
                );
            in_flight.sort_by_key(|(at, _)| *at);
            let due = in_flight.iter().take_while(|(at, _)| *at <= seen).count();
            for (_, p) in in_flight.drain(..due) {
                meter.on_probe(p, seen);
            }
            if let Some(t) = meter.result(now) {
                // a millisecond back to the sender
                if let Some(f) = prober.on_result(t, max, now + Duration::from_millis(1)) {
                    found.push(f);
                }
            }
            now += Duration::from_micros(250);
        }
        found
    }

    #[test]
    fn a_fast_path_is_probed_up_to_the_most_the_video_may_use() {
        let found = probe_path(
            800_000,
            5_500_000,
            100e6,
            Duration::from_millis(1),
            Duration::ZERO,
        );
        // 2.4, 4.8, then 6.9 Mbit/s (a quarter over the most): each gets through
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[2].bps >= 5_500_000, "room for all of it: {found:?}");
        assert!(found.iter().all(|f| !f.full && !f.slowed), "{found:?}");
    }

    #[test]
    fn a_slow_path_stops_the_probing_at_its_rate() {
        let found = probe_path(
            800_000,
            5_500_000,
            1e6,
            Duration::from_millis(1),
            Duration::ZERO,
        );
        // the first burst (2.4 Mbit/s) is spread out to the path's 1 Mbit/s
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            (900_000..=1_150_000).contains(&found[0].bps),
            "about the path's rate: {found:?}"
        );
        assert!(found[0].full && found[0].slowed);
        // a path between two bursts' rates: the second is spread out
        let found = probe_path(
            800_000,
            5_500_000,
            3e6,
            Duration::from_millis(1),
            Duration::ZERO,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!((2_700_000..=3_400_000).contains(&found[1].bps), "{found:?}");
        assert!(!found[0].full && found[1].full, "{found:?}");
        // a fast path that delays each datagram by 0–20 ms at random spreads the bursts out
        // too, but not evenly: the probing stops, and the path is not called full
        let found = probe_path(
            800_000,
            5_500_000,
            100e6,
            Duration::from_millis(1),
            Duration::from_millis(20),
        );
        assert!(
            !found.is_empty() && found.iter().all(|f| !f.full && !f.slowed),
            "{found:?}"
        );
        // a path a little slower than a burst stops the probing without calling it full
        let found = probe_path(
            800_000,
            5_500_000,
            1.8e6,
            Duration::from_millis(1),
            Duration::ZERO,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].full && found[0].slowed, "{found:?}");
    }

    #[test]
    fn a_burst_read_all_at_once_counts_as_its_own_rate() {
        // a receiver that was busy reads the whole burst in one go: too fast to time
        let now = Instant::now();
        let mut p = Prober::default();
        p.start(500_000, 1_500_000, now);
        let mut m = ProbeMeter::default();
        p.poll(now + Duration::from_millis(100), |d| {
            m.on_probe(d, now);
        });
        let t = m.result(now).expect("all arrived");
        assert_eq!(t.kbps, u32::MAX);
        assert!(!t.even);
        assert_eq!(
            p.on_result(t, 1_500_000, now),
            Some(Found {
                bps: 1_500_000,
                full: false,
                slowed: false,
            })
        );
        assert!(p.probing(), "and a faster burst follows");
    }

    #[test]
    fn it_tells_when_its_next_datagram_is_due() {
        let t0 = Instant::now();
        let mut p = Prober::default();
        assert_eq!(p.next_due(), None, "not probing");
        p.start(500_000, 2_000_000, t0);
        let (mut now, mut sent) = (t0, 0u16);
        while let Some(due) = p.next_due() {
            assert!(due >= now, "due in the past");
            now = due;
            let before = sent;
            p.poll(now, |_| sent += 1);
            assert!(sent > before, "woken at its due time, a datagram goes");
        }
        // the whole burst went, at its rate: 1.5 Mbit/s of 1200-byte datagrams for 15 ms
        assert!(sent >= MIN_PACKETS, "{sent} datagrams");
        let spread = now.duration_since(t0).as_secs_f64();
        let expected = f64::from(sent - 1) * f64::from(PROBE_SIZE) * 8.0 / 1_500_000.0;
        assert!(
            (spread - expected).abs() < 1e-4,
            "{spread} s against {expected} s"
        );
        // waiting for the result, nothing is due
        assert!(p.probing());
    }

    #[test]
    fn nothing_is_probed_at_the_top_and_a_lost_result_ends_probing() {
        let now = Instant::now();
        let mut p = Prober::default();
        p.start(1_500_000, 1_500_000, now);
        assert!(!p.probing());
        assert!(!p.holds_media(now));
        p.start(500_000, 1_500_000, now);
        let mut sent = Vec::new();
        p.poll(now + Duration::from_millis(100), |d| sent.push(d));
        assert!(sent.len() >= usize::from(MIN_PACKETS));
        assert!(sent
            .iter()
            .enumerate()
            .all(|(i, d)| usize::from(d.index) == i));
        // a result for a burst never sent is ignored
        let stranger = ProbeResult {
            cluster: sent[0].cluster.wrapping_add(7),
            kbps: 1,
            even: true,
        };
        assert_eq!(p.on_result(stranger, 1_500_000, now), None);
        assert!(p.probing(), "waiting for the result");
        assert!(p.holds_media(now + Duration::from_millis(100)));
        assert!(
            !p.holds_media(now + MEDIA_HOLD),
            "video waits so long at most"
        );
        p.poll(now + Duration::from_secs(2), |_| {
            panic!("nothing more to send")
        });
        assert!(!p.probing(), "gave up waiting");
    }

    fn packet(cluster: u16, index: u16, count: u16, size: u16) -> ProbePacket {
        ProbePacket {
            cluster,
            index,
            count,
            size,
        }
    }

    #[test]
    fn the_meter_counts_a_datagram_once_and_ignores_nonsense() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut m = ProbeMeter::default();
        m.on_probe(packet(1, 9, 5, 1200), t0); // past the count
        m.on_probe(packet(1, 70, 80, 1200), t0); // past what is kept
        assert_eq!(m.result(t0 + SETTLE * 2), None);
        for (i, at) in [(0, 0), (1, 10), (1, 10), (2, 20), (3, 30), (4, 40)] {
            m.on_probe(packet(2, i, 5, 1000), t0 + ms * at);
        }
        // 4 datagrams after the first in 40 ms (the duplicate not counted): 800 kbit/s, evenly
        let t = ProbeResult {
            cluster: 2,
            kbps: 800,
            even: true,
        };
        assert_eq!(m.result(t0 + ms * 40), Some(t));
        assert_eq!(m.result(t0 + ms * 100), None, "told once");
        // too few arrived to time: nothing told
        m.on_probe(packet(3, 0, 5, 1000), t0);
        m.on_probe(packet(3, 4, 5, 1000), t0 + ms);
        assert_eq!(m.result(t0 + ms * 10), None, "still waiting");
        assert_eq!(m.result(t0 + ms * 100), None);
        // out of order, or two at once among wide gaps: not even
        for (i, at) in [(0, 0), (2, 10), (1, 12), (3, 30), (4, 40)] {
            m.on_probe(packet(4, i, 5, 1000), t0 + ms * at);
        }
        assert!(!m.result(t0 + ms * 40).expect("all in").even);
        for (i, at) in [(0, 0), (1, 15), (2, 16), (3, 30), (4, 40)] {
            m.on_probe(packet(5, i, 5, 1000), t0 + ms * at);
        }
        assert!(!m.result(t0 + ms * 40).expect("all in").even);
        // a lost datagram's gap counts as two
        for (i, at) in [(0, 0), (1, 10), (3, 30), (4, 40)] {
            m.on_probe(packet(6, i, 5, 1000), t0 + ms * at);
        }
        assert!(m.result(t0 + ms * 100).expect("settled").even);
    }
}
