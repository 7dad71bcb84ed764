//! The call's state machine: hello/accept, keep-alive, state snapshots, bye, timeout — sans-IO.
//!
//! Time is an input. Feed every received control message to [`Session::handle`], call
//! [`Session::handle_timeout`] at least every few milliseconds, then drain
//! [`Session::poll_transmit`] (datagrams to send) and [`Session::poll_event`] (what changed).
//! Every control message is idempotent and repeated until it is no longer needed, so a lost
//! datagram never stalls the call waiting for a transport-level resend.

#[cfg(test)]
mod link;
#[cfg(test)]
mod scenarios;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::proto::{Message, StateSnapshot};

/// Where the call stands, as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// No peer; waiting for someone to call.
    Waiting,
    /// Calling a peer that has not answered yet.
    Dialing,
    /// In a call.
    Connected,
    /// The peer hung up; waiting (and, with a dial address, calling again).
    PeerLeft,
    /// The peer went silent; trying to resume.
    Lost,
    /// We hung up.
    Ended,
}

impl CallState {
    /// The lower-case name used in stats and logs.
    pub fn name(self) -> &'static str {
        match self {
            CallState::Waiting => "waiting",
            CallState::Dialing => "connecting",
            CallState::Connected => "connected",
            CallState::PeerLeft => "peer_left",
            CallState::Lost => "connection_lost",
            CallState::Ended => "ended",
        }
    }
}

/// One side's media switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaState {
    /// Camera on and delivering pictures.
    pub camera_on: bool,
    /// Microphone muted.
    pub muted: bool,
}

impl Default for MediaState {
    fn default() -> Self {
        Self {
            camera_on: true,
            muted: false,
        }
    }
}

/// What the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A call started with this peer.
    Connected(SocketAddr),
    /// The peer hung up.
    PeerLeft,
    /// The peer went silent for longer than the timeout.
    Lost,
    /// A lost call came back.
    Resumed,
    /// The peer's media switches changed.
    RemoteMedia(MediaState),
    /// The peer needs a frame that decodes on its own.
    KeyframeRequested,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// What to send.
    pub msg: Message,
}

/// Timing of the state machine.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Hello repeat while dialing.
    pub hello_interval: Duration,
    /// Hello repeat while waiting with a dial address, or resuming a lost call.
    pub redial_interval: Duration,
    /// State snapshot repeat in a call (it is also the keep-alive).
    pub state_interval: Duration,
    /// Silence after which a call is lost.
    pub timeout: Duration,
    /// Copies of a bye sent when hanging up.
    pub bye_copies: usize,
    /// Least time between two keyframe requests.
    pub keyframe_request_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            hello_interval: Duration::from_millis(200),
            redial_interval: Duration::from_millis(1000),
            state_interval: Duration::from_millis(250),
            timeout: Duration::from_secs(3),
            bye_copies: 3,
            keyframe_request_interval: Duration::from_millis(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer {
    addr: SocketAddr,
    id: u64,
}

/// The call's state machine for one side.
#[derive(Debug)]
pub struct Session {
    id: u64,
    cfg: SessionConfig,
    dial: Option<SocketAddr>,
    state: CallState,
    peer: Option<Peer>,
    departed: Option<u64>,
    last_heard: Instant,
    next_hello: Instant,
    next_state: Instant,
    last_keyframe_request: Option<Instant>,
    seq: u32,
    remote_seq: Option<u32>,
    local: MediaState,
    remote: MediaState,
    out: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
}

impl Session {
    /// A session with random id `id`, dialing `dial` if given, else waiting.
    pub fn new(id: u64, dial: Option<SocketAddr>, cfg: SessionConfig, now: Instant) -> Self {
        Self {
            id,
            cfg,
            dial,
            state: if dial.is_some() {
                CallState::Dialing
            } else {
                CallState::Waiting
            },
            peer: None,
            departed: None,
            last_heard: now,
            next_hello: now,
            next_state: now,
            last_keyframe_request: None,
            seq: 0,
            remote_seq: None,
            local: MediaState::default(),
            remote: MediaState::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Our session id.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Where the call stands.
    pub fn state(&self) -> CallState {
        self.state
    }
    /// The peer's address while in (or resuming) a call.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.map(|p| p.addr)
    }
    /// The peer's last announced media switches.
    pub fn remote_media(&self) -> MediaState {
        self.remote
    }
    /// Our media switches.
    pub fn local_media(&self) -> MediaState {
        self.local
    }
    /// Whether media from `addr` belongs to the current call.
    pub fn accepts_media_from(&self, addr: SocketAddr) -> bool {
        self.state == CallState::Connected && self.peer_addr() == Some(addr)
    }

    /// Media from the peer arrived: it proves the peer is alive.
    pub fn note_media_from(&mut self, addr: SocketAddr, now: Instant) {
        if self.accepts_media_from(addr) {
            self.last_heard = now;
        }
    }

    /// Changes our media switches and tells the peer at once.
    pub fn set_local_media(&mut self, media: MediaState, now: Instant) {
        if media != self.local {
            self.local = media;
            if self.state == CallState::Connected {
                self.send_state(now);
            }
        }
    }

    /// Asks the peer for a keyframe, at most once per configured interval.
    pub fn request_keyframe(&mut self, frame_id: u32, now: Instant) {
        let Some(peer) = self.peer else { return };
        if self.state != CallState::Connected {
            return;
        }
        if let Some(t) = self.last_keyframe_request {
            if now.saturating_duration_since(t) < self.cfg.keyframe_request_interval {
                return;
            }
        }
        self.last_keyframe_request = Some(now);
        self.push(
            peer.addr,
            Message::KeyframeRequest {
                from: self.id,
                frame_id,
            },
        );
    }

    /// Hangs up: the peer gets several byes, and the session ends.
    pub fn hang_up(&mut self, _now: Instant) {
        if let Some(peer) = self.peer {
            if matches!(self.state, CallState::Connected | CallState::Lost) {
                for _ in 0..self.cfg.bye_copies {
                    self.push(peer.addr, Message::Bye { from: self.id });
                }
            }
        }
        self.state = CallState::Ended;
    }

    /// Takes one received control message. Video fragments are not the session's business.
    pub fn handle(&mut self, from: SocketAddr, msg: &Message, now: Instant) {
        if self.state == CallState::Ended {
            return;
        }
        let Some(sender) = msg.sender() else { return };
        if self.departed == Some(sender) {
            // late copies from a peer that already said bye
            return;
        }
        match *msg {
            Message::Hello { from: pid } => self.on_hello(from, pid, now),
            Message::Accept { from: pid, to } => {
                if to == self.id {
                    self.on_accept(from, pid, now);
                }
            }
            Message::State(s) => self.on_state(from, s, now),
            Message::Bye { from: pid } => {
                if self.is_peer(from, pid) {
                    self.departed = Some(pid);
                    self.peer = None;
                    self.remote = MediaState::default();
                    self.state = CallState::PeerLeft;
                    self.next_hello = now + self.cfg.redial_interval;
                    self.events.push_back(SessionEvent::PeerLeft);
                }
            }
            Message::KeyframeRequest { from: pid, .. } => {
                if self.is_peer(from, pid) && self.state == CallState::Connected {
                    self.last_heard = now;
                    self.events.push_back(SessionEvent::KeyframeRequested);
                }
            }
            Message::Video(_)
            | Message::Parity(_)
            | Message::Audio(_)
            | Message::Nack { .. }
            | Message::Probe { .. }
            | Message::ProbeResult { .. }
            | Message::Report { .. } => {}
        }
    }

    /// Sends what is due and notices silence. Call at least every few milliseconds.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            CallState::Dialing => self.hello_if_due(self.dial, self.cfg.hello_interval, now),
            CallState::Waiting | CallState::PeerLeft => {
                self.hello_if_due(self.dial, self.cfg.redial_interval, now)
            }
            CallState::Lost => {
                let to = self.peer_addr().or(self.dial);
                self.hello_if_due(to, self.cfg.redial_interval, now)
            }
            CallState::Connected => {
                if now.saturating_duration_since(self.last_heard) > self.cfg.timeout {
                    self.state = CallState::Lost;
                    self.next_hello = now;
                    self.events.push_back(SessionEvent::Lost);
                    let to = self.peer_addr().or(self.dial);
                    self.hello_if_due(to, self.cfg.redial_interval, now);
                } else if now >= self.next_state {
                    self.send_state(now);
                }
            }
            CallState::Ended => {}
        }
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn is_peer(&self, addr: SocketAddr, id: u64) -> bool {
        self.peer == Some(Peer { addr, id })
    }

    fn on_hello(&mut self, from: SocketAddr, pid: u64, now: Instant) {
        let accept = Message::Accept {
            from: self.id,
            to: pid,
        };
        match self.state {
            CallState::Connected => {
                if self.is_peer(from, pid) {
                    // our accept was lost: answer again
                    self.last_heard = now;
                    self.push(from, accept);
                } else if self.peer_addr() == Some(from) {
                    // the peer restarted at the same address: a new call
                    self.start_call(from, pid, now);
                    self.push(from, accept);
                }
                // anyone else: busy, ignored
            }
            CallState::Lost if self.is_peer(from, pid) => {
                self.resume(now);
                self.push(from, accept);
            }
            CallState::Ended => {}
            _ => {
                self.start_call(from, pid, now);
                self.push(from, accept);
            }
        }
    }

    fn on_accept(&mut self, from: SocketAddr, pid: u64, now: Instant) {
        match self.state {
            CallState::Connected => {
                if self.is_peer(from, pid) {
                    self.last_heard = now;
                }
            }
            CallState::Lost if self.is_peer(from, pid) => self.resume(now),
            CallState::Ended => {}
            _ => self.start_call(from, pid, now),
        }
    }

    fn on_state(&mut self, from: SocketAddr, s: StateSnapshot, now: Instant) {
        if !self.is_peer(from, s.from) {
            return;
        }
        match self.state {
            CallState::Connected => {}
            CallState::Lost => self.resume(now),
            _ => return,
        }
        self.last_heard = now;
        let fresh = match self.remote_seq {
            None => true,
            Some(last) => (s.seq.wrapping_sub(last) as i32) > 0,
        };
        if fresh {
            self.remote_seq = Some(s.seq);
            let media = MediaState {
                camera_on: s.camera_on,
                muted: s.muted,
            };
            if media != self.remote {
                self.remote = media;
                self.events.push_back(SessionEvent::RemoteMedia(media));
            }
        }
    }

    fn start_call(&mut self, addr: SocketAddr, pid: u64, now: Instant) {
        self.peer = Some(Peer { addr, id: pid });
        self.departed = None;
        self.remote_seq = None;
        self.remote = MediaState::default();
        self.state = CallState::Connected;
        self.last_heard = now;
        self.last_keyframe_request = None;
        self.events.push_back(SessionEvent::Connected(addr));
        self.send_state(now);
    }

    fn resume(&mut self, now: Instant) {
        self.state = CallState::Connected;
        self.last_heard = now;
        self.events.push_back(SessionEvent::Resumed);
        self.send_state(now);
    }

    fn send_state(&mut self, now: Instant) {
        let Some(peer) = self.peer else { return };
        self.seq = self.seq.wrapping_add(1);
        self.next_state = now + self.cfg.state_interval;
        self.push(
            peer.addr,
            Message::State(StateSnapshot {
                from: self.id,
                seq: self.seq,
                camera_on: self.local.camera_on,
                muted: self.local.muted,
            }),
        );
    }

    fn hello_if_due(&mut self, to: Option<SocketAddr>, interval: Duration, now: Instant) {
        let Some(to) = to else { return };
        if now >= self.next_hello {
            self.next_hello = now + interval;
            self.push(to, Message::Hello { from: self.id });
        }
    }

    fn push(&mut self, to: SocketAddr, msg: Message) {
        // bounded: a stuck caller must not grow the queue without end
        if self.out.len() < 256 {
            self.out.push_back(Transmit { to, msg });
        }
    }
}
