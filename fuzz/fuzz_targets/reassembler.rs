//! `Reassembler::push`/`expire` fed a sequence of datagrams, as from a hostile peer.
//!
//! Input: records (`prattle_fuzz::Records`). A record's control byte moves a virtual clock by
//! `(ctl >> 1) × 4 ms` and, when odd, runs `expire`; its body is decoded with
//! `Message::decode`: a video fragment is pushed, a `Bye` resets the reassembler (a new
//! call), anything else is ignored. Memory must stay bounded and complete frames must come
//! out in frame order with no more bytes than their fragments can carry.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use prattle::proto::fragment::{MAX_FRAMES_IN_FLIGHT, DEFAULT_DEADLINE};
use prattle::proto::message::{MAX_FRAGMENTS, MAX_FRAGMENT_PAYLOAD};
use prattle::proto::{Message, Reassembler, ReassemblyEvent};
use prattle_fuzz::Records;

/// The documented bound: partial frames in flight × fragments per frame × bytes per fragment.
const MAX_BUFFERED: usize = MAX_FRAMES_IN_FLIGHT * MAX_FRAGMENTS as usize * MAX_FRAGMENT_PAYLOAD;

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new(DEFAULT_DEADLINE);
    let mut now = Instant::now();
    let mut last_done: Option<u32> = None;
    let mut completed = 0u64;
    for (ctl, body) in Records::new(data) {
        now += Duration::from_millis(u64::from(ctl >> 1) * 4);
        if ctl & 1 == 1 {
            r.expire(now);
        }
        match Message::decode(body) {
            Ok(Message::Video(frag)) => {
                let count = usize::from(frag.count);
                let id = frag.frame_id;
                if let ReassemblyEvent::Complete(c) = r.push(frag, now) {
                    completed += 1;
                    assert_eq!(c.meta.frame_id, id);
                    assert!(!c.data.is_empty());
                    assert!(c.data.len() <= count * MAX_FRAGMENT_PAYLOAD);
                    if let Some(prev) = last_done {
                        assert!(
                            (id.wrapping_sub(prev) as i32) > 0,
                            "frame {id} completed after frame {prev}"
                        );
                    }
                    last_done = Some(id);
                }
            }
            Ok(Message::Bye { .. }) => {
                r.reset();
                last_done = None;
            }
            _ => {}
        }
        assert!(
            r.buffered_bytes() <= MAX_BUFFERED,
            "{} bytes buffered",
            r.buffered_bytes()
        );
        assert_eq!(r.stats().completed, completed);
    }
});
