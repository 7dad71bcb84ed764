//! The microphone through a real (private) PulseAudio server: when the server stalls and then
//! catches up in chunks bigger than the device buffer, no sample is lost (the reason for the
//! patched cpal in vendor/).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use prattle::devices::audio::{MicSource, Microphone, RATE};

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
fn microphone_keeps_every_sample_when_the_server_stalls() {
    let pulse = common::Pulse::start();
    // the only test in this binary, so nothing else reads the environment meanwhile
    for (k, v) in pulse.env() {
        std::env::set_var(k, v);
    }
    let mut mic = Microphone::open(&MicSource::Named("micA.monitor".into()), 5, None)
        .expect("microphone on the private server");
    let mut buf = vec![0i16; 48];
    drain_for(&mut mic, &mut buf, Duration::from_millis(500));
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
