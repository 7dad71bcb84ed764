//! What Prattle's fuzz targets share: how a fuzz input is cut into records, and the driver
//! of the secure endpoint. The seed generator (`examples/make_corpus.rs`) uses the same code,
//! so the seeds it writes mean to the targets exactly what it meant them to.
//!
//! Most targets read their input as a sequence of records:
//!
//! ```text
//! ctl u8 | len u16 (little-endian) | body (len bytes)
//! ```
//!
//! A length past the end of the input takes what is left, so every input means something.
//! `ctl` is per target (which source address, how far the virtual clock moves, ...).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prattle::net::secure::{Auth, Identity, SecureEndpoint};

/// The records of a fuzz input; see the crate docs.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    /// The records of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&ctl, rest) = self.rest.split_first()?;
        let len = match rest {
            [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
            _ => 0,
        };
        let rest = rest.get(2..).unwrap_or_default();
        let (body, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some((ctl, body))
    }
}

/// One record in the wire form [`Records`] reads.
pub fn record(ctl: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("record body fits in u16");
    let mut v = Vec::with_capacity(3 + body.len());
    v.push(ctl);
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// Where the endpoint under test (`secure_endpoint`) believes datagrams come from. The first
/// is the peer it dials when the config byte asks it to; none of them is ever sent anything.
pub const SOURCES: [&str; 4] = [
    "127.0.0.1:1000",
    "127.0.0.2:2000",
    "[::1]:3000",
    "127.0.0.1:1001",
];

/// The source address selected by the low two bits of a record's control byte.
pub fn source(ctl: u8) -> SocketAddr {
    SOURCES[usize::from(ctl & 3)]
        .parse()
        .expect("literal address")
}

/// How far the virtual clock moves before a record is handled: the high six bits `v` of the
/// control byte, `v × 10 ms` below 32, else `(v − 31) × 5 s` (5 s to 160 s: enough to reach
/// every handshake, idle, rekey and cookie-rotation timer).
pub fn advance(ctl: u8) -> Duration {
    let v = u64::from(ctl >> 2);
    if v < 32 {
        Duration::from_millis(v * 10)
    } else {
        Duration::from_secs((v - 31) * 5)
    }
}

/// The control byte for a record from `SOURCES[source]` after the clock moved by `v`
/// (see [`advance`]).
pub fn ctl(source: u8, v: u8) -> u8 {
    assert!(source < 4 && v < 64);
    (v << 2) | source
}

/// The pairing code of the endpoint under test in code mode.
pub const CODE: &str = "7-crossword-pelican";
/// The private key of the endpoint under test.
pub const IDENTITY: [u8; 32] = [0x11; 32];
/// The RNG seed of the endpoint under test: with it, a recorded handshake replays exactly.
pub const SEED: [u8; 32] = [0x5e; 32];

/// Config byte bit: the endpoint runs code mode (else trust on first use).
pub const CFG_CODE: u8 = 1;
/// Config byte bit: the endpoint dials `SOURCES[0]` before the first record.
pub const CFG_CONNECT: u8 = 2;

/// A `SecureEndpoint` driven by records, with a virtual clock.
///
/// Input: one config byte ([`CFG_CODE`], [`CFG_CONNECT`]), then records. Each record moves
/// the clock ([`advance`]), hands its body to `handle_datagram` as if from [`source`] (an
/// empty body hands nothing: a pure timer tick), runs `handle_timeout`, and drains the
/// endpoint's transmits and events.
pub struct EndpointDriver {
    ep: SecureEndpoint,
    now: Instant,
}

impl EndpointDriver {
    /// The endpoint for `config`, started at `start`; returns what it sent at once.
    pub fn new(config: u8, start: Instant) -> (Self, Vec<(SocketAddr, Vec<u8>)>) {
        let id = Identity::from_bytes(&IDENTITY).expect("non-zero key");
        let auth = if config & CFG_CODE != 0 {
            Auth::Code(CODE.into())
        } else {
            Auth::Tofu
        };
        let ep = SecureEndpoint::with_seed(id, auth, start, SEED).expect("endpoint");
        let mut d = Self { ep, now: start };
        if config & CFG_CONNECT != 0 {
            d.ep.connect(source(0), start);
        }
        let sent = d.drain();
        (d, sent)
    }

    /// The virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The endpoint itself, e.g. to seal data.
    pub fn endpoint(&mut self) -> &mut SecureEndpoint {
        &mut self.ep
    }

    /// Handles one record; returns the plaintext it yielded and what the endpoint sent.
    pub fn step(&mut self, ctl: u8, body: &[u8]) -> (Option<Vec<u8>>, Vec<(SocketAddr, Vec<u8>)>) {
        self.now += advance(ctl);
        let plain = if body.is_empty() {
            None
        } else {
            self.ep.handle_datagram(source(ctl), body, self.now)
        };
        self.ep.handle_timeout(self.now);
        (plain, self.drain())
    }

    fn drain(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut sent = Vec::new();
        while let Some(t) = self.ep.poll_transmit() {
            sent.push(t);
        }
        while self.ep.poll_event().is_some() {}
        sent
    }
}
