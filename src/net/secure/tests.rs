//! Sans-IO tests: endpoints wired through a seeded in-memory link that loses, duplicates
//! and reorders datagrams. Time is simulated; nothing sleeps.
//!
//! Test code only: its module is declared under `#[cfg(test)]`.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn a_addr() -> SocketAddr {
    addr("127.0.0.1:1000")
}

fn b_addr() -> SocketAddr {
    addr("127.0.0.2:2000")
}

fn id(n: u8) -> Identity {
    Identity::from_bytes(&[n; 32]).expect("non-zero key")
}

fn endpoint(n: u8, auth: Auth, now: Instant) -> SecureEndpoint {
    seeded_endpoint(n, 0, auth, now)
}

/// Endpoint `n` (identity `id(n)`) whose randomness also depends on the test's `seed`.
fn seeded_endpoint(n: u8, seed: u64, auth: Auth, now: Instant) -> SecureEndpoint {
    let mut s = [0u8; 32];
    s[0] = n;
    s[8..16].copy_from_slice(&seed.to_le_bytes());
    SecureEndpoint::with_seed(id(n), auth, now, s).expect("endpoint")
}

/// Link conditions.
#[derive(Clone, Copy)]
struct Link {
    loss: f64,
    dup: f64,
    max_delay_ms: u64,
}

const PERFECT: Link = Link {
    loss: 0.0,
    dup: 0.0,
    max_delay_ms: 0,
};

const BAD: Link = Link {
    loss: 0.2,
    dup: 0.05,
    max_delay_ms: 40,
};

/// Decides, per datagram, that the link drops it.
type DropFilter = Box<dyn FnMut(&[u8]) -> bool>;

struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// Endpoints and the link between them.
struct Net {
    now: Instant,
    rng: StdRng,
    link: Link,
    eps: Vec<(SocketAddr, SecureEndpoint)>,
    flight: Vec<InFlight>,
    seq: u64,
    events: HashMap<SocketAddr, Vec<SecureEvent>>,
    received: HashMap<SocketAddr, Vec<Vec<u8>>>,
    /// Every datagram put on the wire, as an on-path observer would see it.
    tap: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Datagrams the link must drop, by predicate, before random loss applies.
    filter: Option<DropFilter>,
}

impl Net {
    fn new(seed: u64, link: Link, now: Instant) -> Self {
        Self {
            now,
            rng: StdRng::seed_from_u64(seed),
            link,
            eps: Vec::new(),
            flight: Vec::new(),
            seq: 0,
            events: HashMap::new(),
            received: HashMap::new(),
            tap: Vec::new(),
            filter: None,
        }
    }

    fn add(&mut self, at: SocketAddr, ep: SecureEndpoint) {
        self.eps.retain(|(a, _)| *a != at);
        self.eps.push((at, ep));
    }

    fn ep(&mut self, at: SocketAddr) -> &mut SecureEndpoint {
        &mut self
            .eps
            .iter_mut()
            .find(|(a, _)| *a == at)
            .expect("endpoint exists")
            .1
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.tap.push((from, to, bytes.clone()));
        if let Some(f) = self.filter.as_mut() {
            if f(&bytes) {
                return;
            }
        }
        if self.rng.gen_bool(self.link.loss) {
            return;
        }
        let copies = if self.rng.gen_bool(self.link.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.gen_range(0..=self.link.max_delay_ms);
            self.seq += 1;
            self.flight.push(InFlight {
                at: self.now + Duration::from_millis(1 + delay),
                seq: self.seq,
                from,
                to,
                bytes: bytes.clone(),
            });
        }
    }

    /// Sends `plaintext` from one endpoint to another through the link, as laminar would.
    fn send_data(&mut self, from: SocketAddr, to: SocketAddr, plaintext: &[u8]) -> bool {
        match self.ep(from).seal(to, plaintext) {
            Some(d) => {
                self.send(from, to, d);
                true
            }
            None => false,
        }
    }

    fn pump(&mut self) {
        let mut out = Vec::new();
        for (a, ep) in &mut self.eps {
            while let Some((to, d)) = ep.poll_transmit() {
                out.push((*a, to, d));
            }
            while let Some(e) = ep.poll_event() {
                self.events.entry(*a).or_default().push(e);
            }
        }
        for (from, to, d) in out {
            self.send(from, to, d);
        }
    }

    fn step(&mut self, dt: Duration) {
        self.now += dt;
        self.pump();
        self.flight.sort_by_key(|f| (f.at, f.seq));
        let due: Vec<InFlight> = {
            let n = self.flight.partition_point(|f| f.at <= self.now);
            self.flight.drain(..n).collect()
        };
        let now = self.now;
        for f in due {
            if let Some((_, ep)) = self.eps.iter_mut().find(|(a, _)| *a == f.to) {
                if let Some(p) = ep.handle_datagram(f.from, &f.bytes, now) {
                    self.received.entry(f.to).or_default().push(p);
                }
            }
        }
        for (_, ep) in &mut self.eps {
            ep.handle_timeout(now);
        }
        self.pump();
    }

    /// Steps 10 ms at a time until `done` or `limit` of simulated time passes.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step(Duration::from_millis(10));
        }
        done(self)
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    fn established(&self, at: SocketAddr) -> Vec<(SocketAddr, [u8; 32], String, bool)> {
        self.events
            .get(&at)
            .map(|v| {
                v.iter()
                    .filter_map(|e| match e {
                        SecureEvent::Established {
                            peer,
                            remote_static,
                            sas,
                            initiator,
                            ..
                        } => Some((*peer, *remote_static, sas.clone(), *initiator)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn take_events(&mut self, at: SocketAddr) -> Vec<SecureEvent> {
        self.events.remove(&at).unwrap_or_default()
    }
}

/// Two endpoints, A dialling B, run until both have a session.
fn pair(seed: u64, link: Link, auth_a: Auth, auth_b: Auth) -> Net {
    let now = Instant::now();
    let mut net = Net::new(seed, link, now);
    net.add(a_addr(), seeded_endpoint(1, seed, auth_a, now));
    net.add(b_addr(), seeded_endpoint(2, seed, auth_b, now));
    net.ep(a_addr()).connect(b_addr(), now);
    let ok = net.run_until(Duration::from_secs(25), |n| {
        n.ep(a_addr()).is_established(b_addr()) && n.ep(b_addr()).is_established(a_addr())
    });
    assert!(ok, "seed {seed}: handshake did not complete");
    net
}

#[test]
fn handshake_completes_under_loss_with_same_sas_and_data_round_trips() {
    for seed in 0..20 {
        let mut net = pair(seed, BAD, Auth::Tofu, Auth::Tofu);
        let ea = net.established(a_addr());
        let eb = net.established(b_addr());
        assert_eq!((ea.len(), eb.len()), (1, 1), "seed {seed}");
        assert_eq!(ea[0].2, eb[0].2, "same SAS");
        assert_eq!(ea[0].2.split(' ').count(), 4);
        assert_eq!(ea[0].1, id(2).public());
        assert_eq!(eb[0].1, id(1).public());
        assert!(ea[0].3 && !eb[0].3, "A initiated");
        // data both ways through the same bad link
        let mut sent_ab = Vec::new();
        let mut sent_ba = Vec::new();
        for i in 0..100u32 {
            let m = format!("a->b {i}").into_bytes();
            assert!(net.send_data(a_addr(), b_addr(), &m));
            sent_ab.push(m);
            let m = format!("b->a {i}").into_bytes();
            assert!(net.send_data(b_addr(), a_addr(), &m));
            sent_ba.push(m);
            net.step(Duration::from_millis(10));
        }
        net.run_for(Duration::from_millis(200));
        for (at, sent) in [(b_addr(), &sent_ab), (a_addr(), &sent_ba)] {
            let got = net.received.get(&at).cloned().unwrap_or_default();
            assert!(got.iter().all(|g| sent.contains(g)), "only what was sent");
            let mut uniq = got.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), got.len(), "duplicates were dropped");
            assert!(got.len() >= 60, "seed {seed}: {} of 100 arrived", got.len());
        }
        let sb = net.ep(b_addr()).stats();
        assert_eq!(sb.dropped_malformed, 0);
    }
}

#[test]
fn data_overhead_is_25_bytes() {
    let mut net = pair(1, PERFECT, Auth::Tofu, Auth::Tofu);
    for len in [0usize, 1, 100, 1300] {
        let d = net
            .ep(a_addr())
            .seal(b_addr(), &vec![0u8; len])
            .expect("session");
        assert_eq!(d.len(), len + DATA_OVERHEAD);
        assert_eq!(DATA_OVERHEAD, 25);
    }
    assert_eq!(net.ep(a_addr()).seal(addr("127.0.0.9:9"), b"x"), None);
}

#[test]
fn replayed_datagrams_are_dropped_and_counted() {
    let mut net = pair(2, PERFECT, Auth::Tofu, Auth::Tofu);
    let now = net.now;
    let sealed: Vec<Vec<u8>> = (0..10u8)
        .map(|i| net.ep(a_addr()).seal(b_addr(), &[i; 20]).expect("session"))
        .collect();
    let b = net.ep(b_addr());
    let before = b.stats();
    // delivered in reverse order: reordering is fine
    for d in sealed.iter().rev() {
        assert!(b.handle_datagram(a_addr(), d, now).is_some());
    }
    for d in &sealed {
        assert_eq!(b.handle_datagram(a_addr(), d, now), None);
    }
    let after = b.stats();
    assert_eq!(after.dropped_replay - before.dropped_replay, 10);
    assert_eq!(after.opened - before.opened, 10);
}

#[test]
fn tampered_datagrams_are_dropped() {
    let mut net = pair(3, PERFECT, Auth::Tofu, Auth::Tofu);
    let now = net.now;
    let d = net
        .ep(a_addr())
        .seal(b_addr(), b"hello bob")
        .expect("session");
    let b = net.ep(b_addr());
    for i in 0..d.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = d.clone();
            t[i] ^= bit;
            assert_eq!(b.handle_datagram(a_addr(), &t, now), None, "byte {i}");
        }
    }
    for cut in 0..d.len() {
        assert_eq!(b.handle_datagram(a_addr(), &d[..cut], now), None);
    }
    let s = b.stats();
    assert!(s.dropped_unauthenticated >= (d.len() as u64 - 1) * 2);
    assert_eq!(
        s.dropped_replay, 0,
        "forgeries never touch the replay window"
    );
    // the genuine datagram still opens afterwards
    assert_eq!(
        b.handle_datagram(a_addr(), &d, now).as_deref(),
        Some(&b"hello bob"[..])
    );
}

/// Random datagrams with their first byte biased towards real types so every parser runs.
fn junk(rng: &mut StdRng) -> Vec<u8> {
    let lens = [
        0usize,
        1,
        6,
        21,
        25,
        86,
        101,
        106,
        135,
        139,
        rng.gen_range(0..1500),
    ];
    let len = lens[rng.gen_range(0..lens.len())];
    let mut d = vec![0u8; len];
    rng.fill(&mut d[..]);
    if len > 0 && rng.gen_bool(0.8) {
        d[0] = rng.gen_range(0..8);
    }
    if len > 1 && rng.gen_bool(0.5) {
        d[1] = rng.gen_range(0..2);
    }
    d
}

#[test]
fn junk_from_many_sources_never_panics_nor_creates_state() {
    for auth in [Auth::Tofu, Auth::Code("3-acid-acorn".into())] {
        let now = Instant::now();
        let mut ep = endpoint(2, auth.clone(), now);
        let mut rng = StdRng::seed_from_u64(99);
        let sources: Vec<SocketAddr> = (0..500u32)
            .map(|i| SocketAddr::from(([127, 1, (i >> 8) as u8, i as u8], 4000)))
            .collect();
        let mut transmits = 0;
        for i in 0..10_000 {
            let from = sources[i % sources.len()];
            let t = now + Duration::from_millis(i as u64 / 10);
            assert_eq!(ep.handle_datagram(from, &junk(&mut rng), t), None);
            if i % 100 == 0 {
                ep.handle_timeout(t);
            }
            while ep.poll_transmit().is_some() {
                transmits += 1;
            }
            let s = ep.stats();
            assert_eq!((s.pending_handshakes, s.peers), (0, 0), "{auth:?}");
        }
        assert_eq!(ep.poll_event(), None);
        // cookie replies are capped: burst plus refill over the 1 s this took
        assert!(transmits <= 2 * REPLY_RATE as usize, "{transmits} replies");
        // every length with every type byte
        for ty in 0..=8u8 {
            for len in 0..=200usize {
                let mut d = vec![0xa5u8; len];
                if len > 0 {
                    d[0] = ty;
                }
                if len > 1 {
                    d[1] = (len % 2) as u8;
                }
                assert_eq!(ep.handle_datagram(sources[0], &d, now), None);
                super::fuzz_parse(&d);
            }
        }
        let s = ep.stats();
        assert_eq!((s.pending_handshakes, s.peers, s.opened), (0, 0, 0));
    }
}

#[test]
fn handshake_spam_is_rate_limited_and_bounded() {
    let now = Instant::now();
    let target = b_addr();
    let mut b = endpoint(2, Auth::Tofu, now);
    // 1. initiations without a cookie: answered statelessly, and only REPLY_RATE of them
    let mut cookies = 0;
    for i in 0..500u32 {
        let from = SocketAddr::from(([127, 2, (i >> 8) as u8, i as u8], 5000));
        let mut s = endpoint(3, Auth::Tofu, now);
        s.connect(target, now);
        let (_, msg1) = s.poll_transmit().expect("msg1");
        b.handle_datagram(from, &msg1, now);
        while b.poll_transmit().is_some() {
            cookies += 1;
        }
        assert_eq!(b.stats().pending_handshakes, 0);
    }
    assert_eq!(cookies, REPLY_RATE as usize);
    assert!(b.stats().handshakes_rate_limited >= 500 - REPLY_RATE);
    // 2. a return-routable attacker with many addresses who echoes cookies: bounded work
    let later = now + Duration::from_secs(30);
    let mut b = endpoint(2, Auth::Tofu, later);
    let mut answered = 0;
    for i in 0..200u32 {
        // 10 addresses per IP
        let from = SocketAddr::from(([127, 3, 0, (i / 10) as u8], 6000 + i as u16));
        let mut s = endpoint(4, Auth::Tofu, later);
        s.connect(target, later);
        let (_, msg1) = s.poll_transmit().expect("msg1");
        b.handle_datagram(from, &msg1, later);
        let Some((_, cookie)) = b.poll_transmit() else {
            continue;
        };
        s.handle_datagram(target, &cookie, later);
        let (_, msg1c) = s.poll_transmit().expect("msg1 with mac2");
        b.handle_datagram(from, &msg1c, later);
        while b.poll_transmit().is_some() {
            answered += 1;
        }
        let st = b.stats();
        assert!(st.pending_handshakes <= MAX_PENDING);
        assert_eq!(st.peers, 0, "no session without msg3");
    }
    assert_eq!(answered, HANDSHAKE_RATE as usize, "DH work is rate limited");
    assert!(b.stats().handshakes_rate_limited > 100);
    // pending handshakes expire
    b.handle_timeout(later + RESPONDER_TIMEOUT);
    assert_eq!(b.stats().pending_handshakes, 0);
}

#[test]
fn simultaneous_connect_yields_one_session() {
    let mut a_initiated = 0;
    for seed in 0..20 {
        let now = Instant::now();
        let link = if seed % 2 == 0 { PERFECT } else { BAD };
        let mut net = Net::new(seed, link, now);
        net.add(a_addr(), seeded_endpoint(1, seed, Auth::Tofu, now));
        net.add(b_addr(), seeded_endpoint(2, seed, Auth::Tofu, now));
        net.ep(a_addr()).connect(b_addr(), now);
        net.ep(b_addr()).connect(a_addr(), now);
        let ok = net.run_until(Duration::from_secs(25), |n| {
            n.ep(a_addr()).is_established(b_addr()) && n.ep(b_addr()).is_established(a_addr())
        });
        assert!(ok, "seed {seed}");
        net.run_for(Duration::from_secs(3));
        let ea = net.established(a_addr());
        let eb = net.established(b_addr());
        assert_eq!((ea.len(), eb.len()), (1, 1), "seed {seed}: {ea:?} {eb:?}");
        assert_eq!(ea[0].2, eb[0].2);
        assert_ne!(ea[0].3, eb[0].3, "exactly one initiator");
        a_initiated += usize::from(ea[0].3);
        net.link = PERFECT;
        assert!(net.send_data(a_addr(), b_addr(), b"ping"));
        assert!(net.send_data(b_addr(), a_addr(), b"pong"));
        net.run_for(Duration::from_millis(100));
        assert!(net.received[&b_addr()].contains(&b"ping".to_vec()));
        assert!(net.received[&a_addr()].contains(&b"pong".to_vec()));
    }
    assert!(
        (1..20).contains(&a_initiated),
        "the tie-break went both ways"
    );
}

#[test]
fn a_stranger_cannot_inject_data_nor_end_the_session() {
    let mut net = pair(5, PERFECT, Auth::Tofu, Auth::Tofu);
    for _ in 0..5 {
        net.send_data(a_addr(), b_addr(), b"real");
        net.send_data(b_addr(), a_addr(), b"real");
    }
    net.run_for(Duration::from_millis(50));
    let sas = net.ep(b_addr()).session_info(a_addr()).expect("session").1;
    net.take_events(a_addr());
    net.take_events(b_addr());
    net.received.clear();
    let captured = net.tap.clone();
    let mut rng = StdRng::seed_from_u64(77);
    let now = net.now;
    // forged datagrams, spoofing A's address, and replays of everything seen on the wire
    for round in 0..2000 {
        let mut d = junk(&mut rng);
        if round % 3 == 0 {
            // a data frame with a plausible counter
            d = wire::data_header(rng.gen_range(0..64)).to_vec();
            d.extend((0..rng.gen_range(16..64)).map(|_| rng.gen::<u8>()));
        }
        assert_eq!(net.ep(b_addr()).handle_datagram(a_addr(), &d, now), None);
        assert_eq!(net.ep(a_addr()).handle_datagram(b_addr(), &d, now), None);
    }
    for (from, to, d) in &captured {
        if let Some((_, ep)) = net.eps.iter_mut().find(|(a, _)| a == to) {
            assert_eq!(ep.handle_datagram(*from, d, now), None, "replay");
        }
    }
    // forged rejects and cookies aimed at every index a stranger might guess
    for idx in 0..2000u32 {
        let r = wire::reject(idx, RejectReason::CodeMismatch);
        net.ep(b_addr()).handle_datagram(a_addr(), &r, now);
        net.ep(a_addr())
            .handle_datagram(b_addr(), &wire::cookie(idx, &[0; 16]), now);
    }
    // let any replies play out (replayed msg1s make B answer A, which A ignores)
    net.run_for(Duration::from_secs(1));
    assert!(net.received.is_empty(), "nothing forged was delivered");
    assert!(net.ep(a_addr()).is_established(b_addr()));
    assert_eq!(
        net.ep(b_addr()).session_info(a_addr()).map(|s| s.1),
        Some(sas)
    );
    assert!(
        net.established(a_addr()).is_empty() && net.established(b_addr()).is_empty(),
        "no new handshake completed"
    );
    assert!(net.send_data(a_addr(), b_addr(), b"still here"));
    net.run_for(Duration::from_millis(50));
    assert_eq!(net.received[&b_addr()], vec![b"still here".to_vec()]);
    assert!(net.ep(b_addr()).stats().dropped_unauthenticated > 1000);
}

#[test]
fn a_stranger_with_its_own_handshake_gets_its_own_session_only() {
    let mut net = pair(6, PERFECT, Auth::Tofu, Auth::Tofu);
    let c_addr = addr("127.0.0.3:3000");
    let now = net.now;
    net.add(c_addr, endpoint(3, Auth::Tofu, now));
    net.ep(c_addr).connect(b_addr(), now);
    let ok = net.run_until(Duration::from_secs(5), |n| {
        n.ep(c_addr).is_established(b_addr()) && n.ep(b_addr()).is_established(c_addr)
    });
    assert!(ok);
    let (key_a, _) = net.ep(b_addr()).session_info(a_addr()).expect("A kept");
    assert_eq!(key_a, id(1).public());
    // C's session cannot speak for A
    let d = net.ep(c_addr).seal(b_addr(), b"I am A").expect("session");
    assert_eq!(net.ep(b_addr()).handle_datagram(a_addr(), &d, now), None);
}

#[test]
fn code_mode_right_code_works() {
    for seed in 0..5 {
        let net = pair(
            seed,
            BAD,
            Auth::Code("7-crossword-pelican".into()),
            Auth::Code(" 7 Crossword  PELICAN ".into()),
        );
        let ea = net.established(a_addr());
        let eb = net.established(b_addr());
        assert_eq!((ea.len(), eb.len()), (1, 1));
        assert_eq!(ea[0].2, eb[0].2);
        assert_eq!(ea[0].1, id(2).public());
        assert_eq!(eb[0].1, id(1).public());
        // late duplicates of the handshake do not cost code tries
        let mut net = net;
        let now = net.now;
        let inits: Vec<Vec<u8>> = net
            .tap
            .iter()
            .filter(|(_, to, d)| *to == b_addr() && d[0] == wire::T_INIT)
            .map(|(_, _, d)| d.clone())
            .collect();
        for d in &inits {
            assert_eq!(net.ep(b_addr()).handle_datagram(a_addr(), d, now), None);
        }
        net.run_for(RESPONDER_TIMEOUT + Duration::from_secs(1));
        assert_eq!(net.ep(b_addr()).code_tries_left(), Some(MAX_CODE_TRIES));
        assert_eq!(net.ep(a_addr()).code_tries_left(), Some(MAX_CODE_TRIES));
        assert!(code_rejections(&net.take_events(b_addr())).is_empty());
    }
}

fn code_rejections(events: &[SecureEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            SecureEvent::CodeRejected { tries_left, .. } => Some(*tries_left),
            _ => None,
        })
        .collect()
}

#[test]
fn wrong_code_fails_cleanly_on_both_sides_and_tries_are_bounded() {
    let now = Instant::now();
    let mut net = Net::new(8, PERFECT, now);
    net.add(
        a_addr(),
        endpoint(1, Auth::Code("7-crossword-pelican".into()), now),
    );
    net.add(
        b_addr(),
        endpoint(2, Auth::Code("7-crossword-penguin".into()), now),
    );
    for attempt in 1..=MAX_CODE_TRIES {
        let t = net.now;
        net.ep(a_addr()).connect(b_addr(), t);
        net.run_for(Duration::from_secs(2));
        let ea = net.take_events(a_addr());
        let eb = net.take_events(b_addr());
        let left = MAX_CODE_TRIES - attempt;
        assert_eq!(
            code_rejections(&ea),
            vec![left],
            "A, attempt {attempt}: {ea:?}"
        );
        assert_eq!(
            code_rejections(&eb),
            vec![left],
            "B, attempt {attempt}: {eb:?}"
        );
        for e in ea.iter().chain(&eb) {
            assert!(!matches!(e, SecureEvent::Established { .. }));
        }
        if left == 0 {
            assert!(ea.contains(&SecureEvent::CodeExhausted));
            assert!(eb.contains(&SecureEvent::CodeExhausted));
        }
        // a wrong code is not retried behind the user's back
        let sent = net.tap.len();
        net.run_for(Duration::from_secs(5));
        assert_eq!(net.tap.len(), sent, "attempt {attempt}: still sending");
        assert_eq!(net.ep(b_addr()).stats().pending_handshakes, 0);
    }
    assert_eq!(net.ep(a_addr()).code_tries_left(), Some(0));
    assert_eq!(net.ep(b_addr()).code_tries_left(), Some(0));
    // A refuses to try again; a newcomer with the right code is refused by B
    let t = net.now;
    net.ep(a_addr()).connect(b_addr(), t);
    net.pump();
    assert_eq!(
        net.take_events(a_addr()),
        vec![SecureEvent::Failed {
            peer: b_addr(),
            reason: FailReason::CodeExhausted
        }]
    );
    let c_addr = addr("127.0.0.3:3000");
    net.add(
        c_addr,
        endpoint(3, Auth::Code("7-crossword-penguin".into()), t),
    );
    net.ep(c_addr).connect(b_addr(), t);
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        net.take_events(c_addr),
        vec![SecureEvent::Failed {
            peer: b_addr(),
            reason: FailReason::PeerCodeExhausted
        }]
    );
}

#[test]
fn mode_mismatch_fails_with_a_reason() {
    for (a, b, reason) in [
        (
            Auth::Tofu,
            Auth::Code("1-acid-acorn".into()),
            FailReason::PeerRequiresCode,
        ),
        (
            Auth::Code("1-acid-acorn".into()),
            Auth::Tofu,
            FailReason::PeerHasNoCode,
        ),
    ] {
        let now = Instant::now();
        let mut net = Net::new(9, PERFECT, now);
        net.add(a_addr(), endpoint(1, a, now));
        net.add(b_addr(), endpoint(2, b, now));
        net.ep(a_addr()).connect(b_addr(), now);
        net.run_for(Duration::from_secs(2));
        assert_eq!(
            net.take_events(a_addr()),
            vec![SecureEvent::Failed {
                peer: b_addr(),
                reason
            }]
        );
        assert!(net.take_events(b_addr()).is_empty());
    }
}

#[test]
fn connect_times_out_when_nobody_answers() {
    let now = Instant::now();
    let mut net = Net::new(10, PERFECT, now);
    net.add(a_addr(), endpoint(1, Auth::Tofu, now));
    net.ep(a_addr()).connect(b_addr(), now);
    net.run_for(CONNECT_TIMEOUT + Duration::from_secs(1));
    assert_eq!(
        net.take_events(a_addr()),
        vec![SecureEvent::Failed {
            peer: b_addr(),
            reason: FailReason::Timeout
        }]
    );
    // retransmissions back off: a few dozen datagrams in 30 s, not thousands
    assert!(net.tap.len() < 40, "{} datagrams", net.tap.len());
    assert_eq!(net.ep(a_addr()).stats().peers, 0);
}

fn restart(net: &mut Net, at: SocketAddr, n: u8, auth: Auth) {
    let now = net.now;
    net.add(at, endpoint(n, auth, now));
    // its in-flight datagrams vanish with it
    net.flight.retain(|f| f.to != at && f.from != at);
}

#[test]
fn peer_restart_rehandshakes_with_same_or_new_identity() {
    for (seed, new_identity) in [(11, false), (12, true)] {
        let mut net = pair(seed, BAD, Auth::Tofu, Auth::Tofu);
        let first_sas = net.established(a_addr())[0].2.clone();
        let n = if new_identity { 7 } else { 2 };
        restart(&mut net, b_addr(), n, Auth::Tofu);
        net.events.clear();
        let t = net.now;
        net.ep(b_addr()).connect(a_addr(), t);
        let ok = net.run_until(Duration::from_secs(25), |n| {
            n.ep(b_addr()).is_established(a_addr()) && !n.established(a_addr()).is_empty()
        });
        assert!(ok, "seed {seed}");
        let ea = net.established(a_addr());
        assert_eq!(ea[0].1, id(n).public());
        assert_ne!(ea[0].2, first_sas);
        let rekey = net.events[&a_addr()]
            .iter()
            .any(|e| matches!(e, SecureEvent::Established { rekey: true, .. }));
        assert_eq!(rekey, !new_identity, "same key: nothing new to verify");
        assert_eq!(ea[0].2, net.established(b_addr())[0].2);
        net.link = PERFECT;
        net.received.clear();
        net.run_for(Duration::from_millis(100));
        assert!(net.send_data(a_addr(), b_addr(), b"after restart"));
        assert!(net.send_data(b_addr(), a_addr(), b"hello again"));
        net.run_for(Duration::from_millis(100));
        assert_eq!(net.received[&b_addr()], vec![b"after restart".to_vec()]);
        assert_eq!(net.received[&a_addr()], vec![b"hello again".to_vec()]);
    }
}

#[test]
fn survivor_rehandshakes_when_a_restarted_peer_stays_silent() {
    let mut net = pair(13, PERFECT, Auth::Tofu, Auth::Tofu);
    // B was the responder; it restarts and only listens
    restart(&mut net, b_addr(), 2, Auth::Tofu);
    net.events.clear();
    // A keeps sending (laminar heartbeats), hears nothing, and re-handshakes
    let ok = net.run_until(Duration::from_secs(20), |n| {
        n.send_data(a_addr(), b_addr(), b"heartbeat");
        n.ep(b_addr()).is_established(a_addr())
    });
    assert!(ok);
    assert!(net.ep(b_addr()).stats().dropped_no_session > 0);
    assert_eq!(net.established(a_addr()).len(), 1);
    assert!(net.established(a_addr())[0].3, "A initiated");
}

#[test]
fn rekey_replaces_the_session_without_losing_data() {
    let mut net = pair(14, PERFECT, Auth::Tofu, Auth::Tofu);
    // reordering but no loss: every datagram must open, across the key change
    net.link = Link {
        loss: 0.0,
        dup: 0.0,
        max_delay_ms: 40,
    };
    net.events.clear();
    let mut sent = 0u32;
    net.run_until(REKEY_AFTER + Duration::from_secs(10), |n| {
        sent += 1;
        let m = sent.to_le_bytes();
        assert!(n.send_data(a_addr(), b_addr(), &m));
        assert!(n.send_data(b_addr(), a_addr(), &m));
        false
    });
    net.run_for(Duration::from_millis(100));
    for (at, other) in [(a_addr(), b_addr()), (b_addr(), a_addr())] {
        let e = net.events[&at].clone();
        assert_eq!(e.len(), 1, "one rekey in {REKEY_AFTER:?}+10 s: {e:?}");
        assert!(
            matches!(&e[0], SecureEvent::Established { rekey: true, peer, .. } if *peer == other)
        );
        assert_eq!(
            net.received[&at].len() as u32,
            sent,
            "all data arrived at {at}"
        );
        assert_eq!(net.ep(at).stats().dropped_unauthenticated, 0);
    }
}

#[test]
fn lost_msg3_is_resent_until_confirmed() {
    let now = Instant::now();
    let mut net = Net::new(15, PERFECT, now);
    let mut dropped = 0;
    net.filter = Some(Box::new(move |d: &[u8]| {
        let drop = d.first() == Some(&wire::T_FINISH) && dropped < 3;
        dropped += usize::from(drop);
        drop
    }));
    net.add(a_addr(), endpoint(1, Auth::Tofu, now));
    net.add(b_addr(), endpoint(2, Auth::Tofu, now));
    net.ep(a_addr()).connect(b_addr(), now);
    let ok = net.run_until(Duration::from_secs(10), |n| {
        n.ep(b_addr()).is_established(a_addr())
    });
    assert!(ok);
    net.run_for(Duration::from_secs(3));
    // confirmed: no more msg3 retransmissions
    let finishes = net
        .tap
        .iter()
        .filter(|(_, _, d)| d[0] == wire::T_FINISH)
        .count();
    assert_eq!(finishes, 4);
}

#[test]
fn idle_sessions_close() {
    let mut net = pair(16, PERFECT, Auth::Tofu, Auth::Tofu);
    net.events.clear();
    net.run_for(SESSION_IDLE + Duration::from_secs(1));
    assert!(net.events[&a_addr()].contains(&SecureEvent::Closed { peer: b_addr() }));
    assert_eq!(net.ep(a_addr()).stats().peers, 0);
}

#[test]
fn codes_sas_and_misc() {
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..100 {
        let c = generate_code_with(&mut rng);
        let parts: Vec<&str> = c.split('-').collect();
        assert_eq!(parts.len(), 3, "{c}");
        assert!(parts[0].parse::<u32>().is_ok_and(|n| (1..100).contains(&n)));
        assert!(words::WORDS.contains(&parts[1]) && words::WORDS.contains(&parts[2]));
        assert_eq!(normalize_code(&c.to_uppercase().replace('-', " ")), c);
    }
    assert!(SecureEndpoint::generate_code().contains('-'));
    let mut w = words::WORDS.to_vec();
    w.sort_unstable();
    w.dedup();
    assert_eq!(w.len(), 256);
    assert!(matches!(
        SecureEndpoint::with_seed(id(1), Auth::Code(" - ".into()), Instant::now(), [0; 32]),
        Err(SecureError::EmptyCode)
    ));
    fn is_send<T: Send>() {}
    is_send::<SecureEndpoint>();
}

#[test]
fn fuzz_parse_survives_random_input() {
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..300 {
        fuzz_parse(&junk(&mut rng));
    }
}
