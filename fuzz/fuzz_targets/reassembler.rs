//! `Reassembler` (push, expire, pop_ready, nacks) fed a sequence of datagrams from a hostile
//! peer, driven the way the network system drives it.
//!
//! Input: records (`prattle_fuzz::Records`). A record's control byte moves a virtual clock by
//! `(ctl >> 1) × 4 ms`; when odd it is also a tick: `expire`, every `pop_ready` frame, and
//! `nacks`. Its body is decoded with `Message::decode`: a video or parity fragment is pushed, a `Bye`
//! resets the reassembler (a new call), anything else is ignored.
//!
//! Checked: partial frames stay within the documented memory bound; frames come out strictly
//! in frame order, `gap` set exactly when frames were skipped, each no larger than a frame
//! can be; resend requests name valid indices and encode as a `Nack` message.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use prattle::proto::fragment::{DEFAULT_DEADLINE, MAX_FRAMES_IN_FLIGHT};
use prattle::proto::message::{MAX_FRAGMENTS, MAX_FRAGMENT_PAYLOAD, MAX_NACK_INDICES};
use prattle::proto::{Message, Reassembler, ReassemblyEvent};
use prattle_fuzz::Records;

/// The documented bound: partial frames in flight × (fragments per frame and at most as many
/// parity shards) × bytes per fragment.
const MAX_BUFFERED: usize = MAX_FRAMES_IN_FLIGHT * (MAX_FRAGMENTS as usize * 2) * MAX_FRAGMENT_PAYLOAD;
const MAX_FRAME: usize = MAX_FRAGMENTS as usize * MAX_FRAGMENT_PAYLOAD;

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new(DEFAULT_DEADLINE);
    let mut now = Instant::now();
    let mut last_out: Option<u32> = None;
    let mut completed = 0u64;
    let mut popped = 0u64;
    let drain = |r: &mut Reassembler, last_out: &mut Option<u32>, popped: &mut u64| {
        while let Some(c) = r.pop_ready() {
            *popped += 1;
            let id = c.meta.frame_id;
            assert!(!c.data.is_empty() && c.data.len() <= MAX_FRAME);
            if let Some(prev) = *last_out {
                assert!(
                    (id.wrapping_sub(prev) as i32) > 0,
                    "frame {id} handed out after frame {prev}"
                );
                assert_eq!(c.gap, id != prev.wrapping_add(1), "gap flag of {id} after {prev}");
            }
            *last_out = Some(id);
        }
    };
    for (ctl, body) in Records::new(data) {
        now += Duration::from_millis(u64::from(ctl >> 1) * 4);
        match Message::decode(body) {
            Ok(Message::Video(frag)) => {
                let id = frag.frame_id;
                if let ReassemblyEvent::Completed(done) = r.push(frag, now) {
                    assert_eq!(done, id);
                    completed += 1;
                }
            }
            Ok(Message::Parity(par)) => {
                let id = par.frame_id;
                if let ReassemblyEvent::Completed(done) = r.push_parity(par, now) {
                    assert_eq!(done, id);
                    completed += 1;
                }
            }
            Ok(Message::Bye { .. }) => {
                r.reset();
                last_out = None;
            }
            _ => {}
        }
        if ctl & 1 == 1 {
            r.expire(now);
            drain(&mut r, &mut last_out, &mut popped);
            for n in r.nacks(now) {
                if let Some(m) = &n.missing {
                    assert!(!m.is_empty() && m.len() <= MAX_NACK_INDICES);
                    assert!(m.iter().all(|&i| i < MAX_FRAGMENTS));
                }
                let nack = Message::Nack {
                    frame_id: n.frame_id,
                    missing: n.missing,
                };
                let bytes = nack.encode().expect("a resend request encodes");
                assert_eq!(Message::decode(&bytes).as_ref(), Ok(&nack));
            }
        }
        assert!(
            r.buffered_bytes() <= MAX_BUFFERED,
            "{} bytes buffered",
            r.buffered_bytes()
        );
        assert_eq!(r.stats().completed, completed);
    }
    drain(&mut r, &mut last_out, &mut popped);
    assert!(popped <= completed);
});
