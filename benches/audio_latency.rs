//! Mouth-to-ear latency: clicks played into A's microphone, recorded from B's speaker
//! together with a direct copy of each click (PulseAudio's combine sink plays the click into
//! A's microphone and B's speaker at once), so one recording holds both ends of the path.
//! `cargo bench --bench audio_latency`; PRATTLE_BENCH_CLICKS sets how many (default 40),
//! PRATTLE_BENCH_BUFFERS which device buffers to try (default `5,10,20`, in ms). Each buffer size
//! runs audio only, with 480p video headless, and with 480p video in real windows under Xvfb
//! (PRATTLE_BENCH_VIDEO picks some of `off,on,windows`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{click_delays, clicks, free_port, num, read_raw, scratch, Peer, Pulse, Xvfb};

fn quantile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

/// What runs beside the sound.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Video {
    /// Both cameras off (the `c` key): the audio path alone, as the GStreamer reference was.
    Off,
    /// 480p test pattern both ways, headless.
    On,
    /// 480p both ways, each peer with its window on its own Xvfb display: what a user runs.
    Windows,
}

/// One row: `extra` arguments for both peers.
fn run(label: &str, extra: &[&str], n: usize, video: Video) {
    let dir = scratch(&format!("latency-{label}"));
    let pulse = Pulse::start();
    let env = pulse.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let windows =
        (video == Video::Windows).then(|| (Xvfb::start(1600, 900), Xvfb::start(1600, 900)));
    let mut args_a = vec![
        "--camera",
        "test",
        "--mic",
        "micA.monitor",
        "--speaker",
        "spkA",
    ];
    args_a.extend_from_slice(extra);
    let mut args_b = vec![
        "--camera",
        "test",
        "--mic",
        "micB.monitor",
        "--speaker",
        "spkB",
        "--peer",
        &to_a,
    ];
    args_b.extend_from_slice(extra);
    if windows.is_none() {
        args_a.push("--headless");
        args_b.push("--headless");
    }
    let mut env_b = env.clone();
    if let Some((xa, xb)) = &windows {
        env.push(("DISPLAY", &xa.display));
        env_b.push(("DISPLAY", &xb.display));
    }
    let mut a = Peer::start(&dir, "a", pa, &args_a, &env);
    let mut b = Peer::start(&dir, "b", pb, &args_b, &env_b);
    b.wait_for(Duration::from_secs(15), "audio", |l| {
        num(l, "audio_received") > 200.0
    });
    if video == Video::Off {
        a.keys("c");
        b.keys("c");
        std::thread::sleep(Duration::from_millis(500));
    }
    let rec = dir.join("spkB.raw");
    let mut r = pulse.record("spkB.monitor", &rec);
    std::thread::sleep(Duration::from_millis(300));
    let mut p = pulse.play("clickAB", clicks(n, 500));
    let _ = p.wait();
    std::thread::sleep(Duration::from_millis(600));
    let _ = r.kill();
    let _ = r.wait();
    let d = click_delays(&read_raw(&rec), 400.0);
    let last = b.last();
    let est = num(&last, "mic_to_speaker_ms");
    let underruns = num(&last, "speaker_underruns") / num(&last, "t").max(1.0);
    let concealed = 100.0 * num(&last, "audio_concealed") / num(&last, "audio_received").max(1.0);
    if d.is_empty() {
        println!(
            "| {label} | 0 of {n} | – | – | {est:.0} ms | {underruns:.1} | {concealed:.1} % |"
        );
        return;
    }
    println!(
        "| {label} | {} of {n} | {:.1} ms | {:.1} ms | {est:.0} ms | {underruns:.1} | {concealed:.1} % |",
        d.len(),
        quantile(&d, 0.5),
        quantile(&d, 0.95)
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("audio_latency: a benchmark; run it with `cargo bench --bench audio_latency`");
        return;
    }
    let n = std::env::var("PRATTLE_BENCH_CLICKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    println!("Clicks into A's microphone, heard at B's speaker, two peers on loopback with a private PulseAudio.\n");
    println!("| device buffer | clicks heard | mic→speaker p50 | p95 | B's own estimate | B's underruns/s | B concealed |");
    println!("|---|---|---|---|---|---|---|");
    let buffers = std::env::var("PRATTLE_BENCH_BUFFERS").unwrap_or_else(|_| "5,10,20".into());
    let rows = std::env::var("PRATTLE_BENCH_VIDEO").unwrap_or_else(|_| "off,on,windows".into());
    let wanted = |v: Video| {
        let name = match v {
            Video::Off => "off",
            Video::On => "on",
            Video::Windows => "windows",
        };
        rows.split(',').any(|r| r.trim() == name)
    };
    for ms in buffers.split(',') {
        if wanted(Video::Off) {
            run(
                &format!("{ms} ms, audio only"),
                &["--audio-buffer-ms", ms],
                n,
                Video::Off,
            );
        }
        if wanted(Video::On) {
            run(
                &format!("{ms} ms, with 480p video"),
                &["--audio-buffer-ms", ms],
                n,
                Video::On,
            );
        }
        if wanted(Video::Windows) {
            run(
                &format!("{ms} ms, 480p video in windows"),
                &["--audio-buffer-ms", ms],
                n,
                Video::Windows,
            );
        }
    }
}
