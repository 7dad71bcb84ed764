//! Builds the World and the Schedule (stages in tick order) and runs the tick loop.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;

use crate::cli::{Options, UsageError};
use crate::components::{
    CallInfo, CameraOff, Clock, Control, Incoming, KeyframeFeedback, Local, Muted, NextTick,
    Outgoing, Participant, Remote, VideoStream, VideoSync,
};
use crate::devices::audio::{MicSource, SpeakerSink};
use crate::devices::camera::{
    self, Camera, CameraError, CameraSource, OpenCvSource, PatternSource,
};
use crate::devices::window::WindowError;
use crate::devices::window_thread::WindowThread;
use crate::keys::KeyStore;
use crate::media::codec::EncoderSettings;
use crate::media::lip_sync::LipSync;
use crate::media::rate::RateController;
use crate::media::wake::Wake;
use crate::net::loop_wait::LoopWait;
use crate::net::secure::{Auth, SecureEndpoint};
use crate::net::{NetError, Transport};
use crate::proto::{Reassembler, SendHistory};
use crate::session::{Session, SessionConfig};
use crate::stats::{CallStats, StatsWriter};
use crate::systems::audio::{
    capture_audio, encode_audio, play_audio, AudioDevices, AudioReceiver, AudioSender,
    CapturedAudio, IncomingAudio, OutgoingAudio,
};
use crate::systems::capture::{capture, CameraDevice};
use crate::systems::decode::{decode, Decoder};
use crate::systems::encode::{encode, Encoder};
use crate::systems::input::{input, StdinKeys};
use crate::systems::network::{network, Network, RxWindow};
use crate::systems::render::{
    render, stats_line, write_stats, RenderSettings, RenderState, StatsOutput,
};

/// The finest step of the loop's timing: a stage that has to watch something no thread tells
/// it about (the speaker's ring before its requests are timed) asks for a tick this soon.
pub const TICK: Duration = Duration::from_millis(1);
/// The longest the loop sleeps when nothing is due and no thread wakes it: what only needs
/// looking at now and then (keys, session timers, reports, stats). A 1 ms tick woke the loop
/// 1000 times a second: in alternating e2e runs without sound each 480p peer took 16-18 % of a
/// core that way and 12-15 % this way (the loop wakes ~370 times a second).
pub const IDLE_TICK: Duration = Duration::from_millis(4);
/// A due time closer than this is slept through anyway, so that nothing spins.
const MIN_SLEEP: Duration = Duration::from_micros(200);
/// The call loop's real-time priority: low, above every ordinary thread and under the sound
/// server's own (PulseAudio and PipeWire ask for 5–20).
const LOOP_RT_PRIORITY: i32 = 3;
/// The video bitrate never goes below this (the ladder's smallest steps fit under it).
const MIN_VIDEO_BPS: u32 = 50_000;
/// MJPEG starts at most here and climbs while the link keeps up. A third of its most (4.4
/// Mbit/s at 720p) sent a second of frames into a 1 Mbit/s link's queue and lost a quarter of
/// them; from 0.8 Mbit/s 91.5–100 % were shown, and on a clean link 720p reaches full size
/// after about 8 s.
const MJPEG_START_BPS: u32 = 800_000;

/// Why the app could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad command-line input.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The socket.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The camera.
    #[error(transparent)]
    Camera(#[from] CameraError),
    /// The window.
    #[error(transparent)]
    Window(#[from] WindowError),
    /// The video encoder could not be made.
    #[error("video encoder: {0}; try --codec mjpeg")]
    Codec(String),
    /// The key files.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyStoreError),
    /// The secure channel could not be set up.
    #[error("secure channel: {0}")]
    Secure(#[from] crate::net::secure::SecureError),
    /// The call failed in a way that ends it (a wrong pairing code).
    #[error("{0}")]
    Call(String),
    /// The loop's wake-up descriptor could not be made.
    #[error(
        "cannot make the call loop's wake-up (eventfd): {0}; raise the open-file limit (ulimit -n)"
    )]
    Wake(std::io::Error),
    /// The stats file.
    #[error("cannot write stats file {path}: {source}; give a writable path to --stats")]
    Stats {
        /// The path given.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
}

impl AppError {
    /// The process exit code: 2 for anything the user can fix on the command line.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Usage(_)
            | AppError::Net(_)
            | AppError::Camera(_)
            | AppError::Stats { .. } => 2,
            AppError::Window(_) | AppError::Keys(_) | AppError::Secure(_) | AppError::Codec(_) => 2,
            AppError::Call(_) | AppError::Wake(_) => 1,
        }
    }
}

/// Audio devices and the camera indices that open, one per line.
pub fn list_devices() -> Vec<String> {
    let mut out = crate::devices::audio::list_devices();
    out.push("cameras that open:".into());
    let found: Vec<String> = (0..10)
        .filter(|i| std::path::Path::new(&format!("/dev/video{i}")).exists())
        .filter(|i| {
            let mut s = OpenCvSource::new(CameraSource::Index(*i), 640, 480, 30);
            camera::FrameSource::open(&mut s).is_ok()
        })
        .map(|i| format!("  camera      {i}"))
        .collect();
    if found.is_empty() {
        out.push("  none (use --camera test, a video file, or a GStreamer pipeline)".into());
    }
    out.extend(found);
    out
}

/// A call, ready to run.
pub struct App {
    world: World,
    schedule: Schedule,
    duration: Option<Duration>,
    realtime: bool,
    /// The loop sleeps until a datagram arrives, a thread with something for the next tick
    /// signals, or the tick is due.
    wait: LoopWait,
}

/// The address peers reach us at, for the status line.
fn reachable_at(bound: SocketAddr) -> String {
    let ip = if bound.ip().is_unspecified() {
        if_addrs::get_if_addrs()
            .ok()
            .and_then(|ifs| {
                ifs.into_iter()
                    .map(|i| i.ip())
                    .find(|ip| ip.is_ipv4() && !ip.is_loopback())
            })
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        bound.ip()
    };
    SocketAddr::new(ip, bound.port()).to_string()
}

fn open_camera(opts: &Options) -> Result<Camera, CameraError> {
    let (w, h) = opts.size;
    let source = match &opts.camera {
        Some(s) => CameraSource::parse(s),
        None if camera::any_device_present() => CameraSource::Index(0),
        None => {
            eprintln!("prattle: no camera found: showing the built-in test pattern (choose a camera with --camera)");
            CameraSource::Test
        }
    };
    let start = |source: &CameraSource| -> Result<Camera, CameraError> {
        let frames: Box<dyn camera::FrameSource> = match source {
            CameraSource::Test => Box::new(PatternSource::new(w, h, opts.fps)),
            other => Box::new(OpenCvSource::new(other.clone(), w, h, opts.fps)),
        };
        Camera::start(frames, source.describe())
    };
    match start(&source) {
        Ok(c) => Ok(c),
        Err(e) if opts.camera.is_none() => {
            eprintln!("prattle: {e}; showing the built-in test pattern instead");
            start(&CameraSource::Test)
        }
        Err(e) => Err(e),
    }
}

impl App {
    /// Opens every device and builds the world.
    pub fn build(opts: &Options) -> Result<Self, AppError> {
        let dial = opts.peer_addr()?;
        let bind = opts.bind_addr(dial);
        let keys = KeyStore::open(opts.config_dir.as_deref())?;
        let identity = keys.identity()?;
        let code = match (&opts.code, dial) {
            (None, _) => None,
            (Some(c), Some(_)) if c.trim().is_empty() => return Err(UsageError::CodeMissing.into()),
            (Some(c), None) if c.trim().is_empty() => Some(SecureEndpoint::generate_code()),
            (Some(c), _) => Some(c.clone()),
        };
        let auth = match &code {
            Some(c) => Auth::Code(c.clone()),
            None => Auth::Tofu,
        };
        let secure = SecureEndpoint::new(identity, auth, Instant::now())?;
        let transport = Transport::bind(bind, secure)?;
        let bound = transport.local_addr().unwrap_or(bind);
        let camera = open_camera(opts)?;
        tracing::info!("camera: {}", camera.description());

        let now = Instant::now();
        let mut world = World::new();
        let call = CallInfo {
            state: if dial.is_some() {
                crate::session::CallState::Dialing
            } else {
                crate::session::CallState::Waiting
            },
            peer: None,
            dial,
            reachable_at: reachable_at(bound),
            sas: None,
            code: code.clone().filter(|_| dial.is_none()),
            warning: None,
            fatal: None,
        };
        if let (Some(c), None) = (&code, dial) {
            eprintln!("prattle: your one-time code is {c}: the caller gives --code {c}");
        }
        if !opts.headless {
            let title = crate::systems::render::title(&call);
            world.insert_resource(WindowThread::open(
                &title,
                opts.window,
                opts.size,
                opts.renderer,
            )?);
        }
        if let Some(path) = &opts.stats {
            let writer = StatsWriter::create(path).map_err(|source| AppError::Stats {
                path: path.display().to_string(),
                source,
            })?;
            let interval = Duration::from_millis(opts.stats_interval);
            world.insert_resource(StatsOutput {
                writer,
                next: now + interval,
                interval,
            });
        }
        world.insert_resource(Clock { now, start: now });
        world.insert_resource(NextTick(now));
        world.insert_resource(Control::default());
        world.insert_resource(call);
        world.insert_resource(StdinKeys::spawn());
        let (wake, woken) = Wake::new().map_err(AppError::Wake)?;
        camera.set_wake(wake.clone());
        world.insert_resource(CameraDevice(camera));
        let encoder = Encoder::new(
            EncoderSettings {
                codec: opts.codec,
                width: opts.size.0,
                height: opts.size.1,
                fps: opts.fps,
                bitrate: opts.bitrate,
                quality: opts.quality,
            },
            Some(wake.clone()),
        )
        .map_err(|e| AppError::Codec(e.to_string()))?;
        world.insert_resource(encoder);
        world.insert_resource(Decoder::new(
            Some(wake.clone()),
            Some((opts.codec, opts.size.0, opts.size.1)),
        ));
        // a datagram, or a whole frame from the microphone, wakes the loop at once
        let wait = LoopWait::new(transport.raw_fd(), woken);
        // MJPEG's most is what quality 75 costs (about 0.6 bit per pixel); on a congested
        // link its quality and then the sent size follow the target down
        let (start_cap, most) = match opts.codec {
            crate::proto::CodecId::H264 => (u32::MAX, opts.bitrate),
            crate::proto::CodecId::Mjpeg => (
                MJPEG_START_BPS,
                (f64::from(opts.size.0 * opts.size.1 * opts.fps) * 0.6).min(f64::from(u32::MAX))
                    as u32,
            ),
        };
        let rate = RateController::new(
            RateController::start_for(MIN_VIDEO_BPS, most).min(start_cap),
            MIN_VIDEO_BPS,
            most,
        );
        world.insert_resource(Network {
            transport,
            session: Session::new(rand::random(), dial, SessionConfig::default(), now),
            reassembler: Reassembler::default(),
            history: SendHistory::default(),
            resend_budget: Default::default(),
            pacer: crate::net::pacer::Pacer::new(rate.bitrate()),
            prober: Default::default(),
            probe_meter: Default::default(),
            sound_start: Default::default(),
            rx: RxWindow::new(now),
            // the encoder starts where the rate controller does
            new_bitrate: Some(rate.bitrate()),
            bitrate_probed: false,
            rate,
            parity: Default::default(),
            fps: opts.fps,
            told_version: false,
            known_peers: keys.known_peers(),
            keys,
        });
        world.insert_resource(Outgoing::default());
        world.insert_resource(Incoming::default());
        world.insert_resource(KeyframeFeedback::default());
        world.insert_resource(VideoSync(LipSync::new(opts.lip_sync.0)));
        world.insert_resource(CallStats::default());
        world.insert_resource(RenderSettings {
            mirror: !opts.no_mirror,
            idle_redraw: Duration::from_millis(250),
            source_size: opts.size,
        });
        world.insert_resource(RenderState::default());
        world.insert_resource(CapturedAudio::default());
        world.insert_resource(OutgoingAudio::default());
        world.insert_resource(IncomingAudio::default());
        let mic = opts.mic.clone().unwrap_or(MicSource::Default);
        let speaker = opts.speaker.clone().unwrap_or(SpeakerSink::Default);
        world.insert_non_send(AudioDevices::open(
            mic,
            speaker,
            opts.audio_buffer_ms,
            Some(wake.clone()),
            now,
        ));
        world.insert_non_send(AudioSender::new(opts.audio_bitrate));
        // a frame is played out when the speaker holds less than one device buffer plus a
        // margin that follows the underruns (see `PlayoutMargin`)
        world.insert_non_send(AudioReceiver::new());
        world.spawn((
            Participant { name: "me".into() },
            Local,
            VideoStream::default(),
        ));
        world.spawn((
            Participant {
                name: "peer".into(),
            },
            Remote,
            VideoStream::default(),
        ));

        let mut schedule = Schedule::default();
        schedule.set_executor(SingleThreadedExecutor::new());
        schedule.add_systems(
            (
                input,
                (capture, capture_audio),
                (encode, encode_audio),
                network,
                (decode, play_audio),
                render,
                write_stats,
            )
                .chain(),
        );
        Ok(Self {
            world,
            schedule,
            duration: opts.duration.map(Duration::from_secs_f64),
            realtime: !opts.no_realtime,
            wait,
        })
    }

    /// Runs ticks until the user quits or the duration is over.
    pub fn run(mut self) -> Result<(), AppError> {
        let start = Instant::now();
        let mut realtime = false;
        if self.realtime {
            // only the loop and the threads it starts from now on (the sound system's, when a
            // device is reopened); the video threads put themselves back in the ordinary class
            realtime = crate::media::priority::realtime_current_thread(LOOP_RT_PRIORITY);
            tracing::info!(
                "call loop: {}",
                if realtime {
                    "real-time round-robin scheduling"
                } else {
                    "ordinary scheduling (real-time not permitted)"
                }
            );
        }
        let mut guard = crate::media::priority::RealtimeGuard::new();
        loop {
            let now = Instant::now();
            self.world.resource_mut::<Clock>().now = now;
            self.world.resource_mut::<NextTick>().0 = now + IDLE_TICK;
            if let Some(d) = self.duration {
                if now.saturating_duration_since(start) >= d {
                    self.world.resource_mut::<Control>().quit = true;
                }
            }
            self.schedule.run(&mut self.world);
            if realtime && guard.overloaded(now, now.elapsed()) {
                crate::media::priority::leave_realtime();
                realtime = false;
                tracing::warn!(
                    "call loop busy over half of a second: back to ordinary scheduling, so the \
                     rest of the machine keeps running"
                );
            }
            if self.world.resource::<Control>().quit {
                break;
            }
            if let Some(why) = self.world.resource::<CallInfo>().fatal.clone() {
                self.final_stats();
                return Err(AppError::Call(why));
            }
            // the next tick when something is due, or at once when a thread has work for it
            let due = self.world.resource::<NextTick>().0;
            self.wait
                .wait(due.saturating_duration_since(Instant::now()).max(MIN_SLEEP));
        }
        self.final_stats();
        Ok(())
    }

    fn final_stats(&mut self) {
        let mut q = self
            .world
            .query_filtered::<(Has<CameraOff>, Has<Muted>), With<Local>>();
        let local = q.iter(&self.world).next().unwrap_or_default();
        let mut q = self
            .world
            .query_filtered::<(Has<CameraOff>, Has<Muted>), With<Remote>>();
        let remote = q.iter(&self.world).next().unwrap_or_default();
        let line = stats_line(
            self.world.resource::<Clock>(),
            self.world.resource::<CallInfo>(),
            self.world.resource::<Network>(),
            self.world.resource::<CallStats>(),
            local,
            remote,
        );
        if let Some(mut out) = self.world.get_resource_mut::<StatsOutput>() {
            let _ = out.writer.write(&line);
        }
        tracing::info!(
            shown = line.frames_shown,
            p50 = ?line.latency_ms_p50_total,
            p99 = ?line.latency_ms_p99_total,
            "call ended"
        );
    }
}
