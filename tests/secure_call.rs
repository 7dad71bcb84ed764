//! The private call, for real: two processes agree on the words to compare, pairing codes
//! work and fail cleanly, a changed key is refused, and strangers — a third prattle, junk,
//! replays of captured packets, handshake spam from hundreds of ports — change nothing.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, num, scratch, Peer};

fn connected_with_video(l: &serde_json::Value) -> bool {
    l["state"] == "connected" && num(l, "frames_shown") > 20.0
}

#[test]
fn both_sides_show_the_same_words() {
    let dir = scratch("sas");
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let a = Peer::start(
        &dir,
        "a",
        pa,
        &["--headless", "--camera", "test", "--duration", "20"],
        &[],
    );
    let b = Peer::start(
        &dir,
        "b",
        pb,
        &["--headless", "--camera", "test", "--peer", &to_a],
        &[],
    );
    let la = a.wait_for(Duration::from_secs(10), "a call with words", |l| {
        connected_with_video(l) && l["sas"].is_string()
    });
    let lb = b.wait_for(Duration::from_secs(10), "a call with words", |l| {
        l["sas"].is_string()
    });
    assert_eq!(la["sas"], lb["sas"], "both windows show the same words");
    assert_eq!(la["sas"].as_str().map(|s| s.split(' ').count()), Some(4));
    assert!(a.log_text().contains("compare these words aloud"));
}

#[test]
fn a_pairing_code_connects_and_a_wrong_code_fails_cleanly() {
    let dir = scratch("code");
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let a = Peer::start(
        &dir,
        "a",
        pa,
        &[
            "--headless",
            "--camera",
            "test",
            "--code",
            "--duration",
            "30",
        ],
        &[],
    );
    let log = || a.log_text();
    let end = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(c) = log()
            .lines()
            .find_map(|l| l.split("your one-time code is ").nth(1))
            .and_then(|r| r.split(':').next())
        {
            break c.trim().to_string();
        }
        assert!(Instant::now() < end, "A printed no code: {}", log());
        std::thread::sleep(Duration::from_millis(100));
    };
    // a wrong code: the caller exits non-zero with one line, A keeps waiting and says so
    let mut c = Peer::start(
        &dir,
        "c",
        pc,
        &[
            "--headless",
            "--camera",
            "test",
            "--peer",
            &to_a,
            "--code",
            "1-wrong-guess",
        ],
        &[("RUST_LOG", "off")],
    );
    let status = c.wait(Duration::from_secs(15));
    assert!(!status.success(), "a wrong code fails");
    let clog = c.log_text();
    assert!(clog.contains("wrong code"), "{clog}");
    let a_now = a.wait_for(Duration::from_secs(5), "A still waiting", |l| {
        l["state"].is_string()
    });
    assert_eq!(a_now["state"], "waiting", "{a_now}");
    assert!(
        log().contains("wrong code"),
        "A says a wrong code was tried: {}",
        log()
    );
    // the right code connects
    let _b = Peer::start(
        &dir,
        "b",
        pb,
        &[
            "--headless",
            "--camera",
            "test",
            "--peer",
            &to_a,
            "--code",
            &code,
        ],
        &[],
    );
    a.wait_for(
        Duration::from_secs(15),
        "the call with the right code",
        connected_with_video,
    );
    // without a code, nobody gets in either
    let pd = free_port();
    let mut d = Peer::start(
        &dir,
        "d",
        pd,
        &[
            "--headless",
            "--camera",
            "test",
            "--peer",
            &to_a,
            "--duration",
            "6",
        ],
        &[],
    );
    let _ = d.wait(Duration::from_secs(20));
    assert_ne!(d.last()["state"], "connected", "no code, no call");
}

#[test]
fn a_changed_key_is_refused_loudly() {
    let dir = scratch("pin");
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let a = Peer::start(
        &dir,
        "a",
        pa,
        &["--headless", "--camera", "test", "--duration", "40"],
        &[],
    );
    let mut b = Peer::start(
        &dir,
        "b",
        pb,
        &["--headless", "--camera", "test", "--peer", &to_a],
        &[],
    );
    a.wait_for(
        Duration::from_secs(10),
        "the first call",
        connected_with_video,
    );
    b.keys("q");
    assert!(b.wait(Duration::from_secs(5)).success());
    a.wait_for(Duration::from_secs(5), "peer left", |l| {
        l["state"] == "peer_left"
    });
    // the same address comes back with another identity key
    let other = dir.join("impostor-config");
    let _b2 = Peer::start_on_freed_port(
        &dir,
        "b2",
        pb,
        &[
            "--headless",
            "--camera",
            "test",
            "--peer",
            &to_a,
            "--config-dir",
            other.to_str().expect("utf-8"),
        ],
        &[],
    );
    std::thread::sleep(Duration::from_secs(5));
    let log = a.log_text();
    assert!(
        log.contains("has a new identity key"),
        "loud warning:\n{log}"
    );
    let last = a.last();
    assert_ne!(last["state"], "connected", "call refused: {last}");
}

/// A UDP relay between B and A that keeps a copy of everything B sends (a tap on the path).
struct Tap {
    addr: SocketAddr,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
    socket_to_a: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    fn start(a: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        front
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        back.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let captured = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        {
            let (front, back, captured, stop, client) = (
                front.clone(),
                back.clone(),
                captured.clone(),
                stop.clone(),
                client.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().expect("lock") = Some(from);
                        let _ = back.send_to(&buf[..n], a);
                        let mut c = captured.lock().expect("lock");
                        if c.len() < 20_000 {
                            c.push(buf[..n].to_vec());
                        }
                    }
                }
            });
        }
        {
            let (front, back, stop) = (front.clone(), back.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, _)) = back.recv_from(&mut buf) {
                        if let Some(to) = *client.lock().expect("lock") {
                            let _ = front.send_to(&buf[..n], to);
                        }
                    }
                }
            });
        }
        Self {
            addr: front.local_addr().expect("addr"),
            captured,
            socket_to_a: back,
            stop,
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_flood_of_junk_replays_and_handshake_spam_changes_nothing() {
    let dir = scratch("flood");
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a_addr: SocketAddr = format!("127.0.0.1:{pa}").parse().expect("addr");
    let a = Peer::start(
        &dir,
        "a",
        pa,
        &["--headless", "--camera", "test", "--duration", "60"],
        &[],
    );
    let tap = Tap::start(a_addr);
    let b = Peer::start(
        &dir,
        "b",
        pb,
        &[
            "--headless",
            "--camera",
            "test",
            "--peer",
            &tap.addr.to_string(),
        ],
        &[],
    );
    let before = a.wait_for(
        Duration::from_secs(15),
        "the call through the tap",
        connected_with_video,
    );
    let b_before = b.last();
    // a third prattle that knows the port but not the keys
    let mut c = Peer::start(
        &dir,
        "c",
        pc,
        &[
            "--headless",
            "--camera",
            "test",
            "--peer",
            &a_addr.to_string(),
        ],
        &[],
    );
    let rss_before = common::rss_kb(a.child.id());

    // 10 000 datagrams a second for 10 seconds: random bytes and valid-looking headers from
    // hundreds of ports, handshake initiations, and replays of captured packets sent from the
    // tap's own address, which A takes for B's
    let ports: Vec<UdpSocket> = (0..300)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    // enough of the call to replay (H.264 of the test pattern takes ~2 datagrams a frame)
    let end = Instant::now() + Duration::from_secs(10);
    while tap.captured.lock().expect("lock").len() <= 100 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let captured = tap.captured.lock().expect("lock").clone();
    assert!(captured.len() > 100, "the tap captured traffic");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(10) {
        let tick = Instant::now();
        for _ in 0..100 {
            let r = next();
            let len = 1 + (r % 1300) as usize;
            let mut d: Vec<u8> = (0..len).map(|i| (next() >> (i % 56)) as u8).collect();
            match r % 4 {
                0 => {}
                1 => d[0] = (r >> 8) as u8 % 8, // a plausible type byte
                2 => {
                    let replay = &captured[(r >> 16) as usize % captured.len()];
                    let _ = tap.socket_to_a.send_to(replay, a_addr);
                    sent += 1;
                    continue;
                }
                _ => {
                    d[0] = 1; // handshake-initiation spam
                    d.truncate(86.min(d.len()));
                }
            }
            let _ = ports[(r >> 24) as usize % ports.len()].send_to(&d, a_addr);
            sent += 1;
        }
        let spent = tick.elapsed();
        if spent < Duration::from_millis(10) {
            std::thread::sleep(Duration::from_millis(10) - spent);
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let after = a.last();
    let b_after = b.last();
    let rss_after = common::rss_kb(a.child.id());
    eprintln!(
        "flood: {sent} datagrams; A dropped {}; RSS {rss_before} → {rss_after} kB",
        num(&after, "datagrams_dropped") - num(&before, "datagrams_dropped")
    );

    assert!(sent > 50_000, "the flood ran: {sent}");
    assert_eq!(after["state"], "connected", "{after}");
    assert_eq!(after["peer"], before["peer"], "nobody took the call");
    assert_eq!(after["sas"], before["sas"], "the session was not replaced");
    let shown = num(&after, "frames_shown") - num(&before, "frames_shown");
    let b_shown = num(&b_after, "frames_shown") - num(&b_before, "frames_shown");
    assert!(
        shown > 150.0,
        "A kept showing B's video: {shown} frames in ~11.5 s"
    );
    assert!(
        b_shown > 150.0,
        "B kept showing A's video: {b_shown} frames"
    );
    assert!(
        rss_after < rss_before + 40_000,
        "memory stayed bounded: {rss_before} → {rss_after} kB"
    );
    let c_last = c.last();
    assert_ne!(
        c_last["state"], "connected",
        "the third process got no call: {c_last}"
    );
    assert_eq!(num(&c_last, "frames_shown"), 0.0, "and no picture");
    let _ = c.child.kill();
}
