//! Which loss recovery shows more frames: retransmission (our NACK path: the real `Reassembler`
//! with its in-order hold and resend requests), forward error correction (our Reed-Solomon
//! parity: one shard per so many data fragments, any as many lost fragments rebuilt), both,
//! or nothing. A simulation on virtual time — 60 s of 480p H.264 at 1 Mbit/s (30 fps, a 4.2 kB
//! P-frame, a 24 kB keyframe every 4 s and on request) over a link that loses at random and
//! delays 30±10 ms each way — so the strategies meet exactly the same losses.
//! `cargo bench --bench loss_recovery`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use prattle::proto::fragment::{fragment_frame, FrameMeta, Reassembler, DEFAULT_DEADLINE};
use prattle::proto::parity::parity_fragments;
use prattle::proto::{CodecId, ParityFragment, VideoFragment};

const FPS: u64 = 30;
const P_FRAME: usize = 4_200;
const KEYFRAME: usize = 24_000;
const SECONDS: u64 = 60;
/// Keyframe requests at most this often (as in the app).
const KEYFRAME_EVERY: Duration = Duration::from_millis(300);

/// How a strategy recovers: resend requests, and parity (data fragments per parity one).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Strategy {
    resend: bool,
    parity: Option<usize>,
}

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One direction: random loss, 30±10 ms.
struct Link {
    rng: Rng,
    loss: f64,
}

impl Link {
    /// When a datagram sent at `t` arrives, if it does.
    fn send(&mut self, t: u64) -> Option<u64> {
        let lost = self.rng.unit() < self.loss;
        let delay = 20 + (self.rng.unit() * 20.0) as u64;
        (!lost).then_some(t + delay)
    }
}

#[derive(Default)]
struct Outcome {
    sent_frames: u64,
    shown: u64,
    latencies: Vec<f64>,
    media_bytes: u64,
    wire_bytes: u64,
}

enum Packet {
    Fragment(VideoFragment),
    Parity(ParityFragment),
    Nack {
        frame_id: u32,
        missing: Option<Vec<u16>>,
    },
    KeyframeRequest,
}

fn simulate(strategy: Strategy, loss: f64, seed: u64) -> Outcome {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut fwd = Link {
        rng: Rng(seed),
        loss,
    };
    let mut back = Link {
        rng: Rng(seed ^ 0x5555_aaaa_1234_5678),
        loss,
    };
    let mut queue: Vec<(u64, bool, Packet)> = Vec::new(); // (arrival ms, to receiver?, packet)
    let mut out = Outcome::default();
    let mut history: VecDeque<(u64, u32, Vec<VideoFragment>)> = VecDeque::new();
    let mut reasm = Reassembler::new(DEFAULT_DEADLINE);
    let mut capture_ms: HashMap<u32, u64> = HashMap::new();
    let mut broken = false; // a reference is missing: wait for a keyframe
    let mut last_request: Option<u64> = None;
    let mut want_keyframe = false;
    let end = SECONDS * 1000;
    let frame_every = 1000 / FPS;
    let mut frame_id: u32 = 0;

    for now in 0..end + 1000 {
        // the sender: a frame every 33 ms
        if now < end && now % frame_every == 0 {
            let key = frame_id == 0 || want_keyframe || now % 4000 == 0;
            want_keyframe = false;
            let size = if key { KEYFRAME } else { P_FRAME };
            let meta = FrameMeta {
                frame_id,
                keyframe: key,
                codec: CodecId::H264,
                width: 640,
                height: 480,
                capture_us: now * 1000,
            };
            let data = vec![0u8; size];
            let frags = fragment_frame(meta, &data).expect("fragments");
            out.sent_frames += 1;
            out.media_bytes += size as u64;
            capture_ms.insert(frame_id, now);
            for f in &frags {
                out.wire_bytes += f.payload.len() as u64;
                if let Some(t) = fwd.send(now) {
                    queue.push((t, true, Packet::Fragment(f.clone())));
                }
            }
            if let Some(group) = strategy.parity {
                for p in parity_fragments(meta, &data, group).expect("parity") {
                    out.wire_bytes += p.payload.len() as u64;
                    if let Some(t) = fwd.send(now) {
                        queue.push((t, true, Packet::Parity(p)));
                    }
                }
            }
            history.push_back((now, frame_id, frags));
            while history.front().is_some_and(|h| now - h.0 > 500) {
                history.pop_front();
            }
            frame_id += 1;
        }
        // deliveries due now
        let mut due = Vec::new();
        let mut i = 0;
        while i < queue.len() {
            if queue[i].0 <= now {
                due.push(queue.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|d| d.0);
        for (_, to_receiver, p) in due {
            match (to_receiver, p) {
                (true, Packet::Fragment(f)) => {
                    reasm.push(f, at(now));
                }
                (true, Packet::Parity(p)) => {
                    reasm.push_parity(p, at(now));
                }
                (false, Packet::Nack { frame_id, missing }) => {
                    if let Some((_, _, frags)) = history.iter().find(|h| h.1 == frame_id) {
                        for f in frags {
                            let wanted = missing.as_ref().is_none_or(|m| m.contains(&f.index));
                            if wanted {
                                out.wire_bytes += f.payload.len() as u64;
                                if let Some(t) = fwd.send(now) {
                                    queue.push((t, true, Packet::Fragment(f.clone())));
                                }
                            }
                        }
                    }
                }
                (false, Packet::KeyframeRequest) => want_keyframe = true,
                _ => {}
            }
        }
        // the receiver: what can be shown, in order
        let show = |id: u32, key: bool, out: &mut Outcome, broken: &mut bool| {
            if key {
                *broken = false;
            }
            if !*broken {
                out.shown += 1;
                if let Some(c) = capture_ms.get(&id) {
                    out.latencies.push((now - c) as f64);
                }
            }
        };
        let mut lost_one = false;
        if strategy.resend {
            for n in reasm.nacks(at(now)) {
                if let Some(t) = back.send(now) {
                    queue.push((
                        t,
                        false,
                        Packet::Nack {
                            frame_id: n.frame_id,
                            missing: n.missing,
                        },
                    ));
                }
            }
        }
        reasm.expire(at(now));
        while let Some(f) = reasm.pop_ready() {
            if f.gap {
                broken = true;
                lost_one = true;
            }
            show(f.meta.frame_id, f.meta.keyframe, &mut out, &mut broken);
        }
        if (lost_one || broken)
            && last_request.is_none_or(|t| now - t >= KEYFRAME_EVERY.as_millis() as u64)
        {
            last_request = Some(now);
            if let Some(t) = back.send(now) {
                queue.push((t, false, Packet::KeyframeRequest));
            }
        }
    }
    out
}

fn quantile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(((s.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("loss_recovery: a benchmark; run it with `cargo bench --bench loss_recovery`");
        return;
    }
    println!("{SECONDS} s of 480p H.264 at ~1 Mbit/s, 30±10 ms each way, random loss both ways; the same seed for every strategy.\n");
    println!("| loss | recovery | shown | capture→shown p50 | p99 | bytes on the wire / media |");
    println!("|---|---|---|---|---|---|");
    for loss in [0.05, 0.10] {
        let none = Strategy {
            resend: false,
            parity: None,
        };
        let resend = Strategy {
            resend: true,
            ..none
        };
        for (name, s) in [
            ("nothing", none),
            ("resend (NACK)", resend),
            (
                "parity, 1 per 4 fragments",
                Strategy {
                    parity: Some(4),
                    ..none
                },
            ),
            (
                "resend + parity, 1 per 4",
                Strategy {
                    parity: Some(4),
                    ..resend
                },
            ),
            (
                "resend + parity, 1 per 2",
                Strategy {
                    parity: Some(2),
                    ..resend
                },
            ),
        ] {
            let o = simulate(s, loss, 0x9e37_79b9_7f4a_7c15);
            println!(
                "| {:.0} % | {name} | {:.1} % | {:.0} ms | {:.0} ms | {:.2} |",
                loss * 100.0,
                100.0 * o.shown as f64 / o.sent_frames.max(1) as f64,
                quantile(&o.latencies, 0.5),
                quantile(&o.latencies, 0.99),
                o.wire_bytes as f64 / o.media_bytes.max(1) as f64
            );
        }
    }
}
