//! Baseline bench: issue 4's reference pipeline, measured here the way the e2e bench measures
//! Prattle, so the two can be compared in one sitting rather than against figures from another
//! machine or hour. The stamped test pattern, rendered at 30 fps, is piped into a GStreamer
//! sender (`videoconvert` to I420, `x264enc tune=zerolatency speed-preset=ultrafast`,
//! `rtph264pay`, `udpsink`); its datagrams cross a forwarder in this process (one hop, as the
//! e2e bench's relay adds, and where the bytes are counted) to a GStreamer receiver
//! (`udpsrc`, `rtph264depay`, `avdec_h264`, `fdsink`) that pipes each decoded I420 picture back.
//! A picture counts as shown when this process has read all of it; its stamp says when it was
//! rendered. Prattle's headless e2e rows end at the same point (the decoded picture handed to the
//! renderer), so compare with `PRATTLE_BENCH_AUDIO=0 cargo bench --bench e2e`. With
//! PRATTLE_BENCH_WINDOWS=1 each picture is then drawn in Prattle's own window (`--renderer
//! auto`, the self-view pane left blank) on a private Xvfb, and counts as shown when the
//! draw has returned, as in the e2e bench's window rows: the reference was read off
//! such a screen.
//!
//! `cargo bench --bench baseline`; PRATTLE_BENCH_SIZES (`640x480,1280x720`), PRATTLE_BENCH_SECS
//! (10), PRATTLE_BENCH_RUNS (1: the median of N runs a row) and PRATTLE_BASELINE_KBPS (x264's
//! bitrate, default the e2e bench's: 1000 at 480p, 1500 at 720p). Needs `gst-launch-1.0` with
//! x264enc and avdec_h264 (`scripts/setup` installs them).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cpu_secs, free_port, Xvfb};
use prattle::devices::window::{Overlay, PaneShow, Renderer, Scene, Window};
use prattle::media::frame::unix_micros;
use prattle::media::h264::{i420_to_bgr, I420Frame};
use prattle::media::pattern::TestPattern;
use prattle::media::stamp::{read_stamp, Picture, Rect};
use prattle::media::{PixelFormat, VideoFrame};
use prattle::systems::render::psnr_y;

const FPS: u32 = 30;
/// Every this many pictures, one is compared with its source (the comparison costs this
/// process a few milliseconds a picture, and the pipeline runs on the same two cores).
const PSNR_EVERY: usize = 15;

fn gst(pipeline: &str) -> Command {
    let mut c = Command::new("gst-launch-1.0");
    c.arg("-q").args(pipeline.split_whitespace());
    c.stderr(Stdio::null());
    c
}

/// What the elements this bench needs are missing, if any.
fn missing_elements() -> Vec<&'static str> {
    [
        "x264enc",
        "avdec_h264",
        "rtph264pay",
        "rtph264depay",
        "rawvideoparse",
    ]
    .into_iter()
    .filter(|e| {
        !Command::new("gst-inspect-1.0")
            .arg(e)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .collect()
}

/// Lets the pipe to the sender hold a whole 720p picture, so a write is one copy.
fn widen_pipe(stdin: &ChildStdin) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETPIPE_SZ on a pipe this process owns; failure leaves the default size.
    unsafe {
        libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// One run of a row.
struct Run {
    shown: usize,
    sent: usize,
    /// From the stamp until the whole picture was in the sender's pipe, median.
    write_ms: f64,
    latency_ms: Vec<f64>,
    longest_gap_ms: f64,
    mbps: f64,
    psnr_db: Option<f64>,
    cpu_send: f64,
    cpu_recv: f64,
}

/// Renders and pipes pictures for `secs`; (pictures, milliseconds each took to write).
fn renders(
    w: u32,
    h: u32,
    secs: f64,
    mut to: ChildStdin,
    stop: Arc<AtomicBool>,
) -> (usize, Vec<f64>) {
    let mut pattern = TestPattern::new(w, h);
    let mut data = Vec::new();
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(FPS));
    let mut n = 0u32;
    let mut writes = Vec::new();
    while start.elapsed().as_secs_f64() < secs && !stop.load(Ordering::Relaxed) {
        let due = start + interval * n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let capture_us = unix_micros();
        pattern.render_into(n, capture_us, &mut data);
        if to.write_all(&data).is_err() {
            break;
        }
        writes.push(unix_micros().saturating_sub(capture_us) as f64 / 1000.0);
        n += 1;
    }
    (n as usize, writes)
}

fn forwards(from: UdpSocket, to: u16, stop: Arc<AtomicBool>, bytes: Arc<AtomicU64>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        if let Ok(n) = from.recv(&mut buf) {
            bytes.fetch_add(n as u64, Ordering::Relaxed);
            let _ = from.send_to(&buf[..n], ("127.0.0.1", to));
        }
    }
}

/// Reads decoded pictures until the receiver's output ends, drawing each in a window if
/// `windowed`; (latencies, longest gap, Y-PSNRs).
fn reads(w: u32, h: u32, mut from: ChildStdout, windowed: bool) -> (Vec<f64>, f64, Vec<f64>) {
    let (ws, hs) = (w as usize, h as usize);
    let mut raw = vec![0u8; ws * hs * 3 / 2];
    let mut latency = Vec::new();
    let mut psnr = Vec::new();
    let mut last: Option<Instant> = None;
    let mut gap = 0.0f64;
    let mut pattern = TestPattern::new(w, h);
    let (mut source, mut shown) = (Vec::new(), vec![0u8; ws * hs * 3]);
    let mut window = windowed.then(|| {
        Window::open("Prattle baseline", None, (w, h), Renderer::Auto).expect("window opens")
    });
    let scene = Scene {
        remote: PaneShow::Video,
        local: PaneShow::Blank,
        mirror: true,
        overlay: Overlay::default(),
    };
    while from.read_exact(&mut raw).is_ok() {
        let y = &raw[..ws * hs];
        let Some(stamp) = read_stamp(&Picture::luma(y, w, h), Rect::full(w, h), false) else {
            continue;
        };
        if let Some(win) = window.as_mut() {
            let _ = win.poll_commands();
            let frame = VideoFrame {
                width: w,
                height: h,
                data: raw.clone(),
                capture_us: stamp.capture_us,
                format: PixelFormat::I420,
            };
            if win.upload_remote(Arc::new(frame)).is_err() || win.draw(&scene).is_err() {
                break;
            }
        }
        let now = unix_micros();
        let at = Instant::now();
        latency.push(now.saturating_sub(stamp.capture_us) as f64 / 1000.0);
        if let Some(l) = last {
            gap = gap.max(at.duration_since(l).as_secs_f64() * 1000.0);
        }
        last = Some(at);
        if latency.len() % PSNR_EVERY == 0 {
            let (c, rest) = raw[ws * hs..].split_at(ws * hs / 4);
            let frame = I420Frame {
                width: w,
                height: h,
                y: y.to_vec(),
                u: c.to_vec(),
                v: rest.to_vec(),
            };
            i420_to_bgr(&frame, &mut shown);
            pattern.render_into(stamp.frame_no, stamp.capture_us, &mut source);
            psnr.extend(psnr_y(&source, &shown));
        }
    }
    (latency, gap, psnr)
}

fn run(w: u32, h: u32, kbps: u32, secs: f64, windowed: bool) -> Run {
    let forward = UdpSocket::bind("127.0.0.1:0").expect("forwarder socket");
    let forward_port = forward.local_addr().expect("forwarder address").port();
    let recv_port = free_port();
    let mut receiver: Child = gst(&format!(
        "udpsrc port={recv_port} \
         caps=application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 \
         ! rtph264depay ! avdec_h264 ! video/x-raw,format=I420 ! fdsink fd=1 sync=false"
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .spawn()
    .expect("start the GStreamer receiver");
    let mut sender: Child = gst(&format!(
        "fdsrc fd=0 blocksize={} ! rawvideoparse width={w} height={h} format=bgr \
         framerate={FPS}/1 ! videoconvert \
         ! video/x-raw,format=I420,colorimetry=bt601 \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max=300 \
         ! rtph264pay config-interval=-1 pt=96 mtu=1200 \
         ! udpsink host=127.0.0.1 port={forward_port} sync=false",
        w * h * 3
    ))
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .expect("start the GStreamer sender");
    // the receiver's socket is up before the first datagram comes
    std::thread::sleep(Duration::from_millis(500));

    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let fwd = {
        let (stop, bytes) = (Arc::clone(&stop), Arc::clone(&bytes));
        std::thread::spawn(move || forwards(forward, recv_port, stop, bytes))
    };
    let out = receiver.stdout.take().expect("receiver output");
    let reader = std::thread::spawn(move || reads(w, h, out, windowed));
    let stdin = sender.stdin.take().expect("sender input");
    widen_pipe(&stdin);
    let cpu0 = (cpu_secs(sender.id()), cpu_secs(receiver.id()));
    let t0 = Instant::now();
    let (sent, writes) = renders(w, h, secs, stdin, Arc::clone(&stop));
    let elapsed = t0.elapsed().as_secs_f64();
    // the last pictures come through before the pipelines stop
    std::thread::sleep(Duration::from_millis(300));
    let cpu = (
        (cpu_secs(sender.id()) - cpu0.0) / elapsed,
        (cpu_secs(receiver.id()) - cpu0.1) / elapsed,
    );
    stop.store(true, Ordering::Relaxed);
    let _ = sender.kill();
    let _ = sender.wait();
    let _ = receiver.kill();
    let _ = receiver.wait();
    let _ = fwd.join();
    let (latency_ms, longest_gap_ms, psnr) = reader.join().unwrap_or_default();
    Run {
        shown: latency_ms.len(),
        sent,
        write_ms: median(writes),
        latency_ms,
        longest_gap_ms,
        mbps: bytes.load(Ordering::Relaxed) as f64 * 8.0 / elapsed / 1e6,
        psnr_db: (!psnr.is_empty()).then(|| psnr.iter().sum::<f64>() / psnr.len() as f64),
        cpu_send: cpu.0,
        cpu_recv: cpu.1,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn env_num(key: &str, default: f64) -> f64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("baseline: a benchmark; run it with `cargo bench --bench baseline`");
        return;
    }
    let missing = missing_elements();
    if !missing.is_empty() {
        eprintln!(
            "baseline bench: GStreamer elements missing ({}): run scripts/setup",
            missing.join(", ")
        );
        std::process::exit(2);
    }
    let secs = env_num("PRATTLE_BENCH_SECS", 10.0);
    let runs = env_num("PRATTLE_BENCH_RUNS", 1.0).max(1.0) as usize;
    let windowed = std::env::var("PRATTLE_BENCH_WINDOWS").is_ok_and(|v| v == "1");
    let _display = windowed.then(|| {
        let x = Xvfb::start(1920, 1080);
        std::env::set_var("DISPLAY", &x.display);
        x
    });
    let sizes =
        std::env::var("PRATTLE_BENCH_SIZES").unwrap_or_else(|_| "640x480,1280x720".to_string());
    println!(
        "GStreamer x264 (tune=zerolatency, speed-preset=ultrafast) + RTP, one forwarding hop, \
         the stamped test pattern at {FPS} fps, {runs} run(s) of {secs} s a row (the median of \
         each figure; shown: the lowest), a picture shown when {}.\n",
        if windowed {
            "drawn in a window on Xvfb"
        } else {
            "decoded and read back"
        }
    );
    println!(
        "| size | x264 kbit/s | shown | capture→shown p50 | p95 | p99 | longest freeze \
         | Mbit/s | Y-PSNR | CPU sender | CPU receiver | of p50: render and pipe in |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for size in sizes.split(',') {
        let Some((w, h)) = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        else {
            eprintln!("baseline bench: size {size:?} is not WxH, e.g. 640x480");
            std::process::exit(2);
        };
        let default_kbps = if w * h >= 1280 * 720 { 1500.0 } else { 1000.0 };
        let kbps = env_num("PRATTLE_BASELINE_KBPS", default_kbps) as u32;
        let rows: Vec<Run> = (0..runs).map(|_| run(w, h, kbps, secs, windowed)).collect();
        if rows.iter().any(|r| r.shown == 0) {
            eprintln!(
                "baseline bench: a {w}x{h} run showed no picture: run its two gst-launch-1.0 \
                 pipelines (benches/baseline.rs) by hand with -v to see why"
            );
        }
        let pick = |f: &dyn Fn(&Run) -> f64| median(rows.iter().map(f).collect());
        let pct = |p: f64| {
            pick(&|r: &Run| {
                let mut s = r.latency_ms.clone();
                s.sort_by(f64::total_cmp);
                percentile(&s, p)
            })
        };
        let shown = rows
            .iter()
            .map(|r| 100.0 * r.shown as f64 / r.sent.max(1) as f64)
            .fold(f64::INFINITY, f64::min);
        let gap = rows.iter().map(|r| r.longest_gap_ms).fold(0.0, f64::max);
        let psnr = pick(&|r: &Run| r.psnr_db.unwrap_or(f64::NAN));
        println!(
            "| {w}x{h} | {kbps} | {shown:.1} % | {:.1} ms | {:.1} ms | {:.1} ms | {gap:.0} ms \
             | {:.2} | {psnr:.1} dB | {:.0} % | {:.0} % | {:.1} ms |",
            pct(0.5),
            pct(0.95),
            pct(0.99),
            pick(&|r: &Run| r.mbps),
            pick(&|r: &Run| 100.0 * r.cpu_send),
            pick(&|r: &Run| 100.0 * r.cpu_recv),
            pick(&|r: &Run| r.write_ms),
        );
    }
}
