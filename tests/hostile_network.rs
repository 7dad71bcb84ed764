//! Hostile datagrams at a real peer, before and during a call: counted and dropped, the call
//! goes on, memory stays bounded.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{free_port, num, scratch, Peer};
use prattle::proto::message::VERSION;

/// Deterministic junk: random bytes, cut and corrupted Prattle headers, oversized datagrams,
/// and well-formed control messages from a stranger.
fn junk(i: u64, rng: &mut u64) -> Vec<u8> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let len = (next() % 1400) as usize;
    let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
    match i % 6 {
        0 => v,
        1 => {
            v.truncate(3);
            v.splice(0..v.len().min(2), *b"Pr");
            v
        }
        2 => vec![0xAB; 1500 + (i as usize % 8000)],
        3 => {
            // a bye from a stranger's id
            let mut m = vec![b'P', b'r', VERSION, 0x04];
            m.extend_from_slice(&next().to_be_bytes());
            m
        }
        4 => {
            // a hello: a stranger asking for a call while one is on
            let mut m = vec![b'P', b'r', VERSION, 0x01];
            m.extend_from_slice(&next().to_be_bytes());
            m
        }
        _ => {
            // a video fragment header with absurd fields
            let mut m = vec![b'P', b'r', VERSION, 0x06];
            m.extend((0..22).map(|_| 0xFF));
            m.extend_from_slice(&v[..v.len().min(100)]);
            m
        }
    }
}

#[test]
fn junk_before_and_during_a_call_is_dropped_and_the_call_goes_on() {
    let dir = scratch("hostile");
    let (pa, pb) = (free_port(), free_port());
    let target = format!("127.0.0.1:{pa}");
    let a = Peer::start(
        &dir,
        "a",
        pa,
        &["--headless", "--camera", "test", "--duration", "40"],
        &[],
    );
    let attacker = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut rng = 0x1234_5678_9abc_def1u64;
    std::thread::sleep(Duration::from_millis(500));

    // before the call: junk at the waiting side
    for i in 0..3000 {
        let _ = attacker.send_to(&junk(i, &mut rng), &target);
    }
    let waiting = a.wait_for(Duration::from_secs(5), "the junk to be counted", |l| {
        l["state"] == "waiting" && num(l, "datagrams_dropped") >= 2700.0
    });
    assert!(num(&waiting, "datagrams_dropped") <= 3000.0, "{waiting}");
    let _b = Peer::start(
        &dir,
        "b",
        pb,
        &["--headless", "--camera", "test", "--peer", &target],
        &[],
    );
    let before = a.wait_for(Duration::from_secs(10), "the call", |l| {
        l["state"] == "connected"
            && l["peer"].as_str() == Some(&format!("127.0.0.1:{pb}"))
            && num(l, "frames_shown") > 30.0
    });
    let rss_before = common::rss_kb(a.child.id());

    // during the call: 5 s of junk at ~4000 datagrams/s
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(5) {
        for _ in 0..40 {
            let _ = attacker.send_to(&junk(sent, &mut rng), &target);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let after = a.last();
    let rss_after = common::rss_kb(a.child.id());

    assert_eq!(after["state"], "connected", "the call survived: {after}");
    assert_eq!(after["peer"], before["peer"], "nobody took the call over");
    let shown = num(&after, "frames_shown") - num(&before, "frames_shown");
    assert!(
        shown > 100.0,
        "video kept flowing during the flood: {shown} frames in ~6.5 s"
    );
    let dropped = num(&after, "datagrams_dropped") - num(&before, "datagrams_dropped");
    assert!(
        dropped >= 0.9 * sent as f64,
        "{dropped} of {sent} junk datagrams counted as dropped"
    );
    assert!(
        rss_after < rss_before + 30_000,
        "memory stayed bounded: {rss_before} kB → {rss_after} kB"
    );
    assert!(a.child.id() > 0 && a.last()["state"] == "connected");
}
