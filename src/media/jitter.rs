//! Adaptive audio jitter buffer, sans-IO: time comes in as `Instant`s, nothing is read
//! from a clock, no threads, no IO.
//!
//! Model: every packet is one frame and sequence numbers are consecutive, so packet `n`
//! *ideally* arrives at `base + n * frame`, where `base` is the smallest transit offset seen
//! over a sliding window. The playout delay is how far the playout position lags that ideal
//! arrival; the target is the 99th percentile of per-packet lateness plus a quarter frame. Keeping
//! delay and target in the sender's frame grid (instead of counting buffered packets) makes
//! clock drift visible as a slow change of the delay, which the buffer then corrects by
//! dropping a frame (sender faster) or inserting a concealed one (sender slower).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Sequence jumps beyond this are "absurd": a reset candidate, not a packet to buffer.
const MAX_SEQ_JUMP: i64 = 1000;
/// Consistent absurd packets needed in a row before we believe the sender restarted.
const RESET_AFTER: usize = 4;
/// How close consecutive reset candidates must be to count as one new stream.
const RESET_SPREAD: i64 = 64;
/// Packets in the sliding minimum that defines the transit base (~2.5 s at 20 ms).
const BASE_WINDOW: usize = 128;
/// Packets in the jitter percentile window (~5 s at 20 ms).
const JITTER_WINDOW: usize = 250;
/// Percentile of lateness the target delay covers.
const JITTER_PERCENTILE: f64 = 0.99;
/// Target delay above the jitter percentile, in frames.
const TARGET_MARGIN_FRAMES: f64 = 0.25;
/// Pops the delay must stay more than a frame over target before a drift skip.
const SKIP_PATIENCE: u32 = 25;
/// Pops per skip when the excess is large (after a burst or a playout stall): 1.5x speed.
const FAST_SKIP_PATIENCE: u32 = 3;
/// Excess over target, in frames, above which the fast skip rate applies.
const FAST_SKIP_EXCESS_FRAMES: f64 = 2.0;
/// Consecutive late packets after which the transit base is assumed stale and re-learnt.
const LATE_REBASE: u32 = 25;
/// First extended sequence number; far from 0 so reordering before the first packet works.
const EXT_ORIGIN: u64 = 1 << 40;

/// One received audio packet (one codec frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioPacket {
    /// Consecutive per-frame sequence number (wraps at `u32::MAX`).
    pub seq: u32,
    /// Media timestamp in 48 kHz samples; carried along, timing uses `seq` (one frame each).
    pub timestamp: u32,
    /// Encoded frame.
    pub payload: Vec<u8>,
}

/// Jitter buffer tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Duration of one packet / one `pop` (20 ms).
    pub frame: Duration,
    /// Lowest target delay, e.g. 20 ms.
    pub min_delay: Duration,
    /// Highest target delay, e.g. 300 ms; also how long without packets counts as a gap.
    pub max_delay: Duration,
    /// Packets held at most; bounds memory.
    pub capacity: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            frame: Duration::from_millis(20),
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(300),
            capacity: 64,
        }
    }
}

/// What to play for one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The frame's own packet: decode normally.
    Packet(Vec<u8>),
    /// Missing (or a deliberately inserted frame): run packet-loss concealment.
    Conceal,
    /// Not started yet, or the stream stopped: play silence.
    Silence,
}

/// Counters and current delays.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets passed to `push`.
    pub received: u64,
    /// Packets that arrived after their slot was played or concealed.
    pub late: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets discarded for lack of room: buffer full, or a lone absurd sequence jump ahead.
    pub dropped_overflow: u64,
    /// Slots whose packet never came in time.
    pub lost: u64,
    /// Of the lost slots, those played from the copy a later packet carried (see
    /// [`JitterBuffer::push_copy`]).
    pub recovered_fec: u64,
    /// `Conceal` outputs: lost slots plus frames inserted to grow the delay.
    pub concealed: u64,
    /// Frames dropped to bring the delay back down (clock drift, bursts, playout stalls).
    pub skipped_for_drift: u64,
    /// Of the concealed frames, those inserted to make the sound wait (see
    /// [`JitterBuffer::set_extra_delay`]).
    pub inserted_for_extra: u64,
    /// Delay the buffer aims for.
    pub target_delay_ms: f64,
    /// Playout delay at the last `pop` (0 while not playing).
    pub current_delay_ms: f64,
}

/// Packets of a suspected sender restart, kept until it is confirmed or refuted.
#[derive(Debug)]
struct ResetCandidate {
    last_seq: u32,
    packets: Vec<(AudioPacket, Instant, bool)>,
}

/// Adaptive jitter buffer; see the module docs for the model.
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    frame_ms: f64,
    stats: JitterStats,
    buf: BTreeMap<u64, Vec<u8>>,
    /// Slots in `buf` filled from a copy, whose own packet has not come.
    copies: BTreeSet<u64>,
    /// Extended seq of the next slot to play (provisional until playout first starts).
    next: u64,
    have_ref: bool,
    started: bool,
    ever_started: bool,
    /// Bit i set: slot `next - 1 - i` was played from its own packet (tells late from duplicate).
    played: u128,
    epoch: Option<Instant>,
    origin: u64,
    last_arrival: Option<Instant>,
    transit: VecDeque<f64>,
    base_ms: f64,
    jitter: VecDeque<f64>,
    scratch: Vec<f64>,
    target_ms: f64,
    /// Delay asked for on top of what the jitter needs (see `set_extra_delay`), ms.
    extra_ms: f64,
    over_target_pops: u32,
    consecutive_late: u32,
    /// Slots given up as lost while nothing at all was buffered; undone if it was a pause.
    dry_lost: u64,
    candidate: Option<ResetCandidate>,
}

impl JitterBuffer {
    /// Creates an empty buffer; a zero frame falls back to 20 ms and capacity is at least 2.
    pub fn new(cfg: JitterConfig) -> Self {
        let mut cfg = cfg;
        if cfg.frame.is_zero() {
            cfg.frame = Duration::from_millis(20);
        }
        cfg.capacity = cfg.capacity.max(2);
        cfg.max_delay = cfg.max_delay.max(cfg.min_delay);
        let frame_ms = ms(cfg.frame);
        let mut jb = Self {
            cfg,
            frame_ms,
            stats: JitterStats::default(),
            buf: BTreeMap::new(),
            copies: BTreeSet::new(),
            next: EXT_ORIGIN,
            have_ref: false,
            started: false,
            ever_started: false,
            played: 0,
            epoch: None,
            origin: EXT_ORIGIN,
            last_arrival: None,
            transit: VecDeque::with_capacity(BASE_WINDOW),
            base_ms: 0.0,
            jitter: VecDeque::with_capacity(JITTER_WINDOW),
            scratch: Vec::with_capacity(JITTER_WINDOW),
            target_ms: 0.0,
            extra_ms: 0.0,
            over_target_pops: 0,
            consecutive_late: 0,
            dry_lost: 0,
            candidate: None,
        };
        jb.update_target();
        jb
    }

    /// Offers a received packet; late, duplicate, absurd and overflowing packets are counted.
    pub fn push(&mut self, pkt: AudioPacket, arrival: Instant) {
        self.stats.received += 1;
        self.push_counted(pkt, arrival);
    }

    /// Offers the copy of frame `seq` that a later packet carried. It fills the slot only if
    /// that frame's own packet has not come and its slot is still ahead; it says nothing
    /// about the network's timing (it travelled a frame late by design), so it is not
    /// counted as received.
    pub fn push_copy(&mut self, seq: u32, payload: Vec<u8>) {
        if !self.have_ref || self.candidate.is_some() {
            return;
        }
        let d = i64::from(seq.wrapping_sub(self.next as u32) as i32);
        if !(0..=MAX_SEQ_JUMP).contains(&d) {
            return;
        }
        let ext = self.next.saturating_add_signed(d);
        if self.buf.contains_key(&ext) {
            return;
        }
        self.insert(ext, payload);
        if self.buf.contains_key(&ext) {
            self.copies.insert(ext);
        }
    }

    /// Returns what to play for the next frame; call once per frame on the playout clock.
    pub fn pop(&mut self, now: Instant) -> Playout {
        if !self.started && !self.try_start(now) {
            self.stats.current_delay_ms = 0.0;
            return Playout::Silence;
        }
        let delay = self.delay_ms(self.next, now);
        self.stats.current_delay_ms = delay;
        let f = self.frame_ms;

        if self.extra_ms > 0.0
            && delay < self.target_ms - f / 2.0
            && self.buf.contains_key(&self.next)
        {
            // asked to wait longer: hold the slot and insert a frame, one frame of delay more
            self.stats.concealed += 1;
            self.stats.inserted_for_extra += 1;
            return Playout::Conceal;
        }
        if let Some(payload) = self.buf.remove(&self.next) {
            let excess = delay - self.target_ms;
            if excess > f {
                self.over_target_pops += 1;
            } else {
                self.over_target_pops = 0;
            }
            let patience = if excess > FAST_SKIP_EXCESS_FRAMES * f {
                FAST_SKIP_PATIENCE
            } else {
                SKIP_PATIENCE
            };
            // Only skip when the following frame is already here, so the skip cannot itself
            // cause an underrun.
            if self.over_target_pops >= patience && self.buf.contains_key(&(self.next + 1)) {
                self.over_target_pops = 0;
                self.stats.skipped_for_drift += 1;
                self.advance(true);
                self.stats.current_delay_ms = delay - f;
                if let Some(p) = self.buf.remove(&self.next) {
                    self.advance(true);
                    return Playout::Packet(p);
                }
            }
            self.advance(true);
            return Playout::Packet(payload);
        }

        // The slot's packet is missing.
        if self.buf.is_empty() {
            let gap = self
                .last_arrival
                .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
            if gap >= self.gap_threshold() {
                // The sender went quiet. Slots we gave up on since the last packet were
                // probably a pause (mute, DTX) rather than loss, and nothing was played from
                // them, so hand them back: the next talk spurt then continues seamlessly.
                self.next = self.next.saturating_sub(self.dry_lost);
                self.played >>= self.dry_lost.min(127);
                self.stats.lost = self.stats.lost.saturating_sub(self.dry_lost);
                self.dry_lost = 0;
                self.started = false;
                self.transit.clear();
                self.stats.current_delay_ms = 0.0;
                return Playout::Silence;
            }
        }
        // With nothing after it here, the packet is more likely late than lost: hold the slot
        // a while longer. With the next one here it is lost (or reordered), unless playout runs
        // well under target.
        let next_here = self.buf.contains_key(&(self.next + 1));
        let hold_below = if next_here {
            self.target_ms - f / 2.0
        } else {
            self.target_ms + f / 2.0
        };
        if delay < hold_below {
            // Hold the slot and insert a frame, which raises the delay by one frame (also the
            // slow-sender fix); playing slightly faster takes it back afterwards.
            self.stats.concealed += 1;
            return Playout::Conceal;
        }
        self.stats.lost += 1;
        if self.buf.is_empty() {
            self.dry_lost += 1;
        }
        self.advance(false);
        self.stats.concealed += 1;
        Playout::Conceal
    }

    /// How far the frame just handed out lags the target delay, ms: the excess the player
    /// may melt away by playing slightly faster; 0 before playout starts.
    pub fn excess_ms(&self) -> f64 {
        if self.started {
            self.stats.current_delay_ms - self.target_ms
        } else {
            0.0
        }
    }

    /// Whether the next `pop` would hand out a packet (or silence, before playout starts)
    /// rather than conceal a slot whose packet has not come.
    pub fn next_here(&self) -> bool {
        !self.started || self.buf.contains_key(&self.next)
    }

    /// The sequence number of the slot the last `pop` handed out, while playing.
    pub fn last_seq(&self) -> Option<u32> {
        // the low 32 bits of an extended seq are the wire seq
        self.started.then(|| self.next.wrapping_sub(1) as u32)
    }

    /// Makes playout wait `extra` longer than the jitter needs (the sound waiting for late
    /// pictures): the delay grows by inserted frames, and shrinks again, once `extra` does,
    /// as any excess over the target does. [`JitterBuffer::reset`] forgets it.
    pub fn set_extra_delay(&mut self, extra: Duration) {
        let v = ms(extra);
        if (v - self.extra_ms).abs() > f64::EPSILON {
            self.extra_ms = v;
            self.update_target();
        }
    }

    /// Current counters and delays.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Forgets everything, counters included, as if freshly created.
    pub fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    fn push_counted(&mut self, pkt: AudioPacket, arrival: Instant) {
        if self.epoch.is_none() {
            self.epoch = Some(arrival);
        }
        if !self.have_ref {
            self.have_ref = true;
            self.next = EXT_ORIGIN | u64::from(pkt.seq);
            self.origin = self.next;
        }
        // The low 32 bits of an extended seq are the wire seq, by construction.
        let d = i64::from(pkt.seq.wrapping_sub(self.next as u32) as i32);
        if d.abs() > MAX_SEQ_JUMP {
            self.on_absurd(pkt, arrival, d > 0);
            return;
        }
        // The current stream is evidently alive, so a pending restart was a fluke.
        self.discard_candidate();
        let ext = self.next.saturating_add_signed(d);
        self.last_arrival = Some(arrival);

        if ext < self.next {
            if !self.ever_started {
                // Reordered packets before playout begins simply move the start earlier.
                self.next = ext;
            } else {
                let behind = self.next - 1 - ext;
                if behind < 128 && self.played & (1u128 << behind) != 0 {
                    self.stats.duplicates += 1;
                } else {
                    self.stats.late += 1;
                    self.record_timing(ext, arrival);
                    self.consecutive_late += 1;
                    if self.consecutive_late >= LATE_REBASE {
                        // Everything is late: transit grew for good, so re-learn the base.
                        self.consecutive_late = 0;
                        self.transit.clear();
                    }
                }
                return;
            }
        }
        if self.buf.contains_key(&ext) {
            if !self.copies.remove(&ext) {
                self.stats.duplicates += 1;
                return;
            }
            // a copy got here first; the packet itself still tells the network's timing
            self.consecutive_late = 0;
            self.record_timing(ext, arrival);
            return;
        }
        self.consecutive_late = 0;
        self.dry_lost = 0;
        self.record_timing(ext, arrival);
        self.insert(ext, pkt.payload);
    }

    fn insert(&mut self, ext: u64, payload: Vec<u8>) {
        if self.buf.len() >= self.cfg.capacity {
            let window_end = self.next + self.cfg.capacity as u64;
            let newest = self.buf.last_key_value().map_or(0, |(k, _)| *k);
            if newest >= window_end && ext < newest {
                // Something far ahead (likely junk) gives way to a packet we need sooner.
                if let Some((k, _)) = self.buf.pop_last() {
                    self.copies.remove(&k);
                }
            } else if ext >= window_end {
                self.stats.dropped_overflow += 1;
                return;
            } else {
                // Within the window the oldest audio is the least useful to a live call.
                if let Some((k, _)) = self.buf.pop_first() {
                    self.copies.remove(&k);
                }
                if !self.ever_started {
                    self.next = self
                        .buf
                        .first_key_value()
                        .map_or(ext, |(k, _)| *k.min(&ext));
                }
            }
            self.stats.dropped_overflow += 1;
        }
        self.buf.insert(ext, payload);
    }

    fn on_absurd(&mut self, pkt: AudioPacket, arrival: Instant, ahead: bool) {
        let consistent = self.candidate.as_ref().is_some_and(|c| {
            i64::from(pkt.seq.wrapping_sub(c.last_seq) as i32).abs() <= RESET_SPREAD
        });
        if !consistent {
            self.discard_candidate();
        }
        let cand = self.candidate.get_or_insert_with(|| ResetCandidate {
            last_seq: pkt.seq,
            packets: Vec::with_capacity(RESET_AFTER),
        });
        cand.last_seq = pkt.seq;
        cand.packets.push((pkt, arrival, ahead));
        if cand.packets.len() >= RESET_AFTER {
            let packets = std::mem::take(&mut cand.packets);
            self.restart_stream();
            for (p, t, _) in packets {
                self.push_counted(p, t);
            }
        }
    }

    fn discard_candidate(&mut self) {
        if let Some(c) = self.candidate.take() {
            for (_, _, ahead) in c.packets {
                if ahead {
                    self.stats.dropped_overflow += 1;
                } else {
                    self.stats.late += 1;
                }
            }
        }
    }

    /// Sender restarted with a new sequence space: drop the old stream, keep stats and the
    /// jitter history (same network path).
    fn restart_stream(&mut self) {
        self.buf.clear();
        self.copies.clear();
        self.next = EXT_ORIGIN;
        self.origin = EXT_ORIGIN;
        self.have_ref = false;
        self.started = false;
        self.ever_started = false;
        self.played = 0;
        self.transit.clear();
        self.over_target_pops = 0;
        self.consecutive_late = 0;
        self.dry_lost = 0;
        self.candidate = None;
    }

    fn try_start(&mut self, now: Instant) -> bool {
        let Some((&first, _)) = self.buf.first_key_value() else {
            return false;
        };
        if self.delay_ms(first, now) < self.target_ms {
            return false;
        }
        if self.ever_started {
            // Slots that passed while we were idle never arrived.
            let gap = first.saturating_sub(self.next);
            self.stats.lost += gap;
            self.played = if gap >= 128 { 0 } else { self.played << gap };
        }
        self.next = first;
        self.started = true;
        self.ever_started = true;
        self.over_target_pops = 0;
        // Packets that piled up before we started (a burst) would be stale: start near target.
        while self.buf.len() > 1 && self.delay_ms(self.next, now) > self.target_ms + self.frame_ms {
            if self.buf.remove(&self.next).is_none() {
                break;
            }
            self.stats.skipped_for_drift += 1;
            self.advance(true);
        }
        true
    }

    fn advance(&mut self, had_packet: bool) {
        if had_packet && self.copies.first() == Some(&self.next) {
            // its own packet never came: lost, and recovered
            self.stats.lost += 1;
            self.stats.recovered_fec += 1;
        }
        while self.copies.first().is_some_and(|&k| k <= self.next) {
            self.copies.pop_first();
        }
        self.next += 1;
        self.played = (self.played << 1) | u128::from(had_packet);
    }

    fn record_timing(&mut self, ext: u64, arrival: Instant) {
        let transit = self.ms_since_epoch(arrival) - self.slot_ms(ext);
        if self.transit.len() >= BASE_WINDOW {
            self.transit.pop_front();
        }
        self.transit.push_back(transit);
        self.base_ms = self.transit.iter().copied().fold(f64::INFINITY, f64::min);
        if self.jitter.len() >= JITTER_WINDOW {
            self.jitter.pop_front();
        }
        self.jitter.push_back(transit - self.base_ms);
        self.update_target();
    }

    fn update_target(&mut self) {
        self.scratch.clear();
        self.scratch.extend(self.jitter.iter().copied());
        // Nearest-rank percentile; an empty window means no jitter seen yet. Selected, not
        // sorted: this runs for every packet (a sort was 1-2 % of the call loop's time)
        let rank = (self.scratch.len() as f64 * JITTER_PERCENTILE).ceil() as usize;
        let j = match rank.checked_sub(1) {
            Some(i) if i < self.scratch.len() => {
                *self.scratch.select_nth_unstable_by(i, f64::total_cmp).1
            }
            _ => 0.0,
        };
        // playout is kept at the target by playing slightly faster (see `excess_ms`), so
        // the target needs only a margin for the tick on top of the jitter
        self.target_ms = (j + self.frame_ms * TARGET_MARGIN_FRAMES)
            .max(ms(self.cfg.min_delay))
            .min(ms(self.cfg.max_delay))
            + self.extra_ms;
        self.stats.target_delay_ms = self.target_ms;
    }

    /// How far playout at `now` lags the ideal (jitter-free) arrival of slot `ext`.
    fn delay_ms(&self, ext: u64, now: Instant) -> f64 {
        self.ms_since_epoch(now) - self.base_ms - self.slot_ms(ext)
    }

    fn slot_ms(&self, ext: u64) -> f64 {
        (ext as i64 - self.origin as i64) as f64 * self.frame_ms
    }

    fn ms_since_epoch(&self, t: Instant) -> f64 {
        self.epoch
            .map_or(0.0, |e| ms(t.saturating_duration_since(e)))
    }

    fn gap_threshold(&self) -> Duration {
        self.cfg.max_delay.max(self.cfg.frame * 10)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const F_US: u64 = 20_000;

    /// Seeded xorshift64 so every run sees the same "network".
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn pkt(seq: u32) -> AudioPacket {
        AudioPacket {
            seq,
            timestamp: seq.wrapping_mul(960),
            payload: seq.to_le_bytes().to_vec(),
        }
    }

    fn seq_of(payload: &[u8]) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&payload[..4]);
        u32::from_le_bytes(b)
    }

    /// Packets sent every `period_us` (sender clock), arriving after transit + jitter.
    fn stream(
        first: u32,
        n: u32,
        period_us: f64,
        transit_us: f64,
        mut jitter_us: impl FnMut(u32) -> f64,
        mut keep: impl FnMut(u32) -> bool,
    ) -> Vec<(u64, AudioPacket)> {
        (0..n)
            .filter(|&i| keep(i))
            .map(|i| {
                let t = f64::from(i) * period_us + transit_us + jitter_us(i);
                (t as u64, pkt(first.wrapping_add(i)))
            })
            .collect()
    }

    #[derive(Default)]
    struct Run {
        out: Vec<(u64, Playout)>,
        /// Current delay after each pop while playing.
        delays: Vec<(u64, f64)>,
        played: Vec<u32>,
        max_len: usize,
        pushed: u64,
    }

    impl Run {
        fn count(&self, f: impl Fn(&Playout) -> bool) -> usize {
            self.out.iter().filter(|(_, p)| f(p)).count()
        }
        /// Asserts that exactly `first..first + len` was played, with `len >= min_len`.
        fn assert_all_played(&self, first: u32, min_len: usize) {
            assert!(self.played.len() >= min_len, "played {}", self.played.len());
            for (k, &q) in self.played.iter().enumerate() {
                assert_eq!(q, first.wrapping_add(k as u32));
            }
        }
        fn assert_in_order_once(&self) {
            for w in self.played.windows(2) {
                assert!(
                    (w[1].wrapping_sub(w[0]) as i32) > 0,
                    "played {} after {}",
                    w[1],
                    w[0]
                );
            }
        }
    }

    /// Feeds arrivals and pops (both in µs of virtual time) in time order; arrivals first
    /// on ties, as a network thread would have queued them before the audio callback ran.
    fn run(
        jb: &mut JitterBuffer,
        t0: Instant,
        arrivals: Vec<(u64, AudioPacket)>,
        pops: impl IntoIterator<Item = u64>,
    ) -> Run {
        run_with(jb, t0, arrivals, pops, false)
    }

    /// [`run`], where each packet also carries a copy of the one before it when `copies`.
    fn run_with(
        jb: &mut JitterBuffer,
        t0: Instant,
        mut arrivals: Vec<(u64, AudioPacket)>,
        pops: impl IntoIterator<Item = u64>,
        copies: bool,
    ) -> Run {
        arrivals.sort_by_key(|a| a.0);
        let mut arrivals = arrivals.into_iter().peekable();
        let mut r = Run::default();
        for p in pops {
            while let Some((t, _)) = arrivals.peek() {
                if *t > p {
                    break;
                }
                if let Some((t, pk)) = arrivals.next() {
                    let before = pk.seq.wrapping_sub(1);
                    jb.push(pk, t0 + Duration::from_micros(t));
                    if copies {
                        jb.push_copy(before, pkt(before).payload);
                    }
                    r.pushed += 1;
                    r.max_len = r.max_len.max(jb.buf.len());
                }
            }
            let out = jb.pop(t0 + Duration::from_micros(p));
            if let Playout::Packet(ref b) = out {
                r.played.push(seq_of(b));
            }
            if jb.started {
                r.delays.push((p, jb.stats().current_delay_ms));
            }
            r.max_len = r.max_len.max(jb.buf.len());
            r.out.push((p, out));
        }
        r
    }

    fn pops(n: u64, phase_us: u64) -> impl Iterator<Item = u64> {
        (0..n).map(move |k| k * F_US + phase_us)
    }

    fn cfg() -> JitterConfig {
        JitterConfig::default()
    }

    #[test]
    fn next_here_tells_a_packet_from_a_gap() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        // before playout starts, a pop is silence, never a guess
        assert!(jb.next_here());
        jb.push(pkt(0), t0);
        jb.push(pkt(2), t0 + Duration::from_millis(40));
        let mut t = t0 + Duration::from_millis(40);
        while jb.pop(t) == Playout::Silence {
            t += Duration::from_millis(1);
        }
        // 0 was played; 1 has not come, 2 has
        assert!(!jb.next_here());
        assert_eq!(jb.pop(t + Duration::from_millis(20)), Playout::Conceal);
        assert!(jb.next_here());
    }

    #[test]
    fn steady_stream_plays_everything_at_min_delay() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let arr = stream(7, 3000, 20_000.0, 35_000.0, |_| 0.0, |_| true);
        let r = run(&mut jb, t0, arr, pops(3000, 7_000));
        let s = jb.stats();
        assert_eq!(
            (s.concealed, s.lost, s.late, s.skipped_for_drift),
            (0, 0, 0, 0)
        );
        assert_eq!(s.target_delay_ms, 20.0);
        assert!(r.played.len() >= 2990);
        r.assert_in_order_once();
        assert!(r.played.iter().zip(7u32..).all(|(a, b)| *a == b));
        for &(_, d) in &r.delays {
            assert!((20.0..40.0).contains(&d), "delay {d} not ~min_delay");
        }
    }

    #[test]
    fn jitter_raises_target_and_rarely_conceals() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let n = 3000;
        let arr = stream(
            0,
            n,
            20_000.0,
            30_000.0,
            |_| rng.unit() * 60_000.0,
            |_| true,
        );
        let r = run(&mut jb, t0, arr, pops(u64::from(n), 3_000));
        let s = jb.stats();
        let conceals = r.count(|p| *p == Playout::Conceal);
        println!("uniform 0-60 ms jitter: {s:?}");
        assert!(
            s.target_delay_ms > 60.0,
            "target {} stayed low",
            s.target_delay_ms
        );
        assert!(s.target_delay_ms <= 80.0 + 1e-9);
        assert!(
            (conceals as f64) < 0.02 * f64::from(n),
            "{conceals} conceals"
        );
        assert!((s.late as f64) < 0.02 * f64::from(n));
        r.assert_in_order_once();
        // Once adapted, the delay sits at target .. target + frame (+ a little slack).
        for &(_, d) in r.delays.iter().skip(500) {
            assert!(d < s.target_delay_ms + 25.0 && d > 40.0, "delay {d}");
        }
    }

    #[test]
    fn burst_loss_counted_and_single_losses_played_from_the_copy() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let dropped = |i: u32| (500..505).contains(&i) || [800, 1100, 1400].contains(&i);
        let arr = stream(0, 2000, 20_000.0, 30_000.0, |_| 0.0, |i| !dropped(i));
        let r = run_with(&mut jb, t0, arr, pops(2000, 11_000), true);
        let s = jb.stats();
        // Every single loss, and the last of the burst, is played from the copy the next
        // packet carried; the burst's first slot is held once (it might have been late)
        // before it counts as lost.
        assert_eq!(s.lost, 8);
        assert_eq!(s.late, 0);
        assert_eq!(s.duplicates, 0);
        assert_eq!(s.recovered_fec, 4);
        assert_eq!(s.concealed, 5);
        for q in [504, 800, 1100, 1400] {
            assert!(r.played.contains(&q), "{q} not played");
        }
        for q in 500..504 {
            assert!(!r.played.contains(&q), "{q} played");
        }
        r.assert_in_order_once();
        // (the held frame raised the delay by one frame; without a player that speeds up, one
        // frame is skipped later to take it back)
        assert!(s.skipped_for_drift <= 1);
        assert_eq!(
            r.played.len() + 4 + s.skipped_for_drift as usize, // 500..504 never played
            r.played.last().map_or(0, |&x| x as usize) + 1
        );
    }

    #[test]
    fn a_copy_never_replaces_a_packet_and_a_packet_after_its_copy_is_no_duplicate() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        // 1 is reordered behind 2, which carries its copy; 3 and 4 come in order
        jb.push(pkt(0), t0);
        jb.push(pkt(2), t0 + Duration::from_millis(40));
        jb.push_copy(1, pkt(1).payload);
        jb.push(pkt(1), t0 + Duration::from_millis(41));
        jb.push(pkt(3), t0 + Duration::from_millis(60));
        // a copy of something already here, or long gone, changes nothing
        jb.push_copy(2, vec![9, 9, 9, 9]);
        jb.push_copy(u32::MAX, vec![9, 9, 9, 9]);
        let s = jb.stats();
        assert_eq!((s.received, s.duplicates, s.late), (4, 0, 0));
        let mut played = Vec::new();
        for k in 0..8 {
            if let Playout::Packet(b) = jb.pop(t0 + Duration::from_millis(61 + 20 * k)) {
                played.push(seq_of(&b));
            }
        }
        // (0 may be skipped as stale when playout starts)
        assert!(played.ends_with(&[1, 2, 3]), "{played:?}");
        // 1's own packet came, so nothing was recovered
        assert_eq!(jb.stats().recovered_fec, 0);
    }

    #[test]
    fn reordering_and_duplicates_play_each_packet_once_in_order() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let n = 3000u32;
        // 15% of packets are held back 1..2.5 frames, i.e. overtaken by the next ones.
        let mut arr = stream(
            0,
            n,
            20_000.0,
            30_000.0,
            |_| {
                if rng.unit() < 0.15 {
                    20_000.0 + rng.unit() * 30_000.0
                } else {
                    0.0
                }
            },
            |_| true,
        );
        let reordered = arr.windows(2).filter(|w| w[1].0 < w[0].0).count();
        assert!(reordered > 100, "test network must actually reorder");
        // 5% duplicated, the copy arriving 0..100 ms later (often after playout).
        let mut dups = Vec::new();
        for (t, p) in &arr {
            if rng.unit() < 0.05 {
                dups.push((t + (rng.unit() * 100_000.0) as u64, p.clone()));
            }
        }
        let n_dups = dups.len() as u64;
        arr.extend(dups);
        let r = run(&mut jb, t0, arr, pops(u64::from(n) + 10, 5_000));
        let s = jb.stats();
        println!("reorder+dup: {s:?}");
        assert_eq!(s.duplicates, n_dups);
        r.assert_in_order_once();
        // The warm-up may lose a couple before the target has grown; after that, nothing.
        assert!(s.late + s.lost <= 10, "late {} lost {}", s.late, s.lost);
        assert!(r.played.len() as u64 + s.late.max(s.lost) >= u64::from(n) - 1);
        let tail: Vec<u32> = r.played.iter().copied().filter(|&q| q >= 500).collect();
        assert_eq!(tail, (500..n).collect::<Vec<_>>());
    }

    /// `ppm` > 0: sender clock fast (buffer fills); < 0: slow (buffer drains).
    fn drift_run(ppm: f64) -> (JitterStats, Run) {
        let mut rng = Rng(0x0bad_5eed_0000_0001 ^ ppm.to_bits());
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let n = 30_000u32; // 10 minutes
        let period = 20_000.0 / (1.0 + ppm * 1e-6);
        let arr = stream(0, n, period, 40_000.0, |_| rng.unit() * 20_000.0, |_| true);
        let r = run(&mut jb, t0, arr, pops(u64::from(n) - 100, 9_000));
        (jb.stats(), r)
    }

    #[test]
    fn clock_drift_keeps_delay_bounded() {
        for ppm in [1000.0, -1000.0] {
            let (s, r) = drift_run(ppm);
            println!("drift {ppm:+} ppm: {s:?}");
            r.assert_in_order_once();
            // min 20 + 3 frames + 20 ms jitter margin.
            let bound = 20.0 + 60.0 + 20.0;
            let worst = r.delays.iter().map(|d| d.1).fold(0.0, f64::max);
            assert!(worst < bound, "{ppm} ppm: delay reached {worst} ms");
            // Tighter: drift is corrected within about a frame of the target, by single
            // skips / inserts, not by letting the excess build up to the fast catch-up.
            let settled_worst = r.delays[500..].iter().map(|d| d.1).fold(0.0, f64::max);
            let settled_best = r.delays[500..].iter().map(|d| d.1).fold(f64::MAX, f64::min);
            println!(
                "{ppm:+} ppm: delay {settled_best:.1}..{settled_worst:.1} ms, worst {worst:.1}"
            );
            assert!(settled_worst < s.target_delay_ms + 20.0 + 5.0);
            assert!(settled_best > s.target_delay_ms - 20.0 - 5.0);
            // No creep: the last minute is no worse than the first.
            let minute = 3000;
            let first = r.delays[..minute].iter().map(|d| d.1).fold(0.0, f64::max);
            let last = r.delays[r.delays.len() - minute..]
                .iter()
                .map(|d| d.1)
                .fold(0.0, f64::max);
            assert!(last <= first + 20.0, "crept from {first} to {last}");
            // 0.1 % of 30 000 frames = 30 frames must be dropped / inserted.
            if ppm > 0.0 {
                assert!((20..=45).contains(&s.skipped_for_drift), "{s:?}");
            } else {
                assert!((20..=45).contains(&s.concealed), "{s:?}");
                assert_eq!(s.skipped_for_drift, 0);
            }
            assert!(s.late + s.lost <= 10, "{s:?}");
        }
    }

    #[test]
    fn playout_stall_converges_back_by_skipping() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let arr = stream(0, 1000, 20_000.0, 30_000.0, |_| 0.0, |_| true);
        // The audio callback stalls for 400 ms at t = 5 s and then resumes its normal pace.
        let pop_times = pops(1000, 4_000).filter(|&t| !(5_000_000..5_400_000).contains(&t));
        let r = run(&mut jb, t0, arr, pop_times);
        let s = jb.stats();
        let peak = r.delays.iter().map(|d| d.1).fold(0.0, f64::max);
        assert!(peak > 400.0, "the stall should have built up delay");
        // 400 ms excess: ~1.2 s of 1.5x catch-up plus one slow-mode skip.
        let settled = r.delays.iter().filter(|d| d.0 > 7_200_000).map(|d| d.1);
        assert!(settled.clone().count() > 100);
        for d in settled {
            assert!(d < 40.0 + 1e-9, "delay {d} did not converge");
        }
        assert!(s.skipped_for_drift >= 18, "{s:?}");
        assert_eq!(s.lost + s.late + s.concealed, 0);
        r.assert_in_order_once();
    }

    #[test]
    fn network_stall_then_burst_does_not_leave_extra_delay() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        // Packets 300..310 are held for up to 200 ms and released together.
        let arr = stream(
            0,
            1500,
            20_000.0,
            30_000.0,
            |i| {
                if (300..310).contains(&i) {
                    f64::from(310 - i) * 20_000.0
                } else {
                    0.0
                }
            },
            |_| true,
        );
        let r = run(&mut jb, t0, arr, pops(1500, 4_000));
        let s = jb.stats();
        println!("network stall: {s:?}");
        let worst = r.delays.iter().map(|d| d.1).fold(0.0, f64::max);
        assert!(worst <= 300.0);
        let end = r.delays.last().map_or(f64::MAX, |d| d.1);
        assert!(end < s.target_delay_ms + 20.0 + 1e-9, "ended at {end} ms");
        assert!(s.lost >= 5 && s.lost + s.recovered_fec >= s.late);
        r.assert_in_order_once();
    }

    #[test]
    fn single_absurd_seq_is_dropped_without_harm() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let mut arr = stream(100, 1000, 20_000.0, 30_000.0, |_| 0.0, |_| true);
        arr.push((5_000_500, pkt(100 + 250 + 50_000)));
        arr.push((7_000_500, pkt(100u32.wrapping_sub(70_000))));
        let r = run(&mut jb, t0, arr, pops(1000, 4_000));
        let s = jb.stats();
        assert_eq!((s.concealed, s.lost, s.skipped_for_drift), (0, 0, 0));
        assert_eq!(s.dropped_overflow, 1);
        assert_eq!(s.late, 1);
        r.assert_all_played(100, 995);
    }

    #[test]
    fn flood_keeps_memory_bounded_and_real_stream_playing() {
        let mut rng = Rng(42);
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let mut arr = stream(1000, 1500, 20_000.0, 30_000.0, |_| 0.0, |_| true);
        let n_flood = 20_000;
        for k in 0..n_flood {
            let t = 8_000_000 + k * 100; // 2 s of 10 kpps garbage
            let seq = if k % 2 == 0 {
                rng.next() as u32 // absurd, random
            } else {
                1000 + 400 + (rng.next() % 900) as u32 // in range, mostly ahead
            };
            arr.push((t, pkt(seq)));
        }
        let r = run(&mut jb, t0, arr, pops(1500, 4_000));
        let s = jb.stats();
        println!("flood: {s:?}, max buffered {}", r.max_len);
        assert!(r.max_len <= cfg().capacity);
        assert!(jb
            .candidate
            .as_ref()
            .is_none_or(|c| c.packets.len() < RESET_AFTER));
        assert_eq!(s.received, r.pushed);
        assert!(s.dropped_overflow > 5_000);
        let accounted = s.dropped_overflow + s.late + s.duplicates;
        assert!(
            accounted + r.played.len() as u64 + 64 >= s.received,
            "{s:?}"
        );
        r.assert_in_order_once();
        // The real stream keeps playing after the flood.
        assert!(r.played.iter().filter(|&&q| q >= 2100).count() > 350);
    }

    #[test]
    fn persistent_seq_jump_is_a_stream_reset() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let mut arr = stream(10, 500, 20_000.0, 30_000.0, |_| 0.0, |_| true);
        // The peer restarts at t = 10 s with a fresh random sequence space.
        let restart: Vec<_> = stream(3_000_000_000, 500, 20_000.0, 30_000.0, |_| 0.0, |_| true)
            .into_iter()
            .map(|(t, p)| (t + 10_000_000, p))
            .collect();
        arr.extend(restart);
        let r = run(&mut jb, t0, arr, pops(1000, 4_000));
        let s = jb.stats();
        println!("restart: {s:?}");
        let new: Vec<u32> = r
            .played
            .iter()
            .copied()
            .filter(|&q| q >= 3_000_000_000)
            .collect();
        assert!(
            new.len() >= 490,
            "only {} of the new stream played",
            new.len()
        );
        // The confirming packets are kept; only those older than target + frame are trimmed.
        assert!(new[0] <= 3_000_000_002, "started late at {}", new[0]);
        assert!(s.skipped_for_drift <= 2);
        let old: Vec<u32> = r
            .played
            .iter()
            .copied()
            .filter(|&q| q < 3_000_000_000)
            .collect();
        assert_eq!(old, (10..510).collect::<Vec<_>>());
        assert!(new.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(s.dropped_overflow, 0);
    }

    #[test]
    fn sequence_wraparound_is_seamless() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let arr = stream(u32::MAX - 300, 600, 20_000.0, 30_000.0, |_| 0.0, |_| true);
        let r = run(&mut jb, t0, arr, pops(600, 4_000));
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.concealed), (0, 0, 0));
        r.assert_all_played(u32::MAX - 300, 595);
    }

    #[test]
    fn long_gap_goes_silent_then_rebuffers() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        // The sender pauses for 3 s (mute) and continues with the next sequence number.
        let arr: Vec<_> = stream(0, 600, 20_000.0, 30_000.0, |_| 0.0, |_| true)
            .into_iter()
            .map(|(t, p)| {
                if p.seq >= 300 {
                    (t + 3_000_000, p)
                } else {
                    (t, p)
                }
            })
            .collect();
        let r = run(&mut jb, t0, arr, pops(800, 4_000));
        let s = jb.stats();
        println!("gap: {s:?}");
        let silent_in_gap = r
            .out
            .iter()
            .filter(|(t, p)| (7_000_000..9_000_000).contains(t) && *p == Playout::Silence)
            .count();
        assert_eq!(silent_in_gap, 100);
        assert_eq!((s.lost, s.late), (0, 0));
        let concealed_in_gap = r
            .out
            .iter()
            .filter(|(t, p)| (6_000_000..9_000_000).contains(t) && *p == Playout::Conceal)
            .count();
        // Concealment only until the gap threshold (300 ms), then silence.
        assert!((10..=15).contains(&concealed_in_gap), "{concealed_in_gap}");
        r.assert_all_played(0, 600);
        // Resumes at the normal delay, not 3 s behind.
        let end = r.delays.last().map_or(f64::MAX, |d| d.1);
        assert!(end < 40.0);
        r.assert_in_order_once();
    }

    #[test]
    fn an_extra_delay_is_reached_by_inserted_frames_and_given_back_by_skips() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let arrivals = stream(0, 600, F_US as f64, 30_000.0, |_| 0.0, |_| true);
        let mut next = 0;
        let mut delay_at = |jb: &mut JitterBuffer, from: u64, to: u64, extra: u64| {
            jb.set_extra_delay(Duration::from_millis(extra));
            let mut played = Vec::new();
            for k in from..to {
                let t = k * F_US + 4_000;
                while next < arrivals.len() && arrivals[next].0 <= t {
                    let (at, p) = arrivals[next].clone();
                    jb.push(p, t0 + Duration::from_micros(at));
                    next += 1;
                }
                if let Playout::Packet(_) = jb.pop(t0 + Duration::from_micros(t)) {
                    played.push(k);
                }
            }
            (jb.stats().current_delay_ms, played.len())
        };
        let (base, _) = delay_at(&mut jb, 0, 100, 0);
        let target = jb.stats().target_delay_ms;
        assert_eq!(jb.stats().inserted_for_extra, 0);
        // wait 60 ms longer: frames are inserted until the delay is within half a frame of
        // the new target, and nothing is lost
        let (waiting, played) = delay_at(&mut jb, 100, 200, 60);
        let st = jb.stats();
        assert_eq!(st.target_delay_ms, target + 60.0);
        assert!(waiting >= target + 60.0 - 10.0, "{base} -> {waiting}");
        assert!(st.inserted_for_extra >= 2, "{st:?}");
        assert_eq!(played as u64, 100 - st.inserted_for_extra);
        assert_eq!((st.concealed, st.lost), (st.inserted_for_extra, 0));
        // and back: the excess goes as a drift's would, by skipped frames
        let (back, _) = delay_at(&mut jb, 200, 400, 0);
        assert_eq!(jb.stats().target_delay_ms, target);
        assert!(back <= target + 20.0, "{waiting} -> {back}");
    }

    #[test]
    fn reset_forgets_everything() {
        let mut jb = JitterBuffer::new(cfg());
        let t0 = Instant::now();
        let arr = stream(0, 100, 20_000.0, 30_000.0, |_| 0.0, |_| true);
        let _ = run(&mut jb, t0, arr, pops(50, 4_000));
        jb.reset();
        assert_eq!(jb.stats().received, 0);
        assert_eq!(jb.pop(t0 + Duration::from_secs(5)), Playout::Silence);
        jb.push(pkt(9), t0 + Duration::from_secs(6));
        assert_eq!(jb.pop(t0 + Duration::from_millis(6_010)), Playout::Silence);
        assert_eq!(
            jb.pop(t0 + Duration::from_millis(6_020)),
            Playout::Packet(pkt(9).payload)
        );
    }
}
