//! Helpers for end-to-end tests: real prattle processes, stats files, Xvfb displays.
#![allow(dead_code)]

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// User+system CPU seconds a running process has used so far (Linux: `/proc`, 100 ticks a
/// second); 0 when it cannot be read.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / 100.0
}

/// The binary under test: this build's, or PRATTLE_BIN (to compare two builds in the benches).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("PRATTLE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_prattle").into())
    })
}

/// A UDP port free right now on loopback, below Linux's ephemeral range (32768–60999): a port
/// the system handed out for port 0 was sometimes taken, before the peer meant to have it
/// started, by another socket bound to port 0 (the relay's, say: "port … is already in use").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SEED: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // one start per process (processes running at once start apart), then a fixed walk
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        std::process::id().wrapping_mul(2_654_435_761) ^ nanos
    });
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        // 7919 is prime and does not divide SPAN: consecutive calls walk the whole span
        let port = LOW + seed.wrapping_add(k.wrapping_mul(7919)) % SPAN;
        if UdpSocket::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    s.local_addr().expect("local addr").port()
}

/// A scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prattle-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A running prattle process.
pub struct Peer {
    pub child: Child,
    pub stats: PathBuf,
    pub log: PathBuf,
    pub port: u16,
}

impl Peer {
    /// Starts prattle with `args` plus `--port`, `--stats` and a log file in `dir`.
    pub fn start(dir: &Path, name: &str, port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        let stats = dir.join(format!("{name}.stats.jsonl"));
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(bin());
        // one identity per port: a peer restarted on its port keeps its key, as a user's would
        let config = dir.join(format!("config-{port}"));
        cmd.args(args).arg("--port").arg(port.to_string());
        if !args.contains(&"--config-dir") {
            cmd.arg("--config-dir").arg(&config);
        }
        cmd.arg("--stats")
            .arg(&stats)
            // PRATTLE_PEER_LOG overrides the peers' log filter (e.g. `info,audio_timing=trace`)
            .env(
                "RUST_LOG",
                std::env::var("PRATTLE_PEER_LOG").unwrap_or_else(|_| "info,laminar=off".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start prattle");
        Self {
            child,
            stats,
            log,
            port,
        }
    }

    /// Starts prattle on a port another peer of the test has just left. The port is free
    /// again but in the ephemeral range, where another test's port probe may hold it for a
    /// moment (seen in CI): a start that finds it busy is tried again, for up to 3 s.
    pub fn start_on_freed_port(
        dir: &Path,
        name: &str,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut peer = Self::start(dir, name, port, args, env);
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(300));
            let exited = peer.child.try_wait().ok().flatten().is_some();
            if !(exited && peer.log_text().contains("already in use")) {
                break;
            }
            peer = Self::start(dir, name, port, args, env);
        }
        peer
    }

    /// Types keys on the process's standard input (the headless key path).
    pub fn keys(&mut self, keys: &str) {
        use std::io::Write;
        if let Some(stdin) = self.child.stdin.as_mut() {
            stdin.write_all(keys.as_bytes()).expect("write keys");
            stdin.flush().expect("flush keys");
        }
    }

    /// Stats lines written so far.
    pub fn lines(&self) -> Vec<Value> {
        read_stats(&self.stats)
    }

    /// The newest stats line.
    pub fn last(&self) -> Value {
        self.lines().pop().unwrap_or(Value::Null)
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!(
                    "prattle did not exit within {limit:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process's log.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the newest stats line satisfies `pred`, at most `limit`.
    pub fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + limit;
        loop {
            let last = self.last();
            if pred(&last) {
                return last;
            }
            if Instant::now() > end {
                panic!(
                    "timed out waiting for {what}; last stats: {last}\nlog:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses a stats file; a half-written last line is skipped.
pub fn read_stats(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A number field of a stats line.
pub fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// A private X server, killed on drop.
pub struct Xvfb {
    child: Child,
    pub display: String,
    /// Xvfb's standard output, kept open: a write to a closed pipe would kill it.
    _stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
}

impl Xvfb {
    /// Starts Xvfb with a `w`×`h` screen on a display number it picks itself
    /// (`-displayfd`: tests that start servers at once never share one).
    pub fn start(w: u32, h: u32) -> Self {
        use std::io::BufRead;
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1"])
            .args(["-screen", "0", &format!("{w}x{h}x24"), "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed by scripts/setup");
        let mut line = String::new();
        let mut stdout = child.stdout.take().map(std::io::BufReader::new);
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_line(&mut line);
        }
        let Ok(num) = line.trim().parse::<u32>() else {
            let _ = child.kill();
            panic!("Xvfb did not say which display it took: {line:?}");
        };
        Self {
            child,
            display: format!(":{num}"),
            _stdout: stdout,
        }
    }

    /// Runs an X client on this display; returns its standard output.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.output(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs an X client on this display whatever it exits with: a key that closes the window
    /// can leave xdotool sending the key's release to a window already gone (BadWindow).
    pub fn output(&self, program: &str, args: &[&str]) -> std::process::Output {
        Command::new(program)
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .unwrap_or_else(|e| panic!("{program} is installed by scripts/setup: {e}"))
    }

    /// Takes a screenshot of the whole screen as RGB.
    pub fn screenshot(&self, path: &Path) -> image::RgbImage {
        let target = format!("png:{}", path.display());
        self.run("import", &["-window", "root", &target]);
        image::open(path).expect("screenshot decodes").to_rgb8()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private PulseAudio server with four null sinks: micA, spkA, micB, spkB. Peer A's
/// microphone is `micA.monitor`, its speaker `spkA`; the same for B.
pub struct Pulse {
    dir: PathBuf,
}

impl Pulse {
    /// Starts the daemon in its own runtime directory.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "prattle-pulse-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ (fastrand_seed() as u128)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("pulse runtime dir");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        }
        let mut args = vec![
            "--daemonize=yes".to_string(),
            "--exit-idle-time=-1".into(),
            "--system=false".into(),
            "-n".into(),
            "--load=module-native-protocol-unix".into(),
        ];
        for s in ["micA", "spkA", "micB", "spkB"] {
            args.push(format!(
                "--load=module-null-sink sink_name={s} rate=48000 channels=1"
            ));
        }
        // playing into clickAB sounds at once in A's microphone and B's speaker: the latency
        // bench's reference. It runs at the server's default format (44.1 kHz stereo: each
        // click resampled twice) and adjusts its slaves' rates: tried at 48 kHz mono with no
        // adjustment (session 25), A's microphone got even 2.5 ms pieces during the clicks
        // instead of uneven 0.2-2.5 ms ones, but the audio bench's mic->speaker read 24-32 ms
        // against 18-21 ms in three alternating rounds while B's own estimate stayed put: the
        // reference itself moved
        args.push("--load=module-combine-sink sink_name=clickAB slaves=micA,spkB".into());
        args.push("--load=module-always-sink".into());
        let st = Command::new("pulseaudio")
            .args(&args)
            .env("XDG_RUNTIME_DIR", &dir)
            .env("HOME", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pulseaudio is installed by scripts/setup");
        assert!(st.success(), "pulseaudio failed to start");
        let socket = dir.join("pulse/native");
        let end = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < end, "pulseaudio socket never appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { dir }
    }

    /// Environment for a process that should use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("XDG_RUNTIME_DIR".into(), self.dir.display().to_string()),
            (
                "PULSE_SERVER".into(),
                format!("unix:{}", self.dir.join("pulse/native").display()),
            ),
            ("HOME".into(), self.dir.display().to_string()),
        ]
    }

    /// The daemon's process id (from its pid file).
    pub fn pid(&self) -> u32 {
        let text = fs::read_to_string(self.dir.join("pulse/pid")).expect("pulseaudio pid file");
        text.trim().parse().expect("pid")
    }

    /// A command bound to this server.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c
    }

    /// Plays raw 48 kHz mono s16le `samples` into `sink` (a virtual microphone) in real time.
    pub fn play(&self, sink: &str, samples: Vec<i16>) -> Child {
        let mut child = self
            .command("pacat")
            .args([
                "--playback",
                &format!("--device={sink}"),
                "--raw",
                "--format=s16le",
                "--rate=48000",
                "--channels=1",
                "--latency-msec=10",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pacat");
        let mut stdin = child.stdin.take().expect("pacat stdin");
        std::thread::spawn(move || {
            use std::io::Write;
            let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            let _ = stdin.write_all(&bytes);
        });
        child
    }

    /// Records raw 48 kHz mono s16le from `source` (a speaker's monitor) into a file.
    pub fn record(&self, source: &str, path: &Path) -> Child {
        self.command("parec")
            .args([
                &format!("--device={source}"),
                "--raw",
                "--format=s16le",
                "--rate=48000",
                "--channels=1",
                "--latency-msec=10",
            ])
            .stdout(fs::File::create(path).expect("recording file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("parec")
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.command("pulseaudio").arg("--kill").status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn fastrand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Clicks: `n` bursts of 2 ms of 3 kHz, one every `every_ms`.
pub fn clicks(n: usize, every_ms: usize) -> Vec<i16> {
    let period = 48 * every_ms;
    let mut out = vec![0i16; n * period];
    for k in 0..n {
        for i in 0..96 {
            let t = i as f64;
            let v = (t * 2.0 * std::f64::consts::PI * 3000.0 / 48_000.0).sin()
                * (std::f64::consts::PI * t / 96.0).sin();
            out[k * period + i] = (v * 20_000.0) as i16;
        }
    }
    out
}

/// Onsets of loud bursts after at least 10 ms of quiet, in samples. (20 ms missed the
/// copy of a click that came through the call 21 ms after it.)
pub fn onsets(x: &[i16], threshold: i16) -> Vec<usize> {
    let mut quiet = 0usize;
    let mut out = Vec::new();
    for (i, &v) in x.iter().enumerate() {
        if v.unsigned_abs() > threshold.unsigned_abs() {
            if quiet >= 480 {
                out.push(i);
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    out
}

/// Delays (ms) between each direct click and its copy that came through the call, from a
/// recording holding both: pairs of onsets closer than `max_ms`.
pub fn click_delays(x: &[i16], max_ms: f64) -> Vec<f64> {
    let on = onsets(x, 3000);
    let max = (max_ms * 48.0) as usize;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < on.len() {
        let (a, b) = (on[i], on[i + 1]);
        let lone_pair = on.get(i + 2).is_none_or(|c| c - a > max);
        if b - a < max && lone_pair {
            out.push((b - a) as f64 / 48.0);
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// Reads a raw s16le recording.
pub fn read_raw(path: &Path) -> Vec<i16> {
    fs::read(path)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// A sine of `hz` at amplitude `amp` (0–1) lasting `secs`.
pub fn sine(hz: f64, amp: f64, secs: f64) -> Vec<i16> {
    (0..(48_000.0 * secs) as usize)
        .map(|i| {
            ((i as f64 * 2.0 * std::f64::consts::PI * hz / 48_000.0).sin() * amp * 32767.0) as i16
        })
        .collect()
}

/// Power of `hz` in `x` (Goertzel), normalised per sample.
pub fn tone_power(x: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) / 32768.0 + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    2.0 * p / (x.len().max(1) as f64).powi(2)
}

/// Mean power of `x`.
pub fn power(x: &[i16]) -> f64 {
    x.iter()
        .map(|&v| (f64::from(v) / 32768.0).powi(2))
        .sum::<f64>()
        / x.len().max(1) as f64
}

/// Signal-to-noise ratio of the `hz` tone in `x`, dB: the median over 100 ms windows, so that
/// a phase jump where the jitter buffer skipped or inserted a frame counts once, not over the
/// whole recording.
pub fn tone_snr_db(x: &[i16], hz: f64) -> f64 {
    let mut snrs: Vec<f64> = x
        .chunks_exact(4_800)
        .map(|w| {
            let tone = tone_power(w, hz);
            let noise = (power(w) - tone).max(1e-12);
            10.0 * (tone / noise).log10()
        })
        .collect();
    if snrs.is_empty() {
        return f64::NEG_INFINITY;
    }
    snrs.sort_by(f64::total_cmp);
    snrs[snrs.len() / 2]
}

/// Resident memory of a process, kB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
