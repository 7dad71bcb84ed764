//! End-to-end bench: two real headless peers with the stamped test pattern, B calling A
//! through `prattle-relay` (clean, 5 % loss with 30±10 ms delay, or a 1 Mbit/s cap).
//! Prints a markdown table of what arrived, how late and how good. `cargo bench --bench e2e`;
//! PRATTLE_BENCH_SECS sets each call's length (default 10); PRATTLE_BENCH_SIZES and
//! PRATTLE_BENCH_CODECS (comma-separated) pick rows.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn ticks_per_sec() -> f64 {
    100.0 // Linux USER_HZ
}

/// User+system CPU seconds of a running process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / ticks_per_sec()
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(47_900)
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_prattle"))
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prattle")
}

fn last_line(path: &std::path::Path) -> Value {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .next_back()
        .unwrap_or(Value::Null)
}

struct Row {
    size: String,
    codec: String,
    link: String,
    p95: f64,
    freeze: f64,
    psnr: f64,
    sent: f64,
    shown: f64,
    p50: f64,
    p99: f64,
    mbit: f64,
    cpu_a: f64,
    cpu_b: f64,
}

fn run(size: &str, codec: &str, link: &str, spec: &str, secs: f64) -> Row {
    let dir = std::env::temp_dir().join(format!("prattle-e2e-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let (pa, pb, pr) = (free_port(), free_port(), free_port());
    let mut relay = Command::new(env!("CARGO_BIN_EXE_prattle-relay"))
        .args([
            "--listen",
            &format!("127.0.0.1:{pr}"),
            "--to",
            &format!("127.0.0.1:{pa}"),
        ])
        .args(["--up", spec, "--down", spec, "--seed", "1"])
        .args(["--duration", &format!("{}", secs + 10.0)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prattle-relay");
    let (sa, sb) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    let common = |port: u16, stats: &std::path::Path, d: f64| {
        vec![
            "--headless".into(),
            "--camera".into(),
            "test".into(),
            "--size".into(),
            size.into(),
            "--codec".into(),
            codec.into(),
            "--bitrate".into(),
            if size == "640x480" {
                "1000000".into()
            } else {
                "1500000".into()
            },
            "--port".into(),
            port.to_string(),
            "--stats".into(),
            stats.display().to_string(),
            "--duration".into(),
            format!("{d}"),
        ]
    };
    let mut a = spawn(&common(pa, &sa, secs + 1.5));
    std::thread::sleep(Duration::from_millis(300));
    let mut args_b = common(pb, &sb, secs);
    args_b.extend(["--peer".to_string(), format!("127.0.0.1:{pr}")]);
    let start = Instant::now();
    let mut b = spawn(&args_b);
    std::thread::sleep(Duration::from_secs_f64(secs - 0.3));
    let wall = start.elapsed().as_secs_f64();
    let (cpu_a, cpu_b) = (cpu_secs(a.id()), cpu_secs(b.id()));
    let _ = b.wait();
    let _ = a.wait();
    let _ = relay.kill();
    let _ = relay.wait();
    let (la, lb) = (last_line(&sa), last_line(&sb));
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    Row {
        size: size.into(),
        codec: codec.into(),
        link: link.into(),
        p95: n(&la, "latency_ms_p95_total"),
        freeze: n(&la, "longest_freeze_ms"),
        psnr: n(&la, "psnr_y_db"),
        sent: n(&lb, "frames_sent"),
        shown: n(&la, "frames_shown"),
        p50: n(&la, "latency_ms_p50_total"),
        p99: n(&la, "latency_ms_p99_total"),
        mbit: n(&lb, "bytes_sent") * 8.0 / secs / 1e6,
        cpu_a: 100.0 * cpu_a / wall,
        cpu_b: 100.0 * cpu_b / wall,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: a benchmark; run it with `cargo bench --bench e2e`");
        return;
    }
    let secs: f64 = std::env::var("PRATTLE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    println!("Two headless peers, B calls A through prattle-relay, 30 fps, {secs} s per row; B→A video as A shows it.\n");
    println!("| size | codec | link | shown | capture→shown p50 | p95 | p99 | longest freeze | Mbit/s | Y-PSNR | CPU A | CPU B |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let links = [
        ("clean", "clean"),
        ("5 % loss, 30±10 ms", "loss=5%,delay=20ms,jitter=20ms"),
        ("1 Mbit/s cap", "rate=1mbit"),
    ];
    let pick = |var: &str, all: &[&'static str]| -> Vec<&'static str> {
        let want = std::env::var(var).unwrap_or_default();
        all.iter()
            .copied()
            .filter(|x| want.is_empty() || want.split(',').any(|w| w == *x))
            .collect()
    };
    for size in pick("PRATTLE_BENCH_SIZES", &["640x480", "1280x720"]) {
        for codec in pick("PRATTLE_BENCH_CODECS", &["h264", "mjpeg"]) {
            for (link, spec) in links {
                let r = run(size, codec, link, spec, secs);
                println!(
                    "| {} | {} | {} | {:.1} % | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} ms | {:.2} | {:.1} dB | {:.0} % | {:.0} % |",
                    r.size,
                    r.codec,
                    r.link,
                    100.0 * r.shown / r.sent.max(1.0),
                    r.p50,
                    r.p95,
                    r.p99,
                    r.freeze,
                    r.mbit,
                    r.psnr,
                    r.cpu_a,
                    r.cpu_b
                );
            }
        }
    }
}
