//! Two real processes on loopback, headless, with the stamped test pattern.

mod common;

use std::time::Duration;

use common::{free_port, num, scratch, Peer};

fn assert_delivery(name: &str, sender: &serde_json::Value, receiver: &serde_json::Value) {
    let sent = num(sender, "frames_sent");
    let received = num(receiver, "frames_received");
    let shown = num(receiver, "frames_shown");
    assert!(
        sent >= 150.0,
        "{name}: only {sent} frames sent in 8 s at 30 fps"
    );
    assert!(
        received >= 0.9 * sent,
        "{name}: {received} of {sent} frames received"
    );
    assert!(
        shown >= 0.9 * sent,
        "{name}: {shown} of {sent} frames shown"
    );
}

/// The stamped frame numbers read from received pictures must increase over the call.
fn assert_stamps_increase(name: &str, lines: &[serde_json::Value]) {
    let stamps: Vec<u64> = lines
        .iter()
        .filter(|l| l["state"] == "connected")
        .filter_map(|l| l["remote_stamp"].as_u64())
        .collect();
    assert!(
        stamps.len() >= 5,
        "{name}: stamps read in {} seconds only",
        stamps.len()
    );
    assert!(
        stamps.windows(2).all(|w| w[1] > w[0]),
        "{name}: stamps do not increase: {stamps:?}"
    );
}

#[test]
fn two_headless_peers_see_each_other() {
    let dir = scratch("loopback");
    let (pa, pb) = (free_port(), free_port());
    let peer_a = format!("127.0.0.1:{pa}");
    let mut a = Peer::start(
        &dir,
        "a",
        pa,
        &["--headless", "--camera", "test", "--duration", "9"],
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut b = Peer::start(
        &dir,
        "b",
        pb,
        &[
            "--headless",
            "--camera",
            "test",
            "--duration",
            "8",
            "--peer",
            &peer_a,
        ],
        &[],
    );
    assert!(
        b.wait(Duration::from_secs(30)).success(),
        "{}",
        b.log_text()
    );
    assert!(
        a.wait(Duration::from_secs(30)).success(),
        "{}",
        a.log_text()
    );

    let (la, lb) = (a.lines(), b.lines());
    let (fa, fb) = (la.last().expect("a stats"), lb.last().expect("b stats"));
    assert_delivery("A→B", fa, fb);
    assert_delivery("B→A", fb, fa);
    assert_stamps_increase("A", &la);
    assert_stamps_increase("B", &lb);
    // A heard B's goodbye before its own end
    assert!(la.iter().any(|l| l["state"] == "peer_left") || a.log_text().contains("PeerLeft"));
    assert!(num(fa, "latency_ms_p50_total") > 0.0);
    // the shown pictures, compared with the pattern rebuilt from their stamps, are close to
    // it (H.264 on a clean link: about 54 dB; a wrong frame or a broken picture: under 20)
    for (who, f) in [("A", fa), ("B", fb)] {
        let db = num(f, "psnr_y_db");
        assert!(db > 35.0, "{who}'s Y-PSNR {db} dB");
    }
    eprintln!(
        "capture→shown p50/p99: A {}/{} ms, B {}/{} ms",
        fa["latency_ms_p50_total"],
        fa["latency_ms_p99_total"],
        fb["latency_ms_p50_total"],
        fb["latency_ms_p99_total"]
    );
}

#[test]
fn both_sides_dialing_end_in_one_call() {
    let dir = scratch("dial-both");
    let (pa, pb) = (free_port(), free_port());
    let (to_a, to_b) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let mut a = Peer::start(
        &dir,
        "a",
        pa,
        &[
            "--headless",
            "--camera",
            "test",
            "--duration",
            "5",
            "--peer",
            &to_b,
        ],
        &[],
    );
    let mut b = Peer::start(
        &dir,
        "b",
        pb,
        &[
            "--headless",
            "--camera",
            "test",
            "--duration",
            "5",
            "--peer",
            &to_a,
        ],
        &[],
    );
    assert!(a.wait(Duration::from_secs(30)).success());
    assert!(b.wait(Duration::from_secs(30)).success());
    for (name, p) in [("A", &a), ("B", &b)] {
        let lines = p.lines();
        let connected = lines.iter().filter(|l| l["state"] == "connected").count();
        assert!(connected >= 3, "{name} connected for {connected} s only");
        assert!(
            num(lines.last().expect("stats"), "frames_shown") > 60.0,
            "{name} saw video"
        );
        let calls = p.log_text().matches("Connected(").count();
        assert_eq!(
            calls,
            1,
            "{name} started exactly one call:\n{}",
            p.log_text()
        );
    }
}

#[test]
fn a_vanished_peer_times_out_and_the_call_resumes_when_it_returns() {
    let dir = scratch("reconnect");
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let a = Peer::start(
        &dir,
        "a",
        pa,
        &["--headless", "--camera", "test", "--duration", "30"],
        &[],
    );
    let mut b = Peer::start(
        &dir,
        "b",
        pb,
        &["--headless", "--camera", "test", "--peer", &to_a],
        &[],
    );
    a.wait_for(Duration::from_secs(10), "the call", |l| {
        l["state"] == "connected" && num(l, "frames_shown") > 10.0
    });
    // no goodbye: the process dies
    b.child.kill().expect("kill b");
    let _ = b.child.wait();
    a.wait_for(Duration::from_secs(10), "connection lost", |l| {
        l["state"] == "connection_lost"
    });
    let shown_before = num(&a.last(), "frames_shown");
    let _b2 = Peer::start_on_freed_port(
        &dir,
        "b2",
        pb,
        &["--headless", "--camera", "test", "--peer", &to_a],
        &[],
    );
    a.wait_for(
        Duration::from_secs(10),
        "the call to resume with video",
        |l| l["state"] == "connected" && num(l, "frames_shown") > shown_before + 10.0,
    );
}

#[test]
fn camera_toggle_and_quit_through_the_key_path() {
    let dir = scratch("keys");
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let a = Peer::start(
        &dir,
        "a",
        pa,
        &["--headless", "--camera", "test", "--duration", "30"],
        &[],
    );
    let mut b = Peer::start(
        &dir,
        "b",
        pb,
        &["--headless", "--camera", "test", "--peer", &to_a],
        &[],
    );
    a.wait_for(Duration::from_secs(10), "video from B", |l| {
        num(l, "frames_shown") > 10.0
    });
    b.keys("c");
    let off = a.wait_for(Duration::from_secs(5), "B's camera off", |l| {
        l["remote_camera_on"] == false
    });
    let shown = num(&off, "frames_shown");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        num(&a.last(), "frames_shown") <= shown + 2.0,
        "no video while the camera is off"
    );
    b.keys("c");
    a.wait_for(Duration::from_secs(5), "B's camera back", |l| {
        l["remote_camera_on"] == true && num(l, "frames_shown") > shown + 10.0
    });
    b.keys("q");
    assert!(b.wait(Duration::from_secs(5)).success(), "q exits 0");
    a.wait_for(Duration::from_secs(5), "peer left", |l| {
        l["state"] == "peer_left"
    });
}

/// Times the call loop's thread (the process's main thread) went to sleep so far.
fn loop_sleeps(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_call_loop_sleeps_until_something_is_due() {
    let dir = scratch("loop-sleeps");
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let args = [
        "--headless",
        "--camera",
        "test",
        "--mic",
        "none",
        "--speaker",
        "none",
    ];
    let mut a = Peer::start(
        &dir,
        "a",
        pa,
        &[&args[..], &["--duration", "8"]].concat(),
        &[],
    );
    let mut b = Peer::start(
        &dir,
        "b",
        pb,
        &[&args[..], &["--duration", "8", "--peer", &to_a]].concat(),
        &[],
    );
    a.wait_for(Duration::from_secs(5), "video from B", |l| {
        num(l, "frames_shown") > 10.0
    });
    let pid = a.child.id();
    let (s0, t0) = (loop_sleeps(pid), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (s1, dt) = (loop_sleeps(pid), t0.elapsed().as_secs_f64());
    let shown = num(&a.last(), "frames_shown");
    // woken by the camera, the codecs and the datagrams of a 30 fps call, and every 4 ms when
    // nothing comes sooner: a few hundred a second. A 1 ms tick made it over a thousand.
    let per_s = (s1 - s0) as f64 / dt;
    assert!(s1 > s0, "the loop's thread never slept ({s0} -> {s1})");
    assert!(per_s < 600.0, "the loop woke {per_s:.0} times a second");
    assert!(shown > 30.0, "the call went on: {shown} frames shown");
    assert!(a.wait(Duration::from_secs(10)).success());
    assert!(b.wait(Duration::from_secs(10)).success());
}
