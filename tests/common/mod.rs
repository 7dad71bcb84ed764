//! Helpers for end-to-end tests: real prattle processes, stats files, Xvfb displays.
#![allow(dead_code)]

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_prattle")
}

/// A UDP port free right now on loopback.
pub fn free_port() -> u16 {
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
        cmd.args(args)
            .arg("--port")
            .arg(port.to_string())
            .arg("--stats")
            .arg(&stats)
            .env("RUST_LOG", "info,laminar=off")
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
}

impl Xvfb {
    /// Starts Xvfb on a free display number with a `w`×`h` screen.
    pub fn start(w: u32, h: u32) -> Self {
        for n in 0..200 {
            let num = 100 + (std::process::id() as usize * 7 + n * 13) % 800;
            let lock = format!("/tmp/.X{num}-lock");
            if Path::new(&lock).exists() {
                continue;
            }
            let child = Command::new("Xvfb")
                .arg(format!(":{num}"))
                .args(["-screen", "0", &format!("{w}x{h}x24"), "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb is installed by scripts/setup");
            let socket = format!("/tmp/.X11-unix/X{num}");
            let end = Instant::now() + Duration::from_secs(10);
            let mut child = child;
            while Instant::now() < end {
                if Path::new(&socket).exists() {
                    return Self {
                        child,
                        display: format!(":{num}"),
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break; // lost a race for this display number
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
        }
        panic!("could not start Xvfb");
    }

    /// Runs an X client on this display; returns its standard output.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .unwrap_or_else(|e| panic!("{program} is installed by scripts/setup: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
