//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/`.
//!
//! ```text
//! cargo run --release --manifest-path fuzz/Cargo.toml --example make_corpus
//! ```
//!
//! Seeds are valid traffic made by the library itself: encoded messages, fragmented frames,
//! Opus packets, JPEGs, and handshakes between two real secure endpoints recorded in the
//! record format the targets read (`prattle_fuzz`). Everything is deterministic, so running
//! this again rewrites the same files (JPEG and Opus bytes depend only on the libraries).

use std::collections::VecDeque;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use prattle::media::h264::H264Encoder;
use prattle::media::mjpeg::MjpegEncoder;
use prattle::media::opus_codec::{OpusEncoder, FRAME_SAMPLES};
use prattle::media::pattern::TestPattern;
use prattle::media::VideoEncoder;
use prattle::net::secure::{Auth, Identity, KnownPeers, SecureEndpoint};
use prattle::proto::fragment::FrameMeta;
use prattle::proto::{
    fragment_frame, AudioFrame, CodecId, Message, ProbePacket, ProbeResult, StateSnapshot,
    VideoFragment,
};
use prattle_fuzz::{ctl, record, EndpointDriver, Records, CFG_CODE, CFG_CONNECT, CODE, SOURCES};

struct Corpus {
    root: PathBuf,
    bytes: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        fs::write(dir.join(name), data).expect("write seed");
        self.bytes += data.len();
    }
}

fn enc(m: Message) -> Vec<u8> {
    m.encode().expect("encode")
}

fn frag(frame_id: u32, index: u16, count: u16, payload: &[u8]) -> Vec<u8> {
    enc(Message::Video(VideoFragment {
        frame_id,
        index,
        count,
        keyframe: true,
        codec: CodecId::Mjpeg,
        width: 320,
        height: 240,
        capture_us: 1_700_000_000_000_000 + u64::from(frame_id),
        payload: payload.to_vec(),
    }))
}

fn messages(c: &mut Corpus) {
    let all = [
        (
            "hello",
            Message::Hello {
                from: 0x0123_4567_89ab_cdef,
            },
        ),
        ("accept", Message::Accept { from: 1, to: 2 }),
        (
            "state",
            Message::State(StateSnapshot {
                from: 3,
                seq: 4,
                camera_on: true,
                muted: true,
            }),
        ),
        ("bye", Message::Bye { from: 5 }),
        (
            "keyframe_request",
            Message::KeyframeRequest {
                from: 6,
                frame_id: 7,
            },
        ),
        (
            "audio",
            Message::Audio(AudioFrame {
                seq: 8,
                timestamp: 960,
                capture_us: 9,
                payload: vec![0x78, 0x01, 0x02, 0x03],
                previous: None,
            }),
        ),
        (
            "audio_with_copy",
            Message::Audio(AudioFrame {
                seq: 9,
                timestamp: 1200,
                capture_us: 10,
                payload: vec![0x78, 0x04, 0x05],
                previous: Some(vec![0x78, 0x01, 0x02, 0x03]),
            }),
        ),
    ];
    for (name, m) in all {
        c.put("message_decode", name, &enc(m));
    }
    c.put("message_decode", "video", &frag(10, 1, 3, b"jpeg bytes"));
    let meta = FrameMeta {
        frame_id: 10,
        keyframe: false,
        codec: CodecId::H264,
        width: 640,
        height: 480,
        capture_us: 1,
    };
    let parity = prattle::proto::parity::parity_fragments(meta, &[7; 3000], 2).expect("parity");
    c.put(
        "message_decode",
        "parity",
        &enc(Message::Parity(parity[0].clone())),
    );
    let nack = |frame_id, missing| enc(Message::Nack { frame_id, missing });
    c.put("message_decode", "nack", &nack(11, Some(vec![0, 2, 1023])));
    c.put("message_decode", "nack_all", &nack(12, None));
    let probe = ProbePacket {
        cluster: 1,
        index: 2,
        count: 5,
        size: 100,
    };
    c.put("message_decode", "probe", &enc(Message::Probe(probe)));
    let result = ProbeResult {
        cluster: 1,
        kbps: 2400,
        even: true,
    };
    c.put(
        "message_decode",
        "probe_result",
        &enc(Message::ProbeResult(result)),
    );
}

fn reassembler(c: &mut Corpus) {
    // ctl: clock += (ctl >> 1) * 4 ms; odd runs expire first
    const TICK: u8 = 5 << 1; // 20 ms
    const TICK_EXPIRE: u8 = TICK | 1;
    let mut s = Vec::new();
    for id in 0..3u32 {
        for i in 0..3 {
            s.extend(record(TICK, &frag(id, i, 3, &[id as u8; 8])));
        }
        s.extend(record(TICK_EXPIRE, &[]));
    }
    c.put("reassembler", "in_order", &s);

    // two frames interleaved, reordered, one piece duplicated, one late after completion
    let order = [
        (1, 2),
        (0, 1),
        (1, 0),
        (0, 0),
        (0, 1),
        (1, 1),
        (0, 2),
        (0, 2),
    ];
    let mut s = Vec::new();
    for (f, i) in order {
        s.extend(record(TICK, &frag(100 + f, i, 3, &[f as u8; 8])));
    }
    c.put("reassembler", "reordered", &s);

    // a frame that misses its deadline, then a contradicting piece, then a newer frame
    let mut s = Vec::new();
    s.extend(record(TICK, &frag(7, 0, 2, b"first")));
    s.extend(record((110 << 1) | 1, &[])); // 440 ms later: expired
    s.extend(record(TICK, &frag(7, 1, 2, b"second")));
    s.extend(record(TICK, &frag(7, 0, 4, b"contradicts")));
    s.extend(record(TICK, &frag(8, 0, 1, b"whole")));
    c.put("reassembler", "deadline", &s);

    // frame ids wrap, then a new call (Bye) starts again from 0
    let mut s = Vec::new();
    for id in [u32::MAX - 1, u32::MAX, 0, 1] {
        s.extend(record(TICK, &frag(id, 0, 1, b"x")));
    }
    s.extend(record(TICK, &enc(Message::Bye { from: 1 })));
    s.extend(record(TICK, &frag(0, 0, 1, b"y")));
    c.put("reassembler", "wrap_and_reset", &s);

    // a real frame split as the sender splits it (nearly equal pieces)
    let meta = FrameMeta {
        frame_id: 42,
        keyframe: true,
        codec: CodecId::Mjpeg,
        width: 640,
        height: 480,
        capture_us: 1,
    };
    let data: Vec<u8> = (0..2600u32).map(|i| (i * 7) as u8).collect();
    let mut s = Vec::new();
    for f in fragment_frame(meta, &data)
        .expect("fragment")
        .into_iter()
        .rev()
    {
        s.extend(record(TICK, &enc(Message::Video(f))));
    }
    c.put("reassembler", "split_frame", &s);

    // the same frame with parity in groups of 2: one piece lost in each group is rebuilt,
    // a parity fragment comes first, one comes twice
    let parity = prattle::proto::parity::parity_fragments(meta, &data, 2).expect("parity");
    let mut s = Vec::new();
    s.extend(record(TICK, &enc(Message::Parity(parity[1].clone()))));
    for f in fragment_frame(meta, &data)
        .expect("fragment")
        .into_iter()
        .skip(1)
    {
        s.extend(record(TICK, &enc(Message::Video(f))));
    }
    s.extend(record(TICK, &enc(Message::Parity(parity[0].clone()))));
    s.extend(record(
        TICK_EXPIRE,
        &enc(Message::Parity(parity[0].clone())),
    ));
    c.put("reassembler", "parity", &s);

    // a piece and a whole frame go missing: ticks ask for them, the resent piece fills the
    // hole and the held frames follow; the never-seen frame is given up after the hold time
    let mut s = Vec::new();
    s.extend(record(TICK, &frag(20, 0, 2, b"a")));
    s.extend(record(TICK, &frag(21, 0, 1, b"b")));
    s.extend(record(TICK, &frag(23, 0, 1, b"d")));
    s.extend(record(TICK_EXPIRE, &[]));
    s.extend(record(TICK_EXPIRE, &[]));
    s.extend(record(TICK, &frag(20, 1, 2, b"a2")));
    s.extend(record(TICK_EXPIRE, &[]));
    s.extend(record((60 << 1) | 1, &[])); // 240 ms: past the hold time
    s.extend(record(TICK, &frag(24, 0, 1, b"e")));
    s.extend(record(TICK_EXPIRE, &[]));
    c.put("reassembler", "nack_and_hold", &s);
}

/// Real Opus packets of a tone.
fn opus_packets(n: usize) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::new(24_000, 20).expect("encoder");
    let mut t = 0usize;
    (0..n)
        .map(|_| {
            let pcm: Vec<i16> = (0..FRAME_SAMPLES)
                .map(|_| {
                    t += 1;
                    let x = t as f64 * 440.0 * std::f64::consts::TAU / 48_000.0;
                    (x.sin() * 8_000.0) as i16
                })
                .collect();
            enc.encode(&pcm).expect("encode")
        })
        .collect()
}

fn jitter(c: &mut Corpus) {
    // the audio system's config: 10 ms frames, 10..300 ms delay, 64 packets
    const CFG: [u8; 4] = [10, 5, 75, 64];
    let pkts = opus_packets(40);
    let push = |adv_ms: u8, seq: u32, payload: &[u8]| {
        let mut b = seq.to_le_bytes().to_vec();
        // an odd timestamp also offers the payload as the copy of the packet before
        b.extend_from_slice(&(seq.wrapping_mul(480) | (seq & 1)).to_le_bytes());
        b.extend_from_slice(payload);
        record((adv_ms << 1) | 1, &b)
    };
    let pop = |adv_ms: u8| record(adv_ms << 1, &[]);

    let mut s = CFG.to_vec();
    for (i, p) in pkts.iter().enumerate() {
        s.extend(push(5, i as u32, p));
        s.extend(pop(5));
    }
    c.put("jitter_buffer", "steady", &s);

    // jitter, a loss (a copy or concealment), reordering and a duplicate
    let mut s = CFG.to_vec();
    let order = [0usize, 1, 3, 2, 4, 4, 6, 8, 7, 9, 10, 11, 13, 12, 14, 15];
    for (k, &i) in order.iter().enumerate() {
        s.extend(push(if k % 3 == 0 { 25 } else { 2 }, i as u32, &pkts[i]));
        s.extend(pop(10));
    }
    for _ in 0..8 {
        s.extend(pop(10));
    }
    c.put("jitter_buffer", "lossy", &s);

    // sequence numbers wrap; then the sender restarts far away (four in a row reset)
    let mut s = CFG.to_vec();
    for (k, seq) in [u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2]
        .into_iter()
        .enumerate()
    {
        s.extend(push(10, seq, &pkts[k]));
        s.extend(pop(10));
    }
    for k in 0..6u32 {
        s.extend(push(10, 500_000 + k, &pkts[k as usize]));
        s.extend(pop(10));
    }
    s.extend(pop(127));
    s.extend(pop(127));
    s.extend(pop(127));
    c.put("jitter_buffer", "wrap_and_restart", &s);

    // another config: 20 ms frames, capacity 4, a burst that overflows it
    let mut s = vec![20, 10, 50, 4];
    for i in 0..10u32 {
        s.extend(push(0, i, &pkts[i as usize]));
    }
    for _ in 0..12 {
        s.extend(pop(20));
    }
    c.put("jitter_buffer", "burst_overflow", &s);
}

fn opus(c: &mut Corpus) {
    let pkts = opus_packets(12);
    // ctl & 3: 2 conceals, the others decode; (ctl >> 2) & 7 picks the buffer size
    const DECODE_480: u8 = 3 << 2;
    const CONCEAL_480: u8 = 2 | (3 << 2);
    const DECODE_5760: u8 = 6 << 2;
    let mut s = Vec::new();
    for (i, p) in pkts.iter().enumerate() {
        match i % 4 {
            0 => s.extend(record(DECODE_480, p)),
            1 => {
                s.extend(record(CONCEAL_480, &[]));
                s.extend(record(DECODE_480, p));
            }
            2 => s.extend(record(CONCEAL_480, &[])),
            _ => s.extend(record(DECODE_5760, p)),
        }
    }
    c.put("opus_decode", "stream", &s);
    c.put("opus_decode", "one_packet", &record(DECODE_480, &pkts[5]));
    // a code-3 packet (several frames) and a too-small buffer
    let mut s = record(DECODE_5760, &[0x7b, 0x83, 0x01, 0x02, 0x03]);
    s.extend(record(1 << 2, &pkts[3]));
    c.put("opus_decode", "odd_packets", &s);
}

fn mjpeg(c: &mut Corpus) {
    for (name, w, h, q) in [
        ("16x16_q50", 16, 16, 50),
        ("64x48_q20", 64, 48, 20),
        ("33x17_q90", 33, 17, 90),
    ] {
        let frame = TestPattern::new(w, h).render(1, 2);
        let jpeg = MjpegEncoder::new(q, 30)
            .encode(&frame, true)
            .expect("encode")
            .data;
        c.put("mjpeg_decode", name, &jpeg);
        if name == "64x48_q20" {
            c.put("mjpeg_decode", "truncated", &jpeg[..jpeg.len() / 2]);
        }
    }
}

fn h264(c: &mut Corpus) {
    // ctl bytes are ignored by the target; one access unit per record
    let mut enc = H264Encoder::new(64, 48, 30.0, 60_000).expect("encoder");
    let mut pattern = TestPattern::new(64, 48);
    let units: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            enc.encode(&pattern.render(i, 0), i == 0)
                .expect("encode")
                .data
        })
        .collect();
    let stream: Vec<u8> = units.iter().flat_map(|u| record(0, u)).collect();
    c.put("h264_decode", "stream_64x48", &stream);
    c.put("h264_decode", "keyframe_64x48", &record(0, &units[0]));
    // a lost frame: later ones refer to a picture the decoder never had
    let lossy: Vec<u8> = [0, 2, 3]
        .iter()
        .flat_map(|&i| record(0, &units[i]))
        .collect();
    c.put("h264_decode", "lost_frame", &lossy);
}

/// What the recorded peer does next.
enum Act {
    /// The peer seals this plaintext to the endpoint under test.
    Data(&'static [u8]),
    /// The same data datagram again (a replay).
    Replay,
    /// The clock moves by `advance(v)` with no datagram; both sides run their timers.
    Tick(u8),
}

const PEER_ID: [u8; 32] = [0x22; 32];
const PEER_SEED: [u8; 32] = [0x77; 32];
/// Where the peer believes the endpoint under test is.
const TARGET_ADDR: &str = "127.0.0.9:9000";

/// Records a conversation between the endpoint under test (driven exactly as the
/// `secure_endpoint` target drives it) and a real peer at `SOURCES[0]`.
fn conversation(config: u8, peer_auth: Auth, acts: &[Act]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let start = Instant::now();
    let me: SocketAddr = TARGET_ADDR.parse().expect("literal address");
    let peer_addr: SocketAddr = SOURCES[0].parse().expect("literal address");
    let (mut t, sent) = EndpointDriver::new(config, start);
    let mut p = SecureEndpoint::with_seed(
        Identity::from_bytes(&PEER_ID).expect("key"),
        peer_auth,
        start,
        PEER_SEED,
    )
    .expect("peer");
    let mut input = vec![config];
    let mut wire = Vec::new(); // every datagram either side sent
    let mut to_p: VecDeque<Vec<u8>> = sent
        .into_iter()
        .filter(|(a, _)| *a == peer_addr)
        .map(|(_, d)| d)
        .collect();
    let mut to_t: VecDeque<Vec<u8>> = VecDeque::new();
    if config & CFG_CONNECT == 0 {
        p.connect(me, start);
    }
    let mut last_data = Vec::new();

    // delivers everything in flight, each side answering, until both are quiet
    let pump = |t: &mut EndpointDriver,
                p: &mut SecureEndpoint,
                to_p: &mut VecDeque<Vec<u8>>,
                to_t: &mut VecDeque<Vec<u8>>,
                input: &mut Vec<u8>,
                wire: &mut Vec<Vec<u8>>| {
        for _ in 0..100 {
            while let Some(d) = to_p.pop_front() {
                wire.push(d.clone());
                let _ = p.handle_datagram(me, &d, t.now());
            }
            p.handle_timeout(t.now());
            while let Some((_, d)) = p.poll_transmit() {
                to_t.push_back(d);
            }
            while p.poll_event().is_some() {}
            let Some(d) = to_t.pop_front() else {
                return;
            };
            wire.push(d.clone());
            input.extend(record(ctl(0, 0), &d));
            let (_, sent) = t.step(ctl(0, 0), &d);
            to_p.extend(
                sent.into_iter()
                    .filter(|(a, _)| *a == peer_addr)
                    .map(|(_, d)| d),
            );
        }
        panic!("conversation does not settle");
    };

    pump(&mut t, &mut p, &mut to_p, &mut to_t, &mut input, &mut wire);
    for act in acts {
        match act {
            Act::Data(plain) => {
                // after long gaps the peer may be between sessions: then it sends nothing
                if let Some(d) = p.seal(me, plain) {
                    last_data = d.clone();
                    to_t.push_back(d);
                }
            }
            Act::Replay if !last_data.is_empty() => to_t.push_back(last_data.clone()),
            Act::Replay => {}
            Act::Tick(v) => {
                input.extend(record(ctl(0, *v), &[]));
                let (_, sent) = t.step(ctl(0, *v), &[]);
                to_p.extend(
                    sent.into_iter()
                        .filter(|(a, _)| *a == peer_addr)
                        .map(|(_, d)| d),
                );
            }
        }
        pump(&mut t, &mut p, &mut to_p, &mut to_t, &mut input, &mut wire);
    }
    let s = t.endpoint().stats();
    eprintln!(
        "  config {config}: {} input bytes, handshakes {}, opened {}, replays {}, code failures {}",
        input.len(),
        s.handshakes_completed,
        s.opened,
        s.dropped_replay,
        s.code_failures
    );
    // the target replays the input on its own clock: it must reach the same state
    let (mut r, _) = EndpointDriver::new(config, Instant::now());
    for (c, body) in Records::new(&input[1..]) {
        let _ = r.step(c, body);
    }
    assert_eq!(
        r.endpoint().stats(),
        s,
        "the recorded conversation replays exactly"
    );
    (input, wire)
}

fn secure(c: &mut Corpus) {
    use Act::*;
    let code = || Auth::Code(CODE.into());
    let runs: Vec<(&str, u8, Auth, Vec<Act>)> = vec![
        (
            "responder_tofu",
            0,
            Auth::Tofu,
            vec![Data(b"hello"), Data(b"world"), Replay],
        ),
        ("responder_code", CFG_CODE, code(), vec![Data(b"hi")]),
        (
            "initiator_tofu",
            CFG_CONNECT,
            Auth::Tofu,
            vec![Data(b"hello"), Replay],
        ),
        (
            "initiator_code",
            CFG_CONNECT | CFG_CODE,
            code(),
            vec![Data(b"hi")],
        ),
        (
            "code_mismatch",
            CFG_CODE,
            Auth::Code("8-other-words".into()),
            vec![],
        ),
        ("mode_mismatch", 0, code(), vec![]),
        (
            "timers",
            CFG_CONNECT,
            Auth::Tofu,
            // quiet gaps (stale re-handshakes), a rekey after 120 s, idle expiry
            vec![
                Data(b"a"),
                Tick(33),
                Data(b"b"),
                Tick(35),
                Data(b"c"),
                Tick(50),
                Data(b"d"),
                Tick(63),
                Data(b"e"),
            ],
        ),
    ];
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for (name, config, auth, acts) in runs {
        eprintln!("secure_endpoint/{name}");
        let (input, wire) = conversation(config, auth, &acts);
        c.put("secure_endpoint", name, &input);
        for d in wire {
            // one datagram of each type and length for the framing parser
            if !frames.iter().any(|f| f[0] == d[0] && f.len() == d.len()) {
                frames.push(d);
            }
        }
    }
    for f in &frames {
        c.put("secure_parse", &format!("frame_{}_{}", f[0], f.len()), f);
    }
    let mut pins = KnownPeers::new();
    pins.pin("192.168.1.20:7000", [0xab; 32]).expect("pin");
    pins.pin("alice", [0x01; 32]).expect("pin");
    c.put("secure_parse", "known_peers", pins.to_text().as_bytes());
    c.put("secure_parse", "code", b"7 Crossword  pelican");
    c.put(
        "secure_parse",
        "hex_key",
        b"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
    );
    let reject = [5u8, 1, 2, 3, 4, 1];
    c.put("secure_parse", "reject", &reject);
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut c = Corpus { root, bytes: 0 };
    messages(&mut c);
    reassembler(&mut c);
    jitter(&mut c);
    opus(&mut c);
    mjpeg(&mut c);
    h264(&mut c);
    secure(&mut c);
    println!(
        "wrote {} bytes of seeds under {}",
        c.bytes,
        c.root.display()
    );
}
