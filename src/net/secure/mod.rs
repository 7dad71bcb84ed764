//! Authenticated encryption of every datagram, sans IO.
//!
//! A [`SecureEndpoint`] turns datagrams into plaintext and back: callers feed it what the
//! socket received ([`SecureEndpoint::handle_datagram`]), ask it to [`SecureEndpoint::seal`]
//! what laminar sends, and drain its own handshake datagrams
//! ([`SecureEndpoint::poll_transmit`]) and [`SecureEvent`]s. Time comes in as `Instant`s;
//! nothing here reads a clock or touches a socket.
//!
//! Handshake: Noise `XX` (25519, ChaChaPoly, BLAKE2s) with the install's [`Identity`] as
//! static key; in code mode SPAKE2 over the code rides in msg1/msg2 and its key is the
//! Noise PSK (`XXpsk2`). An initiation is answered with a stateless cookie first (see
//! [`cookie`]), so a responder holds no state for a source that cannot receive.
//! Transport: snow's stateless transport with an explicit counter nonce per datagram and a
//! 2048-counter replay window; see [`wire`] for the framing.

pub mod cookie;
pub mod handshake;
pub mod known_peers;
pub mod replay;
pub mod wire;
pub mod words;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::{OsRng, StdRng};
use rand::{Rng, RngCore, SeedableRng};
use snow::{HandshakeState, StatelessTransportState};
use thiserror::Error;

use cookie::{CookieJar, TokenBucket, COOKIE_LEN, COOKIE_REUSE};
use handshake::SpakeState;
use replay::ReplayWindow;
use wire::{Frame, Mode, RejectReason};

pub use handshake::Identity;
pub use known_peers::{KnownPeers, KnownPeersError, PinCheck};
pub use wire::DATA_OVERHEAD;

/// Sessions and outgoing handshakes kept at once.
// strangers add entries only by completing a handshake from an address they receive at
pub const MAX_PEERS: usize = 32;
/// Responder handshakes awaiting msg3, from all sources together.
pub const MAX_PENDING: usize = 16;
/// Responder handshakes awaiting msg3 from one IP address.
pub const MAX_PENDING_PER_IP: usize = 4;
/// Initiations a second we do Diffie-Hellman work for, sustained and burst.
pub const HANDSHAKE_RATE: u64 = 10;
/// Cookie replies and rejects a second, sustained and burst.
pub const REPLY_RATE: u64 = 64;
/// Failed code-mode handshakes before the code is disabled.
pub const MAX_CODE_TRIES: u32 = 5;
/// Queued outgoing datagrams and events at most; beyond, the newest is dropped.
const MAX_QUEUE: usize = 1024;
/// First handshake retransmission delay; doubles up to [`RETRY_MAX`].
const RETRY_INITIAL: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// One initiation (one ephemeral key) is retried this long, then a fresh one starts.
const ATTEMPT_LIFETIME: Duration = Duration::from_secs(10);
/// [`SecureEndpoint::connect`] gives up after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A responder forgets an unfinished handshake after this.
const RESPONDER_TIMEOUT: Duration = Duration::from_secs(15);
/// An initiator drops a session the responder never confirmed after this.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// The session replaced by a new handshake still decrypts for this long.
const PREVIOUS_GRACE: Duration = Duration::from_secs(10);
/// A session that received nothing authentic for this long is closed.
pub const SESSION_IDLE: Duration = Duration::from_secs(60);
/// We sent but heard nothing for this long: the peer may have restarted; re-handshake.
const STALE_AFTER: Duration = Duration::from_secs(5);
/// The initiator of a session replaces it with a fresh handshake this often.
pub const REKEY_AFTER: Duration = Duration::from_secs(120);
/// Counters stop well below where the nonce would wrap.
const REJECT_AFTER_MESSAGES: u64 = 1 << 60;

/// Errors from setting up an endpoint or identity.
#[derive(Debug, Error)]
pub enum SecureError {
    /// The identity key is all zeros.
    #[error("identity key is all zeros (corrupt or unwritten key file)")]
    ZeroIdentity,
    /// The pairing code has no characters besides separators.
    #[error("pairing code is empty")]
    EmptyCode,
    /// snow lacks a primitive we need.
    #[error("crypto primitive unavailable")]
    Unsupported,
    /// A Noise operation failed.
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    /// A SPAKE2 message was malformed.
    #[error("spake2: {0}")]
    Spake(#[from] spake2::Error),
}

/// How peers are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Accept any key; the caller pins it ([`KnownPeers`]) and users compare the SAS.
    Tofu,
    /// Both sides typed the same one-time code (e.g. `7-crossword-pelican`).
    Code(String),
}

/// Why an outgoing connection gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// No handshake completed in [`CONNECT_TIMEOUT`].
    Timeout,
    /// The peer runs code mode and we have no code.
    PeerRequiresCode,
    /// We have a code and the peer does not.
    PeerHasNoCode,
    /// The peer refuses further code attempts.
    PeerCodeExhausted,
    /// Our own code attempts are used up.
    CodeExhausted,
    /// [`MAX_PEERS`] sessions exist and none may be evicted.
    TableFull,
}

/// Something the caller should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecureEvent {
    /// A handshake completed; data to and from `peer` is now protected by it.
    Established {
        /// Peer address.
        peer: SocketAddr,
        /// Its identity key, to pin or check.
        remote_static: [u8; 32],
        /// Four words both sides show, to compare aloud.
        sas: String,
        /// Whether we initiated this handshake.
        initiator: bool,
        /// It replaced a session with the same remote key: nothing new for the user to verify.
        // a periodic rekey, or the peer restarted with its saved identity
        rekey: bool,
    },
    /// [`SecureEndpoint::connect`] to `peer` failed.
    Failed {
        /// Peer address.
        peer: SocketAddr,
        /// Why.
        reason: FailReason,
    },
    /// A code-mode handshake with `peer` failed: the codes differ (or someone guessed).
    CodeRejected {
        /// Peer address.
        peer: SocketAddr,
        /// Failures still allowed before the code is disabled.
        tries_left: u32,
    },
    /// The code failed [`MAX_CODE_TRIES`] times and is disabled; make a new one.
    CodeExhausted,
    /// The session with `peer` ended (idle, or never confirmed).
    Closed {
        /// Peer address.
        peer: SocketAddr,
    },
}

/// Counters and table sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecureStats {
    /// Data datagrams sealed.
    pub sealed: u64,
    /// Data datagrams opened (keepalives included).
    pub opened: u64,
    /// Datagrams failing authentication, or answering a handshake we do not have.
    pub dropped_unauthenticated: u64,
    /// Data from an address with no session.
    pub dropped_no_session: u64,
    /// Authentic data seen before (or too old to tell).
    pub dropped_replay: u64,
    /// Unknown type or wrong length.
    pub dropped_malformed: u64,
    /// Initiations or replies refused by a rate limit or a full table.
    pub handshakes_rate_limited: u64,
    /// Initiations dropped by the simultaneous-open tie-break.
    pub handshake_collisions: u64,
    /// Cookie replies sent.
    pub cookies_sent: u64,
    /// Handshakes completed.
    pub handshakes_completed: u64,
    /// Code-mode handshakes failed.
    pub code_failures: u64,
    /// Outgoing datagrams or events dropped because the caller did not drain them.
    pub queue_overflows: u64,
    /// Responder handshakes in progress now.
    pub pending_handshakes: usize,
    /// Peer entries now (sessions and outgoing handshakes).
    pub peers: usize,
}

/// A time-boxed wish to have a session with a peer.
#[derive(Debug, Clone, Copy)]
struct Want {
    deadline: Instant,
    /// Started by us (stale or rekey), not by the caller: no `Failed` event on timeout.
    background: bool,
}

/// Our handshake as initiator.
struct Initiating {
    local_idx: u32,
    hs: HandshakeState,
    before_mac2: Vec<u8>,
    /// Our ephemeral key, for the simultaneous-open tie-break.
    e: [u8; 32],
    /// SAS nonce, committed in msg1 and revealed in msg3.
    nonce: [u8; 32],
    spake: Option<SpakeState>,
    started: Instant,
    next_send: Instant,
    interval: Duration,
}

/// A finished handshake.
struct Session {
    transport: StatelessTransportState,
    send_ctr: u64,
    replay: ReplayWindow,
    remote_static: [u8; 32],
    sas: String,
    local_idx: u32,
    initiator: bool,
    established: Instant,
    last_recv: Instant,
    sent_since_recv: bool,
    /// Initiator only: msg3 is resent until the responder proves it has the session.
    unconfirmed: Option<Resend>,
    /// For a replaced session: when it stops decrypting.
    retire_at: Option<Instant>,
    /// The caller sealed data with it: it is in use, evict others first.
    carries_data: bool,
    /// Responder only: the initiator's ephemeral key, to recognise late duplicates of msg1.
    remote_e: Option<[u8; 32]>,
}

struct Resend {
    datagram: Vec<u8>,
    next: Instant,
    interval: Duration,
}

/// A peer we dialled or have a session with.
#[derive(Default)]
struct Peer {
    want: Option<Want>,
    init: Option<Initiating>,
    cookie: Option<([u8; COOKIE_LEN], Instant)>,
    current: Option<Session>,
    previous: Option<Session>,
}

impl Peer {
    fn is_empty(&self) -> bool {
        self.want.is_none()
            && self.init.is_none()
            && self.current.is_none()
            && self.previous.is_none()
    }
}

/// Our handshake as responder, between msg2 and msg3.
struct Responding {
    addr: SocketAddr,
    hs: HandshakeState,
    remote_idx: u32,
    e: [u8; 32],
    commit: [u8; 32],
    h2: Vec<u8>,
    msg2: Vec<u8>,
    created: Instant,
    /// A code try is reserved for this handshake: a stranger may test one guess offline
    /// against msg2, so it is refunded only when msg3 proves the code.
    code_try: bool,
}

/// One install's endpoint: handshakes, sessions and their counters.
pub struct SecureEndpoint {
    identity: Identity,
    mode: Mode,
    code: Option<String>,
    code_tries_left: u32,
    rng: StdRng,
    jar: CookieJar,
    hs_bucket: TokenBucket,
    reply_bucket: TokenBucket,
    peers: HashMap<SocketAddr, Peer>,
    pending: HashMap<u32, Responding>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<SecureEvent>,
    stats: SecureStats,
}

impl std::fmt::Debug for SecureEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureEndpoint")
            .field("identity", &self.identity)
            .field("mode", &self.mode)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Lower-cases a code and joins its words with `-`: `7 Crossword pelican` → `7-crossword-pelican`.
pub fn normalize_code(code: &str) -> String {
    code.split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

/// A one-time code like `7-crossword-pelican` (about 22.6 bits) from `rng`.
pub fn generate_code_with(rng: &mut impl RngCore) -> String {
    let n: u32 = rng.gen_range(1..100);
    let a = words::WORDS[usize::from(rng.gen::<u8>())];
    let b = words::WORDS[usize::from(rng.gen::<u8>())];
    format!("{n}-{a}-{b}")
}

fn ephemeral_of(noise_msg1: &[u8]) -> [u8; 32] {
    let mut e = [0u8; 32];
    // callers pass parsed msg1s, which are longer than 32 bytes
    if let Some(s) = noise_msg1.get(..32) {
        e.copy_from_slice(s);
    }
    e
}

impl SecureEndpoint {
    /// An endpoint whose randomness comes from the operating system.
    pub fn new(identity: Identity, auth: Auth, now: Instant) -> Result<Self, SecureError> {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        Self::with_seed(identity, auth, now, seed)
    }

    /// An endpoint whose randomness is a CSPRNG seeded with `seed` (tests, fuzzing).
    pub fn with_seed(
        identity: Identity,
        auth: Auth,
        now: Instant,
        seed: [u8; 32],
    ) -> Result<Self, SecureError> {
        let (mode, code) = match auth {
            Auth::Tofu => (Mode::Tofu, None),
            Auth::Code(c) => {
                let c = normalize_code(&c);
                if c.is_empty() {
                    return Err(SecureError::EmptyCode);
                }
                (Mode::Code, Some(c))
            }
        };
        let mut rng = StdRng::from_seed(seed);
        let jar = CookieJar::new(&mut rng, now);
        Ok(Self {
            identity,
            mode,
            code,
            code_tries_left: MAX_CODE_TRIES,
            rng,
            jar,
            hs_bucket: TokenBucket::new(HANDSHAKE_RATE, HANDSHAKE_RATE, now),
            reply_bucket: TokenBucket::new(REPLY_RATE, REPLY_RATE, now),
            peers: HashMap::new(),
            pending: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SecureStats::default(),
        })
    }

    /// A fresh one-time code from the operating system's RNG.
    pub fn generate_code() -> String {
        generate_code_with(&mut OsRng)
    }

    /// Our public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.identity.public()
    }

    /// Failures left for the code, in code mode.
    pub fn code_tries_left(&self) -> Option<u32> {
        self.code.as_ref().map(|_| self.code_tries_left)
    }

    /// Tries to establish a session with `peer` for up to [`CONNECT_TIMEOUT`] (no-op if one exists).
    // retransmissions happen in handle_timeout
    pub fn connect(&mut self, peer: SocketAddr, now: Instant) {
        if self.peers.get(&peer).is_some_and(|p| p.current.is_some()) {
            return;
        }
        if !self.make_room(peer) {
            self.event(SecureEvent::Failed {
                peer,
                reason: FailReason::TableFull,
            });
            return;
        }
        let p = self.peers.entry(peer).or_default();
        p.want = Some(Want {
            deadline: now + CONNECT_TIMEOUT,
            background: false,
        });
        if p.init.is_none() && !self.pending.values().any(|r| r.addr == peer) {
            self.start_init(peer, now);
        }
    }

    /// Forgets `peer`: its sessions and any handshake to it (e.g. its key was refused).
    pub fn close(&mut self, peer: SocketAddr) {
        self.peers.remove(&peer);
        self.pending.retain(|_, r| r.addr != peer);
    }

    /// Whether a session with `peer` exists.
    pub fn is_established(&self, peer: SocketAddr) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.current.is_some())
    }

    /// The remote key and SAS of the session with `peer`.
    pub fn session_info(&self, peer: SocketAddr) -> Option<([u8; 32], String)> {
        let s = self.peers.get(&peer)?.current.as_ref()?;
        Some((s.remote_static, s.sas.clone()))
    }

    /// Encrypts `plaintext` for `to`; `None` when there is no session (drop the packet).
    pub fn seal(&mut self, to: SocketAddr, plaintext: &[u8]) -> Option<Vec<u8>> {
        let p = self.peers.get_mut(&to)?;
        // after a re-handshake we initiated, keep sending under the old keys until the
        // responder shows it has the new ones, so no datagram is sent that it cannot open
        let old = p.current.as_ref()?.unconfirmed.is_some() && p.previous.is_some();
        let s = if old {
            p.previous.as_mut()?
        } else {
            p.current.as_mut()?
        };
        let out = seal_with(s, plaintext)?;
        s.sent_since_recv = true;
        s.carries_data = true;
        self.stats.sealed += 1;
        Some(out)
    }

    /// Handles a received datagram: `Some(plaintext)` for session data, else consumed or dropped.
    // handshake answers go to poll_transmit; everything refused is counted in stats
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Option<Vec<u8>> {
        let Some(frame) = wire::parse(data) else {
            self.stats.dropped_malformed += 1;
            return None;
        };
        match frame {
            Frame::Data {
                counter,
                ciphertext,
            } => return self.open_data(from, counter, ciphertext, now),
            Frame::Init {
                mode,
                sender,
                noise,
                before_mac2,
                mac2,
            } => self.on_init(from, mode, sender, noise, before_mac2, &mac2, now),
            Frame::Resp {
                mode,
                sender,
                receiver,
                spake,
                noise,
            } => self.on_resp(from, mode, sender, receiver, spake, noise, now),
            Frame::Finish { receiver, noise } => self.on_finish(from, receiver, noise, now),
            Frame::Cookie { receiver, cookie } => self.on_cookie(from, receiver, cookie, now),
            Frame::Reject { receiver, reason } => self.on_reject(from, receiver, reason),
        }
        None
    }

    /// Runs timers: retransmissions, expiries, re-handshakes, cookie secret rotation.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.jar.tick(&mut self.rng, now);
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.created) >= RESPONDER_TIMEOUT)
            .map(|(&i, _)| i)
            .collect();
        for i in expired {
            if let Some(r) = self.pending.remove(&i) {
                if r.code_try {
                    // the reserved try stays spent: msg2 may have served an offline guess
                    self.code_failed_counted(r.addr);
                }
            }
        }
        let addrs: Vec<SocketAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            self.peer_timers(addr, now);
        }
    }

    /// The next handshake datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SecureEvent> {
        self.events.pop_front()
    }

    /// Counters and table sizes.
    pub fn stats(&self) -> SecureStats {
        SecureStats {
            pending_handshakes: self.pending.len(),
            peers: self.peers.len(),
            ..self.stats
        }
    }

    // ---- internals ----

    fn transmit(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUE {
            self.stats.queue_overflows += 1;
            return;
        }
        self.transmits.push_back((to, datagram));
    }

    fn event(&mut self, e: SecureEvent) {
        if self.events.len() >= MAX_QUEUE {
            self.stats.queue_overflows += 1;
            return;
        }
        self.events.push_back(e);
    }

    /// A random index not in use by any of our handshakes or sessions.
    fn fresh_idx(&mut self) -> u32 {
        loop {
            let i = self.rng.next_u32();
            let used = self.pending.contains_key(&i)
                || self.peers.values().any(|p| {
                    p.init.as_ref().is_some_and(|h| h.local_idx == i)
                        || p.current.as_ref().is_some_and(|s| s.local_idx == i)
                });
            if i != 0 && !used {
                return i;
            }
        }
    }

    /// Ensures `addr` has or can get a peer entry, evicting the quietest session that
    /// nobody asked for when the table is full.
    fn make_room(&mut self, addr: SocketAddr) -> bool {
        if self.peers.contains_key(&addr) || self.peers.len() < MAX_PEERS {
            return true;
        }
        let victim = self
            .peers
            .iter()
            .filter(|(_, p)| p.want.is_none() && p.init.is_none())
            .min_by_key(|(_, p)| p.current.as_ref().map(|s| (s.carries_data, s.last_recv)))
            .map(|(a, _)| *a);
        match victim {
            Some(v) => {
                self.peers.remove(&v);
                self.event(SecureEvent::Closed { peer: v });
                true
            }
            None => false,
        }
    }

    fn check_code_exhausted(&mut self) {
        if self.code.is_some() && self.code_tries_left == 0 {
            self.event(SecureEvent::CodeExhausted);
        }
    }

    /// Sends a fresh msg1 to `addr` (new ephemeral key, new index).
    fn start_init(&mut self, addr: SocketAddr, now: Instant) {
        if self.code.is_some() && self.code_tries_left == 0 {
            if let Some(p) = self.peers.get_mut(&addr) {
                p.want = None;
            }
            self.event(SecureEvent::Failed {
                peer: addr,
                reason: FailReason::CodeExhausted,
            });
            return;
        }
        let Ok(init) = self.build_init(now) else {
            // only a snow misconfiguration gets here; the want's deadline reports it
            return;
        };
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let datagram = with_mac2(&init.before_mac2, fresh_cookie(p, now));
        p.init = Some(init);
        self.transmit(addr, datagram);
    }

    fn build_init(&mut self, now: Instant) -> Result<Initiating, SecureError> {
        let mut hs = handshake::noise_state(self.mode, true, &self.identity, &mut self.rng)?;
        let mut nonce = [0u8; 32];
        self.rng.fill_bytes(&mut nonce);
        let mut payload = handshake::commit(&nonce).to_vec();
        let spake = match &self.code {
            Some(code) => {
                let (state, msg) = handshake::spake_start(code, true, &mut self.rng);
                payload.extend_from_slice(&msg);
                Some(state)
            }
            None => None,
        };
        let mut buf = [0u8; 256];
        let n = hs.write_message(&payload, &mut buf)?;
        let noise = buf.get(..n).ok_or(SecureError::Unsupported)?;
        let local_idx = self.fresh_idx();
        Ok(Initiating {
            local_idx,
            e: ephemeral_of(noise),
            before_mac2: wire::init_before_mac2(self.mode, local_idx, noise),
            hs,
            nonce,
            spake,
            started: now,
            next_send: now + RETRY_INITIAL,
            interval: RETRY_INITIAL,
        })
    }

    fn open_data(
        &mut self,
        from: SocketAddr,
        counter: u64,
        ciphertext: &[u8],
        now: Instant,
    ) -> Option<Vec<u8>> {
        let Some(peer) = self.peers.get_mut(&from) else {
            self.stats.dropped_no_session += 1;
            return None;
        };
        if peer.current.is_none() && peer.previous.is_none() {
            self.stats.dropped_no_session += 1;
            return None;
        }
        let mut buf = vec![0u8; ciphertext.len()];
        for s in [peer.current.as_mut(), peer.previous.as_mut()]
            .into_iter()
            .flatten()
        {
            let Ok(n) = s.transport.read_message(counter, ciphertext, &mut buf) else {
                continue;
            };
            // authentic: only now may the counter move the replay window
            if counter >= REJECT_AFTER_MESSAGES || !s.replay.accept(counter) {
                self.stats.dropped_replay += 1;
                return None;
            }
            s.last_recv = now;
            s.sent_since_recv = false;
            s.unconfirmed = None;
            self.stats.opened += 1;
            buf.truncate(n);
            // an empty payload is a keepalive / handshake confirmation, not for laminar
            return (n > 0).then_some(buf);
        }
        self.stats.dropped_unauthenticated += 1;
        None
    }

    #[allow(clippy::too_many_arguments)] // the fields of one parsed frame
    fn on_init(
        &mut self,
        from: SocketAddr,
        mode: Mode,
        sender: u32,
        noise: &[u8],
        before_mac2: &[u8],
        mac2: &[u8; COOKIE_LEN],
        now: Instant,
    ) {
        // 1. no state and no crypto work for a source that has not shown it can receive
        if !self.jar.check_mac2(from, before_mac2, mac2) {
            if self.reply_bucket.take(now) {
                let c = self.jar.cookie(from);
                self.stats.cookies_sent += 1;
                self.transmit(from, wire::cookie(sender, &c));
            } else {
                self.stats.handshakes_rate_limited += 1;
            }
            return;
        }
        // 2. a retransmitted msg1 (our msg2 was lost): resend msg2, no new state
        let e = ephemeral_of(noise);
        if let Some(msg2) = self
            .pending
            .values()
            .find(|r| r.addr == from && r.e == e && r.remote_idx == sender)
            .map(|r| r.msg2.clone())
        {
            if self.reply_bucket.take(now) {
                self.transmit(from, msg2);
            } else {
                self.stats.handshakes_rate_limited += 1;
            }
            return;
        }
        // a late duplicate of the msg1 that made a session we have: not a new handshake
        // (a code try would be spent on it)
        let done = self.peers.get(&from).is_some_and(|p| {
            [p.current.as_ref(), p.previous.as_ref()]
                .into_iter()
                .flatten()
                .any(|s| s.remote_e == Some(e))
        });
        if done {
            self.stats.dropped_replay += 1;
            return;
        }
        if mode != self.mode {
            let reason = match self.mode {
                Mode::Code => RejectReason::CodeRequired,
                Mode::Tofu => RejectReason::NoCode,
            };
            self.reply_reject(from, sender, reason, now);
            return;
        }
        // 3. simultaneous open: the initiation with the lower ephemeral key wins
        let we_initiate = self
            .peers
            .get(&from)
            .and_then(|p| p.init.as_ref())
            .is_some_and(|i| i.e < e);
        if we_initiate {
            self.stats.handshake_collisions += 1;
            return;
        }
        // 4. bounded work and bounded state
        let per_ip = self
            .pending
            .values()
            .filter(|r| r.addr.ip() == from.ip())
            .count();
        if self.pending.len() >= MAX_PENDING || per_ip >= MAX_PENDING_PER_IP {
            self.stats.handshakes_rate_limited += 1;
            return;
        }
        if self.code.is_some() && self.code_tries_left == 0 {
            self.reply_reject(from, sender, RejectReason::CodeExhausted, now);
            return;
        }
        if !self.hs_bucket.take(now) {
            self.stats.handshakes_rate_limited += 1;
            return;
        }
        match self.respond(from, sender, e, noise, now) {
            Ok((idx, r)) => {
                if r.code_try {
                    self.code_tries_left = self.code_tries_left.saturating_sub(1);
                }
                // the peer's initiation won the tie-break: ours is abandoned, but the
                // caller's wish is met when this handshake completes
                if let Some(p) = self.peers.get_mut(&from) {
                    p.init = None;
                }
                let msg2 = r.msg2.clone();
                self.pending.insert(idx, r);
                self.transmit(from, msg2);
            }
            Err(_) => self.stats.dropped_unauthenticated += 1,
        }
    }

    fn respond(
        &mut self,
        from: SocketAddr,
        sender: u32,
        e: [u8; 32],
        noise: &[u8],
        now: Instant,
    ) -> Result<(u32, Responding), SecureError> {
        let mut hs = handshake::noise_state(self.mode, false, &self.identity, &mut self.rng)?;
        let mut payload = [0u8; 256];
        let n = hs.read_message(noise, &mut payload)?;
        let payload = payload.get(..n).ok_or(SecureError::Unsupported)?;
        let (commit, spake_a) = payload.split_at(payload.len().min(wire::COMMIT_LEN));
        let commit: [u8; 32] = commit.try_into().map_err(|_| SecureError::Unsupported)?;
        let mut spake_b = Vec::new();
        if let Some(code) = &self.code {
            let (state, msg) = handshake::spake_start(code, false, &mut self.rng);
            let psk = handshake::spake_finish(state, spake_a)?;
            hs.set_psk(handshake::PSK_POSITION, &psk)?;
            spake_b = msg;
        } else if !spake_a.is_empty() {
            return Err(SecureError::Unsupported);
        }
        let mut buf = [0u8; 256];
        let n = hs.write_message(&[], &mut buf)?;
        let noise2 = buf.get(..n).ok_or(SecureError::Unsupported)?;
        let local_idx = self.fresh_idx();
        let msg2 = wire::resp(self.mode, local_idx, sender, &spake_b, noise2);
        let h2 = hs.get_handshake_hash().to_vec();
        let r = Responding {
            addr: from,
            hs,
            remote_idx: sender,
            e,
            commit,
            h2,
            msg2,
            created: now,
            code_try: self.code.is_some(),
        };
        Ok((local_idx, r))
    }

    #[allow(clippy::too_many_arguments)] // the fields of one parsed frame
    fn on_resp(
        &mut self,
        from: SocketAddr,
        mode: Mode,
        sender: u32,
        receiver: u32,
        spake: Option<&[u8]>,
        noise: &[u8],
        now: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(&from) else {
            self.stats.dropped_unauthenticated += 1;
            return;
        };
        let matches = peer
            .init
            .as_ref()
            .is_some_and(|i| i.local_idx == receiver && mode == self.mode);
        let Some(mut init) = peer.init.take().filter(|_| matches) else {
            self.stats.dropped_unauthenticated += 1;
            return;
        };
        // from here the attempt is used up whatever happens; `want` starts a new one
        if let (Some(state), Some(b)) = (init.spake.take(), spake) {
            match handshake::spake_finish(state, b) {
                Ok(psk) => {
                    if init.hs.set_psk(handshake::PSK_POSITION, &psk).is_err() {
                        self.stats.dropped_unauthenticated += 1;
                        return;
                    }
                }
                Err(_) => {
                    self.stats.dropped_unauthenticated += 1;
                    return;
                }
            }
        }
        let mut payload = [0u8; 64];
        match init.hs.read_message(noise, &mut payload) {
            Ok(0) => {}
            Ok(_) => {
                self.stats.dropped_unauthenticated += 1;
                return;
            }
            Err(_) => {
                self.stats.dropped_unauthenticated += 1;
                if self.code.is_some() {
                    // msg2 is the first message keyed by the code: a wrong code, or a
                    // stranger's guess; either way one try, and we stop dialling
                    self.code_failed(from);
                    if let Some(p) = self.peers.get_mut(&from) {
                        p.want = None;
                    }
                    self.transmit(from, wire::reject(sender, RejectReason::CodeMismatch));
                }
                return;
            }
        }
        let h2 = init.hs.get_handshake_hash().to_vec();
        let Some(remote_static) = remote_static_of(&init.hs) else {
            self.stats.dropped_unauthenticated += 1;
            return;
        };
        let mut buf = [0u8; 256];
        let Ok(n) = init.hs.write_message(&init.nonce, &mut buf) else {
            return;
        };
        let msg3 = wire::finish(sender, buf.get(..n).unwrap_or_default());
        let Ok(transport) = init.hs.into_stateless_transport_mode() else {
            return;
        };
        let session = Session {
            transport,
            send_ctr: 0,
            replay: ReplayWindow::new(),
            remote_static,
            sas: handshake::sas(&h2, &init.nonce),
            local_idx: init.local_idx,
            initiator: true,
            established: now,
            last_recv: now,
            sent_since_recv: false,
            unconfirmed: Some(Resend {
                datagram: msg3.clone(),
                next: now + RETRY_INITIAL,
                interval: RETRY_INITIAL,
            }),
            retire_at: None,
            carries_data: false,
            remote_e: None,
        };
        self.transmit(from, msg3);
        self.install(from, session, now);
    }

    fn on_finish(&mut self, from: SocketAddr, receiver: u32, noise: &[u8], now: Instant) {
        let ours = self.pending.get(&receiver).is_some_and(|r| r.addr == from);
        if !ours {
            // a resent msg3 for a session we already have: our confirmation was lost
            let dup = self
                .peers
                .get(&from)
                .and_then(|p| p.current.as_ref())
                .is_some_and(|s| !s.initiator && s.local_idx == receiver);
            if dup && self.reply_bucket.take(now) {
                self.confirm(from);
            } else {
                self.stats.dropped_unauthenticated += 1;
            }
            return;
        }
        let Some(mut r) = self.pending.remove(&receiver) else {
            return;
        };
        let mut payload = [0u8; 64];
        let nonce: Option<[u8; 32]> = match r.hs.read_message(noise, &mut payload) {
            Ok(32) => payload[..32].try_into().ok(),
            _ => None,
        };
        let Some(nonce) = nonce.filter(|n| handshake::commit(n) == r.commit) else {
            self.stats.dropped_unauthenticated += 1;
            if r.code_try {
                self.code_failed_counted(from);
            }
            return;
        };
        let Some(remote_static) = remote_static_of(&r.hs) else {
            self.stats.dropped_unauthenticated += 1;
            return;
        };
        let Ok(transport) = r.hs.into_stateless_transport_mode() else {
            return;
        };
        if r.code_try {
            // msg3 proved the code: refund the reserved try
            self.code_tries_left = (self.code_tries_left + 1).min(MAX_CODE_TRIES);
        }
        let session = Session {
            transport,
            send_ctr: 0,
            replay: ReplayWindow::new(),
            remote_static,
            sas: handshake::sas(&r.h2, &nonce),
            local_idx: receiver,
            initiator: false,
            established: now,
            last_recv: now,
            sent_since_recv: false,
            unconfirmed: None,
            retire_at: None,
            carries_data: false,
            remote_e: Some(r.e),
        };
        if self.install(from, session, now) {
            self.confirm(from);
        }
    }

    fn on_cookie(
        &mut self,
        from: SocketAddr,
        receiver: u32,
        cookie: [u8; COOKIE_LEN],
        now: Instant,
    ) {
        let Some(p) = self.peers.get_mut(&from) else {
            self.stats.dropped_unauthenticated += 1;
            return;
        };
        let Some(init) = p.init.as_ref().filter(|i| i.local_idx == receiver) else {
            self.stats.dropped_unauthenticated += 1;
            return;
        };
        if p.cookie.is_some_and(|(c, _)| c == cookie) {
            // a duplicate: msg1 with this cookie is already on its way
            return;
        }
        p.cookie = Some((cookie, now));
        let datagram = with_mac2(&init.before_mac2, Some(cookie));
        self.transmit(from, datagram);
    }

    fn on_reject(&mut self, from: SocketAddr, receiver: u32, reason: RejectReason) {
        let to_our_init = self
            .peers
            .get(&from)
            .and_then(|p| p.init.as_ref())
            .is_some_and(|i| i.local_idx == receiver);
        if to_our_init {
            let background = self
                .peers
                .get(&from)
                .and_then(|p| p.want)
                .is_some_and(|w| w.background);
            if let Some(p) = self.peers.get_mut(&from) {
                p.init = None;
                p.want = None;
            }
            let reason = match reason {
                RejectReason::CodeRequired => FailReason::PeerRequiresCode,
                RejectReason::NoCode => FailReason::PeerHasNoCode,
                RejectReason::CodeExhausted => FailReason::PeerCodeExhausted,
                RejectReason::CodeMismatch => {
                    self.code_failed(from);
                    return;
                }
            };
            if !background {
                self.event(SecureEvent::Failed { peer: from, reason });
            }
            return;
        }
        let to_our_resp = self
            .pending
            .get(&receiver)
            .is_some_and(|r| r.addr == from && r.code_try);
        if to_our_resp && reason == RejectReason::CodeMismatch {
            // the initiator could not read our msg2: the codes differ; the try stays spent
            self.pending.remove(&receiver);
            self.code_failed_counted(from);
            return;
        }
        self.stats.dropped_unauthenticated += 1;
    }

    fn reply_reject(&mut self, to: SocketAddr, receiver: u32, reason: RejectReason, now: Instant) {
        if self.reply_bucket.take(now) {
            self.transmit(to, wire::reject(receiver, reason));
        } else {
            self.stats.handshakes_rate_limited += 1;
        }
    }

    /// A failed code try not yet deducted.
    fn code_failed(&mut self, peer: SocketAddr) {
        self.code_tries_left = self.code_tries_left.saturating_sub(1);
        self.code_failed_counted(peer);
    }

    /// A failed code try already deducted (a responder reserves its try up front).
    fn code_failed_counted(&mut self, peer: SocketAddr) {
        self.stats.code_failures += 1;
        self.event(SecureEvent::CodeRejected {
            peer,
            tries_left: self.code_tries_left,
        });
        self.check_code_exhausted();
    }

    /// Sends an empty data datagram: proves to the initiator that we have the session.
    /// Unlike caller data it expects no answer, so it does not arm the stale check.
    fn confirm(&mut self, to: SocketAddr) {
        let sealed = self
            .peers
            .get_mut(&to)
            .and_then(|p| p.current.as_mut())
            .and_then(|s| seal_with(s, &[]));
        if let Some(d) = sealed {
            self.stats.sealed += 1;
            self.transmit(to, d);
        }
    }

    /// Makes `session` the current one for `addr`; the old one decrypts a little longer.
    fn install(&mut self, addr: SocketAddr, session: Session, now: Instant) -> bool {
        if !self.make_room(addr) {
            self.stats.handshakes_rate_limited += 1;
            return false;
        }
        self.stats.handshakes_completed += 1;
        let p = self.peers.entry(addr).or_default();
        let event = SecureEvent::Established {
            peer: addr,
            remote_static: session.remote_static,
            sas: session.sas.clone(),
            initiator: session.initiator,
            rekey: p
                .current
                .as_ref()
                .is_some_and(|s| s.remote_static == session.remote_static),
        };
        if let Some(mut old) = p.current.take() {
            old.retire_at = Some(now + PREVIOUS_GRACE);
            old.unconfirmed = None;
            p.previous = Some(old);
        }
        p.current = Some(session);
        p.want = None;
        p.init = None;
        self.event(event);
        true
    }

    fn peer_timers(&mut self, addr: SocketAddr, now: Instant) {
        let responding = self.pending.values().any(|r| r.addr == addr);
        let mut resend: Vec<Vec<u8>> = Vec::new();
        let mut events: Vec<SecureEvent> = Vec::new();
        let mut start = false;
        {
            let Some(p) = self.peers.get_mut(&addr) else {
                return;
            };
            if p.previous
                .as_ref()
                .and_then(|s| s.retire_at)
                .is_some_and(|t| now >= t)
            {
                p.previous = None;
            }
            let mut close = false;
            if let Some(s) = p.current.as_mut() {
                let quiet = now.saturating_duration_since(s.last_recv);
                if quiet >= SESSION_IDLE {
                    close = true;
                } else if let Some(u) = s.unconfirmed.as_mut() {
                    if now.saturating_duration_since(s.established) >= CONFIRM_TIMEOUT {
                        close = true;
                        p.want = Some(Want {
                            deadline: now + CONNECT_TIMEOUT,
                            background: true,
                        });
                    } else if now >= u.next {
                        resend.push(u.datagram.clone());
                        u.interval = (u.interval * 2).min(RETRY_MAX);
                        u.next = now + u.interval;
                    }
                } else if p.want.is_none() && p.init.is_none() {
                    let stale = s.sent_since_recv && quiet >= STALE_AFTER;
                    let old =
                        s.initiator && now.saturating_duration_since(s.established) >= REKEY_AFTER;
                    if stale || old {
                        p.want = Some(Want {
                            deadline: now + CONNECT_TIMEOUT,
                            background: true,
                        });
                    }
                }
            }
            if close {
                p.current = None;
                events.push(SecureEvent::Closed { peer: addr });
            }
            if let Some(w) = p.want {
                if now >= w.deadline {
                    p.want = None;
                    p.init = None;
                    if !w.background {
                        events.push(SecureEvent::Failed {
                            peer: addr,
                            reason: FailReason::Timeout,
                        });
                    }
                }
            }
            if let Some(i) = p.init.as_mut() {
                if now >= i.next_send {
                    if now.saturating_duration_since(i.started) >= ATTEMPT_LIFETIME {
                        p.init = None;
                        start = p.want.is_some();
                    } else {
                        let cookie = fresh_cookie_of(p.cookie, now);
                        // p.init is borrowed mutably above; re-borrow to build the datagram
                        if let Some(i) = p.init.as_mut() {
                            resend.push(with_mac2(&i.before_mac2, cookie));
                            i.interval = (i.interval * 2).min(RETRY_MAX);
                            i.next_send = now + i.interval;
                        }
                    }
                }
            } else if p.want.is_some() && !responding {
                start = true;
            }
        }
        for d in resend {
            self.transmit(addr, d);
        }
        for e in events {
            self.event(e);
        }
        if start {
            self.start_init(addr, now);
        }
        if self.peers.get(&addr).is_some_and(Peer::is_empty) {
            self.peers.remove(&addr);
        }
    }
}

fn remote_static_of(hs: &HandshakeState) -> Option<[u8; 32]> {
    hs.get_remote_static()?.try_into().ok()
}

fn seal_with(s: &mut Session, plaintext: &[u8]) -> Option<Vec<u8>> {
    if s.send_ctr >= REJECT_AFTER_MESSAGES {
        return None;
    }
    let mut out = vec![0u8; wire::DATA_OVERHEAD + plaintext.len()];
    out[..9].copy_from_slice(&wire::data_header(s.send_ctr));
    let n = s
        .transport
        .write_message(s.send_ctr, plaintext, &mut out[9..])
        .ok()?;
    out.truncate(9 + n);
    s.send_ctr += 1;
    Some(out)
}

/// The cookie to use for a new msg1, if we have one young enough.
fn fresh_cookie(p: &Peer, now: Instant) -> Option<[u8; COOKIE_LEN]> {
    fresh_cookie_of(p.cookie, now)
}

fn fresh_cookie_of(
    cookie: Option<([u8; COOKIE_LEN], Instant)>,
    now: Instant,
) -> Option<[u8; COOKIE_LEN]> {
    cookie
        .filter(|(_, at)| now.saturating_duration_since(*at) < COOKIE_REUSE)
        .map(|(c, _)| c)
}

fn with_mac2(before_mac2: &[u8], cookie: Option<[u8; COOKIE_LEN]>) -> Vec<u8> {
    let mac = cookie.map_or([0u8; COOKIE_LEN], |c| cookie::mac2(&c, before_mac2));
    let mut v = Vec::with_capacity(before_mac2.len() + COOKIE_LEN);
    v.extend_from_slice(before_mac2);
    v.extend_from_slice(&mac);
    v
}

/// Runs every parser on `data`; for a `cargo fuzz` target. Never panics.
pub fn fuzz_parse(data: &[u8]) {
    let _ = wire::parse(data);
    let text = String::from_utf8_lossy(data);
    let _ = KnownPeers::parse(&text);
    let _ = known_peers::key_from_hex(&text);
    let _ = normalize_code(&text);
    if let Ok(k) = <[u8; 32]>::try_from(data.get(..32).unwrap_or_default()) {
        let _ = Identity::from_bytes(&k);
    }
    let mut w = ReplayWindow::new();
    for c in data.chunks(8) {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        let _ = w.accept(u64::from_le_bytes(b));
    }
    // a full endpoint, both modes, fed the datagram as if from a stranger and as if from
    // a peer it has dialled
    let now = Instant::now();
    let Ok(id) = Identity::from_bytes(&[7u8; 32]) else {
        return;
    };
    for auth in [Auth::Tofu, Auth::Code("1-acid-acorn".into())] {
        let Ok(mut ep) = SecureEndpoint::with_seed(id.clone(), auth, now, [9u8; 32]) else {
            return;
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        ep.connect(peer, now);
        let _ = ep.handle_datagram(peer, data, now);
        let _ = ep.handle_datagram(SocketAddr::from(([127, 0, 0, 2], 9)), data, now);
        ep.handle_timeout(now + Duration::from_secs(1));
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
}
