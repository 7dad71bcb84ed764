//! Two real processes, each with a real SDL2 window on its own Xvfb display (two "machines"),
//! driven with xdotool and checked from screenshots with the stamp reader.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{free_port, num, scratch, Peer, Xvfb};
use prattle::layout;
use prattle::media::stamp::{read_stamp, Picture, Rect, Stamp};

/// The call window's position and size on a display. A window the search found can be gone
/// by the time it is asked for its geometry (SDL may replace the first window it opens), so
/// each window found is tried, newest first, for a few seconds.
fn window_geometry(x: &Xvfb) -> Rect {
    let geo = wait_until(
        Duration::from_secs(5),
        "a Prattle window to measure",
        || {
            let ids = x.run("xdotool", &["search", "--sync", "--name", "Prattle"]);
            ids.lines().rev().find_map(|id| {
                let out = x.output("xdotool", &["getwindowgeometry", "--shell", id.trim()]);
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            })
        },
    );
    let field = |k: &str| -> i64 {
        geo.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{k} in {geo}"))
    };
    Rect {
        x: field("X") as i32,
        y: field("Y") as i32,
        w: field("WIDTH") as u32,
        h: field("HEIGHT") as u32,
    }
}

struct Panes {
    remote: Option<Stamp>,
    local: Option<Stamp>,
    remote_rect: Rect,
}

fn read_panes(x: &Xvfb, shot: &Path) -> (Panes, image::RgbImage) {
    let win = window_geometry(x);
    let img = x.screenshot(shot);
    let pic = Picture {
        data: img.as_raw(),
        width: img.width(),
        height: img.height(),
        stride: img.width() as usize * 3,
        bpp: 3,
    };
    let offset = |r: Rect| Rect {
        x: r.x + win.x,
        y: r.y + win.y,
        ..r
    };
    let remote_rect = offset(layout::remote_picture(win.w, win.h, 640, 480));
    let local_rect = offset(layout::local_picture(win.w, win.h, 640, 480));
    let panes = Panes {
        remote: read_stamp(&pic, remote_rect, false),
        local: read_stamp(&pic, local_rect, true),
        remote_rect,
    };
    (panes, img)
}

/// Mean colour of the remote picture's top-left eighth, away from labels and banners.
fn corner_colour(img: &image::RgbImage, r: Rect) -> [f64; 3] {
    let mut sum = [0f64; 3];
    let mut n = 0f64;
    for y in r.y + 4..r.y + (r.h / 8) as i32 {
        for x in r.x + 4..r.x + (r.w / 8) as i32 {
            let p = img.get_pixel(x as u32, y as u32);
            for c in 0..3 {
                sum[c] += f64::from(p[c]);
            }
            n += 1.0;
        }
    }
    sum.map(|s| s / n)
}

fn placeholder_corner() -> [f64; 3] {
    let img = image::load_from_memory(prattle::devices::window::PLACEHOLDER_PNG)
        .expect("placeholder decodes")
        .to_rgb8();
    let p = img.get_pixel(20, 20);
    [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]
}

fn close(a: [f64; 3], b: [f64; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 12.0)
}

fn wait_until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Where OpenGL is a software rasteriser (Mesa's llvmpipe, as under Xvfb here) the window
/// draws into its framebuffer on the CPU by default (A); B asks for that without OpenGL.
#[test]
fn windows_show_both_streams_react_to_keys_and_say_peer_left() {
    call_in_windows(
        ("auto", "cpu framebuffer (opengl, llvmpipe"),
        ("cpu", "cpu framebuffer (asked for)"),
    );
}

/// The path a machine with a GPU takes: SDL's renderer with IYUV textures.
#[test]
fn the_gpu_renderer_shows_the_same_call() {
    call_in_windows(("gpu", "gpu renderer"), ("gpu", "gpu renderer"));
}

/// A call between two windows, A's and B's `--renderer` each with what its log must say.
fn call_in_windows(a_renderer: (&str, &str), b_renderer: (&str, &str)) {
    let (renderer, painter) = a_renderer;
    let dir = scratch(&format!("window-{renderer}"));
    let xa = Xvfb::start(1600, 900);
    let xb = Xvfb::start(1600, 900);
    let (pa, pb) = (free_port(), free_port());
    let to_a = format!("127.0.0.1:{pa}");
    let a = Peer::start(
        &dir,
        "a",
        pa,
        &[
            "--camera",
            "test",
            "--duration",
            "60",
            "--renderer",
            renderer,
        ],
        &[("DISPLAY", &xa.display)],
    );
    let mut b = Peer::start(
        &dir,
        "b",
        pb,
        &[
            "--camera",
            "test",
            "--peer",
            &to_a,
            "--renderer",
            b_renderer.0,
        ],
        &[("DISPLAY", &xb.display)],
    );
    let shot = dir.join("a.png");

    // both streams in their places on A's screen
    let first = wait_until(Duration::from_secs(15), "both stamps on A's screen", || {
        let (p, _) = read_panes(&xa, &shot);
        Some((p.remote?, p.local?))
    });
    let later = wait_until(
        Duration::from_secs(5),
        "the remote stamp to advance",
        || {
            let (p, _) = read_panes(&xa, &shot);
            p.remote.filter(|s| s.frame_no > first.0.frame_no)
        },
    );
    assert!(later.frame_no > first.0.frame_no);
    assert!(
        a.log_text().contains(&format!("window: {painter}")),
        "A draws with the {painter}: {}",
        a.log_text()
    );
    assert!(
        b.log_text().contains(&format!("window: {}", b_renderer.1)),
        "B draws with the {}: {}",
        b_renderer.1,
        b.log_text()
    );
    // and on B's screen too
    wait_until(Duration::from_secs(5), "both stamps on B's screen", || {
        let (p, _) = read_panes(&xb, &dir.join("b.png"));
        Some((p.remote?, p.local?))
    });
    // the default window shows the 640×480 picture unscaled beside the self-view
    let win = window_geometry(&xa);
    let remote = layout::remote_picture(win.w, win.h, 640, 480);
    assert_eq!(
        (remote.w, remote.h),
        (640, 480),
        "window {}x{}",
        win.w,
        win.h
    );
    // every present is counted, with its latency, from the window's own thread
    let l = a.wait_for(Duration::from_secs(5), "shown frames in A's stats", |l| {
        num(l, "frames_shown") > 30.0 && num(l, "remote_stamp") > f64::from(first.0.frame_no)
    });
    let p50 = num(&l, "latency_ms_p50_total");
    assert!(p50 > 0.0 && p50 < 500.0, "capture→shown p50 {p50} ms");

    // c on B: A shows the camera-off placeholder instead of a frozen picture
    xb.run(
        "xdotool",
        &[
            "search",
            "--name",
            "Prattle",
            "windowfocus",
            "--sync",
            "key",
            "c",
        ],
    );
    let want = placeholder_corner();
    wait_until(
        Duration::from_secs(5),
        "the placeholder on A's screen",
        || {
            let (p, img) = read_panes(&xa, &shot);
            (p.remote.is_none() && close(corner_colour(&img, p.remote_rect), want)).then_some(())
        },
    );
    // c again: video is back
    xb.run(
        "xdotool",
        &[
            "search",
            "--name",
            "Prattle",
            "windowfocus",
            "--sync",
            "key",
            "c",
        ],
    );
    wait_until(
        Duration::from_secs(5),
        "B's video back on A's screen",
        || read_panes(&xa, &shot).0.remote,
    );

    // q on B: B exits 0, A says the peer left and shows no stale picture (the window may be
    // gone before xdotool has sent the key's release: its exit status says nothing here)
    xb.output(
        "xdotool",
        &[
            "search",
            "--name",
            "Prattle",
            "windowfocus",
            "--sync",
            "key",
            "q",
        ],
    );
    assert!(b.wait(Duration::from_secs(5)).success(), "{}", b.log_text());
    a.wait_for(Duration::from_secs(5), "peer left", |l| {
        l["state"] == "peer_left"
    });
    wait_until(
        Duration::from_secs(3),
        "no remote picture on A's screen",
        || read_panes(&xa, &shot).0.remote.is_none().then_some(()),
    );
    let title = xa.run("xdotool", &["search", "--name", "Prattle", "getwindowname"]);
    assert!(
        title.contains("waiting"),
        "title says A waits again: {title}"
    );
}
