//! Stage 4: the session and the socket. Frames out as fragments, control both ways,
//! complete frames in, and the remote participant kept true to what the peer says.

use std::time::Instant;

use bevy_ecs::prelude::*;

use crate::components::{
    CallInfo, CameraOff, Clock, Control, Incoming, KeyframeFeedback, Local, Muted, NextTick,
    Outgoing, Participant, Remote, VideoStream,
};
use crate::keys::KeyStore;
use crate::media::arrival::ArrivalStats;
use crate::media::frame::{trace_stage, unix_micros};
use crate::media::loss_share::LossShare;
use crate::media::probe::{ProbeMeter, Prober};
use crate::media::rate::{RateController, ReceiverReport, ResendBudget};
use crate::media::sound_start::SoundStart;
use crate::net::pacer::Pacer;
use crate::net::secure::{FailReason, KnownPeers, PinCheck, SecureEvent};
use crate::net::Transport;
use crate::proto::message::VERSION;
use crate::proto::parity::{parity_fragments, ParityPolicy};
use crate::proto::{
    fragment_frame, Message, ProtoError, Reassembler, ReassemblyEvent, SendHistory, VideoFragment,
};
use crate::session::{CallState, MediaState, Session, SessionEvent};
use crate::stats::CallStats;
use crate::systems::audio::{IncomingAudio, OutgoingAudio};

/// The call's session, transport and reassembly.
#[derive(Resource, Debug)]
pub struct Network {
    /// laminar over our socket.
    pub transport: Transport,
    /// The call's state machine.
    pub session: Session,
    /// Joins video fragments.
    pub reassembler: Reassembler,
    /// Recently sent video, to answer resend requests.
    pub history: SendHistory,
    /// Our video bitrate, steered by the peer's reports.
    pub rate: RateController,
    /// How much parity goes with our video, steered by the loss the peer reports.
    pub parity: ParityPolicy,
    /// The camera's frames a second (the parity's share depends on a frame's size).
    pub fps: u32,
    /// Whether a datagram of another protocol version was reported (once: a stranger could
    /// send any number of them).
    pub told_version: bool,
    /// Resends may use only a share of the bitrate.
    pub resend_budget: ResendBudget,
    /// Video (and resends) go out paced, at a multiple of the bitrate.
    pub pacer: Pacer,
    /// Probes the path's rate when a call starts.
    pub prober: Prober,
    /// Times the peer's probes.
    pub probe_meter: ProbeMeter,
    /// Holds our sound back at a call's start until the probe and the first picture are out.
    pub sound_start: SoundStart,
    /// What arrived of the peer's video since the last report we sent.
    pub rx: RxWindow,
    /// A bitrate for the encoder, decided this tick.
    pub new_bitrate: Option<u32>,
    /// It comes from a probe of the path.
    pub bitrate_probed: bool,
    /// Keys of peers met before (trust on first use).
    pub known_peers: KnownPeers,
    /// Where they are saved.
    pub keys: KeyStore,
}

/// Received video since the last report, and the running arrival measures.
#[derive(Debug)]
pub struct RxWindow {
    since: Instant,
    bytes: u64,
    fragments: u64,
    /// Fragments with index 0: about one per frame that arrived.
    first_fragments: u64,
    missing: u64,
    arrival: ArrivalStats,
    /// The share lost, over more fragments than one interval may have.
    loss: LossShare,
}

impl RxWindow {
    /// An empty window starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            since: now,
            bytes: 0,
            fragments: 0,
            first_fragments: 0,
            missing: 0,
            arrival: ArrivalStats::default(),
            loss: LossShare::default(),
        }
    }

    /// A fragment of the peer's video arrived (at `now`).
    fn on_fragment(&mut self, frag: &VideoFragment, now: Instant) {
        self.bytes += frag.payload.len() as u64;
        self.fragments += 1;
        if frag.index == 0 {
            self.first_fragments += 1;
        }
        self.arrival.on_fragment(
            frag.frame_id,
            frag.payload.len(),
            frag.capture_us,
            unix_micros(),
            now,
        );
    }

    /// We asked for fragments of a frame for the first time: `named` of them, or (`None`) a
    /// whole frame never seen, which counts as many fragments as the frames that arrived had
    /// (one at low bitrates: counting more would inflate the loss and drive a lossy link's
    /// bitrate down to its floor).
    fn on_missing(&mut self, named: Option<usize>) {
        self.missing += match named {
            Some(n) => n as u64,
            None => self
                .fragments
                .checked_div(self.first_fragments)
                .unwrap_or(1)
                .max(1),
        };
    }

    /// A new call, or one resumed on what may be another path: the share lost starts over
    /// (from its prior for a call's first seconds, see [`LossShare`]).
    fn new_path(&mut self) {
        self.loss = LossShare::default();
    }

    /// The report for the window if it is due, and a fresh window.
    fn report_due(&mut self, now: Instant) -> Option<Message> {
        let dt = now.saturating_duration_since(self.since);
        if dt < REPORT_EVERY {
            return None;
        }
        let loss = self.loss.end_interval(self.fragments, self.missing);
        let loss_permille = (loss * 1000.0).round().clamp(0.0, 1000.0) as u16;
        let receive_kbps = (self.bytes * 8 / dt.as_millis().max(1) as u64) as u32;
        let a = self.arrival.report(now);
        // a fresh window; the arrival measures and the loss's past intervals run on
        let arrival = std::mem::take(&mut self.arrival);
        let loss = std::mem::take(&mut self.loss);
        *self = Self {
            arrival,
            loss,
            ..Self::new(now)
        };
        Some(Message::Report {
            loss_permille,
            receive_kbps,
            queue_ms: a.queue_ms,
            jitter_ms: a.jitter_ms,
            path_kbps: a.path_kbps,
            echo: a.echo,
        })
    }
}

/// How often the receiver reports what it saw.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Network {
    /// Hands the paced video that may go now to laminar (all of it is dropped when the call
    /// is over), at the current bitrate target, and the probe's datagrams that are due.
    fn release_paced(&mut self, peer: Option<std::net::SocketAddr>, now: Instant) {
        let Some(peer) = peer else {
            self.pacer.clear();
            return;
        };
        let transport = &mut self.transport;
        self.prober.poll(now, |p| match Message::Probe(p).encode() {
            Ok(bytes) => transport.send(peer, bytes, false),
            Err(e) => tracing::error!("probe not encodable: {e}"),
        });
        self.pacer.set_bitrate(self.rate.bitrate());
        self.pacer.release(now, |d| transport.send(peer, d, false));
    }

    /// Handles what the secure channel reports: pins keys on first contact, refuses a
    /// changed key loudly, and turns code failures into messages.
    fn secure_events(&mut self, call: &mut CallInfo) {
        while let Some(event) = self.transport.poll_secure_event() {
            tracing::info!(?event, "secure channel");
            match event {
                SecureEvent::Established {
                    peer,
                    remote_static,
                    sas,
                    ..
                } => {
                    let name = peer.to_string();
                    match self.known_peers.check(&name, &remote_static) {
                        PinCheck::Changed { .. } => {
                            let path = self.keys.known_peers_path();
                            let msg = format!(
                                "WARNING: {name} has a new identity key - someone may be impersonating it. Call refused. If it was reinstalled, delete its line from {}",
                                path.display()
                            );
                            eprintln!("prattle: {msg}");
                            self.transport.secure_mut().close(peer);
                            call.warning =
                                Some(format!("WARNING: {name} has a NEW KEY - call refused"));
                            continue;
                        }
                        PinCheck::New => {
                            if self.known_peers.pin(&name, remote_static).is_ok() {
                                self.keys.save_known_peers(&self.known_peers);
                            }
                            eprintln!(
                                "prattle: first call with {name}: compare these words aloud: {sas}"
                            );
                        }
                        PinCheck::Match => {}
                    }
                    call.warning = None;
                }
                SecureEvent::Failed { peer, reason } => {
                    let why = match reason {
                        FailReason::PeerRequiresCode => Some(format!("{peer} asks for a pairing code: call again with --code and the code it shows")),
                        FailReason::PeerHasNoCode => Some(format!("{peer} is not waiting with a code: call without --code")),
                        FailReason::PeerCodeExhausted | FailReason::CodeExhausted => Some("the pairing code was tried too often and is disabled: ask for a new code".to_string()),
                        FailReason::Timeout | FailReason::TableFull => None,
                    };
                    if let Some(w) = why {
                        if call.dial.is_some() {
                            call.fatal = Some(w);
                        } else {
                            call.warning = Some(w);
                        }
                    }
                }
                SecureEvent::CodeRejected { tries_left, .. } => {
                    if call.dial.is_some() {
                        call.fatal = Some(
                            "wrong code: ask the other side for the code its window shows".into(),
                        );
                    } else {
                        let w = format!("a caller gave a wrong code ({tries_left} tries left)");
                        eprintln!("prattle: {w}");
                        call.warning = Some(w);
                    }
                }
                SecureEvent::CodeExhausted => {
                    let w =
                        "too many wrong codes: the code is disabled, restart Prattle for a new one";
                    eprintln!("prattle: {w}");
                    call.warning = Some(w.into());
                    if call.dial.is_some() {
                        call.fatal = call.warning.clone();
                    }
                }
                SecureEvent::Closed { .. } => {}
            }
        }
    }

    /// Sends what the session wants sent.
    fn flush_session(&mut self) {
        while let Some(t) = self.session.poll_transmit() {
            match t.msg.encode() {
                Ok(bytes) => self.transport.send(t.to, bytes, true),
                Err(e) => tracing::error!("control message not encodable: {e}"),
            }
        }
    }

    /// Counts fragments lost and rebuilt from parity, which the next report counts as lost:
    /// the sender's parity follows the loss, so the loss that parity hides must be reported.
    fn count_recovered(&mut self, stats: &mut CallStats) {
        let recovered = self.reassembler.stats().recovered;
        if recovered > stats.fragments_recovered {
            self.rx
                .on_missing(Some((recovered - stats.fragments_recovered) as usize));
            stats.fragments_recovered = recovered;
        }
    }

    /// Reads everything that arrived; complete frames and audio packets go to the decoders.
    fn receive(&mut self, now: Instant, stats: &mut CallStats, audio: &mut IncomingAudio) {
        while let Some((from, payload)) = self.transport.recv() {
            let msg = match Message::decode(&payload) {
                Ok(m) => m,
                Err(e) => {
                    stats.datagrams_malformed += 1;
                    tracing::trace!(%from, "dropped datagram: {e}");
                    if let ProtoError::Version(v) = e {
                        if !std::mem::replace(&mut self.told_version, true) {
                            tracing::warn!(
                                %from,
                                "{from} speaks Prattle protocol version {v}, this build {VERSION}: \
                                 both sides need the same release"
                            );
                        }
                    }
                    continue;
                }
            };
            // media and its feedback (everything but control, which names its sender) only
            // from the peer of a live call
            if msg.sender().is_none() && !self.session.accepts_media_from(from) {
                stats.media_outside_call += 1;
                continue;
            }
            match msg {
                Message::Video(frag) => {
                    self.session.note_media_from(from, now);
                    self.rx.on_fragment(&frag, now);
                    if let ReassemblyEvent::Completed(_) = self.reassembler.push(frag, now) {
                        stats.frames_received += 1;
                    }
                }
                Message::Parity(par) => {
                    self.session.note_media_from(from, now);
                    self.rx.bytes += par.payload.len() as u64;
                    if let ReassemblyEvent::Completed(_) = self.reassembler.push_parity(par, now) {
                        stats.frames_received += 1;
                    }
                }
                Message::Audio(a) => {
                    self.session.note_media_from(from, now);
                    tracing::trace!(target: "audio_timing", "rx {} {} {}", a.seq, a.capture_us, crate::media::frame::unix_micros());
                    // bounded: the decode stage drains this every tick
                    if audio.packets.len() < 256 {
                        audio.packets.push((a, now));
                    }
                }
                Message::Report {
                    loss_permille,
                    receive_kbps,
                    queue_ms,
                    jitter_ms,
                    path_kbps,
                    echo,
                } => {
                    self.pacer.on_path(path_kbps, now);
                    tracing::debug!(
                        path_kbps,
                        paced = ?self.pacer.path_bps(),
                        loss_permille,
                        "report"
                    );
                    if let Some((frame_id, held_ms)) = echo {
                        if let Some(at) = self.history.sent_at(frame_id) {
                            let rtt = now.saturating_duration_since(at).as_secs_f64() * 1000.0
                                - f64::from(held_ms);
                            let rtt = rtt.max(0.0);
                            // smoothed like TCP's SRTT
                            stats.video_rtt_ms =
                                Some(stats.video_rtt_ms.map_or(rtt, |s| s + (rtt - s) / 8.0));
                        }
                    }
                    stats.video_queue_ms = queue_ms;
                    stats.video_jitter_ms = jitter_ms;
                    let report = ReceiverReport {
                        loss: f32::from(loss_permille) / 1000.0,
                        receive_bps: receive_kbps.saturating_mul(1000),
                        queue_ms,
                    };
                    if let Some(bps) = self.rate.on_report(report, now) {
                        tracing::debug!(bps, ?report, "video bitrate");
                        self.new_bitrate = Some(bps);
                    }
                    if self.parity.on_loss(self.rate.loss()) {
                        tracing::info!(
                            group = ?self.parity.group(),
                            loss = self.rate.loss(),
                            "video parity"
                        );
                        // the encoder's share of the bitrate changed
                        self.new_bitrate = Some(self.rate.bitrate());
                    }
                }
                Message::Probe(p) => {
                    self.probe_meter.on_probe(p, now);
                }
                Message::ProbeResult(r) => {
                    let max = self.rate.max();
                    let Some(found) = self.prober.on_result(r, max, now) else {
                        continue;
                    };
                    let changed = self.rate.on_probe(found.bps, found.full, now);
                    if found.slowed {
                        self.pacer.on_path(found.bps / 1000, now);
                    }
                    tracing::info!(
                        cluster = r.cluster,
                        kbps = r.kbps,
                        even = r.even,
                        full = found.full,
                        slowed = found.slowed,
                        ?changed,
                        "probe: the path carries {} bit/s",
                        found.bps
                    );
                    if let Some(bps) = changed {
                        self.new_bitrate = Some(bps);
                        self.bitrate_probed = true;
                    }
                }
                Message::Nack { frame_id, missing } => {
                    let bitrate = self.rate.bitrate();
                    let again: Vec<Vec<u8>> = self
                        .history
                        .resend(frame_id, missing.as_deref())
                        .into_iter()
                        .map(<[u8]>::to_vec)
                        .collect();
                    for d in again {
                        if self.resend_budget.allow(d.len(), bitrate, now) {
                            stats.fragments_resent += 1;
                            self.pacer.push(d);
                        } else {
                            stats.fragments_not_resent += 1;
                        }
                    }
                }
                control => self.session.handle(from, &control, now),
            }
        }
    }
}

/// Runs the network for one tick.
#[allow(clippy::too_many_arguments)]
pub fn network(
    mut net: ResMut<Network>,
    clock: Res<Clock>,
    control: Res<Control>,
    mut call: ResMut<CallInfo>,
    mut outgoing: ResMut<Outgoing>,
    mut incoming: ResMut<Incoming>,
    mut outgoing_audio: ResMut<OutgoingAudio>,
    mut incoming_audio: ResMut<IncomingAudio>,
    mut feedback: ResMut<KeyframeFeedback>,
    mut stats: ResMut<CallStats>,
    local: Single<(Has<CameraOff>, Has<Muted>), With<Local>>,
    mut remote: Single<(Entity, &mut VideoStream, &mut Participant), With<Remote>>,
    mut next: ResMut<NextTick>,
    mut commands: Commands,
) {
    let now = clock.now;
    let net = &mut *net;
    let (camera_off, muted) = *local;
    net.session.set_local_media(
        MediaState {
            camera_on: !camera_off,
            muted,
        },
        now,
    );
    if let Some(frame_id) = feedback.need_keyframe.take() {
        net.session.request_keyframe(frame_id, now);
    }
    if control.quit {
        net.session.hang_up(now);
    }

    // media out: only to the peer of a live call
    let peer = net
        .session
        .peer_addr()
        .filter(|_| net.session.state() == CallState::Connected);
    for (meta, data) in outgoing.frames.drain(..) {
        if peer.is_none() {
            continue;
        }
        match fragment_frame(meta, &data) {
            Ok(frags) => {
                let mut datagrams = Vec::with_capacity(frags.len());
                for f in frags {
                    match Message::Video(f).encode() {
                        Ok(bytes) => {
                            net.pacer.push(bytes.clone());
                            datagrams.push(bytes);
                        }
                        Err(e) => tracing::error!("fragment not encodable: {e}"),
                    }
                }
                net.history.record(meta.frame_id, datagrams, now);
                net.sound_start.on_picture();
                net.rate.on_sent(now);
                stats.frames_sent += 1;
                if let Some(group) = net.parity.group() {
                    for p in parity_fragments(meta, &data, group).unwrap_or_default() {
                        if let Ok(bytes) = Message::Parity(p).encode() {
                            net.pacer.push_parity(bytes);
                            stats.parity_sent += 1;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("frame of {} bytes not sent: {e}", data.len()),
        }
    }

    // the copy of the frame before goes with the video's parity: from the start of a call
    // and while the peer reports loss, not on a link that has shown it is clean
    let copies = net.parity.group().is_some();
    // the sound goes out once the probing at a call's start is over and the call's first
    // picture has left the pacer (see `media::sound_start`)
    let sound_waits = !net.sound_start.may_send(
        now,
        net.prober.holds_media(now),
        !camera_off,
        net.pacer.is_empty(),
        net.pacer.path_backlog(now),
    );
    for mut a in outgoing_audio.packets.drain(..) {
        let Some(peer) = peer else { continue };
        if sound_waits {
            stats.audio_held_back += 1;
            continue;
        }
        if !copies {
            a.previous = None;
        }
        tracing::trace!(target: "audio_timing", "tx {} {} {}", a.seq, a.capture_us, crate::media::frame::unix_micros());
        match Message::Audio(a).encode() {
            Ok(bytes) => {
                net.transport.send(peer, bytes, false);
                stats.audio_sent += 1;
            }
            Err(e) => tracing::warn!("audio packet not sent: {e}"),
        }
    }

    net.session.handle_timeout(now);
    net.flush_session();
    net.release_paced(peer, now);
    net.transport.poll(now);
    net.receive(now, &mut stats, &mut incoming_audio);
    // answer at once (accepts, state, resends) rather than a tick later
    net.session.handle_timeout(now);
    net.flush_session();
    net.release_paced(peer, now);
    net.transport.poll(now);
    stats.pacer_queue_ms = net.pacer.queued_ms();
    stats.pacer_dropped = net.pacer.dropped();
    stats.pacer_path_kbps = net.pacer.path_bps().map(|b| b / 1000);
    net.reassembler.expire(now);
    net.count_recovered(&mut stats);
    while let Some(frame) = net.reassembler.pop_ready() {
        tracing::trace!(
            target: "frame_timing",
            "complete {} {} {} {}",
            frame.meta.capture_us,
            frame.meta.keyframe,
            frame.gap,
            frame.data.len()
        );
        trace_stage("reassembled", frame.meta.capture_us);
        incoming.frames.push(frame);
    }
    if let Some(peer) = peer {
        if let Some(result) = net.probe_meter.result(now) {
            if let Ok(bytes) = Message::ProbeResult(result).encode() {
                net.transport.send(peer, bytes, false);
            }
        }
        if let Some(report) = net.rx.report_due(now) {
            if let Ok(bytes) = report.encode() {
                net.transport.send(peer, bytes, false);
            }
        }
        for n in net.reassembler.nacks(now) {
            if n.first {
                net.rx.on_missing(n.missing.as_ref().map(Vec::len));
            }
            if let Ok(bytes) = (Message::Nack {
                frame_id: n.frame_id,
                missing: n.missing,
            })
            .encode()
            {
                net.transport.send(peer, bytes, false);
                stats.nacks_sent += 1;
            }
        }
    }
    net.secure_events(&mut call);
    if let Some(bps) = net.rate.on_tick(now) {
        tracing::debug!(bps, "no reports: video bitrate halved");
        net.new_bitrate = Some(bps);
    }
    if let Some(bps) = net.new_bitrate.take() {
        // the parity takes its share of the target (more of it for frames of few fragments)
        let frame_bytes = (bps / 8 / net.fps.max(1)) as usize;
        feedback.target_bitrate =
            Some((f64::from(bps) * net.parity.media_share(frame_bytes)) as u32);
        feedback.bitrate_probed = std::mem::take(&mut net.bitrate_probed);
    }
    stats.video_bitrate = net.rate.bitrate();

    let (entity, ref mut stream, ref mut participant) = *remote;
    while let Some(event) = net.session.poll_event() {
        tracing::info!(?event, "call");
        match event {
            SessionEvent::Connected(addr) => {
                net.reassembler.reset();
                net.history.clear();
                // a new call starts protected, whatever the last one's link was
                if net.parity.group().is_none() {
                    net.parity = ParityPolicy::default();
                    net.new_bitrate = Some(net.rate.bitrate());
                }
                participant.name = addr.to_string();
                // a new call's path is timed anew
                net.pacer.forget_path();
                net.rx.new_path();
                net.prober.start(net.rate.bitrate(), net.rate.max(), now);
                net.sound_start.restart(now);
                stream.clear();
                commands.entity(entity).remove::<(CameraOff, Muted)>();
                feedback.send_keyframe = true;
                feedback.new_stream = true;
            }
            SessionEvent::Resumed => {
                // the path may have changed while it was down
                net.pacer.forget_path();
                net.rx.new_path();
                net.prober.start(net.rate.bitrate(), net.rate.max(), now);
                net.sound_start.restart(now);
                feedback.send_keyframe = true;
            }
            SessionEvent::PeerLeft | SessionEvent::Lost => stream.clear(),
            SessionEvent::RemoteMedia(m) => {
                if m.camera_on {
                    commands.entity(entity).remove::<CameraOff>();
                } else {
                    commands.entity(entity).insert(CameraOff);
                    stream.clear();
                }
                if m.muted {
                    commands.entity(entity).insert(Muted);
                } else {
                    commands.entity(entity).remove::<Muted>();
                }
            }
            SessionEvent::KeyframeRequested => feedback.send_keyframe = true,
        }
    }

    feedback.hold_video = net.prober.holds_media(now);

    let state = net.session.state();
    let filter = match state {
        CallState::Connected | CallState::Lost => net.session.peer_addr(),
        _ => None,
    };
    net.transport.set_peer(filter);
    call.state = state;
    call.peer = net.session.peer_addr();
    let sas = call
        .peer
        .filter(|_| state == CallState::Connected)
        .and_then(|p| net.transport.secure_mut().session_info(p))
        .map(|(_, sas)| sas);
    if sas != call.sas {
        call.sas = sas;
    }
    // what falls due before the next idle tick: paced video, the probe's datagrams, resend
    // requests (datagrams that come in wake the loop themselves)
    next.by_opt(net.pacer.next_due());
    next.by_opt(net.prober.next_due());
    next.by_opt(net.reassembler.next_nack_at());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(index: u16) -> VideoFragment {
        VideoFragment {
            frame_id: 1,
            index,
            count: 3,
            keyframe: false,
            codec: crate::proto::CodecId::H264,
            width: 640,
            height: 480,
            capture_us: 0,
            payload: vec![0; 1000],
        }
    }

    /// `n` single-fragment frames arrive.
    fn arrive(w: &mut RxWindow, n: usize, now: Instant) {
        for _ in 0..n {
            w.on_fragment(&frag(0), now);
        }
    }

    /// Moves `t` on by a report interval; the share lost that the report then due gives, ‰.
    fn next_loss(w: &mut RxWindow, t: &mut Instant) -> u16 {
        *t += REPORT_EVERY;
        match w.report_due(*t) {
            Some(Message::Report { loss_permille, .. }) => loss_permille,
            other => panic!("a report is due: {other:?}"),
        }
    }

    #[test]
    fn a_whole_missing_frame_counts_as_many_fragments_as_frames_have() {
        let t0 = Instant::now();
        let mut w = RxWindow::new(t0);
        // past a call's first seconds, where what was not seen yet counts as arrived
        let mut t = t0;
        for _ in 1..crate::media::loss_share::INTERVALS {
            assert_eq!(next_loss(&mut w, &mut t), 0);
        }
        // single-fragment frames: a lost frame is one lost fragment, so 1 in 20 is 5 %
        arrive(&mut w, 19, t0);
        w.on_missing(None);
        assert_eq!(next_loss(&mut w, &mut t), 50);
        // three fragments a frame: a lost frame is three
        for _ in 0..10 {
            for i in 0..3 {
                w.on_fragment(&frag(i), t0);
            }
        }
        w.on_missing(None);
        w.on_missing(Some(1));
        // 34 fragments are too few on their own: the share reaches back over the first
        // report's 20 as well (see `LossShare`)
        assert_eq!(next_loss(&mut w, &mut t), (5 * 1000 + 27) / 54);
    }

    #[test]
    fn a_new_path_forgets_the_last_ones_losses() {
        let t0 = Instant::now();
        let mut w = RxWindow::new(t0);
        let mut t = t0;
        // a call that lost half of what came
        for _ in 0..crate::media::loss_share::INTERVALS {
            arrive(&mut w, 10, t0);
            w.on_missing(Some(10));
            next_loss(&mut w, &mut t);
        }
        assert_eq!(next_loss(&mut w, &mut t), 500);
        // the next call (or the resumed one) loses 1 of 20: its first report weighs it against
        // the prior (1 of 96), not against the last call's losses
        w.new_path();
        arrive(&mut w, 19, t0);
        w.on_missing(Some(1));
        assert_eq!(next_loss(&mut w, &mut t), 10);
    }
}
