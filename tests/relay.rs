//! End-to-end tests of the `prattle-relay` binary on loopback: echo traffic through real sockets.

use std::collections::HashSet;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_prattle-relay");

/// A loopback port that was free a moment ago.
fn free_addr() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr")
}

/// Echoes every datagram back to its sender until `life` has passed.
fn echo_server(life: Duration) -> (SocketAddr, JoinHandle<u64>) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind echo");
    let addr = sock.local_addr().expect("addr");
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let handle = thread::spawn(move || {
        let end = Instant::now() + life;
        let mut buf = [0u8; 2048];
        let mut n_echoed = 0;
        while Instant::now() < end {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
                n_echoed += 1;
            }
        }
        n_echoed
    });
    (addr, handle)
}

fn spawn_relay(listen: SocketAddr, to: SocketAddr, extra: &[&str]) -> Child {
    Command::new(BIN)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--to")
        .arg(to.to_string())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relay")
}

/// Waits (bounded) for the relay to exit by itself; kills it if it overstays.
fn finish(mut child: Child, limit: Duration) -> Output {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "relay did not exit in time; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client socket connected to the relay.
fn client(relay: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    s.connect(relay).expect("connect");
    s
}

/// Sends one ping and waits up to `wait` for its echo; returns the round trip.
fn ping(sock: &UdpSocket, seq: u32, wait: Duration) -> Option<Duration> {
    let start = Instant::now();
    let _ = sock.send(&seq.to_le_bytes());
    let mut buf = [0u8; 2048];
    while start.elapsed() < wait {
        sock.set_read_timeout(Some(wait - start.elapsed() + Duration::from_micros(1)))
            .expect("timeout");
        match sock.recv(&mut buf) {
            Ok(4) if buf[..4] == seq.to_le_bytes() => return Some(start.elapsed()),
            Ok(_) => continue, // a late echo of an earlier ping
            Err(_) => return None,
        }
    }
    None
}

/// Pings until the relay answers (bounded), so tests do not race its start-up.
fn wait_ready(sock: &UdpSocket) {
    for i in 0..15 {
        let start = Instant::now();
        if ping(sock, 0xFFFF_0000 + i, Duration::from_millis(400)).is_some() {
            return;
        }
        // A ping refused before the relay bound returns at once; space the retries out anyway.
        thread::sleep(Duration::from_millis(200).saturating_sub(start.elapsed()));
    }
    panic!("relay never answered");
}

/// Pulls `"key":N` out of the named direction of the JSON summary.
fn stat(summary: &str, dir: &str, key: &str) -> u64 {
    let part = summary
        .split_once(&format!("\"{dir}\":{{"))
        .expect("direction")
        .1;
    let part = part.split('}').next().expect("object");
    let v = part.split_once(&format!("\"{key}\":")).expect("key").1;
    v.split(|c: char| !c.is_ascii_digit())
        .next()
        .expect("digits")
        .parse()
        .expect("number")
}

#[test]
fn ten_percent_loss_loses_about_ten_percent() {
    let (peer, echo) = echo_server(Duration::from_secs(12));
    let listen = free_addr();
    let relay = spawn_relay(
        listen,
        peer,
        &["--up", "loss=10%", "--seed", "3", "--duration", "8"],
    );
    let sock = client(listen);
    wait_ready(&sock);
    let rx = sock.try_clone().expect("clone");
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let receiver = thread::spawn(move || {
        let mut seen = HashSet::new();
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(6);
        while Instant::now() < end {
            match rx.recv(&mut buf) {
                Ok(n) if n >= 4 => {
                    seen.insert(u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]));
                }
                Ok(_) => {}
                Err(_) => break, // 300 ms of quiet: everything is in
            }
        }
        seen
    });
    let sent = 2000u32;
    for i in 0..sent {
        sock.send(&i.to_le_bytes()).expect("send");
        if i % 20 == 19 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    let seen = receiver.join().expect("receiver");
    let got = (0..sent).filter(|i| seen.contains(i)).count() as f64;
    let loss = 1.0 - got / f64::from(sent);
    assert!((0.07..=0.13).contains(&loss), "loss {loss}");
    let out = finish(relay, Duration::from_secs(15));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{summary}");
    let lost = stat(&summary, "up", "lost");
    assert!(
        (140..=260).contains(&lost),
        "relay counted {lost} lost: {summary}"
    );
    assert_eq!(stat(&summary, "down", "lost"), 0);
    let _ = echo.join();
}

#[test]
fn delay_each_way_shows_in_round_trip() {
    let (peer, echo) = echo_server(Duration::from_secs(6));
    let listen = free_addr();
    let relay = spawn_relay(
        listen,
        peer,
        &[
            "--up",
            "delay=50ms",
            "--down",
            "delay=50ms",
            "--duration",
            "4",
        ],
    );
    let sock = client(listen);
    wait_ready(&sock);
    for i in 0..10 {
        let rtt = ping(&sock, i, Duration::from_secs(1)).expect("echo");
        assert!(rtt >= Duration::from_millis(100), "rtt {rtt:?}");
        assert!(rtt < Duration::from_millis(300), "rtt {rtt:?}");
    }
    let out = finish(relay, Duration::from_secs(10));
    assert!(out.status.success());
    let _ = echo.join();
}

/// Writes the control file atomically so the relay never reads half a command.
fn write_control(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write control");
    fs::rename(&tmp, path).expect("rename control");
}

#[test]
fn outage_via_control_file_stops_and_resumes() {
    let (peer, echo) = echo_server(Duration::from_secs(10));
    let listen = free_addr();
    let control: PathBuf =
        std::env::temp_dir().join(format!("prattle-relay-test-{}.ctl", std::process::id()));
    let _ = fs::remove_file(&control);
    let relay = spawn_relay(
        listen,
        peer,
        &[
            "--duration",
            "7",
            "--control",
            control.to_str().expect("utf8 path"),
        ],
    );
    let sock = client(listen);
    wait_ready(&sock);
    let wait = Duration::from_millis(100);
    let before = (0..20).filter(|i| ping(&sock, *i, wait).is_some()).count();
    assert!(before >= 18, "before outage {before}/20");

    write_control(&control, "outage=on\n");
    thread::sleep(Duration::from_millis(300)); // one 100 ms poll plus margin
    let cut_start = Instant::now();
    let mut during = 0;
    let mut i = 100;
    while cut_start.elapsed() < Duration::from_secs(2) {
        during += usize::from(ping(&sock, i, wait).is_some());
        i += 1;
    }
    assert_eq!(during, 0, "echoes got through the outage");

    write_control(&control, "outage=off\n");
    thread::sleep(Duration::from_millis(300));
    let after = (1000..1020)
        .filter(|i| ping(&sock, *i, wait).is_some())
        .count();
    assert!(after >= 18, "after outage {after}/20");

    let out = finish(relay, Duration::from_secs(10));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(stat(&summary, "up", "dropped_outage") >= 15, "{summary}");
    let _ = fs::remove_file(&control);
    let _ = echo.join();
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let cases: [&[&str]; 4] = [
        &["--listen", "127.0.0.1:9"],
        &[
            "--listen",
            "127.0.0.1:9",
            "--to",
            "127.0.0.1:10",
            "--up",
            "loss=lots",
        ],
        &[
            "--listen",
            "127.0.0.1:9",
            "--to",
            "127.0.0.1:10",
            "--duration",
            "-1",
        ],
        &["--listen", "0.0.0.0:9", "--to", "127.0.0.1:10"],
    ];
    for args in cases {
        let out = Command::new(BIN).args(args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}
