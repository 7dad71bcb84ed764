//! End-to-end bench: two real headless peers with the stamped test pattern and a private
//! PulseAudio, B calling A through `prattle-relay` (clean, 5 % loss with 30±10 ms delay, or a
//! 1 Mbit/s cap). Clicks played into A's microphone are recorded at B's speaker together with a
//! direct copy (PulseAudio's combine sink), so one recording holds both ends of the audio path;
//! both directions of the relay are impaired alike.
//! Prints a markdown table of what arrived, how late and how good. `cargo bench --bench e2e`;
//! PRATTLE_BENCH_SECS sets each call's length (default 10); PRATTLE_BENCH_SIZES and
//! PRATTLE_BENCH_CODECS and PRATTLE_BENCH_LINKS (`clean,loss,cap`; comma-separated) pick rows;
//! PRATTLE_BENCH_RUNS=N (best odd) calls each row N times and prints the median of each figure
//! (but the lowest share shown and the longest freeze); PRATTLE_BENCH_AUDIO=0 runs without
//! sound; PRATTLE_BENCH_WINDOWS=1 gives each peer a real SDL2 window on its own Xvfb display (a
//! picture counts as shown when its present has returned). Each peer's standard error goes to
//! `$TMPDIR/prattle-e2e-<pid>/<size>-<codec>-<link>[-<call>]-{a,b}.log` (a one-line error, if
//! any); PRATTLE_PEER_LOG=<RUST_LOG filter> puts its log there too, next to the peer's stats
//! (`…-{a,b}.jsonl`) and B's speaker recording (`…-spkB.raw`). A row where nothing was shown
//! names those files.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{click_delays, clicks, cpu_secs, free_port, read_raw, Pulse, Xvfb};
use serde_json::Value;

/// Starts a peer; with `PRATTLE_PEER_LOG` set, it logs at that level to `log`.
fn spawn(
    args: &[String],
    pulse: Option<&Pulse>,
    display: Option<&Xvfb>,
    log: &std::path::Path,
) -> Child {
    let level = std::env::var("PRATTLE_PEER_LOG").ok();
    let stderr = match std::fs::File::create(log).ok() {
        Some(f) => Stdio::from(f),
        None => Stdio::null(),
    };
    Command::new(common::bin())
        .args(args)
        .envs(pulse.map(Pulse::env).unwrap_or_default())
        .envs(display.map(|x| ("DISPLAY", x.display.clone())))
        .env("RUST_LOG", level.as_deref().unwrap_or("off"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start prattle")
}

fn last_line(path: &std::path::Path) -> Value {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .next_back()
        .unwrap_or(Value::Null)
}

struct Row {
    size: String,
    codec: String,
    link: String,
    p95: f64,
    freeze: f64,
    psnr: f64,
    sent: f64,
    shown: f64,
    p50: f64,
    /// A's pictures as B shows them: the direction the clicks are measured in.
    p50_at_b: f64,
    p99: f64,
    mbit: f64,
    cpu_a: f64,
    cpu_b: f64,
    audio_p50: Option<f64>,
    concealed: Option<f64>,
    av_offset: Option<f64>,
}

/// One row from several calls of it: the median of each figure (of an even number of calls,
/// the upper of the middle two), except where a target is a bound on the worst: the lowest
/// share shown and the longest freeze of any call.
fn combine(mut rows: Vec<Row>) -> Option<Row> {
    let med = |rows: &[Row], f: fn(&Row) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
    let med_opt = |rows: &[Row], f: fn(&Row) -> Option<f64>| {
        median(&rows.iter().filter_map(f).collect::<Vec<_>>())
    };
    let p50 = med(&rows, |r| r.p50)?;
    let p50_at_b = med(&rows, |r| r.p50_at_b)?;
    let p95 = med(&rows, |r| r.p95)?;
    let p99 = med(&rows, |r| r.p99)?;
    let mbit = med(&rows, |r| r.mbit)?;
    let psnr = med(&rows, |r| r.psnr)?;
    let cpu_a = med(&rows, |r| r.cpu_a)?;
    let cpu_b = med(&rows, |r| r.cpu_b)?;
    let audio_p50 = med_opt(&rows, |r| r.audio_p50);
    let concealed = med_opt(&rows, |r| r.concealed);
    let av_offset = med_opt(&rows, |r| r.av_offset);
    let freeze = rows.iter().map(|r| r.freeze).fold(0.0, f64::max);
    rows.sort_by(|a, b| (a.shown / a.sent.max(1.0)).total_cmp(&(b.shown / b.sent.max(1.0))));
    let worst = rows.into_iter().next()?;
    Some(Row {
        p50,
        p50_at_b,
        p95,
        p99,
        mbit,
        psnr,
        cpu_a,
        cpu_b,
        audio_p50,
        concealed,
        av_offset,
        freeze,
        ..worst
    })
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied()
}

/// When the first click sounds, from the start of the click player (just before A starts;
/// B calls 0.3 s later): the call has settled by then.
const CLICKS_AFTER: Duration = Duration::from_millis(2500);

/// One call; the A/V offset is how much later the peer is heard than seen, both measured
/// end to end (clicks and stamps) in the same direction, A to B: under a cap each direction
/// has its own queue, and B's sound against A's pictures came out anywhere from 4 to 38 ms.
fn run(c: &Call, secs: f64, env: &Env) -> Row {
    let mut r = call(c, secs, env);
    r.av_offset = r.audio_p50.map(|a| a - r.p50_at_b);
    r
}

/// The sound server and the displays the peers run with, if any.
struct Env {
    pulse: Option<Pulse>,
    displays: Option<(Xvfb, Xvfb)>,
}

/// One row's call: what is sent over which link, and which of the row's calls it is.
struct Call<'a> {
    size: &'a str,
    codec: &'a str,
    /// The link's label in the table.
    link: &'a str,
    /// The link's short name, for file names.
    key: &'a str,
    /// The relay's impairment spec.
    spec: &'a str,
    /// Which of the row's calls this is (from 1), when a row is called more than once.
    take: Option<usize>,
}

/// A call over `link`.
fn call(c: &Call, secs: f64, env: &Env) -> Row {
    let (size, codec, link, key, spec) = (c.size, c.codec, c.link, c.key, c.spec);
    let pulse = env.pulse.as_ref();
    let dir = std::env::temp_dir().join(format!("prattle-e2e-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let (pa, pb, pr) = (free_port(), free_port(), free_port());
    let mut relay = Command::new(env!("CARGO_BIN_EXE_prattle-relay"))
        .args([
            "--listen",
            &format!("127.0.0.1:{pr}"),
            "--to",
            &format!("127.0.0.1:{pa}"),
        ])
        .args(["--up", spec, "--down", spec, "--seed", "1"])
        .args(["--duration", &format!("{}", secs + 10.0)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prattle-relay");
    // each row keeps its own files, to be read after the table is out
    let row = match c.take {
        Some(k) => format!("{size}-{codec}-{key}-{k}"),
        None => format!("{size}-{codec}-{key}"),
    };
    let (sa, sb) = (
        dir.join(format!("{row}-a.jsonl")),
        dir.join(format!("{row}-b.jsonl")),
    );
    let args = |port: u16, stats: &std::path::Path, d: f64, me: &str| {
        vec![
            "--mic".into(),
            format!("mic{me}.monitor"),
            "--speaker".into(),
            format!("spk{me}"),
            "--camera".into(),
            "test".into(),
            "--size".into(),
            size.into(),
            "--codec".into(),
            codec.into(),
            "--bitrate".into(),
            if size == "640x480" {
                "1000000".into()
            } else {
                "1500000".into()
            },
            "--port".into(),
            port.to_string(),
            "--stats".into(),
            stats.display().to_string(),
            "--duration".into(),
            format!("{d}"),
        ]
    };
    let (xa, xb) = match &env.displays {
        Some((xa, xb)) => (Some(xa), Some(xb)),
        None => (None, None),
    };
    let mut args_a = args(pa, &sa, secs + 1.5, "A");
    let mut args_b = args(pb, &sb, secs, "B");
    if env.displays.is_none() {
        args_a.push("--headless".into());
        args_b.push("--headless".into());
    }
    let log = |me: &str| dir.join(format!("{row}-{me}.log"));
    // clicks into A's microphone once the call has settled, recorded at B's speaker. The
    // player and the recorder run from before the call until after it, silent but for the
    // clicks: the click player's stream starting and stopping inside the call cost the
    // peers a spike (the second it stopped ran at 9-15 ms capture to screen at 720p with
    // sound, against 6-7 ms around it), and a real call's microphone runs all along.
    let rec = dir.join(format!("{row}-spkB.raw"));
    let _ = std::fs::remove_file(&rec);
    let sound = pulse.map(|pulse| {
        let recorder = pulse.record("spkB.monitor", &rec);
        let n_clicks = ((secs - 3.5) * 2.0).max(1.0) as usize;
        let silence = |s: f64| vec![0i16; (s * 48_000.0) as usize];
        let mut samples = silence(CLICKS_AFTER.as_secs_f64());
        samples.extend(clicks(n_clicks, 500));
        samples.extend(silence(secs + 10.0));
        (recorder, pulse.play("clickAB", samples))
    });
    let mut a = spawn(&args_a, pulse, xa, &log("a"));
    std::thread::sleep(Duration::from_millis(300));
    args_b.extend(["--peer".to_string(), format!("127.0.0.1:{pr}")]);
    let start = Instant::now();
    let mut b = spawn(&args_b, pulse, xb, &log("b"));
    std::thread::sleep(Duration::from_secs_f64(secs - 0.3));
    let wall = start.elapsed().as_secs_f64();
    let (cpu_a, cpu_b) = (cpu_secs(a.id()), cpu_secs(b.id()));
    let _ = b.wait();
    let _ = a.wait();
    for mut child in sound.into_iter().flat_map(|(r, p)| [r, p]) {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = relay.kill();
    let _ = relay.wait();
    let (la, lb) = (last_line(&sa), last_line(&sb));
    if la
        .get("frames_shown")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
        == 0.0
    {
        eprintln!(
            "{size} {codec} {link}: no picture was shown; the peers' output is in {} and {}",
            log("a").display(),
            log("b").display()
        );
    }
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    Row {
        size: size.into(),
        codec: codec.into(),
        link: link.into(),
        p95: n(&la, "latency_ms_p95_total"),
        freeze: n(&la, "longest_freeze_ms"),
        psnr: n(&la, "psnr_y_db"),
        sent: n(&lb, "frames_sent"),
        shown: n(&la, "frames_shown"),
        p50: n(&la, "latency_ms_p50_total"),
        p50_at_b: n(&lb, "latency_ms_p50_total"),
        p99: n(&la, "latency_ms_p99_total"),
        mbit: n(&lb, "bytes_sent") * 8.0 / secs / 1e6,
        cpu_a: 100.0 * cpu_a / wall,
        cpu_b: 100.0 * cpu_b / wall,
        audio_p50: median(&click_delays(&read_raw(&rec), 400.0)),
        concealed: (n(&lb, "audio_received") > 0.0)
            .then(|| 100.0 * n(&lb, "audio_concealed") / n(&lb, "audio_received")),
        av_offset: None,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: a benchmark; run it with `cargo bench --bench e2e`");
        return;
    }
    let secs: f64 = std::env::var("PRATTLE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let runs: usize = std::env::var("PRATTLE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let windows = std::env::var("PRATTLE_BENCH_WINDOWS").is_ok_and(|v| v == "1");
    let how = if windows {
        "each in an SDL2 window on its own Xvfb display"
    } else {
        "headless"
    };
    let per_row = if runs > 1 {
        format!(
            "{runs} calls of {secs} s per row (the median of their figures; shown: the lowest; \
             freeze: the longest)"
        )
    } else {
        format!("{secs} s per row")
    };
    println!("Two peers, {how}, B calls A through prattle-relay, 30 fps, {per_row}; B→A video as A shows it, A→B audio as B plays it; the A/V offset is A→B sound against A→B pictures as B shows them.\n");
    println!("| size | codec | link | shown | capture→shown p50 | p95 | p99 | longest freeze | Mbit/s | Y-PSNR | CPU A | CPU B | mic→speaker p50 | concealed | A/V offset |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // PRATTLE_BENCH_AUDIO=0: no sound server, video only (and no PulseAudio daemon's load)
    let audio = std::env::var("PRATTLE_BENCH_AUDIO").map_or(true, |v| v != "0");
    let env = Env {
        pulse: audio.then(Pulse::start),
        displays: windows.then(|| (Xvfb::start(1920, 1080), Xvfb::start(1920, 1080))),
    };
    let links = [
        ("clean", "clean", "clean"),
        (
            "5 % loss, 30±10 ms",
            "loss",
            "loss=5%,delay=20ms,jitter=20ms",
        ),
        ("1 Mbit/s cap", "cap", "rate=1mbit"),
    ];
    let links_wanted = std::env::var("PRATTLE_BENCH_LINKS").unwrap_or_default();
    let pick = |var: &str, all: &[&'static str]| -> Vec<&'static str> {
        let want = std::env::var(var).unwrap_or_default();
        all.iter()
            .copied()
            .filter(|x| want.is_empty() || want.split(',').any(|w| w == *x))
            .collect()
    };
    for size in pick("PRATTLE_BENCH_SIZES", &["640x480", "1280x720"]) {
        for codec in pick("PRATTLE_BENCH_CODECS", &["h264", "mjpeg"]) {
            for (link, key, spec) in links {
                if !links_wanted.is_empty() && !links_wanted.split(',').any(|w| w == key) {
                    continue;
                }
                let rows: Vec<Row> = (1..=runs)
                    .map(|k| {
                        let take = (runs > 1).then_some(k);
                        let c = Call {
                            size,
                            codec,
                            link,
                            key,
                            spec,
                            take,
                        };
                        run(&c, secs, &env)
                    })
                    .collect();
                let Some(r) = combine(rows) else { continue };
                let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0} ms"));
                println!(
                    "| {} | {} | {} | {:.1} % | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} ms | {:.2} | {:.1} dB | {:.0} % | {:.0} % | {} | {} | {} |",
                    r.size,
                    r.codec,
                    r.link,
                    100.0 * r.shown / r.sent.max(1.0),
                    r.p50,
                    r.p95,
                    r.p99,
                    r.freeze,
                    r.mbit,
                    r.psnr,
                    r.cpu_a,
                    r.cpu_b,
                    ms(r.audio_p50),
                    r.concealed.map_or("–".to_string(), |c| format!("{c:.1} %")),
                    ms(r.av_offset)
                );
            }
        }
    }
}
