//! Bad command-line input: one line that names the fix, exit code 2, never a panic.

mod common;

use std::net::UdpSocket;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(common::bin())
        .args(args)
        .args(["--headless", "--duration", "1"])
        .env("RUST_LOG", "off")
        .output()
        .expect("run prattle");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    (out.status.code().unwrap_or(-1), stderr)
}

fn assert_refused(args: &[&str], hint: &str) {
    let (code, stderr) = run(args);
    assert_eq!(code, 2, "{args:?} → exit {code}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: one line, got:\n{stderr}"
    );
    assert!(
        stderr.contains(hint),
        "{args:?}: '{stderr}' should mention '{hint}'"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_size() {
    assert_refused(&["--size", "12x7"], "640x480");
    assert_refused(&["--size", "wide"], "640x480");
}

#[test]
fn unparsable_or_unresolvable_peer() {
    assert_refused(&["--peer", "no-such-host.invalid"], "--peer");
    assert_refused(&["--peer", "300.1.1.1"], "--peer");
    assert_refused(&["--peer", "host:notaport"], "--peer");
}

#[test]
fn busy_port() {
    let holder = UdpSocket::bind("0.0.0.0:0").expect("bind");
    let port = holder.local_addr().expect("addr").port().to_string();
    assert_refused(&["--port", &port, "--camera", "test"], "--port");
}

#[test]
fn unknown_camera() {
    assert_refused(&["--camera", "/no/such/video.avi"], "--camera test");
}

#[test]
fn foreign_bind_address() {
    assert_refused(&["--bind", "192.0.2.1", "--camera", "test"], "--bind");
}

#[test]
fn out_of_range_numbers() {
    assert_refused(&["--fps", "0"], "fps");
    assert_refused(&["--quality", "500"], "quality");
    assert_refused(&["--port", "99999"], "port");
    assert_refused(&["--lip-sync", "soon"], "off");
}

#[test]
fn unknown_renderer() {
    assert_refused(&["--renderer", "metal"], "auto, gpu or cpu");
}
