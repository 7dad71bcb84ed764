//! Stateless return-routability cookies (after WireGuard's) and token buckets.
//!
//! A responder keeps no state for a handshake initiation until it carries a `mac2` made
//! with a cookie that only someone receiving at the source address can have: the cookie
//! is a MAC of that address under a secret that rotates, so checking it needs no table.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2sMac;
use rand::RngCore;

/// Length of a cookie and of a `mac2`.
pub const COOKIE_LEN: usize = 16;
/// How often the cookie secret changes; a cookie is valid for one to two periods.
pub const SECRET_ROTATION: Duration = Duration::from_secs(120);
/// An initiator reuses a cookie for this long, safely inside its validity.
pub const COOKIE_REUSE: Duration = Duration::from_secs(100);

type Mac16 = Blake2sMac<U16>;

/// A 16-byte keyed BLAKE2s of `parts` under `key` (at most 32 bytes).
fn mac16(key: &[u8], parts: &[&[u8]]) -> [u8; COOKIE_LEN] {
    let mut out = [0u8; COOKIE_LEN];
    // keys here are 16 or 32 bytes, within BLAKE2s's limit of 32: new_from_slice cannot fail
    if let Ok(mut m) = <Mac16 as KeyInit>::new_from_slice(key) {
        for p in parts {
            m.update(p);
        }
        out.copy_from_slice(&m.finalize().into_bytes());
    }
    out
}

/// Address bytes that the cookie covers: IPv4 is mapped so both families encode alike.
fn addr_bytes(addr: SocketAddr) -> [u8; 18] {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut out = [0u8; 18];
    out[..16].copy_from_slice(&ip.octets());
    out[16..].copy_from_slice(&addr.port().to_be_bytes());
    out
}

/// The `mac2` of a handshake initiation: its bytes before the `mac2` field under `cookie`.
pub fn mac2(cookie: &[u8; COOKIE_LEN], msg_before_mac2: &[u8]) -> [u8; COOKIE_LEN] {
    mac16(cookie, &[b"prattle-mac2", msg_before_mac2])
}

/// Constant-time equality of two MACs.
fn ct_eq(a: &[u8; COOKIE_LEN], b: &[u8; COOKIE_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The responder's rotating cookie secret.
pub struct CookieJar {
    current: [u8; 32],
    previous: [u8; 32],
    rotated: Instant,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar").finish_non_exhaustive()
    }
}

impl CookieJar {
    /// A fresh secret from `rng`.
    pub fn new(rng: &mut impl RngCore, now: Instant) -> Self {
        let mut current = [0u8; 32];
        let mut previous = [0u8; 32];
        rng.fill_bytes(&mut current);
        rng.fill_bytes(&mut previous);
        Self {
            current,
            previous,
            rotated: now,
        }
    }

    /// Rotates the secret when its period is over.
    pub fn tick(&mut self, rng: &mut impl RngCore, now: Instant) {
        if now.saturating_duration_since(self.rotated) >= SECRET_ROTATION {
            self.previous = self.current;
            rng.fill_bytes(&mut self.current);
            self.rotated = now;
        }
    }

    /// The cookie for `addr` under the current secret.
    pub fn cookie(&self, addr: SocketAddr) -> [u8; COOKIE_LEN] {
        mac16(&self.current, &[b"prattle-cookie", &addr_bytes(addr)])
    }

    /// Whether `mac2` was made with a cookie we gave `addr` in this period or the last.
    pub fn check_mac2(&self, addr: SocketAddr, msg_before_mac2: &[u8], got: &[u8; 16]) -> bool {
        [&self.current, &self.previous].into_iter().any(|secret| {
            let cookie = mac16(secret, &[b"prattle-cookie", &addr_bytes(addr)]);
            ct_eq(&mac2(&cookie, msg_before_mac2), got)
        })
    }
}

/// A token bucket refilled from the `Instant`s it is given.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// In thousandths of a token, so that slow rates refill smoothly.
    milli: u64,
    capacity_milli: u64,
    per_sec: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `per_sec` tokens a second.
    pub fn new(capacity: u64, per_sec: u64, now: Instant) -> Self {
        Self {
            milli: capacity * 1000,
            capacity_milli: capacity * 1000,
            per_sec,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let ms = now.saturating_duration_since(self.last).as_millis();
        if ms == 0 {
            return;
        }
        let ms = u64::try_from(ms).unwrap_or(u64::MAX);
        // per_sec tokens a second is per_sec thousandths a millisecond
        self.milli = self
            .milli
            .saturating_add(ms.saturating_mul(self.per_sec))
            .min(self.capacity_milli);
        // advance by whole milliseconds only, keeping the fraction for next time
        self.last = self
            .last
            .checked_add(Duration::from_millis(ms))
            .unwrap_or(now);
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn cookie_binds_address_and_message_and_expires() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        let mut jar = CookieJar::new(&mut rng, t0);
        let a: SocketAddr = "127.0.0.1:1000".parse().expect("literal");
        let b: SocketAddr = "127.0.0.1:1001".parse().expect("literal");
        let c = jar.cookie(a);
        let m = mac2(&c, b"hello");
        assert!(jar.check_mac2(a, b"hello", &m));
        assert!(!jar.check_mac2(b, b"hello", &m));
        assert!(!jar.check_mac2(a, b"hellO", &m));
        jar.tick(&mut rng, t0 + SECRET_ROTATION);
        assert!(jar.check_mac2(a, b"hello", &m), "valid for one more period");
        jar.tick(&mut rng, t0 + 2 * SECRET_ROTATION);
        assert!(!jar.check_mac2(a, b"hello", &m));
    }

    #[test]
    fn bucket_limits_and_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 2, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(!b.take(t0 + Duration::from_millis(400)));
        assert!(b.take(t0 + Duration::from_millis(500)));
        assert!(!b.take(t0 + Duration::from_millis(500)));
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }
}
