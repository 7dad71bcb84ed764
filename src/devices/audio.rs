//! The sound doors: microphone and speaker. cpal's callbacks (or the synthetic tone and WAV
//! devices' threads) touch only lock-free ring buffers and atomics — no allocation, no lock,
//! no logging there. Everything is 48 kHz mono `i16` on our side of the ring.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::media::wake::Wake;

/// Our sample rate.
pub const RATE: u32 = 48_000;
/// Ring capacity: one second, far more than the call ever holds.
const RING: usize = RATE as usize;

/// Why a sound device is not available.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// No sound server or card.
    #[error("no sound device: {0}; the call goes on without audio (start PulseAudio, or use --mic tone / --speaker FILE.wav)")]
    NoDevice(String),
    /// The named device does not exist.
    #[error("no {kind} named '{name}'; see --list-devices for the names")]
    NotFound {
        /// microphone or speaker
        kind: &'static str,
        /// what was asked for
        name: String,
    },
    /// The device refused to open.
    #[error("cannot open {kind} '{name}': {reason}")]
    Open {
        /// microphone or speaker
        kind: &'static str,
        /// which
        name: String,
        /// what it said
        reason: String,
    },
    /// A WAV file could not be read or written.
    #[error("WAV file {path}: {reason}; give a readable 16-bit PCM WAV file (or a writable path for --speaker)")]
    Wav {
        /// the file
        path: String,
        /// what went wrong
        reason: String,
    },
}

/// What `--mic` names.
#[derive(Debug, Clone, PartialEq)]
pub enum MicSource {
    /// The system's default input.
    Default,
    /// An input device matched by name or id.
    Named(String),
    /// A synthetic sine tone at this frequency.
    Tone(f32),
    /// A WAV file, played in a loop.
    Wav(PathBuf),
    /// No microphone.
    Off,
}

impl MicSource {
    /// Parses `--mic`: `tone`, `tone:HZ`, `FILE.wav`, `none`, or a device name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("none") {
            return Ok(MicSource::Off);
        }
        if let Some(rest) = t.strip_prefix("tone") {
            let hz = match rest.strip_prefix(':') {
                Some(h) => h.parse::<f32>().ok().filter(|h| *h > 0.0 && *h < 20_000.0),
                None if rest.is_empty() => Some(440.0),
                None => None,
            };
            return hz.map(MicSource::Tone).ok_or_else(|| {
                format!("'{s}' is not a tone: give tone or tone:HZ with HZ between 1 and 20000, e.g. tone:440")
            });
        }
        if t.to_ascii_lowercase().ends_with(".wav") {
            return Ok(MicSource::Wav(PathBuf::from(t)));
        }
        Ok(MicSource::Named(t.to_string()))
    }
}

/// What `--speaker` names.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeakerSink {
    /// The system's default output.
    Default,
    /// An output device matched by name or id.
    Named(String),
    /// Record what would be played into a WAV file.
    Wav(PathBuf),
    /// No speaker.
    Off,
}

impl SpeakerSink {
    /// Parses `--speaker`: `FILE.wav`, `none`, or a device name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("none") {
            Ok(SpeakerSink::Off)
        } else if t.to_ascii_lowercase().ends_with(".wav") {
            Ok(SpeakerSink::Wav(PathBuf::from(t)))
        } else {
            Ok(SpeakerSink::Named(t.to_string()))
        }
    }
}

/// Counters shared with the real-time side.
#[derive(Debug, Default)]
pub struct AudioCounters {
    /// Output callbacks that found too few samples and played silence for the rest.
    pub underruns: AtomicU64,
    /// Input samples dropped because the ring was full (the call loop stalled).
    pub overruns: AtomicU64,
    /// Callbacks (or synthetic chunks) so far.
    pub callbacks: AtomicU64,
    /// Samples (48 kHz mono) moved so far.
    pub samples: AtomicU64,
    /// The device reported an error (unplugged, server gone).
    pub failed: AtomicBool,
    /// Samples the latest callback moved: the device's step.
    pub chunk: AtomicU64,
    /// How long the device holds a sample, µs, as the sound system reported at the latest
    /// callback: from the callback to the speaker, or from the microphone to the callback.
    pub device_us: AtomicU64,
    /// When the latest callback ran: ns after [`epoch`] plus one (0: none yet).
    pub last_callback_ns: AtomicU64,
}

/// The instant the real-time side's times are counted from.
pub fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl AudioCounters {
    /// Notes that a callback runs at `at` (called from the real-time side: no allocation).
    pub fn mark_callback(&self, at: Instant) {
        let ns = at.saturating_duration_since(epoch()).as_nanos() as u64;
        self.last_callback_ns.store(ns + 1, Ordering::Relaxed);
    }

    /// When the latest callback ran, if one has.
    pub fn last_callback(&self) -> Option<Instant> {
        match self.last_callback_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(epoch() + Duration::from_nanos(ns - 1)),
        }
    }

    /// For a microphone's counters: how long before `now` the oldest of the `waiting` samples
    /// in its ring was captured, µs (see [`oldest_sample_age_us`]).
    pub fn oldest_sample_age_us(&self, waiting: usize, now: Instant) -> u64 {
        let since_us = self
            .last_callback()
            .map_or(0, |t| now.saturating_duration_since(t).as_micros() as u64);
        oldest_sample_age_us(
            waiting as u64,
            self.chunk.load(Ordering::Relaxed),
            self.device_us.load(Ordering::Relaxed),
            since_us,
        )
    }
}

/// The longest a sound system is believed to hold a microphone's sample before delivering it,
/// µs (a Bluetooth headset's may take 200 ms).
pub const MAX_HELD_US: u64 = 500_000;

/// How long ago the oldest of `waiting` samples in a microphone's ring was captured, µs: the
/// latest delivery, `since_us` ago, brought `chunk` samples, the first of them captured
/// `held_us` before the delivery (as the sound system reports it: about one device buffer,
/// so the newest sample is about as old as the delivery), and the samples waiting before them
/// are older by their length. With nothing reported (`chunk` 0: a synthetic source, or no
/// delivery yet) the newest sample is taken to be as old as the delivery.
///
/// Until session 16 the capture stamp counted the whole ring plus one device buffer on top,
/// as if the newest sample had spent a buffer in the sound card after the delivery: every
/// frame of sound was stamped ~5 ms too early, and lip sync held pictures ~5 ms too long.
pub fn oldest_sample_age_us(waiting: u64, chunk: u64, held_us: u64, since_us: u64) -> u64 {
    let us = |samples: u64| samples * 1_000_000 / u64::from(RATE);
    // no report, or one no sound card makes (a driver's clock gone wrong): none
    let held_us = if chunk == 0 || held_us > MAX_HELD_US {
        0
    } else {
        held_us
    };
    // the newest sample's age at delivery: the first sample's less the chunk's length
    let newest_at_delivery = held_us.saturating_sub(us(chunk.saturating_sub(1)));
    since_us + newest_at_delivery + us(waiting.saturating_sub(1))
}

/// Converts device frames (any channel count, any rate) to 48 kHz mono, without allocating.
#[derive(Debug)]
pub struct Downmix {
    channels: usize,
    step: f64,
    pos: f64,
    last: f32,
}

impl Downmix {
    /// For a device delivering `channels` channels at `rate` Hz.
    pub fn new(channels: u16, rate: u32) -> Self {
        Self {
            channels: usize::from(channels.max(1)),
            step: f64::from(rate) / f64::from(RATE),
            pos: 0.0,
            last: 0.0,
        }
    }

    /// Feeds interleaved samples (as f32 in −1..1); calls `out` with each 48 kHz sample.
    pub fn feed(&mut self, data: &[f32], mut out: impl FnMut(i16)) {
        for frame in data.chunks(self.channels) {
            let s = frame.iter().sum::<f32>() / frame.len() as f32;
            if (self.step - 1.0).abs() < 1e-9 {
                out(to_i16(s));
                continue;
            }
            // linear interpolation between the previous and this input sample
            while self.pos < 1.0 {
                let v = self.last + (s - self.last) * self.pos as f32;
                out(to_i16(v));
                self.pos += self.step;
            }
            self.pos -= 1.0;
            self.last = s;
        }
    }
}

fn to_i16(v: f32) -> i16 {
    (v.clamp(-1.0, 1.0) * 32767.0) as i16
}

/// Whether a sound server or card is there at all; asking ALSA without one floods standard
/// error with library messages, so we look first.
pub fn sound_system_present() -> bool {
    let pulse = std::env::var("PULSE_SERVER")
        .ok()
        .and_then(|s| s.strip_prefix("unix:").map(PathBuf::from))
        .into_iter()
        .chain(
            std::env::var("XDG_RUNTIME_DIR")
                .ok()
                .map(|d| PathBuf::from(d).join("pulse/native")),
        )
        .any(|p| p.exists());
    let cards = std::fs::read_to_string("/proc/asound/cards")
        .map(|c| !c.contains("no soundcards") && !c.trim().is_empty())
        .unwrap_or(false);
    pulse || cards
}

impl MicSource {
    /// A real device rather than a synthetic one.
    pub fn needs_sound_system(&self) -> bool {
        matches!(self, MicSource::Default | MicSource::Named(_))
    }
}

impl SpeakerSink {
    /// A real device rather than a file.
    pub fn needs_sound_system(&self) -> bool {
        matches!(self, SpeakerSink::Default | SpeakerSink::Named(_))
    }
}

/// The cpal host: PulseAudio's native protocol when a server is there, else ALSA.
fn host() -> cpal::Host {
    cpal::default_host()
}

fn device_label(d: &cpal::Device) -> (String, String) {
    let id = d.id().map(|i| i.id().to_string()).unwrap_or_default();
    let name = d
        .description()
        .map(|x| x.name().to_string())
        .unwrap_or_default();
    (id, name)
}

fn find_device(devices: impl Iterator<Item = cpal::Device>, want: &str) -> Option<cpal::Device> {
    let want_l = want.to_ascii_lowercase();
    let all: Vec<cpal::Device> = devices.collect();
    // exact id first, then a substring of id or name
    let exact = all.iter().position(|d| device_label(d).0 == want);
    let idx = exact.or_else(|| {
        all.iter().position(|d| {
            let (id, name) = device_label(d);
            id.to_ascii_lowercase().contains(&want_l) || name.to_ascii_lowercase().contains(&want_l)
        })
    })?;
    all.into_iter().nth(idx)
}

/// Lists input and output devices, one per line, for `--list-devices`.
pub fn list_devices() -> Vec<String> {
    let h = host();
    let mut out = vec![format!("audio host: {}", h.id().name())];
    if let Ok(devs) = h.input_devices() {
        for d in devs {
            let (id, name) = device_label(&d);
            out.push(format!("  microphone  {id}  ({name})"));
        }
    }
    if let Ok(devs) = h.output_devices() {
        for d in devs {
            let (id, name) = device_label(&d);
            out.push(format!("  speaker     {id}  ({name})"));
        }
    }
    out
}

/// Finds the named (or default) input or output device; also returns the error maker for
/// failures opening it.
fn pick_device(
    input: bool,
    want: Option<&str>,
) -> Result<(cpal::Device, impl Fn(String) -> AudioError), AudioError> {
    let kind = if input { "microphone" } else { "speaker" };
    let h = host();
    let device = match want {
        Some(n) => {
            let found = if input {
                h.input_devices().map(|d| find_device(d, n))
            } else {
                h.output_devices().map(|d| find_device(d, n))
            };
            found
                .map_err(|e| AudioError::NoDevice(e.to_string()))?
                .ok_or_else(|| AudioError::NotFound {
                    kind,
                    name: n.to_string(),
                })?
        }
        None => if input {
            h.default_input_device()
        } else {
            h.default_output_device()
        }
        .ok_or_else(|| AudioError::NoDevice(format!("no default {kind}")))?,
    };
    let name = want.unwrap_or("default").to_string();
    let open_err = move |reason: String| AudioError::Open {
        kind,
        name: name.clone(),
        reason,
    };
    Ok((device, open_err))
}

fn stream_config(
    d: &cpal::Device,
    input: bool,
    buffer_ms: u32,
) -> Result<cpal::StreamConfig, String> {
    let def = if input {
        d.default_input_config()
    } else {
        d.default_output_config()
    }
    .map_err(|e| e.to_string())?;
    let wants_48k_mono = |c: &cpal::SupportedStreamConfigRange| {
        c.channels() == 1 && c.min_sample_rate() <= RATE && c.max_sample_rate() >= RATE
    };
    let supported: Vec<_> = if input {
        d.supported_input_configs()
            .map(|c| c.collect())
            .unwrap_or_default()
    } else {
        d.supported_output_configs()
            .map(|c| c.collect())
            .unwrap_or_default()
    };
    let (channels, rate) = if supported.iter().any(wants_48k_mono) {
        (1, RATE)
    } else {
        (def.channels(), def.sample_rate())
    };
    Ok(cpal::StreamConfig {
        channels,
        sample_rate: rate,
        buffer_size: cpal::BufferSize::Fixed(rate * buffer_ms / 1000),
    })
}

/// Whether a sound server stream is paused (corked: the server stops waking for it), and
/// whether pausing works at all. Synthetic devices always run.
#[derive(Debug, Default)]
struct Pause {
    paused: bool,
    broken: bool,
}

impl Pause {
    /// Pauses or resumes `stream`; returns whether it changed. A stream that fails to pause
    /// or resume is reported once and left running.
    fn set(&mut self, stream: Option<&cpal::Stream>, paused: bool, what: &str) -> bool {
        let Some(stream) = stream.filter(|_| !self.broken) else {
            return false;
        };
        if self.paused == paused {
            return false;
        }
        let result = if paused {
            stream.pause()
        } else {
            stream.play()
        };
        match result {
            Ok(()) => {
                self.paused = paused;
                true
            }
            Err(e) => {
                tracing::warn!("{what}: pausing or resuming failed ({e}); it keeps running");
                self.broken = true;
                if self.paused {
                    // it may be paused still: try to leave it running
                    let _ = stream.play();
                    self.paused = false;
                }
                false
            }
        }
    }
}

/// The microphone: a ring of 48 kHz mono samples filled by a callback or a thread.
pub struct Microphone {
    consumer: HeapCons<i16>,
    counters: Arc<AudioCounters>,
    _stream: Option<cpal::Stream>,
    worker: Option<Worker>,
    description: String,
    pause: Pause,
}

impl std::fmt::Debug for Microphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microphone")
            .field("description", &self.description)
            .finish()
    }
}

/// A synthetic device's thread, stopped on drop.
#[derive(Debug)]
struct Worker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs `chunk` every 5 ms of real time with the number of samples due, until stopped.
fn paced(stop: Arc<AtomicBool>, mut chunk: impl FnMut(usize) + Send + 'static) -> Worker {
    let s = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("audio-synth".into())
        .spawn(move || {
            let start = Instant::now();
            let mut done: u64 = 0;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                let due = (start.elapsed().as_secs_f64() * f64::from(RATE)) as u64;
                let n = (due - done.min(due)) as usize;
                if n > 0 {
                    chunk(n.min(RATE as usize));
                    done += n as u64;
                }
            }
        })
        .ok();
    Worker { stop, handle }
}

impl Microphone {
    /// Opens `src` with a device buffer of `buffer_ms`. With `wake` = (a wake signal, n), a
    /// delivery that leaves n samples or more waiting signals it (a sound server may deliver
    /// in pieces of half a millisecond: the reader wants whole frames).
    pub fn open(
        src: &MicSource,
        buffer_ms: u32,
        wake: Option<(Wake, usize)>,
    ) -> Result<Self, AudioError> {
        let (mut prod, consumer) = HeapRb::<i16>::new(RING).split();
        let signal = move |waiting: usize| {
            if let Some((wake, n)) = &wake {
                if waiting >= *n {
                    wake.signal();
                }
            }
        };
        let counters = Arc::new(AudioCounters::default());
        let c = Arc::clone(&counters);
        match src {
            MicSource::Off => Err(AudioError::NoDevice(
                "microphone turned off with --mic none".into(),
            )),
            MicSource::Tone(hz) => {
                let hz = *hz;
                let mut phase = 0f64;
                let mut buf = vec![0i16; RATE as usize];
                let worker = paced(Arc::new(AtomicBool::new(false)), move |n| {
                    for s in &mut buf[..n] {
                        *s = (phase.sin() * 0.5 * 32767.0) as i16;
                        phase = (phase
                            + 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(RATE))
                            % (2.0 * std::f64::consts::PI);
                    }
                    let pushed = prod.push_slice(&buf[..n]);
                    c.overruns.fetch_add((n - pushed) as u64, Ordering::Relaxed);
                    c.callbacks.fetch_add(1, Ordering::Relaxed);
                    c.mark_callback(Instant::now());
                    signal(prod.occupied_len());
                });
                Ok(Self {
                    consumer,
                    counters,
                    _stream: None,
                    worker: Some(worker),
                    description: format!("tone {hz} Hz"),
                    pause: Pause::default(),
                })
            }
            MicSource::Wav(path) => {
                let samples = read_wav(path)?;
                let mut pos = 0usize;
                let worker = paced(Arc::new(AtomicBool::new(false)), move |mut n| {
                    while n > 0 && !samples.is_empty() {
                        let take = n.min(samples.len() - pos);
                        let pushed = prod.push_slice(&samples[pos..pos + take]);
                        c.overruns
                            .fetch_add((take - pushed) as u64, Ordering::Relaxed);
                        pos = (pos + take) % samples.len();
                        n -= take;
                    }
                    c.callbacks.fetch_add(1, Ordering::Relaxed);
                    c.mark_callback(Instant::now());
                    signal(prod.occupied_len());
                });
                Ok(Self {
                    consumer,
                    counters,
                    _stream: None,
                    worker: Some(worker),
                    description: path.display().to_string(),
                    pause: Pause::default(),
                })
            }
            MicSource::Default | MicSource::Named(_) => {
                let want = match src {
                    MicSource::Named(n) => Some(n.as_str()),
                    _ => None,
                };
                let (device, open_err) = pick_device(true, want)?;
                let config = stream_config(&device, true, buffer_ms).map_err(&open_err)?;
                let mut mix = Downmix::new(config.channels, config.sample_rate);
                let in_ch = usize::from(config.channels.max(1));
                let c_err = Arc::clone(&counters);
                let stream = device
                    .build_input_stream::<f32, _, _>(
                        config,
                        move |data: &[f32], info: &cpal::InputCallbackInfo| {
                            c.mark_callback(Instant::now());
                            let ts = info.timestamp();
                            let held = ts.callback.duration_since(ts.capture);
                            c.device_us
                                .store(held.as_micros() as u64, Ordering::Relaxed);
                            c.chunk
                                .store((data.len() / in_ch) as u64, Ordering::Relaxed);
                            let (mut produced, mut dropped) = (0u64, 0u64);
                            mix.feed(data, |s| {
                                produced += 1;
                                if prod.try_push(s).is_err() {
                                    dropped += 1;
                                }
                            });
                            if dropped > 0 {
                                c.overruns.fetch_add(dropped, Ordering::Relaxed);
                            }
                            c.samples.fetch_add(produced, Ordering::Relaxed);
                            c.callbacks.fetch_add(1, Ordering::Relaxed);
                            signal(prod.occupied_len());
                        },
                        move |_e| c_err.failed.store(true, Ordering::Relaxed),
                        None,
                    )
                    .map_err(|e| open_err(e.to_string()))?;
                stream.play().map_err(|e| open_err(e.to_string()))?;
                Ok(Self {
                    consumer,
                    counters,
                    _stream: Some(stream),
                    worker: None,
                    description: device_label(&device).0,
                    pause: Pause::default(),
                })
            }
        }
    }

    /// Pauses the sound server's stream (while there is no call), or resumes it; what it
    /// captured before the pause is dropped.
    pub fn set_paused(&mut self, paused: bool) {
        if self.pause.set(self._stream.as_ref(), paused, "microphone") && !paused {
            self.consumer.clear();
        }
    }

    /// Whether its stream is paused.
    pub fn is_paused(&self) -> bool {
        self.pause.paused
    }

    /// Fills `out` if that many samples are waiting; returns whether it did.
    pub fn read(&mut self, out: &mut [i16]) -> bool {
        if self.consumer.occupied_len() < out.len() {
            return false;
        }
        self.consumer.pop_slice(out) == out.len()
    }

    /// Samples waiting.
    pub fn buffered(&self) -> usize {
        self.consumer.occupied_len()
    }

    /// Drops everything waiting (muted, or catching up after a stall).
    pub fn discard(&mut self) {
        self.consumer.clear();
    }

    /// Counters.
    pub fn counters(&self) -> &AudioCounters {
        &self.counters
    }

    /// What it is, for the user.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether a synthetic source is behind it.
    pub fn is_synthetic(&self) -> bool {
        self.worker.is_some()
    }
}

/// The speaker: a ring of 48 kHz mono samples drained by a callback or a WAV writer thread.
pub struct Speaker {
    producer: HeapProd<i16>,
    counters: Arc<AudioCounters>,
    _stream: Option<cpal::Stream>,
    _worker: Option<Worker>,
    description: String,
}

impl std::fmt::Debug for Speaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speaker")
            .field("description", &self.description)
            .finish()
    }
}

impl Speaker {
    /// Opens `sink` with a device buffer of `buffer_ms`.
    pub fn open(sink: &SpeakerSink, buffer_ms: u32) -> Result<Self, AudioError> {
        let (producer, mut cons) = HeapRb::<i16>::new(RING).split();
        let counters = Arc::new(AudioCounters::default());
        let c = Arc::clone(&counters);
        // set before any callback can ask for it
        let _ = epoch();
        match sink {
            SpeakerSink::Off => Err(AudioError::NoDevice(
                "speaker turned off with --speaker none".into(),
            )),
            SpeakerSink::Wav(path) => {
                let spec = hound::WavSpec {
                    channels: 1,
                    sample_rate: RATE,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                let wav_err = |e: hound::Error| AudioError::Wav {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                };
                let mut writer = hound::WavWriter::create(path, spec).map_err(wav_err)?;
                let mut buf = vec![0i16; RATE as usize];
                // the writer lives in the thread's closure; dropping it finalises the file
                let worker = paced(Arc::new(AtomicBool::new(false)), move |n| {
                    c.mark_callback(Instant::now());
                    let got = cons.pop_slice(&mut buf[..n]);
                    c.samples.fetch_add(n as u64, Ordering::Relaxed);
                    if got < n {
                        buf[got..n].fill(0);
                        c.underruns.fetch_add(1, Ordering::Relaxed);
                    }
                    for s in &buf[..n] {
                        let _ = writer.write_sample(*s);
                    }
                    // flush the header now and then so the file is readable while we run
                    if c.callbacks.fetch_add(1, Ordering::Relaxed) % 50 == 0 {
                        let _ = writer.flush();
                    }
                });
                Ok(Self {
                    producer,
                    counters,
                    _stream: None,
                    _worker: Some(worker),
                    description: path.display().to_string(),
                })
            }
            SpeakerSink::Default | SpeakerSink::Named(_) => {
                let want = match sink {
                    SpeakerSink::Named(n) => Some(n.as_str()),
                    _ => None,
                };
                let (device, open_err) = pick_device(false, want)?;
                let config = stream_config(&device, false, buffer_ms).map_err(&open_err)?;
                let channels = usize::from(config.channels.max(1));
                let step = f64::from(RATE) / f64::from(config.sample_rate);
                let mut pos = 0f64;
                let mut cur: f32 = 0.0;
                let c_err = Arc::clone(&counters);
                let stream = device
                    .build_output_stream::<f32, _, _>(
                        config,
                        move |out: &mut [f32], info: &cpal::OutputCallbackInfo| {
                            c.mark_callback(Instant::now());
                            let ts = info.timestamp();
                            let held = ts.playback.duration_since(ts.callback);
                            c.device_us
                                .store(held.as_micros() as u64, Ordering::Relaxed);
                            c.chunk
                                .store((out.len() / channels) as u64, Ordering::Relaxed);
                            let mut short = false;
                            for frame in out.chunks_mut(channels) {
                                // nearest-sample rate conversion: the server resamples for us
                                // in the usual 48 kHz case, where step is exactly 1
                                pos += step;
                                while pos >= 1.0 {
                                    pos -= 1.0;
                                    match cons.try_pop() {
                                        Some(s) => cur = f32::from(s) / 32768.0,
                                        None => {
                                            cur = 0.0;
                                            short = true;
                                        }
                                    }
                                }
                                frame.fill(cur);
                            }
                            if short {
                                c.underruns.fetch_add(1, Ordering::Relaxed);
                            }
                            c.samples
                                .fetch_add((out.len() / channels) as u64, Ordering::Relaxed);
                            c.callbacks.fetch_add(1, Ordering::Relaxed);
                        },
                        move |_e| c_err.failed.store(true, Ordering::Relaxed),
                        None,
                    )
                    .map_err(|e| open_err(e.to_string()))?;
                stream.play().map_err(|e| open_err(e.to_string()))?;
                Ok(Self {
                    producer,
                    counters,
                    _stream: Some(stream),
                    _worker: None,
                    description: device_label(&device).0,
                })
            }
        }
    }

    /// Queues samples for playing; returns how many fit.
    pub fn write(&mut self, pcm: &[i16]) -> usize {
        self.producer.push_slice(pcm)
    }

    /// Samples queued and not yet taken by the device.
    pub fn buffered(&self) -> usize {
        self.producer.occupied_len()
    }

    /// Counters.
    pub fn counters(&self) -> &AudioCounters {
        &self.counters
    }

    /// What it is, for the user.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// Reads a 16-bit PCM WAV file as 48 kHz mono.
fn read_wav(path: &std::path::Path) -> Result<Vec<i16>, AudioError> {
    let err = |reason: String| AudioError::Wav {
        path: path.display().to_string(),
        reason,
    };
    let mut r = hound::WavReader::open(path).map_err(|e| err(e.to_string()))?;
    let spec = r.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(err("not 16-bit PCM".into()));
    }
    let raw: Vec<f32> = r
        .samples::<i16>()
        .map(|s| s.map(|v| f32::from(v) / 32768.0))
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::with_capacity(raw.len());
    Downmix::new(spec.channels, spec.sample_rate).feed(&raw, |s| out.push(s));
    if out.is_empty() {
        return Err(err("no samples".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_sample_is_dated_from_the_latest_delivery() {
        // a 5 ms delivery (240 samples) whose first sample the server captured 5 ms before
        // it, just now: the newest sample is fresh and a whole frame waiting is 5 ms old
        assert_eq!(oldest_sample_age_us(240, 240, 5_000, 0), 5_000);
        // 2 ms after the delivery, everything is 2 ms older
        assert_eq!(oldest_sample_age_us(240, 240, 5_000, 2_000), 7_000);
        // a frame and a half waiting: the older half frame came in the delivery before
        assert_eq!(oldest_sample_age_us(360, 240, 5_000, 0), 7_500);
        // half of a 10 ms delivery already read: the oldest sample is in its middle
        assert_eq!(oldest_sample_age_us(240, 480, 10_000, 0), 5_000);
        // a sound card that keeps each sample 3 ms before delivering it
        assert_eq!(oldest_sample_age_us(240, 240, 8_000, 0), 8_000);
        // a server that says less than the delivery's length: the newest is not in the future
        assert_eq!(oldest_sample_age_us(240, 240, 4_600, 0), 4_979);
        // nothing reported (a synthetic source): as old as the ring is long
        assert_eq!(oldest_sample_age_us(240, 0, 0, 1_000), 5_979);
        // a report no sound card makes is not believed
        assert_eq!(oldest_sample_age_us(240, 240, 30_000_000, 0), 4_979);
    }

    #[test]
    fn parse_mic_and_speaker() {
        assert_eq!(MicSource::parse("tone"), Ok(MicSource::Tone(440.0)));
        assert_eq!(MicSource::parse("tone:880"), Ok(MicSource::Tone(880.0)));
        assert!(MicSource::parse("tone:abc").is_err());
        assert!(MicSource::parse("tone:0").is_err());
        assert_eq!(
            MicSource::parse("a.WAV"),
            Ok(MicSource::Wav("a.WAV".into()))
        );
        assert_eq!(
            MicSource::parse("micA.monitor"),
            Ok(MicSource::Named("micA.monitor".into()))
        );
        assert_eq!(SpeakerSink::parse("none"), Ok(SpeakerSink::Off));
        assert_eq!(
            SpeakerSink::parse("out.wav"),
            Ok(SpeakerSink::Wav("out.wav".into()))
        );
    }

    #[test]
    fn downmix_halves_rate_and_averages_channels() {
        let mut d = Downmix::new(2, 96_000);
        let data: Vec<f32> = (0..960).flat_map(|_| [0.5, -0.5]).collect();
        let mut n = 0;
        d.feed(&data, |s| {
            assert_eq!(s, 0);
            n += 1;
        });
        assert!((479..=481).contains(&n), "{n}");
        let mut up = Downmix::new(1, 24_000);
        let mut m = 0;
        up.feed(&vec![0.25; 480], |_| m += 1);
        assert!((959..=961).contains(&m), "{m}");
    }

    #[test]
    fn the_microphone_wakes_the_reader_once_a_whole_frame_waits() {
        // deliveries of ~5 ms (240 samples) leave a 240-sample frame waiting at once
        let (wake, woken) = Wake::new().expect("eventfd");
        let mut mic =
            Microphone::open(&MicSource::Tone(440.0), 5, Some((wake, 240))).expect("tone");
        std::thread::sleep(Duration::from_millis(100));
        assert!(woken.take(), "signalled");
        assert!(mic.buffered() >= 240, "{} samples waiting", mic.buffered());
        // a frame of 0.5 s is not there after 100 ms: no nudge for the pieces before it
        let (wake, woken) = Wake::new().expect("eventfd");
        let _mic =
            Microphone::open(&MicSource::Tone(440.0), 5, Some((wake, 24_000))).expect("tone");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!woken.take(), "signalled early");
        std::thread::sleep(Duration::from_millis(600));
        assert!(woken.take(), "signalled at last");
        mic.discard();
    }

    #[test]
    fn tone_microphone_delivers_in_real_time_and_wav_speaker_records() {
        let mut mic = Microphone::open(&MicSource::Tone(1000.0), 10, None).expect("tone");
        std::thread::sleep(Duration::from_millis(200));
        let n = mic.buffered();
        assert!(n > 4_800 && n < 20_000, "about 0.2 s of samples: {n}");
        let mut frame = vec![0i16; 960];
        assert!(mic.read(&mut frame));
        assert!(frame.iter().any(|&s| s > 10_000), "a loud tone");
        let dir = std::env::temp_dir().join(format!("prattle-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("out.wav");
        {
            let mut spk = Speaker::open(&SpeakerSink::Wav(path.clone()), 10).expect("wav");
            assert_eq!(spk.write(&frame), 960);
            std::thread::sleep(Duration::from_millis(100));
        }
        let back = read_wav(&path).expect("readable");
        assert!(back.len() >= 960, "{}", back.len());
        assert!(back.iter().any(|&s| s > 10_000));
    }
}
