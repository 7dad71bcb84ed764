//! The microphone and speaker through a real (private) PulseAudio server: the ages the sound
//! system reports for their samples are those of a 5 ms device, though the patched cpal in
//! vendor/ asks the server for a stream's timing only every 50 ms and interpolates between; and
//! when the server stalls and then catches up in chunks bigger than the device buffer, no
//! microphone sample is lost.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use prattle::devices::audio::{MicSource, Microphone, Speaker, SpeakerSink, RATE};

/// Reads everything waiting; returns how many samples that was.
fn drain(mic: &mut Microphone, buf: &mut [i16]) -> usize {
    let mut n = 0;
    while mic.read(buf) {
        n += buf.len();
    }
    n
}

/// Keeps draining for `d`.
fn drain_for(mic: &mut Microphone, buf: &mut [i16], d: Duration) -> usize {
    let end = Instant::now() + d;
    let mut n = 0;
    while Instant::now() < end {
        n += drain(mic, buf);
        std::thread::sleep(Duration::from_millis(1));
    }
    n
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill {sig} {pid}");
}

#[test]
fn sound_devices_report_their_delays_and_the_microphone_keeps_every_sample_when_the_server_stalls()
{
    let pulse = common::Pulse::start();
    // the only test in this binary, so nothing else reads the environment meanwhile
    for (k, v) in pulse.env() {
        std::env::set_var(k, v);
    }
    let mut mic = Microphone::open(&MicSource::Named("micA.monitor".into()), 5, None)
        .expect("microphone on the private server");
    let speaker = Speaker::open(&SpeakerSink::Named("spkA".into()), 5)
        .expect("speaker on the private server");
    let mut buf = vec![0i16; 48];
    drain_for(&mut mic, &mut buf, Duration::from_millis(500));
    // a null sink nobody played into has rendered up to 2 s of silence ahead: the speaker's
    // callbacks start when that has played out
    let callbacks = || {
        speaker
            .counters()
            .callbacks
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let end = Instant::now() + Duration::from_secs(5);
    while callbacks() < 20 {
        assert!(Instant::now() < end, "the speaker never asked for sound");
        drain_for(&mut mic, &mut buf, Duration::from_millis(20));
    }

    // what the sound system says a sample spends in each device, read every millisecond for a
    // second: the microphone's first sample of a 5 ms chunk is about a chunk old when it is
    // delivered, the speaker plays what a callback writes a few ms later
    let (mut mic_us, mut spk_us) = (Vec::new(), Vec::new());
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        drain(&mut mic, &mut buf);
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        mic_us.push(load(&mic.counters().device_us));
        spk_us.push(load(&speaker.counters().device_us));
        std::thread::sleep(Duration::from_millis(1));
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (mic_med, spk_med) = (median(&mut mic_us), median(&mut spk_us));
    eprintln!("reported ages: microphone {mic_med} µs, speaker {spk_med} µs (medians)");
    assert!(
        (4_000..=30_000).contains(&mic_med),
        "the microphone's chunks are said to be {mic_med} µs old at delivery: not a 5 ms device's"
    );
    assert!(
        (500..=30_000).contains(&spk_med),
        "the speaker is said to play a callback's samples {spk_med} µs later: not a 5 ms device's"
    );
    drop(speaker);

    let pid = pulse.pid();
    let start = Instant::now();
    let mut got = 0;
    // 15 stalls of 40 ms: each time the server wakes up with 40 ms to deliver at once
    for _ in 0..15 {
        signal(pid, "-STOP");
        std::thread::sleep(Duration::from_millis(40));
        signal(pid, "-CONT");
        got += drain_for(&mut mic, &mut buf, Duration::from_millis(60));
    }
    got += drain_for(&mut mic, &mut buf, Duration::from_millis(400));
    // what is still in flight (server and device buffers) is a few ms at most
    let expected = start.elapsed().as_secs_f64() * f64::from(RATE);
    let ratio = got as f64 / expected;
    let overruns = mic
        .counters()
        .overruns
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("microphone delivered {got} samples of {expected:.0} ({ratio:.3}); ring overruns {overruns}");
    assert!(
        ratio > 0.97,
        "the microphone lost {:.1} % of its samples across server stalls",
        (1.0 - ratio) * 100.0
    );
    assert!(ratio < 1.03, "more samples than time allows: {ratio:.3}");
}
