//! `JitterBuffer::push`/`pop` fed packets from a hostile peer on a virtual clock, with every
//! playout decoded by `OpusDecoder` the way the audio system does it.
//!
//! Input: four config bytes (frame `b0 % 61` ms, 0 meaning the default; min delay `b1 × 2`
//! ms; max delay `b2 × 4` ms; capacity `b3`), then records (`prattle_fuzz::Records`). A
//! record's control byte moves the clock by `ctl >> 1` ms; odd is a push whose body is
//! `seq u32 LE | timestamp u32 LE | payload`, even is a pop. A push whose timestamp is odd
//! also offers its payload as the copy of the packet before it (`push_copy`).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use prattle::media::jitter::{AudioPacket, JitterBuffer, JitterConfig, Playout};
use prattle::media::opus_codec::{OpusDecoder, FRAME_SAMPLES};
use prattle_fuzz::Records;

fn u32_le(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a[..b.len().min(4)].copy_from_slice(&b[..b.len().min(4)]);
    u32::from_le_bytes(a)
}

fuzz_target!(|data: &[u8]| {
    let Some((cfg, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let mut jb = JitterBuffer::new(JitterConfig {
        frame: Duration::from_millis(u64::from(cfg[0] % 61)),
        min_delay: Duration::from_millis(u64::from(cfg[1]) * 2),
        max_delay: Duration::from_millis(u64::from(cfg[2]) * 4),
        capacity: usize::from(cfg[3]),
    });
    let mut dec = OpusDecoder::new().expect("decoder");
    let mut pcm = vec![0i16; FRAME_SAMPLES];
    let mut now = Instant::now();
    let mut pushed = 0u64;
    for (ctl, body) in Records::new(rest) {
        now += Duration::from_millis(u64::from(ctl >> 1));
        if ctl & 1 == 1 {
            let seq = u32_le(body);
            let timestamp = u32_le(body.get(4..).unwrap_or_default());
            let payload = body.get(8..).unwrap_or_default().to_vec();
            if timestamp & 1 == 1 {
                jb.push_copy(seq.wrapping_sub(1), payload.clone());
            }
            jb.push(
                AudioPacket {
                    seq,
                    timestamp,
                    payload,
                },
                now,
            );
            pushed += 1;
            assert_eq!(jb.stats().received, pushed);
            continue;
        }
        let n = match jb.pop(now) {
            Playout::Packet(p) => dec.decode(&p, &mut pcm),
            Playout::Conceal => dec.conceal(&mut pcm),
            Playout::Silence => Ok(0),
        };
        if let Ok(n) = n {
            assert!(n <= pcm.len());
        }
        let s = jb.stats();
        assert!(s.target_delay_ms.is_finite() && s.current_delay_ms.is_finite());
    }
});
