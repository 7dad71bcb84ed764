//! Sans-IO network impairment model: no sockets and no clock reads, time is an input.
//!
//! Pipeline for one datagram, in this order: outage → loss (random or Gilbert-Elliott)
//! → duplication → rate-cap serialisation queue (drop-tail) → delay + jitter + reorder hold.
//! Each random decision draws from its own seeded stream, so enabling e.g. duplication
//! does not shift the loss pattern of a given seed.
//!
//! Spec syntax (`Impairment::parse`): `clean`, or comma-separated items
//! `loss=5%` | `ge=P_GOOD_TO_BAD:P_BAD_TO_GOOD:LOSS_GOOD:LOSS_BAD` (probabilities 0..1 or N%) |
//! `delay=30ms` | `jitter=10ms` | `reorder=2%[:GAP]` (default gap 10ms) | `dup=1%` |
//! `rate=1mbit` (bit/kbit/mbit/gbit) | `queue=100ms` (rate-cap drop-tail bound) | `outage[=on|off]`.
//! Durations take us/ms/s and are capped at 10s.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Hard cap on bytes held in one channel, so a long delay on a fast flood cannot exhaust memory.
pub const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;
/// Hard cap on datagrams held in one channel (guards against floods of tiny datagrams).
pub const MAX_HELD_PACKETS: usize = 262_144;
/// Largest delay, jitter, reorder hold or queue limit the parser accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(10);
/// Default extra hold for reordered datagrams.
pub const DEFAULT_REORDER_GAP: Duration = Duration::from_millis(10);
/// Default rate-cap queue limit, expressed as time to drain at the capped rate.
pub const DEFAULT_QUEUE: Duration = Duration::from_millis(100);

/// Loss model for one direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Loss {
    /// No loss.
    #[default]
    None,
    /// Independent loss of `pct` percent of datagrams.
    Random {
        /// Loss percentage, 0..=100.
        pct: f64,
    },
    /// Two-state Markov burst loss; all fields are per-packet probabilities in 0..=1.
    GilbertElliott {
        /// Chance of moving from the good to the bad state after a packet.
        p_good_to_bad: f64,
        /// Chance of moving from the bad to the good state after a packet (mean burst ≈ 1/this).
        p_bad_to_good: f64,
        /// Loss probability while in the good state.
        loss_good: f64,
        /// Loss probability while in the bad state.
        loss_bad: f64,
    },
}

/// Impairment settings for one direction of the link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Loss model.
    pub loss: Loss,
    /// Fixed one-way delay added to every datagram.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per datagram (this reorders).
    pub jitter: Duration,
    /// Percentage of datagrams held back by `reorder_gap` so later ones overtake them.
    pub reorder_pct: f64,
    /// Extra hold applied to reordered datagrams.
    pub reorder_gap: Duration,
    /// Percentage of datagrams sent twice.
    pub duplicate_pct: f64,
    /// Serialisation rate cap in bits per second; `None` is unlimited.
    pub rate_bps: Option<u64>,
    /// Drop-tail bound of the rate-cap queue, as time needed to drain it at `rate_bps`.
    pub queue: Duration,
    /// Total outage: every arriving datagram is dropped while true.
    pub down: bool,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            loss: Loss::None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder_pct: 0.0,
            reorder_gap: DEFAULT_REORDER_GAP,
            duplicate_pct: 0.0,
            rate_bps: None,
            queue: DEFAULT_QUEUE,
            down: false,
        }
    }
}

/// Why an impairment spec was rejected; every message says how to fix it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParseError {
    /// The spec was empty.
    #[error("empty impairment spec; write `clean` for no impairment or e.g. `loss=5%,delay=30ms`")]
    Empty,
    /// An item had no `=value`.
    #[error("`{0}` has no value; write items as key=value, e.g. `loss=5%` (bare words allowed: `clean`, `outage`)")]
    MissingValue(String),
    /// An unknown key.
    #[error("unknown impairment key `{0}`; use loss, ge, delay, jitter, reorder, dup, rate, queue, outage, or the single word `clean`")]
    UnknownKey(String),
    /// A key was given twice.
    #[error("`{0}` given twice; give each key once")]
    Repeated(String),
    /// Both loss models given.
    #[error("`loss` and `ge` both given; pick one loss model")]
    ConflictingLoss,
    /// `clean` mixed with other items.
    #[error("`clean` cannot be combined with other items; drop `clean` or the other items")]
    CleanWithOthers,
    /// A value did not parse.
    #[error("bad value `{value}` for `{key}`: {fix}")]
    BadValue {
        /// The key whose value was bad.
        key: String,
        /// The offending value.
        value: String,
        /// What to write instead.
        fix: &'static str,
    },
}

fn bad(key: &str, value: &str, fix: &'static str) -> ParseError {
    ParseError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        fix,
    }
}

/// Parses a finite non-negative decimal number.
fn number(s: &str) -> Option<f64> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn percent(key: &str, value: &str) -> Result<f64, ParseError> {
    const FIX: &str = "write a percentage between 0% and 100%, e.g. 5%";
    let digits = value
        .strip_suffix('%')
        .ok_or_else(|| bad(key, value, FIX))?;
    number(digits)
        .filter(|v| *v <= 100.0)
        .ok_or_else(|| bad(key, value, FIX))
}

fn probability(key: &str, value: &str) -> Result<f64, ParseError> {
    const FIX: &str =
        "write ge=P_GOOD_TO_BAD:P_BAD_TO_GOOD:LOSS_GOOD:LOSS_BAD with each a probability 0..1 (or 0%..100%), e.g. ge=0.01:0.3:0:0.5";
    let v = match value.strip_suffix('%') {
        Some(p) => number(p).map(|v| v / 100.0),
        None => number(value),
    };
    v.filter(|v| *v <= 1.0).ok_or_else(|| bad(key, value, FIX))
}

fn duration(key: &str, value: &str) -> Result<Duration, ParseError> {
    const FIX: &str = "write a duration with a unit (us, ms or s) of at most 10s, e.g. 30ms";
    let lower = value.to_ascii_lowercase();
    let (digits, scale) = if let Some(d) = lower.strip_suffix("us") {
        (d, 1e-6)
    } else if let Some(d) = lower.strip_suffix("ms") {
        (d, 1e-3)
    } else if let Some(d) = lower.strip_suffix('s') {
        (d, 1.0)
    } else {
        return Err(bad(key, value, FIX));
    };
    let secs = number(digits).ok_or_else(|| bad(key, value, FIX))? * scale;
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(bad(key, value, FIX));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn rate(key: &str, value: &str) -> Result<u64, ParseError> {
    const FIX: &str =
        "write a positive rate in bits per second with a unit (bit, kbit, mbit, gbit), e.g. 1mbit; use `outage` for no traffic";
    let lower = value.to_ascii_lowercase();
    let (digits, scale) = if let Some(d) = lower.strip_suffix("gbit") {
        (d, 1e9)
    } else if let Some(d) = lower.strip_suffix("mbit") {
        (d, 1e6)
    } else if let Some(d) = lower.strip_suffix("kbit") {
        (d, 1e3)
    } else if let Some(d) = lower.strip_suffix("bit") {
        (d, 1.0)
    } else {
        return Err(bad(key, value, FIX));
    };
    let bps = number(digits).ok_or_else(|| bad(key, value, FIX))? * scale;
    // Below 1 bit/s a single datagram would take hours; above 1 Tbit/s is a typo.
    if !(1.0..=1e12).contains(&bps) {
        return Err(bad(key, value, FIX));
    }
    Ok(bps.round() as u64)
}

impl Impairment {
    /// Parses a spec like `loss=5%,delay=30ms,jitter=10ms,dup=1%,reorder=2%,rate=1mbit` or `clean`.
    pub fn parse(spec: &str) -> Result<Self, ParseError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(ParseError::Empty);
        }
        let items: Vec<&str> = spec.split(',').map(str::trim).collect();
        if items.iter().any(|i| i.eq_ignore_ascii_case("clean")) {
            return if items.len() == 1 {
                Ok(Self::default())
            } else {
                Err(ParseError::CleanWithOthers)
            };
        }
        let mut imp = Self::default();
        let mut seen: Vec<String> = Vec::new();
        for item in items {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim()),
                None if item.eq_ignore_ascii_case("outage") => ("outage".to_string(), "on"),
                None => return Err(ParseError::MissingValue(item.to_string())),
            };
            // `dup` and `duplicate` are one key; canonicalise before the repeat check.
            let key = if key == "duplicate" {
                "dup".to_string()
            } else {
                key
            };
            if seen.contains(&key) {
                return Err(ParseError::Repeated(key));
            }
            if (key == "loss" && seen.iter().any(|k| k == "ge"))
                || (key == "ge" && seen.iter().any(|k| k == "loss"))
            {
                return Err(ParseError::ConflictingLoss);
            }
            match key.as_str() {
                "loss" => {
                    imp.loss = Loss::Random {
                        pct: percent(&key, value)?,
                    }
                }
                "ge" => {
                    let parts: Vec<&str> = value.split(':').collect();
                    let [a, b, c, d] = parts.as_slice() else {
                        return Err(bad(
                            &key,
                            value,
                            "write four values ge=P_GOOD_TO_BAD:P_BAD_TO_GOOD:LOSS_GOOD:LOSS_BAD, e.g. ge=0.01:0.3:0:0.5",
                        ));
                    };
                    imp.loss = Loss::GilbertElliott {
                        p_good_to_bad: probability(&key, a)?,
                        p_bad_to_good: probability(&key, b)?,
                        loss_good: probability(&key, c)?,
                        loss_bad: probability(&key, d)?,
                    };
                }
                "delay" => imp.delay = duration(&key, value)?,
                "jitter" => imp.jitter = duration(&key, value)?,
                "reorder" => {
                    let (pct, gap) = match value.split_once(':') {
                        Some((p, g)) => (p, Some(g)),
                        None => (value, None),
                    };
                    imp.reorder_pct = percent(&key, pct)?;
                    if let Some(g) = gap {
                        imp.reorder_gap = duration(&key, g)?;
                    }
                }
                "dup" => imp.duplicate_pct = percent(&key, value)?,
                "rate" => imp.rate_bps = Some(rate(&key, value)?),
                "queue" => {
                    imp.queue = duration(&key, value)?;
                    if imp.queue.is_zero() {
                        return Err(bad(&key, value, "write a positive queue limit, e.g. 100ms"));
                    }
                }
                "outage" => {
                    imp.down = match value.to_ascii_lowercase().as_str() {
                        "on" | "1" | "true" => true,
                        "off" | "0" | "false" => false,
                        _ => return Err(bad(&key, value, "write outage=on or outage=off")),
                    }
                }
                _ => return Err(ParseError::UnknownKey(key)),
            }
            seen.push(key);
        }
        Ok(imp)
    }
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// Canonical spec form; `Impairment::parse` reads it back to an equal value (up to µs rounding).
impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        match self.loss {
            Loss::None => {}
            Loss::Random { pct } => parts.push(format!("loss={pct}%")),
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => parts.push(format!(
                "ge={p_good_to_bad}:{p_bad_to_good}:{loss_good}:{loss_bad}"
            )),
        }
        if !self.delay.is_zero() {
            parts.push(format!("delay={}", fmt_dur(self.delay)));
        }
        if !self.jitter.is_zero() {
            parts.push(format!("jitter={}", fmt_dur(self.jitter)));
        }
        if self.reorder_pct > 0.0 {
            parts.push(format!(
                "reorder={}%:{}",
                self.reorder_pct,
                fmt_dur(self.reorder_gap)
            ));
        }
        if self.duplicate_pct > 0.0 {
            parts.push(format!("dup={}%", self.duplicate_pct));
        }
        if let Some(bps) = self.rate_bps {
            parts.push(format!("rate={bps}bit,queue={}", fmt_dur(self.queue)));
        }
        if self.down {
            parts.push("outage".to_string());
        }
        if parts.is_empty() {
            f.write_str("clean")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// Small seeded PRNG (xoshiro256**), so runs are reproducible without extra crates.
#[derive(Debug, Clone)]
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        // SplitMix64 expands the seed so nearby seeds give unrelated streams and state is never all-zero.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (0..=1).
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Uniform in [0, max] nanoseconds.
    fn up_to(&mut self, max: Duration) -> Duration {
        let n = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        let r = ((self.next_u64() as u128 * (n as u128 + 1)) >> 64) as u64;
        Duration::from_nanos(r)
    }
}

/// Counters for one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Datagrams pushed in.
    pub in_packets: u64,
    /// Bytes pushed in.
    pub in_bytes: u64,
    /// Datagrams popped out (duplicates included).
    pub out_packets: u64,
    /// Bytes popped out.
    pub out_bytes: u64,
    /// Datagrams dropped by the loss model.
    pub lost: u64,
    /// Datagrams dropped because the link was down.
    pub dropped_outage: u64,
    /// Extra copies created by duplication.
    pub duplicated: u64,
    /// Datagrams dropped because the rate-cap queue or the hold limit was full.
    pub dropped_queue: u64,
    /// Datagrams currently held.
    pub held_packets: u64,
    /// Bytes currently held.
    pub held_bytes: u64,
}

impl ChannelStats {
    /// One-line JSON object of the counters.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"in_packets\":{},\"in_bytes\":{},\"out_packets\":{},\"out_bytes\":{},\"lost\":{},\"dropped_outage\":{},\"duplicated\":{},\"dropped_queue\":{},\"held_packets\":{},\"held_bytes\":{}}}",
            self.in_packets,
            self.in_bytes,
            self.out_packets,
            self.out_bytes,
            self.lost,
            self.dropped_outage,
            self.duplicated,
            self.dropped_queue,
            self.held_packets,
            self.held_bytes
        )
    }
}

#[derive(Debug)]
struct Held {
    due: Instant,
    seq: u64,
    data: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    // Reversed so BinaryHeap (a max-heap) yields the earliest due; seq keeps ties FIFO.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// State of one impaired direction: seeded RNGs, Gilbert-Elliott state, rate queue, held datagrams.
#[derive(Debug)]
pub struct Channel {
    imp: Impairment,
    rng_loss: Rng,
    rng_dup: Rng,
    rng_delay: Rng,
    ge_bad: bool,
    /// When the rate-capped link finishes serialising what is already queued.
    link_free_at: Option<Instant>,
    held: BinaryHeap<Held>,
    seq: u64,
    stats: ChannelStats,
}

impl Channel {
    /// Creates a channel with the given impairment and RNG seed.
    pub fn new(imp: Impairment, seed: u64) -> Self {
        Self {
            imp,
            // Separate streams per decision, so toggling one impairment keeps the others' pattern.
            rng_loss: Rng::new(seed),
            rng_dup: Rng::new(seed ^ 0xD0_D0_D0_D0),
            rng_delay: Rng::new(seed ^ 0x0DE1_A7ED_0000_0000),
            ge_bad: false,
            link_free_at: None,
            held: BinaryHeap::new(),
            seq: 0,
            stats: ChannelStats::default(),
        }
    }

    /// Replaces the impairment at run time; datagrams already in flight keep their send times.
    pub fn set(&mut self, imp: Impairment) {
        self.imp = imp;
    }

    /// Current impairment.
    pub fn impairment(&self) -> &Impairment {
        &self.imp
    }

    /// A datagram arrives at the relay at `now`.
    pub fn push(&mut self, datagram: Vec<u8>, now: Instant) {
        let len = datagram.len() as u64;
        self.stats.in_packets += 1;
        self.stats.in_bytes += len;
        if self.imp.down {
            self.stats.dropped_outage += 1;
            return;
        }
        if self.is_lost() {
            self.stats.lost += 1;
            return;
        }
        let dup = self.rng_dup.chance(self.imp.duplicate_pct / 100.0);
        if dup {
            self.stats.duplicated += 1;
            self.enqueue(datagram.clone(), now);
        }
        self.enqueue(datagram, now);
    }

    fn is_lost(&mut self) -> bool {
        match self.imp.loss {
            Loss::None => false,
            Loss::Random { pct } => self.rng_loss.chance(pct / 100.0),
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let lost = self
                    .rng_loss
                    .chance(if self.ge_bad { loss_bad } else { loss_good });
                let flip = if self.ge_bad {
                    p_bad_to_good
                } else {
                    p_good_to_bad
                };
                if self.rng_loss.chance(flip) {
                    self.ge_bad = !self.ge_bad;
                }
                lost
            }
        }
    }

    fn enqueue(&mut self, data: Vec<u8>, now: Instant) {
        let len = data.len();
        if self.held.len() >= MAX_HELD_PACKETS
            || self.stats.held_bytes as usize + len > MAX_HELD_BYTES
        {
            self.stats.dropped_queue += 1;
            return;
        }
        let mut depart = now;
        if let Some(bps) = self.imp.rate_bps {
            let start = self.link_free_at.map_or(now, |t| t.max(now));
            let backlog = start - now;
            let tx = Duration::from_nanos(
                u64::try_from(len as u128 * 8 * 1_000_000_000 / bps.max(1) as u128)
                    .unwrap_or(u64::MAX),
            );
            // Drop-tail, but an idle link always accepts one datagram so huge ones at tiny rates still pass.
            if !backlog.is_zero() && backlog + tx > self.imp.queue {
                self.stats.dropped_queue += 1;
                return;
            }
            depart = start + tx;
            self.link_free_at = Some(depart);
        }
        let mut due = depart + self.imp.delay;
        if !self.imp.jitter.is_zero() {
            due += self.rng_delay.up_to(self.imp.jitter);
        }
        if self.imp.reorder_pct > 0.0 && self.rng_delay.chance(self.imp.reorder_pct / 100.0) {
            due += self.imp.reorder_gap;
        }
        self.seq += 1;
        self.stats.held_packets += 1;
        self.stats.held_bytes += len as u64;
        self.held.push(Held {
            due,
            seq: self.seq,
            data,
        });
    }

    /// When the earliest held datagram must go out.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|h| h.due)
    }

    /// Takes one datagram whose send time is at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.held.peek()?.due > now {
            return None;
        }
        let h = self.held.pop()?;
        let len = h.data.len() as u64;
        self.stats.held_packets -= 1;
        self.stats.held_bytes -= len;
        self.stats.out_packets += 1;
        self.stats.out_bytes += len;
        Some(h.data)
    }

    /// Counters so far.
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Pushes `n` datagrams of `size` bytes every `gap`, draining due ones on virtual time;
    /// returns (send time, payload) in output order. The first 8 bytes carry the index.
    fn run(
        ch: &mut Channel,
        t0: Instant,
        n: u64,
        size: usize,
        gap: Duration,
    ) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        let drain = |ch: &mut Channel, until: Instant, out: &mut Vec<(Instant, Vec<u8>)>| {
            while let Some(t) = ch.next_due().filter(|t| *t <= until) {
                let d = ch.pop_due(t).expect("due datagram");
                out.push((t, d));
            }
        };
        for i in 0..n {
            let now = t0 + gap * i as u32;
            drain(ch, now, &mut out);
            let mut d = vec![0u8; size.max(8)];
            d[..8].copy_from_slice(&i.to_le_bytes());
            ch.push(d, now);
        }
        drain(
            ch,
            t0 + gap * n as u32 + Duration::from_secs(3600),
            &mut out,
        );
        out
    }

    fn index(d: &[u8]) -> u64 {
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }

    #[test]
    fn random_loss_rate_within_tolerance() {
        let mut ch = Channel::new(Impairment::parse("loss=5%").expect("spec"), 42);
        let out = run(
            &mut ch,
            Instant::now(),
            100_000,
            8,
            Duration::from_micros(10),
        );
        let lost = 100_000.0 - out.len() as f64;
        assert!((lost / 100_000.0 - 0.05).abs() < 0.005, "lost {lost}");
        assert_eq!(ch.stats().lost as f64, lost);
    }

    #[test]
    fn gilbert_elliott_makes_bursts() {
        let mut ch = Channel::new(Impairment::parse("ge=0.01:0.3:0:1").expect("spec"), 7);
        let out = run(
            &mut ch,
            Instant::now(),
            100_000,
            8,
            Duration::from_micros(10),
        );
        let mut got = vec![false; 100_000];
        for (_, d) in &out {
            got[index(d) as usize] = true;
        }
        let (mut bursts, mut lost, mut run_len) = (0u64, 0u64, 0u64);
        for g in got {
            if g {
                if run_len > 0 {
                    bursts += 1;
                }
                run_len = 0;
            } else {
                run_len += 1;
                lost += 1;
            }
        }
        let mean = lost as f64 / bursts as f64;
        assert!((mean - 1.0 / 0.3).abs() < 0.35, "mean burst {mean}");
        // Stationary bad-state share is p/(p+r) = 0.01/0.31.
        let rate = lost as f64 / 100_000.0;
        assert!((rate - 0.01 / 0.31).abs() < 0.006, "loss rate {rate}");
    }

    #[test]
    fn delay_honoured() {
        let t0 = Instant::now();
        let mut ch = Channel::new(Impairment::parse("delay=30ms").expect("spec"), 1);
        ch.push(vec![1], t0);
        assert_eq!(ch.next_due(), Some(t0 + ms(30)));
        assert_eq!(ch.pop_due(t0 + ms(30) - Duration::from_nanos(1)), None);
        assert_eq!(ch.pop_due(t0 + ms(30)), Some(vec![1]));
        assert_eq!(ch.pop_due(t0 + ms(31)), None);
    }

    #[test]
    fn jitter_reorders_within_bounds() {
        let t0 = Instant::now();
        let mut ch = Channel::new(
            Impairment::parse("delay=10ms,jitter=10ms").expect("spec"),
            3,
        );
        let out = run(&mut ch, t0, 1000, 8, ms(1));
        assert_eq!(out.len(), 1000);
        let inversions = out
            .windows(2)
            .filter(|w| index(&w[0].1) > index(&w[1].1))
            .count();
        assert!(inversions > 100, "inversions {inversions}");
        for (t, d) in &out {
            let lat = *t - (t0 + ms(1) * index(d) as u32);
            assert!(lat >= ms(10) && lat <= ms(20), "latency {lat:?}");
        }
    }

    #[test]
    fn reorder_holds_some_back() {
        let mut ch = Channel::new(
            Impairment::parse("delay=5ms,reorder=10%:20ms").expect("spec"),
            3,
        );
        let out = run(&mut ch, Instant::now(), 1000, 8, ms(1));
        assert_eq!(out.len(), 1000);
        let late = out
            .windows(2)
            .filter(|w| index(&w[0].1) > index(&w[1].1))
            .count();
        assert!((60..=140).contains(&late), "reordered {late}");
    }

    #[test]
    fn duplicates() {
        let mut ch = Channel::new(Impairment::parse("dup=10%").expect("spec"), 9);
        let out = run(
            &mut ch,
            Instant::now(),
            100_000,
            8,
            Duration::from_micros(10),
        );
        let extra = out.len() as f64 - 100_000.0;
        assert!((extra / 100_000.0 - 0.10).abs() < 0.005, "extra {extra}");
        assert_eq!(ch.stats().duplicated as f64, extra);
        assert_eq!(ch.stats().out_packets as usize, out.len());
    }

    #[test]
    fn rate_cap_delivers_cap_and_queue_stays_bounded() {
        let t0 = Instant::now();
        let mut ch = Channel::new(Impairment::parse("rate=1mbit").expect("spec"), 5);
        // 1250-byte datagrams every 5 ms = 2 Mbit/s offered for 10 s.
        let mut max_held = 0;
        let mut out_bytes = 0u64;
        let mut last_out = t0;
        for i in 0..2000u32 {
            let now = t0 + ms(5) * i;
            while let Some(d) = ch.pop_due(now) {
                out_bytes += d.len() as u64;
                last_out = now;
            }
            ch.push(vec![0; 1250], now);
            max_held = max_held.max(ch.stats().held_bytes);
        }
        let secs = (last_out - t0).as_secs_f64();
        let bps = out_bytes as f64 * 8.0 / secs;
        assert!((bps - 1e6).abs() < 0.03e6, "delivered {bps} bit/s");
        // 100 ms at 1 Mbit/s is 12 500 bytes: ten datagrams plus the one being serialised.
        assert!(max_held <= 12_500 + 1250, "held {max_held}");
        assert!(ch.stats().dropped_queue > 900);
    }

    #[test]
    fn outage_drops_all_and_recovers() {
        let t0 = Instant::now();
        let mut ch = Channel::new(Impairment::parse("outage").expect("spec"), 1);
        assert!(run(&mut ch, t0, 1000, 8, ms(1)).is_empty());
        assert_eq!(ch.stats().dropped_outage, 1000);
        let mut imp = *ch.impairment();
        imp.down = false;
        ch.set(imp);
        assert_eq!(run(&mut ch, t0 + ms(2000), 10, 8, ms(1)).len(), 10);
    }

    #[test]
    fn same_seed_same_output() {
        let spec = "ge=0.05:0.4:0.01:0.8,delay=10ms,jitter=5ms,dup=3%,reorder=5%,rate=2mbit";
        let t0 = Instant::now();
        let go = |seed| {
            let mut ch = Channel::new(Impairment::parse(spec).expect("spec"), seed);
            run(&mut ch, t0, 20_000, 200, Duration::from_micros(500))
        };
        let a = go(11);
        assert_eq!(a, go(11));
        assert_ne!(a, go(12));
    }

    #[test]
    fn parse_accepts_documented_syntax() {
        let imp = Impairment::parse("loss=5%,delay=30ms,jitter=10ms,dup=1%,reorder=2%,rate=1mbit")
            .expect("spec");
        assert_eq!(imp.loss, Loss::Random { pct: 5.0 });
        assert_eq!((imp.delay, imp.jitter), (ms(30), ms(10)));
        assert_eq!((imp.duplicate_pct, imp.reorder_pct), (1.0, 2.0));
        assert_eq!(imp.rate_bps, Some(1_000_000));
        let ge = Impairment::parse("ge=0.01:0.3:0:0.5").expect("spec");
        assert_eq!(
            ge.loss,
            Loss::GilbertElliott {
                p_good_to_bad: 0.01,
                p_bad_to_good: 0.3,
                loss_good: 0.0,
                loss_bad: 0.5
            }
        );
        assert_eq!(
            Impairment::parse(" clean ").expect("spec"),
            Impairment::default()
        );
        let more =
            Impairment::parse("rate=2.5Mbit,queue=50ms,reorder=3%:15ms,delay=500us,outage=on")
                .expect("spec");
        assert_eq!((more.rate_bps, more.queue), (Some(2_500_000), ms(50)));
        assert_eq!(
            (more.reorder_gap, more.delay, more.down),
            (ms(15), Duration::from_micros(500), true)
        );
        for s in [&imp, &ge, &more, &Impairment::default()] {
            assert_eq!(&Impairment::parse(&s.to_string()).expect("round trip"), s);
        }
    }

    #[test]
    fn parse_rejects_junk_naming_the_fix() {
        let cases = [
            ("", "clean"),
            ("loss=5", "5%"),
            ("loss=120%", "100%"),
            ("delay=30", "unit"),
            ("delay=1h", "unit"),
            ("delay=11s", "at most 10s"),
            ("rate=1mbps", "mbit"),
            ("rate=0bit", "outage"),
            ("ge=0.1:0.2", "four values"),
            ("ge=2:0:0:1", "probability"),
            ("latency=3ms", "use loss, ge, delay"),
            ("loss=1%,ge=0.1:0.2:0:1", "pick one"),
            ("loss=1%,loss=2%", "once"),
            ("clean,loss=1%", "drop `clean`"),
            ("jitter", "key=value"),
            ("outage=maybe", "outage=on"),
        ];
        for (spec, fix) in cases {
            let msg = Impairment::parse(spec).expect_err(spec).to_string();
            assert!(
                msg.contains(fix),
                "{spec:?} gave {msg:?}, wanted it to mention {fix:?}"
            );
            assert!(!msg.contains('\n'));
        }
    }
}
