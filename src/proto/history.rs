//! What the sender keeps of recently sent video, to answer resend requests (NACKs).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Frames kept at most.
pub const MAX_FRAMES: usize = 64;
/// Bytes kept at most.
pub const MAX_BYTES: usize = 4 << 20;
/// How long a frame is kept: longer than any receiver waits for it.
pub const KEEP: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Sent {
    frame_id: u32,
    datagrams: Vec<Vec<u8>>,
    at: Instant,
}

/// Send times kept (about 8 s at 30 fps): the round trip is measured on frames the peer
/// names in its reports, which may be older than the frames kept for resending.
const MAX_TIMES: usize = 256;

/// The encoded datagrams of recent frames, bounded in count, bytes and age, and when recent
/// frames were sent.
#[derive(Debug, Default)]
pub struct SendHistory {
    frames: VecDeque<Sent>,
    bytes: usize,
    times: VecDeque<(u32, Instant)>,
}

impl SendHistory {
    /// Remembers the datagrams of a frame sent at `now`.
    pub fn record(&mut self, frame_id: u32, datagrams: Vec<Vec<u8>>, now: Instant) {
        if self.times.len() >= MAX_TIMES {
            self.times.pop_front();
        }
        self.times.push_back((frame_id, now));
        self.bytes += datagrams.iter().map(Vec::len).sum::<usize>();
        self.frames.push_back(Sent {
            frame_id,
            datagrams,
            at: now,
        });
        while self.frames.len() > MAX_FRAMES
            || self.bytes > MAX_BYTES
            || self
                .frames
                .front()
                .is_some_and(|f| now.saturating_duration_since(f.at) > KEEP)
        {
            if let Some(old) = self.frames.pop_front() {
                self.bytes -= old.datagrams.iter().map(Vec::len).sum::<usize>();
            } else {
                break;
            }
        }
    }

    /// The datagrams to send again for a request: the named fragments, or the whole frame.
    pub fn resend(&self, frame_id: u32, missing: Option<&[u16]>) -> Vec<&[u8]> {
        let Some(f) = self.frames.iter().find(|f| f.frame_id == frame_id) else {
            return Vec::new();
        };
        match missing {
            None => f.datagrams.iter().map(Vec::as_slice).collect(),
            Some(idx) => idx
                .iter()
                .filter_map(|&i| f.datagrams.get(usize::from(i)))
                .map(Vec::as_slice)
                .collect(),
        }
    }

    /// When `frame_id` was sent, if it was recently.
    pub fn sent_at(&self, frame_id: u32) -> Option<Instant> {
        self.times
            .iter()
            .rev()
            .find(|(id, _)| *id == frame_id)
            .map(|&(_, at)| at)
    }

    /// Forgets everything, for a new call.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.times.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_named_pieces_and_forgets_old_frames() {
        let mut h = SendHistory::default();
        let t0 = Instant::now();
        h.record(1, vec![vec![1], vec![2], vec![3]], t0);
        assert_eq!(h.resend(1, Some(&[2, 0, 99])), vec![&[3u8][..], &[1u8][..]]);
        assert_eq!(h.resend(1, None).len(), 3);
        assert!(h.resend(2, None).is_empty());
        h.record(2, vec![vec![0; 10]], t0 + KEEP + Duration::from_millis(1));
        assert!(h.resend(1, None).is_empty(), "too old");
        for i in 0..1000 {
            h.record(10 + i, vec![vec![0; 1200]; 10], t0 + KEEP);
        }
        assert!(h.frames.len() <= MAX_FRAMES && h.bytes <= MAX_BYTES);
    }

    #[test]
    fn send_times_outlive_the_datagrams_but_stay_bounded() {
        let mut h = SendHistory::default();
        let t0 = Instant::now();
        h.record(1, vec![vec![0; 10]], t0);
        let later = t0 + KEEP * 4;
        h.record(2, vec![vec![0; 10]], later);
        assert!(h.resend(1, None).is_empty(), "datagrams gone");
        assert_eq!(h.sent_at(1), Some(t0), "time kept");
        assert_eq!(h.sent_at(2), Some(later));
        assert_eq!(h.sent_at(3), None);
        for i in 0..1000 {
            h.record(10 + i, Vec::new(), later);
        }
        assert!(h.times.len() <= MAX_TIMES);
        assert_eq!(h.sent_at(1), None, "forgotten in the end");
    }
}
