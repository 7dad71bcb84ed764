//! The camera: a source of pictures (OpenCV's `VideoCapture` or the built-in test pattern)
//! read on its own thread, because `read()` blocks for a frame interval. The thread hands
//! over only the newest frame; a source that fails is closed and retried, never fatal.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opencv::core::{Mat, MatTraitConst, MatTraitConstManual, Size};
use opencv::prelude::{VideoCaptureTrait, VideoCaptureTraitConst};
use opencv::{imgproc, videoio};

use crate::media::frame::unix_micros;
use crate::media::pattern::TestPattern;
use crate::media::wake::Wake;
use crate::media::{PixelFormat, VideoFrame};

/// Why the camera failed.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// The source could not be opened.
    #[error("cannot open camera '{source_name}': {reason}; use --camera test, a device index such as 0, a video file, or a GStreamer pipeline ending in appsink")]
    Open {
        /// What was asked for.
        source_name: String,
        /// What went wrong.
        reason: String,
    },
    /// A frame could not be read.
    #[error("camera read failed: {0}")]
    Read(String),
}

/// What `--camera` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSource {
    /// The built-in stamped test pattern.
    Test,
    /// A capture device by index (`/dev/video<N>`).
    Index(i32),
    /// A video file or a GStreamer pipeline.
    Path(String),
}

impl CameraSource {
    /// Parses `--camera`: `test`, a number, or anything OpenCV opens.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s.eq_ignore_ascii_case("test") {
            CameraSource::Test
        } else if let Ok(i) = s.parse::<i32>() {
            CameraSource::Index(i)
        } else {
            CameraSource::Path(s.to_string())
        }
    }

    /// How it is named to the user.
    pub fn describe(&self) -> String {
        match self {
            CameraSource::Test => "test pattern".into(),
            CameraSource::Index(i) => format!("camera {i}"),
            CameraSource::Path(p) => p.clone(),
        }
    }
}

/// Whether any video capture device exists on this machine.
pub fn any_device_present() -> bool {
    std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        })
        .unwrap_or(false)
}

/// A source of pictures; one implementation per kind of camera.
pub trait FrameSource: Send {
    /// Opens (or reopens) the source.
    fn open(&mut self) -> Result<(), CameraError>;
    /// Blocks until the next picture.
    fn read(&mut self) -> Result<VideoFrame, CameraError>;
    /// Releases the device.
    fn close(&mut self);
}

/// The built-in test pattern, paced to the frame rate.
#[derive(Debug)]
pub struct PatternSource {
    pattern: TestPattern,
    interval: Duration,
    next_due: Option<Instant>,
    frame_no: u32,
}

impl PatternSource {
    /// A pattern of `width`×`height` at `fps`.
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        Self {
            pattern: TestPattern::new(width, height),
            interval: Duration::from_secs(1) / fps.max(1),
            next_due: None,
            frame_no: 0,
        }
    }
}

/// Sleeps until `*next_due`, then schedules the next frame; catches up without bursts.
fn pace(next_due: &mut Option<Instant>, interval: Duration) {
    let now = Instant::now();
    let due = next_due.unwrap_or(now);
    if due > now {
        std::thread::sleep(due - now);
    }
    let after = Instant::now();
    *next_due = Some(if after > due + interval {
        after + interval
    } else {
        due + interval
    });
}

impl FrameSource for PatternSource {
    fn open(&mut self) -> Result<(), CameraError> {
        self.next_due = None;
        Ok(())
    }
    fn read(&mut self) -> Result<VideoFrame, CameraError> {
        pace(&mut self.next_due, self.interval);
        self.frame_no = self.frame_no.wrapping_add(1);
        Ok(self.pattern.render(self.frame_no, unix_micros()))
    }
    fn close(&mut self) {}
}

/// A camera, file or pipeline through OpenCV's `VideoCapture`.
pub struct OpenCvSource {
    source: CameraSource,
    width: u32,
    height: u32,
    interval: Duration,
    next_due: Option<Instant>,
    cap: Option<videoio::VideoCapture>,
    raw: Mat,
    converted: Mat,
    sized: Mat,
}

impl std::fmt::Debug for OpenCvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCvSource")
            .field("source", &self.source)
            .finish()
    }
}

impl OpenCvSource {
    /// A source for `source`, delivering `width`×`height` at up to `fps`.
    pub fn new(source: CameraSource, width: u32, height: u32, fps: u32) -> Self {
        Self {
            source,
            width,
            height,
            interval: Duration::from_secs(1) / fps.max(1),
            next_due: None,
            cap: None,
            raw: Mat::default(),
            converted: Mat::default(),
            sized: Mat::default(),
        }
    }

    fn open_capture(&self) -> opencv::Result<videoio::VideoCapture> {
        // OpenCV logs every failed backend probe to stderr; we report failures ourselves
        let _ = opencv::core::set_log_level(opencv::core::LogLevel::LOG_LEVEL_SILENT);
        match &self.source {
            CameraSource::Index(i) => {
                let mut cap = videoio::VideoCapture::new(*i, videoio::CAP_ANY)?;
                if cap.is_opened()? {
                    // devices take size and rate requests; a refusal is fine, we resize
                    let _ = cap.set(videoio::CAP_PROP_FRAME_WIDTH, f64::from(self.width));
                    let _ = cap.set(videoio::CAP_PROP_FRAME_HEIGHT, f64::from(self.height));
                    let _ = cap.set(
                        videoio::CAP_PROP_FPS,
                        1.0 / self.interval.as_secs_f64().max(1e-3),
                    );
                }
                Ok(cap)
            }
            CameraSource::Path(p) => {
                // a pipeline has '!' between elements; never set() on it: that kills it
                let api = if p.contains('!') {
                    videoio::CAP_GSTREAMER
                } else {
                    videoio::CAP_ANY
                };
                videoio::VideoCapture::from_file(p, api)
            }
            CameraSource::Test => Err(opencv::Error::new(0, "not an OpenCV source")),
        }
    }

    fn convert_frame(&mut self) -> opencv::Result<VideoFrame> {
        let src = match self.raw.channels() {
            3 => &self.raw,
            4 => {
                imgproc::cvt_color_def(&self.raw, &mut self.converted, imgproc::COLOR_BGRA2BGR)?;
                &self.converted
            }
            _ => {
                imgproc::cvt_color_def(&self.raw, &mut self.converted, imgproc::COLOR_GRAY2BGR)?;
                &self.converted
            }
        };
        let size = src.size()?;
        let target = Size::new(self.width as i32, self.height as i32);
        let out = if size != target {
            imgproc::resize(src, &mut self.sized, target, 0.0, 0.0, imgproc::INTER_AREA)?;
            &self.sized
        } else {
            src
        };
        let data = if out.is_continuous() {
            out.data_bytes()?.to_vec()
        } else {
            out.try_clone()?.data_bytes()?.to_vec()
        };
        Ok(VideoFrame {
            width: self.width,
            height: self.height,
            data,
            capture_us: unix_micros(),
            format: PixelFormat::Bgr,
        })
    }
}

impl FrameSource for OpenCvSource {
    fn open(&mut self) -> Result<(), CameraError> {
        let err = |reason: String| CameraError::Open {
            source_name: self.source.describe(),
            reason,
        };
        if let CameraSource::Path(p) = &self.source {
            let looks_like_file = !p.contains('!') && !p.contains("://");
            if looks_like_file && !std::path::Path::new(p).exists() {
                return Err(err("no such file".into()));
            }
        }
        let cap = self.open_capture().map_err(|e| err(e.to_string()))?;
        if !cap.is_opened().unwrap_or(false) {
            return Err(err("OpenCV could not open it".into()));
        }
        self.cap = Some(cap);
        self.next_due = None;
        Ok(())
    }

    fn read(&mut self) -> Result<VideoFrame, CameraError> {
        pace(&mut self.next_due, self.interval);
        let Some(cap) = self.cap.as_mut() else {
            return Err(CameraError::Read("not open".into()));
        };
        let ok = cap
            .read(&mut self.raw)
            .map_err(|e| CameraError::Read(e.to_string()))?;
        if !ok || self.raw.empty() {
            if matches!(&self.source, CameraSource::Path(p) if !p.contains('!')) {
                // a file ended: play it again from the start
                self.open()?;
                if let Some(cap) = self.cap.as_mut() {
                    let again = cap.read(&mut self.raw).unwrap_or(false);
                    if again && !self.raw.empty() {
                        return self
                            .convert_frame()
                            .map_err(|e| CameraError::Read(e.to_string()));
                    }
                }
            }
            return Err(CameraError::Read("no frame".into()));
        }
        self.convert_frame()
            .map_err(|e| CameraError::Read(e.to_string()))
    }

    fn close(&mut self) {
        self.cap = None;
    }
}

/// The camera's condition, as shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraStatus {
    /// Opening.
    Starting,
    /// Delivering pictures.
    Live,
    /// Turned off by the user.
    Off,
    /// Failed; being retried.
    Failed,
}

impl CameraStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => CameraStatus::Live,
            2 => CameraStatus::Off,
            3 => CameraStatus::Failed,
            _ => CameraStatus::Starting,
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            CameraStatus::Starting => 0,
            CameraStatus::Live => 1,
            CameraStatus::Off => 2,
            CameraStatus::Failed => 3,
        }
    }
}

#[derive(Debug)]
struct Shared {
    enabled: AtomicBool,
    stop: AtomicBool,
    status: AtomicU8,
    latest: Mutex<Option<VideoFrame>>,
    wake: std::sync::OnceLock<Wake>,
}

impl Shared {
    fn set_status(&self, s: CameraStatus) {
        self.status.store(s.to_u8(), Ordering::Relaxed);
    }
}

/// A running camera thread.
#[derive(Debug)]
pub struct Camera {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    description: String,
}

impl Camera {
    /// Starts the capture thread and waits for the first open to succeed or fail.
    pub fn start(
        mut source: Box<dyn FrameSource>,
        description: String,
    ) -> Result<Self, CameraError> {
        let shared = Arc::new(Shared {
            enabled: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            status: AtomicU8::new(CameraStatus::Starting.to_u8()),
            latest: Mutex::new(None),
            wake: std::sync::OnceLock::new(),
        });
        source.open()?;
        shared.set_status(CameraStatus::Live);
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                // like the codecs, capture yields to the call loop
                crate::media::priority::lower_current_thread(crate::media::priority::VIDEO_NICE);
                capture_loop(source, &s)
            })
            .map_err(|e| CameraError::Read(e.to_string()))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            description,
        })
    }

    /// Signals `wake` whenever a new picture is there (set once).
    pub fn set_wake(&self, wake: Wake) {
        let _ = self.shared.wake.set(wake);
    }

    /// The newest picture since the last call, if any.
    pub fn take_latest(&self) -> Option<VideoFrame> {
        self.shared.latest.lock().ok()?.take()
    }

    /// Turns the camera on or off; off releases the device.
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::Relaxed);
        if !on {
            if let Ok(mut l) = self.shared.latest.lock() {
                *l = None;
            }
        }
    }

    /// Its condition now.
    pub fn status(&self) -> CameraStatus {
        CameraStatus::from_u8(self.shared.status.load(Ordering::Relaxed))
    }

    /// What it is, for the user.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn capture_loop(mut source: Box<dyn FrameSource>, shared: &Shared) {
    let mut open = true;
    let mut warned = false;
    while !shared.stop.load(Ordering::Relaxed) {
        if !shared.enabled.load(Ordering::Relaxed) {
            if open {
                source.close();
                open = false;
            }
            shared.set_status(CameraStatus::Off);
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if !open {
            match source.open() {
                Ok(()) => {
                    open = true;
                    if warned {
                        tracing::info!("camera is back");
                    }
                    warned = false;
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!("{e}; retrying every second");
                        warned = true;
                    }
                    shared.set_status(CameraStatus::Failed);
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        match source.read() {
            Ok(frame) => {
                shared.set_status(CameraStatus::Live);
                if let Ok(mut l) = shared.latest.lock() {
                    *l = Some(frame);
                }
                if let Some(w) = shared.wake.get() {
                    w.signal();
                }
            }
            Err(e) => {
                if !warned {
                    tracing::warn!("{e}; reopening the camera");
                    warned = true;
                }
                shared.set_status(CameraStatus::Failed);
                source.close();
                open = false;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}
