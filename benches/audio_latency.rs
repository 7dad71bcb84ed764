//! Mouth-to-ear latency: clicks played into A's microphone, recorded from B's speaker
//! together with a direct copy of each click (PulseAudio's combine sink plays the click into
//! A's microphone and B's speaker at once), so one recording holds both ends of the path.
//! `cargo bench --bench audio_latency`; PRATTLE_BENCH_CLICKS sets how many (default 40),
//! PRATTLE_BENCH_BUFFERS which device buffers to try (default `5,10,20`, in ms).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{click_delays, clicks, free_port, num, read_raw, scratch, Peer, Pulse};

fn quantile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

/// One row: `extra` arguments for both peers; with `video` off both turn their camera off
/// (the `c` key), so the audio path is measured alone, as the GStreamer reference was.
fn run(label: &str, extra: &[&str], n: usize, video: bool) {
    let dir = scratch(&format!("latency-{label}"));
    let pulse = Pulse::start();
    let env = pulse.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let mut args_a = vec![
        "--headless",
        "--camera",
        "test",
        "--mic",
        "micA.monitor",
        "--speaker",
        "spkA",
    ];
    args_a.extend_from_slice(extra);
    let mut args_b = vec![
        "--headless",
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
    let mut a = Peer::start(&dir, "a", pa, &args_a, &env);
    let mut b = Peer::start(&dir, "b", pb, &args_b, &env);
    b.wait_for(Duration::from_secs(15), "audio", |l| {
        num(l, "audio_received") > 200.0
    });
    if !video {
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
    let est = num(&b.last(), "mic_to_speaker_ms");
    if d.is_empty() {
        println!("| {label} | 0 of {n} | – | – | {est:.0} ms |");
        return;
    }
    println!(
        "| {label} | {} of {n} | {:.1} ms | {:.1} ms | {est:.0} ms |",
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
    println!("| device buffer | clicks heard | mic→speaker p50 | p95 | B's own estimate |");
    println!("|---|---|---|---|---|");
    let buffers = std::env::var("PRATTLE_BENCH_BUFFERS").unwrap_or_else(|_| "5,10,20".into());
    for ms in buffers.split(',') {
        run(
            &format!("{ms} ms, audio only"),
            &["--audio-buffer-ms", ms],
            n,
            false,
        );
        run(
            &format!("{ms} ms, with 480p video"),
            &["--audio-buffer-ms", ms],
            n,
            true,
        );
    }
}
