//! The audio path through the stages: microphone frames (capture), Opus (encode), the
//! jitter buffer and the speaker (decode). The network stage carries the packets.
//!
//! The playout clock is the speaker: a frame is taken from the jitter buffer only when the
//! speaker's ring runs low, so the two sound cards' drift is absorbed by the jitter buffer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;

use crate::components::{CallInfo, Clock, Local, Muted, NextTick, Remote, VideoSync};
use crate::devices::audio::{AudioError, MicSource, Microphone, Speaker, SpeakerSink, RATE};
use crate::media::frame::unix_micros;
use crate::media::jitter::{AudioPacket, JitterBuffer, JitterConfig, Playout};
use crate::media::opus_codec::{OpusDecoder, OpusEncoder, FRAME_MS, FRAME_SAMPLES};
use crate::media::playout_margin::PlayoutMargin;
use crate::media::refill;
use crate::media::sound_wait::SoundWait;
use crate::media::timescale::{samples_to_drop, shorten};
use crate::media::wake::Wake;
use crate::proto::AudioFrame;
use crate::session::CallState;
use crate::stats::CallStats;

/// How often a missing or failed sound device is retried.
const RETRY: Duration = Duration::from_secs(2);

/// The sound devices, reopened when they fail.
pub struct AudioDevices {
    /// The microphone, if one is open.
    pub mic: Option<Microphone>,
    /// The speaker, if one is open.
    pub speaker: Option<Speaker>,
    mic_src: MicSource,
    speaker_sink: SpeakerSink,
    buffer_ms: u32,
    /// Wakes the call loop when a frame of the microphone waits.
    wake: Option<Wake>,
    next_retry: Instant,
    warned: bool,
}

impl AudioDevices {
    /// Opens both; a device that is missing is reported once and retried later.
    pub fn open(
        mic_src: MicSource,
        speaker_sink: SpeakerSink,
        buffer_ms: u32,
        wake: Option<Wake>,
        now: Instant,
    ) -> Self {
        let mut d = Self {
            mic: None,
            speaker: None,
            mic_src,
            speaker_sink,
            buffer_ms,
            wake,
            next_retry: now,
            warned: false,
        };
        d.reopen(now);
        d
    }

    fn reopen(&mut self, now: Instant) {
        self.next_retry = now + RETRY;
        let needs = (self.mic.is_none() && self.mic_src.needs_sound_system())
            || (self.speaker.is_none() && self.speaker_sink.needs_sound_system());
        if needs && !crate::devices::audio::sound_system_present() {
            if !self.warned {
                eprintln!("prattle: no sound server or sound card found: the call goes on with video only (start PulseAudio or PipeWire, or use --mic tone and --speaker FILE.wav)");
                self.warned = true;
            }
            // synthetic devices need no sound system: open those anyway
            if !self.mic_src.needs_sound_system() || !self.speaker_sink.needs_sound_system() {
                self.open_missing(true);
            }
            return;
        }
        self.open_missing(false);
    }

    fn open_missing(&mut self, synthetic_only: bool) {
        let mut problems: Vec<AudioError> = Vec::new();
        if self.mic.is_none()
            && self.mic_src != MicSource::Off
            && !(synthetic_only && self.mic_src.needs_sound_system())
        {
            match Microphone::open(
                &self.mic_src,
                self.buffer_ms,
                self.wake.clone().map(|w| (w, FRAME_SAMPLES)),
            ) {
                Ok(m) => {
                    tracing::info!("microphone: {}", m.description());
                    self.mic = Some(m);
                }
                Err(e) => problems.push(e),
            }
        }
        if self.speaker.is_none()
            && self.speaker_sink != SpeakerSink::Off
            && !(synthetic_only && self.speaker_sink.needs_sound_system())
        {
            match Speaker::open(&self.speaker_sink, self.buffer_ms) {
                Ok(s) => {
                    tracing::info!("speaker: {}", s.description());
                    self.speaker = Some(s);
                }
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() && !self.warned {
            let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
            eprintln!("prattle: {}; the call goes on without it", all.join("; "));
            self.warned = true;
        }
        if problems.is_empty() && !synthetic_only {
            self.warned = false;
        }
    }

    /// Drops devices that reported an error and retries missing ones now and then.
    pub fn maintain(&mut self, now: Instant) {
        let failed = |c: &crate::devices::audio::AudioCounters| {
            c.failed.load(std::sync::atomic::Ordering::Relaxed)
        };
        if self.mic.as_ref().is_some_and(|m| failed(m.counters())) {
            tracing::warn!("microphone failed; retrying every {} s", RETRY.as_secs());
            self.mic = None;
        }
        if self.speaker.as_ref().is_some_and(|s| failed(s.counters())) {
            tracing::warn!("speaker failed; retrying every {} s", RETRY.as_secs());
            self.speaker = None;
        }
        let missing = (self.mic.is_none() && self.mic_src != MicSource::Off)
            || (self.speaker.is_none() && self.speaker_sink != SpeakerSink::Off);
        if missing && now >= self.next_retry {
            self.reopen(now);
        }
    }
}

/// Microphone frames waiting to be encoded, with their capture time.
#[derive(Resource, Debug, Default)]
pub struct CapturedAudio {
    /// `FRAME_MS` frames of 48 kHz mono.
    pub frames: VecDeque<(Vec<i16>, u64)>,
}

/// The Opus encoder and the packet counters.
pub struct AudioSender {
    encoder: Option<OpusEncoder>,
    seq: u32,
    timestamp: u32,
    /// The last packet encoded, carried again by the next one.
    previous: Option<Vec<u8>>,
}

impl AudioSender {
    /// An encoder at `bitrate`.
    pub fn new(bitrate: i32) -> Self {
        let encoder = match OpusEncoder::new(bitrate, 10) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("prattle: Opus encoder: {e}; sending no audio");
                None
            }
        };
        Self {
            encoder,
            seq: 0,
            timestamp: 0,
            previous: None,
        }
    }
}

/// Audio packets waiting to be sent.
#[derive(Resource, Debug, Default)]
pub struct OutgoingAudio {
    /// In order.
    pub packets: Vec<AudioFrame>,
}

/// Audio packets received, with their arrival time.
#[derive(Resource, Debug, Default)]
pub struct IncomingAudio {
    /// In arrival order.
    pub packets: Vec<(AudioFrame, Instant)>,
}

/// Whether the speaker is consuming at its real rate: a sound server can take seconds after
/// a stream opens before it pulls samples at full speed, and whatever is played out before
/// then only piles up as delay.
#[derive(Debug, Default)]
struct SpeakerPace {
    mark: Option<(Instant, u64)>,
    running: bool,
}

impl SpeakerPace {
    fn update(&mut self, now: Instant, consumed: u64) -> bool {
        // once running, a slow moment later is the jitter buffer's business, not a restart
        if self.running {
            return true;
        }
        match self.mark {
            None => self.mark = Some((now, consumed)),
            Some((t, c)) => {
                let dt = now.saturating_duration_since(t);
                if dt >= Duration::from_millis(200) {
                    let expected = dt.as_secs_f64() * f64::from(RATE);
                    self.running = (consumed - c.min(consumed)) as f64 >= 0.8 * expected;
                    self.mark = Some((now, consumed));
                }
            }
        }
        self.running
    }
}

/// The jitter buffer, the decoder and what playout measured.
pub struct AudioReceiver {
    pace: SpeakerPace,
    jitter: JitterBuffer,
    decoder: Option<OpusDecoder>,
    pcm: Vec<i16>,
    /// A frame played slightly faster.
    scaled: Vec<i16>,
    /// How far above one callback's worth the speaker's ring is kept.
    margin: PlayoutMargin,
    /// Sequence number and capture time of the packets received lately.
    captured: VecDeque<(u32, u64)>,
    /// From the latest frame's pop until it is heard, ms: the ring ahead of it, the wait
    /// for the device's request and the device's own delay.
    ahead_ms: f64,
    /// How long the sound waits for late pictures.
    wait: SoundWait,
    /// The speaker's underruns before it was fed: it starts from an empty ring, and is fed
    /// once it has shown that it plays (`SpeakerPace`, 200 ms), so ~40 callbacks of silence
    /// at its start are no glitch.
    underruns_unfed: u64,
}

/// How long before the device's next request its frame is decoded: the loop is woken for it
/// then (it used to find it on a 1 ms tick between 2 and 1 ms before the request).
const REFILL_LEAD: Duration = Duration::from_micros(1500);

/// Capture times remembered for the packets in the jitter buffer: more than its capacity.
const CAPTURE_TIMES: usize = 256;

impl AudioReceiver {
    /// A receiver with an empty jitter buffer.
    pub fn new() -> Self {
        Self {
            jitter: JitterBuffer::new(JitterConfig {
                frame: Duration::from_millis(u64::from(FRAME_MS)),
                min_delay: Duration::from_millis(u64::from(FRAME_MS / 2)),
                max_delay: Duration::from_millis(300),
                // twice the longest delay in frames
                capacity: (2 * 300 / FRAME_MS) as usize,
            }),
            decoder: OpusDecoder::new().ok(),
            pcm: vec![0; FRAME_SAMPLES],
            scaled: Vec::with_capacity(FRAME_SAMPLES),
            margin: PlayoutMargin::default(),
            pace: SpeakerPace::default(),
            captured: VecDeque::with_capacity(CAPTURE_TIMES),
            ahead_ms: 0.0,
            wait: SoundWait::default(),
            underruns_unfed: 0,
        }
    }
}

impl Default for AudioReceiver {
    fn default() -> Self {
        Self::new()
    }
}

/// Stage 2: takes whole frames from the microphone; discards them while muted.
pub fn capture_audio(
    mut devices: NonSendMut<AudioDevices>,
    clock: Res<Clock>,
    call: Res<CallInfo>,
    local: Single<Has<Muted>, With<Local>>,
    mut captured: ResMut<CapturedAudio>,
    mut next: ResMut<NextTick>,
) {
    devices.maintain(clock.now);
    if devices.mic.is_some() && devices.wake.is_none() {
        // nothing tells the loop when a frame waits: look often
        next.by(clock.now + crate::app::TICK);
    }
    // without a call nobody hears the microphone: its stream pauses, so that neither the
    // sound server nor the loop wakes every few milliseconds for it
    if let Some(m) = devices.mic.as_mut() {
        m.set_paused(call.state != CallState::Connected);
    }
    let Some(mic) = devices.mic.as_mut() else {
        return;
    };
    loop {
        let mut frame = vec![0i16; FRAME_SAMPLES];
        let waiting = mic.buffered();
        if !mic.read(&mut frame) {
            break;
        }
        // when the first sample of this frame was captured, from what the sound system said
        // at the latest delivery
        let age_us = mic.counters().oldest_sample_age_us(waiting, Instant::now());
        let capture_us = unix_micros().saturating_sub(age_us);
        if !*local {
            captured.frames.push_back((frame, capture_us));
        }
    }
    // a stalled loop must not turn into seconds of delay: keep at most 100 ms
    while captured.frames.len() * FRAME_SAMPLES > RATE as usize / 10 {
        captured.frames.pop_front();
    }
}

/// Stage 3: encodes captured frames while in a call.
pub fn encode_audio(
    mut sender: NonSendMut<AudioSender>,
    call: Res<CallInfo>,
    mut captured: ResMut<CapturedAudio>,
    mut out: ResMut<OutgoingAudio>,
) {
    let sender = &mut *sender;
    for (pcm, capture_us) in captured.frames.drain(..) {
        let timestamp = sender.timestamp;
        sender.timestamp = sender.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        if call.state != CallState::Connected {
            sender.previous = None;
            continue;
        }
        let Some(enc) = sender.encoder.as_mut() else {
            continue;
        };
        match enc.encode(&pcm) {
            Ok(payload) => {
                // each packet carries the one before it too (the network stage drops the copy
                // while the link is clean): ~20 bytes a packet at 5 ms frames, and a lone loss
                // is played from a real frame, not a guess
                let previous = sender.previous.replace(payload.clone());
                out.packets.push(AudioFrame {
                    seq: sender.seq,
                    timestamp,
                    capture_us,
                    payload,
                    previous,
                });
                sender.seq = sender.seq.wrapping_add(1);
            }
            Err(e) => {
                sender.previous = None;
                tracing::warn!("Opus encode: {e}");
            }
        }
    }
}

/// Stage 5: jitter buffer in, speaker out, paced by the speaker.
#[allow(clippy::too_many_arguments)]
pub fn play_audio(
    mut receiver: NonSendMut<AudioReceiver>,
    mut devices: NonSendMut<AudioDevices>,
    mut incoming: ResMut<IncomingAudio>,
    call: Res<CallInfo>,
    clock: Res<Clock>,
    remote: Single<Has<Muted>, With<Remote>>,
    mut stats: ResMut<CallStats>,
    mut sync: ResMut<VideoSync>,
    mut next: ResMut<NextTick>,
) {
    let rx = &mut *receiver;
    let devices = &mut *devices;
    let buffer_ms = devices.buffer_ms;
    let live = call.state == CallState::Connected && !*remote;
    if !live {
        incoming.packets.clear();
        rx.jitter.reset();
    }
    for (pkt, arrival) in incoming.packets.drain(..) {
        stats.audio_received += 1;
        if rx.captured.len() >= CAPTURE_TIMES {
            rx.captured.pop_front();
        }
        rx.captured.push_back((pkt.seq, pkt.capture_us));
        rx.jitter.push(
            AudioPacket {
                seq: pkt.seq,
                timestamp: pkt.timestamp,
                payload: pkt.payload,
            },
            arrival,
        );
        if let Some(p) = pkt.previous {
            rx.jitter.push_copy(pkt.seq.wrapping_sub(1), p);
        }
    }
    let Some(speaker) = devices.speaker.as_mut() else {
        return;
    };
    let consumed = speaker
        .counters()
        .samples
        .load(std::sync::atomic::Ordering::Relaxed);
    let underruns = speaker
        .counters()
        .underruns
        .load(std::sync::atomic::Ordering::Relaxed);
    // the speaker keeps playing (silence) between calls: paused too, it took another 4 % of a
    // core off a waiting peer and 6 % off the sound server, but the peer's first second of
    // sound in a call then had 0.2-0.7 % of its frames concealed (alternating e2e runs)
    if !rx.pace.update(clock.now, consumed) {
        rx.jitter.reset();
        rx.margin.idle(underruns);
        rx.underruns_unfed = underruns;
        return;
    }
    let margin_ms = rx.margin.update(clock.now, underruns);
    // pictures that come later than the sound may: the sound waits for them
    let shortfall = sync.0.sound_shortfall_us(clock.now);
    let before = rx.wait.extra();
    let wait = rx.wait.update(clock.now, shortfall);
    if wait != before {
        tracing::debug!(
            shortfall_us = shortfall,
            audio_us = sync.0.audio_delay_us(clock.now),
            "the sound waits {} ms for pictures",
            wait.as_millis()
        );
    }
    rx.jitter.set_extra_delay(wait);
    stats.audio_wait_ms = wait.as_secs_f64() * 1000.0;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    // what the speaker's callback takes and how long the sound system then holds it, as last
    // reported (one device buffer until the first callback)
    let (spk_chunk, spk_device_us) = (
        load(&speaker.counters().chunk),
        load(&speaker.counters().device_us),
    );
    let chunk = match spk_chunk {
        0 => f64::from(buffer_ms) * f64::from(RATE) / 1000.0,
        c => c as f64,
    };
    let device_us = match spk_device_us {
        0 => u64::from(buffer_ms) * 1000,
        us => us,
    };
    // the next frame goes into the ring just before the request that takes it, REFILL_LEAD
    // ahead of it (see `refill` for requests bigger than a frame)
    let refill = refill::plan(
        clock.now,
        speaker.counters().last_callback(),
        chunk as usize,
        FRAME_SAMPLES,
        RATE,
        REFILL_LEAD,
        (margin_ms * f64::from(RATE) / 1000.0) as usize,
    );
    let until_due_us = refill.until_due.map_or(0, |d| d.as_micros() as u64);
    let mut guard = 0;
    while speaker.buffered() < refill.low_water && guard < 8 {
        guard += 1;
        let buffered = speaker.buffered();
        if buffered >= refill.must && !rx.jitter.next_here() {
            // the margin waits for the packet rather than filling up with a guess
            break;
        }
        let mut excess_ms = 0.0;
        let n = match (rx.jitter.pop(clock.now), rx.decoder.as_mut()) {
            (Playout::Packet(p), Some(d)) => {
                excess_ms =
                    refill.excess_ms(rx.jitter.excess_ms(), buffered, RATE, f64::from(FRAME_MS));
                // when this frame will be heard: at the next request, after the ring ahead
                // of it, and the device's own delay after that
                let ahead_us = speaker.buffered() as u64 * 1_000_000 / u64::from(RATE)
                    + until_due_us
                    + device_us;
                rx.ahead_ms = ahead_us as f64 / 1000.0;
                let seq = rx.jitter.last_seq();
                if let Some(&(_, capture_us)) = rx.captured.iter().rev().find(|c| Some(c.0) == seq)
                {
                    sync.0
                        .audio_played(capture_us, unix_micros() + ahead_us, clock.now);
                }
                d.decode(&p, &mut rx.pcm)
            }
            (Playout::Conceal, Some(d)) => d.conceal(&mut rx.pcm),
            _ => {
                rx.pcm.fill(0);
                Ok(FRAME_SAMPLES)
            }
        };
        let n = match n {
            Ok(n) => n.min(rx.pcm.len()),
            Err(e) => {
                tracing::debug!("Opus decode: {e}");
                rx.pcm.fill(0);
                FRAME_SAMPLES
            }
        };
        let drop = samples_to_drop(excess_ms, n, RATE).min(refill.max_drop(
            rx.jitter.excess_ms(),
            buffered,
            n,
            f64::from(FRAME_MS),
        ));
        tracing::trace!(
            target: "audio_timing",
            "pop delay {:.1} target {:.1} ring {} excess {excess_ms:.1} drop {drop} concealed {} lost {}",
            rx.jitter.stats().current_delay_ms,
            rx.jitter.stats().target_delay_ms,
            speaker.buffered(),
            rx.jitter.stats().concealed,
            rx.jitter.stats().lost
        );
        if drop > 0 {
            shorten(&rx.pcm[..n], drop, &mut rx.scaled);
            speaker.write(&rx.scaled);
            stats.audio_accelerated_ms += drop as f64 * 1000.0 / f64::from(RATE);
        } else {
            speaker.write(&rx.pcm[..n]);
        }
    }
    // the loop comes back for the next frame the ring cannot serve; a frame waiting for its
    // packet is woken by it
    next.by(clock.now
        + refill
            .next_in_holding(speaker.buffered())
            .unwrap_or(crate::app::TICK));
    let j = rx.jitter.stats();
    stats.audio_lost = j.lost;
    stats.audio_recovered_fec = j.recovered_fec;
    stats.audio_concealed = j.concealed;
    stats.audio_late = j.late + j.duplicates + j.dropped_overflow;
    stats.jitter_delay_ms = j.current_delay_ms;
    stats.speaker_buffered_ms = speaker.buffered() as f64 * 1000.0 / f64::from(RATE);
    stats.speaker_samples = speaker
        .counters()
        .samples
        .load(std::sync::atomic::Ordering::Relaxed);
    stats.speaker_underruns = underruns.saturating_sub(rx.underruns_unfed);
    stats.speaker_margin_ms = margin_ms;
    let ms = |v: u64| v as f64 * 1000.0 / f64::from(RATE);
    stats.speaker_device_ms = spk_device_us as f64 / 1000.0;
    stats.speaker_chunk_ms = ms(spk_chunk);
    if let Some(mic) = devices.mic.as_ref() {
        stats.mic_device_ms = load(&mic.counters().device_us) as f64 / 1000.0;
        stats.mic_chunk_ms = ms(load(&mic.counters().chunk));
    }
    // mouth-to-ear: the frame itself, what waits in the jitter buffer and the speaker ring,
    // the microphone's device buffer and what the speaker's sound system holds (the network
    // adds its one-way delay on top)
    stats.mic_to_speaker_ms = live.then(|| {
        j.current_delay_ms
            + rx.ahead_ms
            + FRAME_SAMPLES as f64 * 1000.0 / f64::from(RATE)
            + f64::from(buffer_ms)
    });
}
