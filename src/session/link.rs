//! An in-memory network for session tests: loss, delay, jitter (hence reordering) and
//! duplication on virtual time, seeded so that a failure replays exactly.
//!
//! Test code only: its module is declared under `#[cfg(test)]`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Session, SessionConfig, SessionEvent};
use crate::proto::Message;

/// Impairments of one direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Percent of datagrams lost.
    pub loss_pct: u64,
    /// Percent of datagrams delivered twice.
    pub dup_pct: u64,
    /// Base one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from zero to this.
    pub jitter: Duration,
    /// Everything is lost while true.
    pub down: bool,
}

/// One direction of the link.
#[derive(Debug)]
pub struct Link {
    pub imp: Impairment,
    rng: u64,
    in_flight: Vec<(Instant, SocketAddr, Vec<u8>)>,
}

impl Link {
    pub fn new(seed: u64, imp: Impairment) -> Self {
        Self {
            imp,
            rng: seed | 1,
            in_flight: Vec::new(),
        }
    }
    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
    /// Sends a datagram from `from` at `now`.
    pub fn send(&mut self, from: SocketAddr, bytes: Vec<u8>, now: Instant) {
        if self.imp.down || self.rand() % 100 < self.imp.loss_pct {
            return;
        }
        let copies = if self.rand() % 100 < self.imp.dup_pct {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter_us = self.imp.jitter.as_micros() as u64;
            let extra = if jitter_us > 0 {
                self.rand() % jitter_us
            } else {
                0
            };
            let at = now + self.imp.delay + Duration::from_micros(extra);
            self.in_flight.push((at, from, bytes.clone()));
        }
    }
    /// Datagrams due by `now`, in arrival order.
    pub fn due(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut due: Vec<_> = Vec::new();
        self.in_flight.retain(|(at, from, b)| {
            if *at <= now {
                due.push((*at, *from, b.clone()));
                false
            } else {
                true
            }
        });
        due.sort_by_key(|(at, _, _)| *at);
        due.into_iter().map(|(_, f, b)| (f, b)).collect()
    }
}

/// Two sessions joined by two links, stepped on virtual time.
pub struct Pair {
    pub a: Session,
    pub b: Session,
    pub addr_a: SocketAddr,
    pub addr_b: SocketAddr,
    pub ab: Link,
    pub ba: Link,
    pub now: Instant,
    pub events_a: Vec<SessionEvent>,
    pub events_b: Vec<SessionEvent>,
}

impl Pair {
    /// A waits unless `a_dials`; B dials A unless `b_dials` is false.
    pub fn new(a_dials: bool, b_dials: bool, seed: u64, imp: Impairment) -> Self {
        let now = Instant::now();
        let addr_a: SocketAddr = "10.0.0.1:7878".parse().expect("literal");
        let addr_b: SocketAddr = "10.0.0.2:7878".parse().expect("literal");
        let cfg = SessionConfig::default();
        Self {
            a: Session::new(0xA, a_dials.then_some(addr_b), cfg, now),
            b: Session::new(0xB, b_dials.then_some(addr_a), cfg, now),
            addr_a,
            addr_b,
            ab: Link::new(seed, imp),
            ba: Link::new(seed.wrapping_mul(31), imp),
            now,
            events_a: Vec::new(),
            events_b: Vec::new(),
        }
    }

    /// Advances virtual time by `dt` in steps of 5 ms.
    pub fn run(&mut self, dt: Duration) {
        let end = self.now + dt;
        while self.now < end {
            self.now += Duration::from_millis(5);
            self.step();
        }
    }

    fn step(&mut self) {
        let now = self.now;
        for (from, bytes) in self.ab.due(now) {
            if let Ok(msg) = Message::decode(&bytes) {
                self.b.handle(from, &msg, now);
            }
        }
        for (from, bytes) in self.ba.due(now) {
            if let Ok(msg) = Message::decode(&bytes) {
                self.a.handle(from, &msg, now);
            }
        }
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        self.flush();
    }

    /// Moves pending transmits onto the links and events into the logs.
    pub fn flush(&mut self) {
        let now = self.now;
        while let Some(t) = self.a.poll_transmit() {
            assert_eq!(t.to, self.addr_b, "A only talks to B");
            let bytes = t.msg.encode().expect("encodes");
            self.ab.send(self.addr_a, bytes, now);
        }
        while let Some(t) = self.b.poll_transmit() {
            assert_eq!(t.to, self.addr_a, "B only talks to A");
            let bytes = t.msg.encode().expect("encodes");
            self.ba.send(self.addr_b, bytes, now);
        }
        while let Some(e) = self.a.poll_event() {
            self.events_a.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.events_b.push(e);
        }
    }
}
