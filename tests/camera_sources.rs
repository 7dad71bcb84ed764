//! The camera door with real OpenCV sources: a video file, a GStreamer pipeline, and a
//! source that fails mid-call.

mod common;

use std::time::{Duration, Instant};

use opencv::core::{Mat, Size, Vec3b};
use opencv::prelude::VideoWriterTrait;
use opencv::videoio::VideoWriter;
use prattle::devices::camera::{
    Camera, CameraError, CameraSource, CameraStatus, FrameSource, OpenCvSource,
};
use prattle::media::pattern::TestPattern;
use prattle::media::stamp::{read_stamp, Picture, Rect};
use prattle::media::VideoFrame;

/// Writes `n` stamped pattern frames to an MJPG .avi with OpenCV's VideoWriter.
fn write_clip(path: &std::path::Path, n: u32) {
    let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G').expect("fourcc");
    let mut w = VideoWriter::new(path, fourcc, 30.0, Size::new(640, 480), true).expect("writer");
    let mut p = TestPattern::new(640, 480);
    for i in 1..=n {
        let f = p.render(i, u64::from(i));
        let m = Mat::new_rows_cols_with_bytes::<Vec3b>(480, 640, &f.data).expect("mat");
        w.write(&m).expect("write frame");
    }
}

#[test]
fn a_video_file_plays_and_loops_at_the_requested_size() {
    let dir = common::scratch("clip");
    let clip = dir.join("clip.avi");
    write_clip(&clip, 10);
    let mut src = OpenCvSource::new(
        CameraSource::Path(clip.display().to_string()),
        320,
        240,
        100,
    );
    src.open().expect("opens the clip");
    let mut stamps = Vec::new();
    for _ in 0..25 {
        let f = src.read().expect("reads past the end by looping");
        assert_eq!((f.width, f.height, f.data.len()), (320, 240, 320 * 240 * 3));
        let pic = Picture::bgr(&f.data, 320, 240);
        if let Some(s) = read_stamp(&pic, Rect::full(320, 240), false) {
            stamps.push(s.frame_no);
        }
    }
    assert!(
        stamps.len() >= 20,
        "stamps survive JPEG and resizing: {stamps:?}"
    );
    assert!(
        stamps.windows(2).any(|w| w[1] < w[0]),
        "the clip looped: {stamps:?}"
    );
}

#[test]
fn a_gstreamer_pipeline_delivers_frames() {
    let pipeline = "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert ! appsink";
    let mut src = OpenCvSource::new(CameraSource::parse(pipeline), 640, 480, 30);
    src.open()
        .expect("GStreamer backend opens videotestsrc (scripts/setup installs it)");
    let first = src.read().expect("frame");
    let mut last = first.clone();
    for _ in 0..5 {
        last = src.read().expect("frame");
    }
    assert_eq!((last.width, last.height), (640, 480), "resized to --size");
    assert_ne!(first.data, last.data, "the ball moves");
}

/// A source that delivers four frames, fails three reads, then recovers.
struct Flaky {
    reads: u32,
    opens: u32,
}

impl FrameSource for Flaky {
    fn open(&mut self) -> Result<(), CameraError> {
        self.opens += 1;
        Ok(())
    }
    fn read(&mut self) -> Result<VideoFrame, CameraError> {
        std::thread::sleep(Duration::from_millis(10));
        self.reads += 1;
        if (5..8).contains(&self.reads) {
            return Err(CameraError::Read("unplugged".into()));
        }
        Ok(VideoFrame::black(64, 48))
    }
    fn close(&mut self) {}
}

#[test]
fn a_camera_that_fails_mid_call_is_retried_not_fatal() {
    let cam =
        Camera::start(Box::new(Flaky { reads: 0, opens: 0 }), "flaky".into()).expect("starts");
    let end = Instant::now() + Duration::from_secs(10);
    let mut saw_failed = false;
    let mut frames_after = 0;
    while Instant::now() < end && frames_after < 3 {
        match cam.status() {
            CameraStatus::Failed => saw_failed = true,
            _ if saw_failed && cam.take_latest().is_some() => frames_after += 1,
            _ => {
                let _ = cam.take_latest();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(saw_failed, "the failure was noticed");
    assert_eq!(frames_after, 3, "frames came back after the failure");
}

#[test]
fn a_file_source_carries_a_call() {
    let dir = common::scratch("clip-call");
    let clip = dir.join("clip.avi");
    write_clip(&clip, 30);
    let clip = clip.display().to_string();
    let (pa, pb) = (common::free_port(), common::free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let a = common::Peer::start(
        &dir,
        "a",
        pa,
        &["--headless", "--camera", "test", "--duration", "20"],
        &[],
    );
    let _b = common::Peer::start(
        &dir,
        "b",
        pb,
        &["--headless", "--camera", &clip, "--peer", &to_a],
        &[],
    );
    a.wait_for(Duration::from_secs(10), "video from the file", |l| {
        common::num(l, "frames_shown") > 30.0 && l["remote_stamp"].is_u64()
    });
}
