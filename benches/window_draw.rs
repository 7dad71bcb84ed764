//! What one draw of the call window costs with a new picture of the peer, for each painter
//! (`--renderer gpu`: SDL's renderer with IYUV textures; `cpu`: the window's framebuffer),
//! at 640×480 and 1280×720, in a real SDL2 window on a private Xvfb. Prints a markdown table
//! of the median and 90th percentile over PRATTLE_BENCH_DRAWS draws (default 200), the
//! painters taking turns (4 rounds each) so that both see the same load, and the median time
//! until the peer's picture is on the screen (the framebuffer sends it before the self-view).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Xvfb;
use prattle::devices::window::{Overlay, PaneShow, Renderer, Scene, Window};
use prattle::media::h264::to_i420;
use prattle::media::pattern::TestPattern;
use prattle::media::VideoFrame;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let draws: usize = std::env::var("PRATTLE_BENCH_DRAWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let x = Xvfb::start(1920, 1080);
    std::env::set_var("DISPLAY", &x.display);
    let scene = Scene {
        remote: PaneShow::Video,
        local: PaneShow::Video,
        mirror: true,
        overlay: Overlay {
            footer: Some("compare aloud: poppy gravel jaguar salmon".into()),
            ..Overlay::default()
        },
    };
    println!("| size | renderer | draw p50 | p90 | peer on screen p50 |");
    println!("|---|---|---|---|---|");
    for (w, h) in [(640u32, 480u32), (1280, 720)] {
        let mut pattern = TestPattern::new(w, h);
        let pictures: Vec<(Arc<VideoFrame>, Arc<VideoFrame>)> = (0..30)
            .map(|n| {
                let bgr = pattern.render(n, 0);
                let yuv = Arc::new(to_i420(&bgr).expect("even size"));
                (Arc::new(bgr), yuv)
            })
            .collect();
        // one window at a time (SDL has one event pump); the painters take turns, 4 rounds
        let mut times: Vec<(&str, Vec<f64>, Vec<f64>)> =
            vec![("gpu", vec![], vec![]), ("cpu", vec![], vec![])];
        for _ in 0..4 {
            for (name, t, peer) in &mut times {
                let r = Renderer::parse(name).expect("renderer");
                let mut win = Window::open("Prattle bench", None, (w, h), r).expect("window opens");
                for i in 0..draws / 4 + 5 {
                    let (bgr, yuv) = &pictures[i % pictures.len()];
                    let _ = win.poll_commands();
                    let local = Arc::clone(bgr);
                    let start = Instant::now();
                    win.upload_local(local).expect("self-view");
                    win.upload_remote(Arc::clone(yuv)).expect("picture");
                    let on_screen = win.draw(&scene).expect("draw");
                    if i >= 5 {
                        t.push(start.elapsed().as_secs_f64() * 1000.0);
                        let at = on_screen.unwrap_or_else(Instant::now);
                        peer.push((at - start).as_secs_f64() * 1000.0);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        for (name, times, peer) in &mut times {
            let p50 = percentile(times, 0.5);
            let p90 = percentile(times, 0.9);
            let peer50 = percentile(peer, 0.5);
            println!("| {w}x{h} | {name} | {p50:.2} ms | {p90:.2} ms | {peer50:.2} ms |");
        }
    }
}
