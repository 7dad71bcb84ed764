//! `prattle-relay`: a loopback UDP relay that impairs each direction independently.
//!
//! One thread per direction, each blocking on its own receive socket, so a clean datagram is
//! forwarded as soon as the kernel wakes us; the main thread watches the clock and the control file.

use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use prattle::impair::{Channel, ChannelStats, Control, Impairment};
use thiserror::Error;
use tracing::{debug, info, warn};

/// How often the control file is read.
const CONTROL_POLL: Duration = Duration::from_millis(100);
/// Longest a direction thread blocks with nothing held, so it notices the deadline and updates.
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// Longest sleep while datagrams are held; bounds how late a held datagram or a new arrival is seen.
const HELD_POLL: Duration = Duration::from_micros(500);
/// Datagrams read or sent per loop turn, so one busy side cannot starve the other half of the loop.
const BATCH: usize = 256;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Longest run the relay accepts.
const MAX_RUN_SECS: f64 = 86_400.0;

/// Impairing UDP relay for Prattle tests: client → --listen → (up) → --to, and back (down).
#[derive(Debug, Parser)]
#[command(name = "prattle-relay", version)]
struct Cli {
    /// Loopback address the client (peer B) sends to, e.g. 127.0.0.1:9001.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Loopback address of the peer to forward to (peer A), e.g. 127.0.0.1:9000.
    #[arg(long, value_name = "ADDR")]
    to: SocketAddr,
    /// Client→peer impairment: `clean` or comma-separated loss=5% | ge=PGB:PBG:LG:LB | delay=30ms |
    /// jitter=10ms | `reorder=2%[:10ms]` | dup=1% | rate=1mbit | queue=100ms | outage.
    #[arg(long, value_name = "SPEC", default_value = "clean", value_parser = Impairment::parse)]
    up: Impairment,
    /// Peer→client impairment, same syntax as --up.
    #[arg(long, value_name = "SPEC", default_value = "clean", value_parser = Impairment::parse)]
    down: Impairment,
    /// RNG seed; the same seed and traffic give the same impairment decisions.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Seconds to run before exiting and printing the summary.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    duration: Duration,
    /// File polled every 100 ms for `up=SPEC;down=SPEC`, `outage=on` or `outage=off`.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= MAX_RUN_SECS => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "write a number of seconds above 0 and at most {MAX_RUN_SECS}, e.g. --duration 10"
        )),
    }
}

/// Fatal relay errors.
#[derive(Debug, Error)]
enum RelayError {
    #[error("--{flag} {addr} is not a loopback address; use 127.0.0.1:PORT")]
    NotLoopback {
        flag: &'static str,
        addr: SocketAddr,
    },
    #[error("--listen and --to are both {0}; point --to at the peer, not at the relay")]
    SameAddr(SocketAddr),
    #[error("cannot bind {addr}: {source}; pick a free port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("socket setup failed: {0}")]
    Socket(#[from] std::io::Error),
    #[error("{0} direction thread panicked")]
    Panicked(&'static str),
}

impl RelayError {
    /// Exit code: 2 for bad arguments, 1 for run-time failures.
    fn code(&self) -> u8 {
        match self {
            Self::NotLoopback { .. } | Self::SameAddr(_) => 2,
            _ => 1,
        }
    }
}

/// Where a direction's output goes.
enum Dest {
    /// The socket is connected to the peer.
    Connected,
    /// The client address, once learned from its first datagram.
    Client(Arc<OnceLock<SocketAddr>>),
}

/// Which senders a direction accepts.
enum Accept {
    /// Learn the client from the first sender and ignore everyone else.
    FirstSender(Arc<OnceLock<SocketAddr>>),
    /// Connected socket: the kernel only delivers the peer's datagrams.
    Any,
}

/// One direction: receive, impair, send.
struct Direction {
    name: &'static str,
    rx: UdpSocket,
    tx: UdpSocket,
    dest: Dest,
    accept: Accept,
    channel: Channel,
    updates: Receiver<Impairment>,
    deadline: Instant,
}

/// What a direction thread hands back at exit.
struct DirReport {
    stats: ChannelStats,
    send_errors: u64,
    ignored: u64,
}

impl Direction {
    fn run(mut self) -> DirReport {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (mut send_errors, mut ignored) = (0u64, 0u64);
        // Track socket mode and timeout to avoid a syscall per datagram.
        let mut nonblocking = false;
        let mut timeout = None;
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                break;
            }
            while let Ok(imp) = self.updates.try_recv() {
                info!(dir = self.name, spec = %imp, "impairment changed");
                self.channel.set(imp);
            }
            for _ in 0..BATCH {
                let Some(d) = self.channel.pop_due(now) else {
                    break;
                };
                let res = match &self.dest {
                    Dest::Connected => self.tx.send(&d),
                    Dest::Client(c) => match c.get() {
                        Some(addr) => self.tx.send_to(&d, addr),
                        None => Ok(0),
                    },
                };
                if let Err(e) = res {
                    // The peer not listening yet shows up here as ECONNREFUSED; that is normal traffic loss.
                    send_errors += 1;
                    debug!(dir = self.name, error = %e, "send failed");
                }
            }
            let until_deadline = self.deadline - now;
            // Blocking receive with a kernel timeout is precise to a wake-up for arrivals but
            // only to a timer tick for the timeout, so held datagrams are timed by sleeping instead.
            let want_nonblocking = self.channel.next_due().is_some();
            if want_nonblocking != nonblocking {
                if let Err(e) = self.rx.set_nonblocking(want_nonblocking) {
                    warn!(dir = self.name, error = %e, "cannot switch socket mode");
                }
                nonblocking = want_nonblocking;
            }
            if !nonblocking {
                let t = IDLE_WAIT.min(until_deadline).max(Duration::from_micros(1));
                if timeout != Some(t) {
                    if let Err(e) = self.rx.set_read_timeout(Some(t)) {
                        warn!(dir = self.name, error = %e, "cannot set timeout");
                    }
                    timeout = Some(t);
                }
            }
            let mut got = 0;
            for _ in 0..BATCH {
                match self.rx.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        got += 1;
                        let ok = match &self.accept {
                            Accept::Any => true,
                            Accept::FirstSender(c) => {
                                let client = *c.get_or_init(|| {
                                    info!(client = %from, "client learned");
                                    from
                                });
                                client == from
                            }
                        };
                        let has_dest = match &self.dest {
                            Dest::Client(c) => c.get().is_some(),
                            Dest::Connected => true,
                        };
                        if ok && has_dest {
                            self.channel.push(buf[..n].to_vec(), Instant::now());
                        } else {
                            ignored += 1;
                        }
                        if !nonblocking {
                            // Forward at once rather than waiting for a second datagram.
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) =>
                    {
                        break
                    }
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                        // ICMP port-unreachable from an earlier send to a peer that is not up.
                        continue;
                    }
                    Err(e) => {
                        warn!(dir = self.name, error = %e, "receive failed");
                        thread::sleep(Duration::from_millis(1));
                        break;
                    }
                }
            }
            if nonblocking && got == 0 {
                let now = Instant::now();
                let wait = self
                    .channel
                    .next_due()
                    .map_or(HELD_POLL, |t| t.saturating_duration_since(now))
                    .min(HELD_POLL)
                    .min(self.deadline.saturating_duration_since(now));
                if !wait.is_zero() {
                    thread::sleep(wait);
                }
            }
        }
        DirReport {
            stats: self.channel.stats(),
            send_errors,
            ignored,
        }
    }
}

fn dir_json(r: &DirReport) -> String {
    let stats = r.stats.to_json();
    let body = stats.strip_suffix('}').unwrap_or(&stats);
    format!(
        "{body},\"send_errors\":{},\"ignored\":{}}}",
        r.send_errors, r.ignored
    )
}

/// Reads the control file if it changed and turns it into new impairments for both directions.
struct ControlWatch {
    path: PathBuf,
    last: Option<String>,
    up: Impairment,
    down: Impairment,
    outage: bool,
}

impl ControlWatch {
    /// Returns the new (up, down) impairments when the file changed to a valid command.
    fn poll(&mut self) -> Option<(Impairment, Impairment)> {
        // A missing or unreadable file means "no command yet".
        let text = fs::read_to_string(&self.path).ok()?;
        if self.last.as_deref() == Some(text.as_str()) {
            return None;
        }
        self.last = Some(text.clone());
        match Control::parse(&text) {
            Ok(Control::Outage(on)) => self.outage = on,
            Ok(Control::Set { up, down }) => {
                self.up = up.unwrap_or(self.up);
                self.down = down.unwrap_or(self.down);
            }
            Err(e) => {
                warn!(path = %self.path.display(), "ignoring control file: {e}");
                return None;
            }
        }
        info!(command = text.trim(), "control applied");
        let mut up = self.up;
        let mut down = self.down;
        // An outage from the control file overrides whatever the specs say until it is lifted.
        up.down |= self.outage;
        down.down |= self.outage;
        Some((up, down))
    }
}

fn run(cli: Cli) -> Result<String, RelayError> {
    for (flag, addr) in [("listen", cli.listen), ("to", cli.to)] {
        // Tests on this project only ever target this machine; refuse anything else outright.
        if !addr.ip().is_loopback() {
            return Err(RelayError::NotLoopback { flag, addr });
        }
    }
    if cli.listen == cli.to {
        return Err(RelayError::SameAddr(cli.listen));
    }
    let client_sock = UdpSocket::bind(cli.listen).map_err(|source| RelayError::Bind {
        addr: cli.listen,
        source,
    })?;
    let upstream_local = SocketAddr::new(cli.to.ip(), 0);
    let upstream = UdpSocket::bind(upstream_local).map_err(|source| RelayError::Bind {
        addr: upstream_local,
        source,
    })?;
    upstream.connect(cli.to)?;
    info!(listen = %cli.listen, to = %cli.to, via = %upstream.local_addr()?, up = %cli.up, down = %cli.down, "relay running");

    let start = Instant::now();
    let deadline = start + cli.duration;
    let client = Arc::new(OnceLock::new());
    let (up_tx, up_rx): (Sender<Impairment>, _) = mpsc::channel();
    let (down_tx, down_rx): (Sender<Impairment>, _) = mpsc::channel();
    let up_dir = Direction {
        name: "up",
        tx: upstream.try_clone()?,
        rx: client_sock.try_clone()?,
        dest: Dest::Connected,
        accept: Accept::FirstSender(client.clone()),
        channel: Channel::new(cli.up, cli.seed),
        updates: up_rx,
        deadline,
    };
    let down_dir = Direction {
        name: "down",
        tx: client_sock,
        rx: upstream,
        dest: Dest::Client(client.clone()),
        accept: Accept::Any,
        // A different seed per direction so both do not drop the same packet numbers.
        channel: Channel::new(cli.down, cli.seed ^ 0x5A5A_5A5A_5A5A_5A5A),
        updates: down_rx,
        deadline,
    };
    let up_handle = thread::Builder::new()
        .name("relay-up".into())
        .spawn(move || up_dir.run())?;
    let down_handle = thread::Builder::new()
        .name("relay-down".into())
        .spawn(move || down_dir.run())?;

    let mut watch = cli.control.map(|path| ControlWatch {
        path,
        last: None,
        up: cli.up,
        down: cli.down,
        outage: false,
    });
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if let Some((up, down)) = watch.as_mut().and_then(ControlWatch::poll) {
            // A send fails only if a direction thread already ended; the join below reports that.
            let _ = up_tx.send(up);
            let _ = down_tx.send(down);
        }
        thread::sleep(CONTROL_POLL.min(deadline - now));
    }
    let up = up_handle.join().map_err(|_| RelayError::Panicked("up"))?;
    let down = down_handle
        .join()
        .map_err(|_| RelayError::Panicked("down"))?;
    let client = client
        .get()
        .map_or_else(|| "null".to_string(), |c| format!("\"{c}\""));
    Ok(format!(
        "{{\"up\":{},\"down\":{},\"client\":{client},\"seed\":{},\"elapsed_s\":{:.3}}}",
        dir_json(&up),
        dir_json(&down),
        cli.seed,
        start.elapsed().as_secs_f64()
    ))
}

/// Squeezes clap's multi-line error into one line that keeps the reason and any tip.
fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.trim_start_matches("error: "));
        }
    }
    format!("prattle-relay: {} (see --help)", parts.join(" "))
}

fn main() -> ExitCode {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::filter::LevelFilter::from_str(&v).ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version go to stdout and are not errors.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("prattle-relay: {e}");
            ExitCode::from(e.code())
        }
    }
}
