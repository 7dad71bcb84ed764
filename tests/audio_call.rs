//! Two real processes with private PulseAudio devices: tones go through microphones, Opus,
//! the network and jitter buffers to the other side's speaker; mute silences within 0.5 s.

mod common;

use std::time::Duration;

use common::{free_port, num, read_raw, scratch, sine, tone_power, tone_snr_db, Peer, Pulse};

#[test]
fn tones_cross_both_ways_and_mute_silences() {
    let dir = scratch("audio");
    let pulse = Pulse::start();
    let env: Vec<(String, String)> = pulse.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let mut a = Peer::start(
        &dir,
        "a",
        pa,
        &[
            "--headless",
            "--camera",
            "test",
            "--size",
            "320x240",
            // a buffer that rides out a busy CI machine; the latency bench measures the default
            "--audio-buffer-ms",
            "20",
            "--mic",
            "micA.monitor",
            "--speaker",
            "spkA",
            "--duration",
            "40",
        ],
        &env,
    );
    let _b = Peer::start(
        &dir,
        "b",
        pb,
        &[
            "--headless",
            "--camera",
            "test",
            "--size",
            "320x240",
            // a buffer that rides out a busy CI machine; the latency bench measures the default
            "--audio-buffer-ms",
            "20",
            "--mic",
            "micB.monitor",
            "--speaker",
            "spkB",
            "--peer",
            &to_a,
        ],
        &env,
    );
    let mut play_a = pulse.play("micA", sine(440.0, 0.5, 30.0));
    let mut play_b = pulse.play("micB", sine(880.0, 0.5, 30.0));
    // the first input callbacks can take 1–2 s: judge audio after that
    // steady audio both ways: packets flowing and the jitter buffers settled
    let steady = |l: &serde_json::Value| {
        l["state"] == "connected"
            && num(l, "audio_received") > 100.0
            && num(l, "jitter_delay_ms") > 0.0
            && num(l, "jitter_delay_ms") < 150.0
    };
    a.wait_for(Duration::from_secs(20), "steady audio at A", steady);
    _b.wait_for(Duration::from_secs(20), "steady audio at B", steady);
    std::thread::sleep(Duration::from_millis(500));

    let (rec_a, rec_b) = (dir.join("spkA.raw"), dir.join("spkB.raw"));
    let mut ra = pulse.record("spkA.monitor", &rec_a);
    let mut rb = pulse.record("spkB.monitor", &rec_b);
    std::thread::sleep(Duration::from_secs(3));
    let _ = ra.kill();
    let _ = rb.kill();
    let _ = ra.wait();
    let _ = rb.wait();
    let (heard_a, heard_b) = (read_raw(&rec_a), read_raw(&rec_b));
    assert!(
        heard_b.len() > 48_000,
        "B's speaker recorded {} samples",
        heard_b.len()
    );
    let snr_b = tone_snr_db(&heard_b, 440.0);
    let snr_a = tone_snr_db(&heard_a, 880.0);
    eprintln!("SNR: 440 Hz at B {snr_b:.1} dB, 880 Hz at A {snr_a:.1} dB");
    assert!(snr_b > 15.0, "B hears A's 440 Hz: SNR {snr_b:.1} dB");
    assert!(snr_a > 15.0, "A hears B's 880 Hz: SNR {snr_a:.1} dB");
    assert!(
        tone_power(&heard_b, 440.0) > 100.0 * tone_power(&heard_b, 880.0),
        "B hears A, not itself"
    );

    // m on A: within half a second B's speaker goes quiet and B's stats show A muted
    let rec_m = dir.join("spkB-muted.raw");
    let mut rm = pulse.record("spkB.monitor", &rec_m);
    std::thread::sleep(Duration::from_millis(700));
    a.keys("m");
    std::thread::sleep(Duration::from_millis(1800));
    let _ = rm.kill();
    let _ = rm.wait();
    let heard = read_raw(&rec_m);
    // the first 0.7 s carry the tone; from 0.5 s after the key, silence
    let split = 48_000 * 12 / 10; // 0.7 s + 0.5 s
    assert!(
        heard.len() > split + 24_000,
        "recorded {} samples",
        heard.len()
    );
    let before = tone_power(&heard[..33_600], 440.0);
    let after = tone_power(&heard[split..], 440.0);
    assert!(before > 1e-3, "tone before mute: {before}");
    assert!(
        after < before / 1000.0,
        "silence within 0.5 s of m: {after} vs {before}"
    );
    let b_stats = _b.last();
    assert_eq!(b_stats["remote_muted"], true, "B shows A muted: {b_stats}");
    for p in [&mut play_a, &mut play_b] {
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// Whether the sound server holds `pid`'s stream of `kind` (`sink-inputs` for its speaker,
/// `source-outputs` for its microphone) corked; `None` while it has none.
fn corked(pulse: &Pulse, kind: &str, pid: u32) -> Option<bool> {
    let out = pulse
        .command("pactl")
        .args(["list", kind])
        .output()
        .expect("pactl is installed with pulseaudio-utils");
    let text = String::from_utf8_lossy(&out.stdout);
    let ours = format!("application.process.id = \"{pid}\"");
    text.split("\n\n")
        .find(|block| block.contains(&ours))
        .and_then(|block| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix("Corked:"))
                .map(|v| v.trim() == "yes")
        })
}

/// Waits until `pid`'s microphone stream is `want` (corked or not); its speaker keeps
/// playing either way.
fn wait_corked(pulse: &Pulse, pid: u32, want: bool, what: &str) {
    let end = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = (
            corked(pulse, "source-outputs", pid),
            corked(pulse, "sink-inputs", pid),
        );
        if now == (Some(want), Some(false)) {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{what}: microphone and speaker corked {now:?}, wanted ({want}, false)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_microphone_rests_while_there_is_no_call() {
    let dir = scratch("audio-rest");
    let pulse = Pulse::start();
    let env: Vec<(String, String)> = pulse.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let common = ["--headless", "--camera", "test", "--size", "320x240"];
    let a = Peer::start(
        &dir,
        "a",
        pa,
        &[
            &common[..],
            &[
                "--mic",
                "micA.monitor",
                "--speaker",
                "spkA",
                "--duration",
                "40",
            ],
        ]
        .concat(),
        &env,
    );
    let pid = a.child.id();
    wait_corked(&pulse, pid, true, "waiting for a call");
    let mut b = Peer::start(
        &dir,
        "b",
        pb,
        &[
            &common[..],
            &[
                "--mic",
                "micB.monitor",
                "--speaker",
                "spkB",
                "--peer",
                &to_a,
            ],
        ]
        .concat(),
        &env,
    );
    let mut play_b = pulse.play("micB", sine(880.0, 0.5, 30.0));
    a.wait_for(Duration::from_secs(20), "sound from B", |l| {
        l["state"] == "connected" && num(l, "audio_received") > 100.0
    });
    wait_corked(&pulse, pid, false, "in a call");
    // and the peer's sound is played
    a.wait_for(Duration::from_secs(10), "B's sound played", |l| {
        num(l, "jitter_delay_ms") > 0.0 && num(l, "speaker_samples") > 0.0
    });
    b.keys("q");
    assert!(b.wait(Duration::from_secs(5)).success(), "q exits 0");
    a.wait_for(Duration::from_secs(5), "peer left", |l| {
        l["state"] == "peer_left"
    });
    wait_corked(&pulse, pid, true, "after the call");
    let _ = play_b.kill();
    let _ = play_b.wait();
}
