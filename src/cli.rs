//! Command-line options.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::devices::audio::{MicSource, SpeakerSink};
use crate::devices::window::Renderer;
use crate::proto::CodecId;

/// The port a call uses when none is given.
pub const DEFAULT_PORT: u16 = 47800;

/// Prattle: a peer-to-peer video call.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None)]
pub struct Options {
    /// Who to call: HOST or HOST:PORT. Without it, wait for a call.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub peer: Option<String>,

    /// UDP port to listen on.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Local address to listen on.
    #[arg(long, default_value = "0.0.0.0", value_parser = parse_bind)]
    pub bind: IpAddr,

    /// Camera: a device index (0), a video file, a GStreamer pipeline ending in appsink, or
    /// `test` for the built-in test pattern. Default: camera 0, else the test pattern.
    #[arg(long, value_name = "SRC")]
    pub camera: Option<String>,

    /// Picture size sent to the peer.
    #[arg(long, default_value = "640x480", value_name = "WxH", value_parser = parse_size)]
    pub size: (u32, u32),

    /// Frames per second captured and sent.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub fps: u32,

    /// Video codec.
    #[arg(long, default_value = "h264", value_parser = parse_codec)]
    pub codec: CodecId,

    /// H.264 bitrate in bit/s (the starting point: the link may lower it).
    #[arg(long, default_value_t = 1_500_000, value_parser = clap::value_parser!(u32).range(50_000..=20_000_000))]
    pub bitrate: u32,

    /// Highest JPEG quality of the video with --codec mjpeg, 1–100 (lower while the link
    /// needs it).
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,

    /// Window size. Default: the peer's picture at its own size beside the self-view, shrunk
    /// to fit the screen.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub window: Option<(u32, u32)>,

    /// Run without a window (keys come from standard input: m, c, q).
    #[arg(long)]
    pub headless: bool,

    /// How the window draws: `gpu` (SDL's renderer, pictures uploaded as IYUV textures),
    /// `cpu` (the window's framebuffer, pictures converted by the CPU), or `auto`: cpu where
    /// OpenGL is a software rasteriser, else gpu.
    #[arg(long, value_name = "R", default_value = "auto", value_parser = Renderer::parse)]
    pub renderer: Renderer,

    /// Show the self-view as the camera sees it instead of as a mirror.
    #[arg(long)]
    pub no_mirror: bool,

    /// Keep the call loop in the ordinary scheduling class. By default it asks for real-time
    /// round-robin scheduling where the system allows it (root, or an `rtprio` limit), so that
    /// a busy machine does not keep it from feeding the speaker.
    #[arg(long)]
    pub no_realtime: bool,

    /// End the call and exit after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<f64>,

    /// Write one JSON object per second of call statistics to this file.
    #[arg(long, value_name = "PATH")]
    pub stats: Option<PathBuf>,

    /// Milliseconds between two stats lines.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub stats_interval: u64,

    /// Microphone: a device name or id (see --list-devices), `tone[:HZ]`, a WAV file, or `none`.
    #[arg(long, value_name = "NAME", value_parser = MicSource::parse)]
    pub mic: Option<MicSource>,

    /// Speaker: a device name or id (see --list-devices), a WAV file to record into, or `none`.
    #[arg(long, value_name = "NAME", value_parser = SpeakerSink::parse)]
    pub speaker: Option<SpeakerSink>,

    /// Opus bitrate in bit/s.
    #[arg(long, default_value_t = 32_000, value_parser = clap::value_parser!(i32).range(6_000..=256_000))]
    pub audio_bitrate: i32,

    /// Sound device buffer in milliseconds (smaller: less delay, more risk of dropouts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=200))]
    pub audio_buffer_ms: u32,

    /// How much later than the picture the peer's sound may be heard, in ms, before the
    /// picture waits for it (lip sync); pictures more than 5 ms later than their sound make
    /// the sound wait instead (up to 100 ms). `off` does neither.
    #[arg(long, value_name = "MS", default_value = "18", value_parser = parse_lip_sync)]
    pub lip_sync: LipSyncLag,

    /// Print the audio devices and the camera indices that open, then exit.
    #[arg(long)]
    pub list_devices: bool,

    /// Pair with a one-time code instead of trusting the first key: the waiting side gives
    /// `--code` alone and shows a code; the caller gives `--code THAT-CODE`.
    #[arg(long, value_name = "CODE", num_args = 0..=1, default_missing_value = "")]
    pub code: Option<String>,

    /// Where the identity key and the keys of known peers are kept.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

/// A problem with the command line that the user can fix.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The peer does not parse or resolve.
    #[error("cannot resolve peer '{0}': give a host name or IP address, optionally with :PORT (e.g. --peer 192.168.1.20:47800)")]
    PeerUnresolvable(String),
    /// No route to the peer.
    #[error("peer {0} is unreachable from this machine: {1}; check the address and your network")]
    PeerUnreachable(SocketAddr, String),
    /// A caller must type the code the waiting side shows.
    #[error("--code needs the code the other side shows when you call with --peer, e.g. --code 7-crossword-pelican")]
    CodeMissing,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || {
        format!("'{s}' is not a picture size: give WIDTHxHEIGHT with even numbers from 160 to 3840, e.g. 640x480")
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    let ok = |v: u32| (160..=3840).contains(&v) && v.is_multiple_of(2);
    if ok(w) && ok(h) && h >= 120 {
        Ok((w, h))
    } else {
        Err(bad())
    }
}

fn parse_codec(s: &str) -> Result<CodecId, String> {
    match s.to_ascii_lowercase().as_str() {
        "h264" | "h.264" | "avc" => Ok(CodecId::H264),
        "mjpeg" | "jpeg" => Ok(CodecId::Mjpeg),
        _ => Err(format!("'{s}' is not a codec: give h264 or mjpeg")),
    }
}

fn parse_bind(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| {
        format!("'{s}' is not an IP address: give one of this machine's addresses, e.g. 0.0.0.0")
    })
}

fn parse_duration(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "'{s}' is not a duration: give a number of seconds above 0, e.g. 30"
        )),
    }
}

/// `--lip-sync`: the most the sound may lag the picture, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LipSyncLag(pub Option<Duration>);

fn parse_lip_sync(s: &str) -> Result<LipSyncLag, String> {
    if s == "off" {
        return Ok(LipSyncLag(None));
    }
    match s.parse::<u64>() {
        Ok(ms) if ms <= 1000 => Ok(LipSyncLag(Some(Duration::from_millis(ms)))),
        _ => Err(format!(
            "'{s}' is not a lip-sync lag: give milliseconds from 0 to 1000, e.g. 10, or off"
        )),
    }
}

impl Options {
    /// Resolves `--peer` to one address (IPv4 preferred) and checks there is a route to it.
    pub fn peer_addr(&self) -> Result<Option<SocketAddr>, UsageError> {
        let Some(peer) = &self.peer else {
            return Ok(None);
        };
        let target = if peer.parse::<SocketAddr>().is_ok() || has_port(peer) {
            peer.clone()
        } else if peer.contains(':') {
            format!("[{}]:{}", peer.trim_matches(['[', ']']), self.port)
        } else {
            format!("{peer}:{}", self.port)
        };
        let addrs: Vec<SocketAddr> = target
            .to_socket_addrs()
            .map_err(|_| UsageError::PeerUnresolvable(peer.clone()))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| UsageError::PeerUnresolvable(peer.clone()))?;
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(UsageError::PeerUnresolvable(peer.clone()));
        }
        // connect() on UDP sends nothing: it only asks the kernel for a route
        let probe = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        UdpSocket::bind(probe)
            .and_then(|s| s.connect(addr))
            .map_err(|e| UsageError::PeerUnreachable(addr, e.to_string()))?;
        Ok(Some(addr))
    }

    /// The address to bind: `--bind` and `--port`, on IPv6 when the peer is IPv6.
    pub fn bind_addr(&self, peer: Option<SocketAddr>) -> SocketAddr {
        let ip = match (self.bind, peer) {
            (IpAddr::V4(v4), Some(p)) if v4.is_unspecified() && p.is_ipv6() => {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            }
            (ip, _) => ip,
        };
        SocketAddr::new(ip, self.port)
    }
}

/// `host:port` with a numeric port and a host that is not a bare IPv6 address.
fn has_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.contains(':') && !host.is_empty() && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("prattle").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_wait_for_a_call() {
        let o = opts(&[]).expect("parses");
        assert_eq!(o.peer_addr().expect("ok"), None);
        assert_eq!(o.port, DEFAULT_PORT);
        assert_eq!(o.size, (640, 480));
    }

    #[test]
    fn peer_forms() {
        let o = opts(&["--peer", "127.0.0.1"]).expect("parses");
        assert_eq!(
            o.peer_addr().expect("ok"),
            Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))
        );
        let o = opts(&["--peer", "localhost:5000"]).expect("parses");
        assert_eq!(o.peer_addr().expect("ok").map(|a| a.port()), Some(5000));
        let o = opts(&["--peer", "::1"]).expect("parses");
        assert_eq!(o.peer_addr().expect("ok").map(|a| a.is_ipv6()), Some(true));
    }

    #[test]
    fn bad_input_is_refused_with_the_fix_named() {
        for bad in [
            vec!["--size", "0x5"],
            vec!["--size", "641x480"],
            vec!["--size", "big"],
            vec!["--fps", "0"],
            vec!["--quality", "101"],
            vec!["--bind", "nonsense"],
            vec!["--duration", "-1"],
            vec!["--port", "70000"],
        ] {
            assert!(opts(&bad).is_err(), "{bad:?}");
        }
        let e = opts(&["--size", "big"]).expect_err("refused").to_string();
        assert!(e.contains("640x480"), "{e}");
        let o = opts(&["--peer", "no-such-host.invalid"]).expect("parses");
        let e = o.peer_addr().expect_err("unresolvable").to_string();
        assert!(e.contains("--peer"), "{e}");
        let o = opts(&["--peer", "0.0.0.0"]).expect("parses");
        assert!(o.peer_addr().is_err());
    }
}
