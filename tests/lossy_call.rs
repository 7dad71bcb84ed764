//! Two real peers through `prattle-relay`: 5 % loss each way, and a 2-second outage.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, num, scratch, Peer};

fn relay(listen: u16, to: u16, spec: &str, control: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_prattle-relay"))
        .args([
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--to",
            &format!("127.0.0.1:{to}"),
        ])
        .args([
            "--up",
            spec,
            "--down",
            spec,
            "--seed",
            "7",
            "--duration",
            "60",
        ])
        .arg("--control")
        .arg(control)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prattle-relay")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A call through the relay: A waits on its port, B calls it through a relay that applies
/// `spec` each way (and reads `control`); both headless with the test pattern, plus their
/// own arguments.
fn call_through_relay(
    dir: &Path,
    spec: &str,
    control: &Path,
    a_args: &[&str],
    b_args: &[&str],
) -> (Killed, Peer, Peer) {
    let (pa, pb, pr) = (free_port(), free_port(), free_port());
    let relay = Killed(relay(pr, pa, spec, control));
    let mut args = vec!["--headless", "--camera", "test"];
    args.extend_from_slice(a_args);
    let a = Peer::start(dir, "a", pa, &args, &[]);
    let to = format!("127.0.0.1:{pr}");
    let mut args = vec!["--headless", "--camera", "test", "--peer", &to];
    args.extend_from_slice(b_args);
    let b = Peer::start(dir, "b", pb, &args, &[]);
    (relay, a, b)
}

#[test]
fn five_percent_loss_still_shows_most_frames() {
    let dir = scratch("lossy");
    let (_relay, a, b) = call_through_relay(
        &dir,
        "loss=5%",
        &dir.join("control"),
        &["--duration", "40"],
        &["--size", "1280x720"],
    );
    let first = a.wait_for(Duration::from_secs(15), "the call", |l| {
        l["state"] == "connected" && num(l, "frames_shown") > 10.0
    });
    let b_first = b.last();
    std::thread::sleep(Duration::from_secs(10));
    let (last, b_last) = (a.last(), b.last());
    let sent = num(&b_last, "frames_sent") - num(&b_first, "frames_sent");
    let shown = num(&last, "frames_shown") - num(&first, "frames_shown");
    eprintln!(
        "5% loss: {shown} of {sent} frames shown; nacks {} resent {}; parity sent {} rebuilt {}",
        num(&last, "nacks_sent"),
        num(&b_last, "fragments_resent"),
        num(&b_last, "parity_sent"),
        num(&last, "fragments_recovered")
    );
    assert!(sent > 200.0, "{sent} frames sent");
    assert!(
        shown >= 0.8 * sent,
        "{shown} of {sent} frames shown at 5 % loss"
    );
    // at 5 % the sender adds parity, which rebuilds most losses on arrival; the frames that
    // lose two fragments of a group are asked for again
    assert!(
        num(&b_last, "parity_sent") > 0.0 && num(&last, "fragments_recovered") > 0.0,
        "parity went on and rebuilt lost fragments"
    );
    // what parity could not rebuild was asked for: a frame loses two fragments of a group
    // about twice in such a run, so in some runs parity rebuilds every loss, and then no
    // frame may have been lost (counted at A, not by comparing A's shown with B's sent,
    // whose stats lines are up to a second apart)
    let dropped = num(&last, "frames_dropped") - num(&first, "frames_dropped");
    assert!(
        num(&last, "nacks_sent") + num(&b_last, "fragments_resent") > 0.0 || dropped == 0.0,
        "what parity could not rebuild was asked for ({dropped} frames dropped, none asked for)"
    );
}

#[test]
fn lost_audio_is_played_from_the_copy_the_next_packet_carries() {
    let dir = scratch("lossy-audio");
    let wav = dir.join("a-hears.wav");
    let speaker = wav.to_str().expect("utf-8 path");
    let (_relay, a, _b) = call_through_relay(
        &dir,
        "loss=5%",
        &dir.join("control"),
        &["--mic", "none", "--speaker", speaker, "--duration", "40"],
        &["--mic", "tone", "--speaker", "none"],
    );
    a.wait_for(Duration::from_secs(15), "sound", |l| {
        num(l, "audio_received") > 100.0
    });
    std::thread::sleep(Duration::from_secs(6));
    let last = a.last();
    // while the link loses, each audio packet carries the one before it: a lone loss is
    // played from that copy, and only two in a row are concealed
    let (lost, copied) = (num(&last, "audio_lost"), num(&last, "audio_recovered_fec"));
    eprintln!("5% loss: audio {lost} lost, {copied} played from the copy");
    assert!(lost > 20.0, "{lost} audio packets lost at 5 %");
    assert!(
        copied >= 0.7 * lost,
        "{copied} of {lost} lost packets played from the copy"
    );
}

#[test]
fn video_resumes_within_a_second_after_a_two_second_outage() {
    let dir = scratch("outage");
    let control = dir.join("control");
    std::fs::write(&control, "outage=off").expect("control file");
    let (_relay, a, _b) = call_through_relay(
        &dir,
        "clean",
        &control,
        &["--duration", "40", "--stats-interval", "100"],
        &["--size", "1280x720"],
    );
    a.wait_for(Duration::from_secs(15), "the call", |l| {
        l["state"] == "connected" && num(l, "frames_shown") > 30.0
    });
    std::fs::write(&control, "outage=on").expect("cut");
    std::thread::sleep(Duration::from_millis(500));
    let during = num(&a.last(), "frames_shown");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        num(&a.last(), "frames_shown") <= during + 1.0,
        "the link is down"
    );
    std::fs::write(&control, "outage=off").expect("restore");
    let back = Instant::now();
    // the relay reads its control file every 100 ms; the stats come every 100 ms
    let l = a.wait_for(Duration::from_secs(5), "video again", |l| {
        num(l, "frames_shown") > during + 5.0
    });
    let took = back.elapsed();
    eprintln!("video back after {took:?}: {l}");
    assert!(
        took < Duration::from_millis(1000),
        "video resumed {took:?} after the link came back"
    );
    assert_eq!(l["state"], "connected");
}

#[test]
fn bitrate_frame_rate_and_size_fall_under_a_rate_cap_and_climb_back_when_it_lifts() {
    let dir = scratch("ratecap");
    let control = dir.join("control");
    std::fs::write(&control, "up=clean;down=clean").expect("control file");
    let (_relay, a, _b) = call_through_relay(
        &dir,
        "clean",
        &control,
        &[
            "--size",
            "1280x720",
            "--duration",
            "90",
            "--stats-interval",
            "250",
        ],
        &["--size", "1280x720"],
    );
    a.wait_for(Duration::from_secs(15), "the call", |l| {
        l["state"] == "connected" && num(l, "frames_shown") > 30.0
    });
    // the call starts at a third of --bitrate (500) and probes the path at once: within a
    // second of connecting (four stats lines) the bitrate shows the room the probe found (a
    // slow start, ×1.25 every 500 ms, would be at 781 at most)
    let lines = a.lines();
    let connected = lines
        .iter()
        .position(|l| l["state"] == "connected")
        .expect("a stats line in the call");
    let first_second = &lines[connected..(connected + 4).min(lines.len())];
    assert!(
        first_second.iter().any(|l| num(l, "video_kbps") >= 1000.0),
        "the probe's room taken at once: {:?}",
        first_second
            .iter()
            .map(|l| num(l, "video_kbps"))
            .collect::<Vec<_>>()
    );
    assert!(a.log_text().contains("probe: the path carries"));
    let start = a.wait_for(
        Duration::from_secs(15),
        "A at --bitrate and full size",
        |l| num(l, "video_kbps") == 1500.0 && num(l, "video_width") == 1280.0,
    );
    assert_eq!(num(&start, "video_fps"), 30.0);
    // 120 kbit/s is under 0.02 bit per pixel even at half size and 30 fps: the ladder goes
    // below half size, where the frame rate steps down too
    std::fs::write(&control, "up=rate=120kbit;down=rate=120kbit").expect("cap");
    let capped = a.wait_for(Duration::from_secs(20), "A's bitrate under the cap", |l| {
        num(l, "video_kbps") > 0.0 && num(l, "video_kbps") <= 120.0 && num(l, "video_fps") < 30.0
    });
    eprintln!(
        "capped: {} kbit/s, {}x{} at {} fps",
        capped["video_kbps"], capped["video_width"], capped["video_height"], capped["video_fps"]
    );
    assert!(num(&capped, "video_width") <= 640.0, "smaller pictures");
    assert!(num(&capped, "video_fps") <= 15.0, "fewer of them");
    let shown = num(&capped, "frames_shown");
    a.wait_for(
        Duration::from_secs(20),
        "video going on under the cap",
        |l| num(l, "frames_shown") > shown + 45.0,
    );
    std::fs::write(&control, "up=clean;down=clean").expect("lift");
    let back = a.wait_for(
        Duration::from_secs(40),
        "A's bitrate and size back up",
        |l| num(l, "video_kbps") >= 1200.0 && num(l, "video_width") == 1280.0,
    );
    assert_eq!(num(&back, "video_fps"), 30.0, "full frame rate again");
}
