//! Splitting encoded frames into datagram-sized pieces and joining them again.
//!
//! laminar only fragments its reliable packets and joins fragments in arrival order, so video
//! is split here, sent unreliably, and reassembled by index. Memory is bounded: at most
//! [`MAX_FRAMES_IN_FLIGHT`] partial frames of at most [`MAX_FRAGMENTS`] pieces each.

use std::time::{Duration, Instant};

use super::message::{CodecId, ParityFragment, VideoFragment, MAX_FRAGMENTS, MAX_FRAGMENT_PAYLOAD};
use super::parity::{blocks_for, fragment_len, rebuild_block};
use super::ProtoError;

/// Partial frames kept at once; a newer frame evicts the oldest.
pub const MAX_FRAMES_IN_FLIGHT: usize = 8;
/// How long a partial frame may wait for its missing pieces.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(400);
/// How long complete frames wait for an older, missing one (being resent) before they are
/// released without it.
pub const DEFAULT_HOLD: Duration = Duration::from_millis(200);
/// A partial frame with no new piece for this long is missing some: ask for them. Asking
/// early costs a few duplicate fragments under jitter; asking late costs frames.
const NACK_QUIET: Duration = Duration::from_millis(15);
/// Least time between two requests for the same frame.
const NACK_RETRY: Duration = Duration::from_millis(40);
/// Requests per frame at most.
const MAX_NACKS: u8 = 4;
/// Frames remembered as never seen at all, at most.
const MAX_ABSENT: usize = 8;
/// A piece rebuilt from parity whose original has not turned up this long after was lost
/// (not just overtaken by its parity on a reordering link).
const REBUILT_WAIT: Duration = Duration::from_millis(100);
/// Rebuilt pieces waiting to be called lost or late, at most.
const MAX_REBUILT: usize = 256;

/// What describes an encoded frame besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Frame counter of the sender, wrapping.
    pub frame_id: u32,
    /// The frame decodes on its own.
    pub keyframe: bool,
    /// Codec of the frame.
    pub codec: CodecId,
    /// Picture width in pixels.
    pub width: u16,
    /// Picture height in pixels.
    pub height: u16,
    /// Capture time, microseconds since the UNIX epoch on the sender's clock.
    pub capture_us: u64,
}

/// A frame whose pieces all arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteFrame {
    /// Its description.
    pub meta: FrameMeta,
    /// The encoded bytes.
    pub data: Vec<u8>,
    /// Frames between the previous complete frame and this one never completed.
    pub gap: bool,
}

/// Splits an encoded frame into fragments of at most [`MAX_FRAGMENT_PAYLOAD`] bytes, of
/// nearly equal size so that no tiny last datagram is wasted.
pub fn fragment_frame(meta: FrameMeta, data: &[u8]) -> Result<Vec<VideoFragment>, ProtoError> {
    let (count, piece) = cut(data)?;
    Ok(data
        .chunks(piece)
        .enumerate()
        .map(|(i, chunk)| VideoFragment::new(meta, i as u16, count as u16, chunk.to_vec()))
        .collect())
}

/// Fragments a frame of `len` bytes is cut into (see [`cut`]).
pub(crate) fn fragment_count(len: usize) -> usize {
    len.div_ceil(MAX_FRAGMENT_PAYLOAD)
}

/// How a frame is cut: the number of fragments and the size of all but the last.
pub(crate) fn cut(data: &[u8]) -> Result<(usize, usize), ProtoError> {
    if data.is_empty() {
        return Err(ProtoError::Invalid("empty frame"));
    }
    let count = fragment_count(data.len());
    if count > MAX_FRAGMENTS as usize {
        return Err(ProtoError::Oversized(data.len()));
    }
    Ok((count, data.len().div_ceil(count)))
}

impl From<&VideoFragment> for FrameMeta {
    fn from(f: &VideoFragment) -> Self {
        Self {
            frame_id: f.frame_id,
            keyframe: f.keyframe,
            codec: f.codec,
            width: f.width,
            height: f.height,
            capture_us: f.capture_us,
        }
    }
}

impl From<&ParityFragment> for FrameMeta {
    fn from(f: &ParityFragment) -> Self {
        Self {
            frame_id: f.frame_id,
            keyframe: f.keyframe,
            codec: f.codec,
            width: f.width,
            height: f.height,
            capture_us: f.capture_us,
        }
    }
}

/// Counters of what the reassembler saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Frames completed.
    pub completed: u64,
    /// Frames given up: deadline passed, evicted, or overtaken by a newer complete frame.
    pub abandoned: u64,
    /// Fragments of frames already completed or abandoned.
    pub late: u64,
    /// Fragments received twice.
    pub duplicates: u64,
    /// Fragments that contradict earlier pieces of the same frame.
    pub inconsistent: u64,
    /// Fragments lost and rebuilt from parity (rebuilt, and the original did not turn up
    /// soon after).
    pub recovered: u64,
}

/// What happened to one pushed fragment, for callers that count or log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassemblyEvent {
    /// The fragment completed this frame; take frames with [`Reassembler::pop_ready`].
    Completed(u32),
    /// The fragment was stored; its frame is still missing pieces.
    Pending,
    /// The fragment was dropped (late, duplicate or inconsistent).
    Dropped,
}

#[derive(Debug)]
struct Partial {
    meta: FrameMeta,
    pieces: Vec<Option<Vec<u8>>>,
    received: usize,
    /// Parity shards by block (empty until the block's first one tells how many it has).
    parity: Vec<Vec<Option<Vec<u8>>>>,
    /// Frame length and fragment size, from the first parity fragment.
    layout: Option<(u32, usize)>,
    first_seen: Instant,
    last_arrival: Instant,
    nacks: u8,
    last_nack: Option<Instant>,
}

/// A frame of which not one fragment arrived, though later frames did.
#[derive(Debug)]
struct Absent {
    frame_id: u32,
    noticed: Instant,
    nacks: u8,
    last_nack: Option<Instant>,
}

/// What to ask the sender to send again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackRequest {
    /// The frame.
    pub frame_id: u32,
    /// The missing fragment indices; `None`: the whole frame.
    pub missing: Option<Vec<u16>>,
    /// The first request for this frame (later ones repeat it): count loss only once.
    pub first: bool,
}

/// Joins fragments back into frames and hands them out strictly in frame order, with
/// bounded memory. A frame that completes while an older one is still missing waits (at most
/// the hold time) so that a resent fragment can fill the hole; [`Reassembler::nacks`] says
/// what to ask for.
#[derive(Debug)]
pub struct Reassembler {
    partials: Vec<Partial>,
    held: Vec<CompleteFrame>,
    held_since: Option<Instant>,
    ready: std::collections::VecDeque<CompleteFrame>,
    last_done: Option<u32>,
    highest_seen: Option<u32>,
    absent: Vec<Absent>,
    /// Pieces rebuilt from parity lately: (frame, index, when).
    rebuilt: std::collections::VecDeque<(u32, u16, Instant)>,
    deadline: Duration,
    hold: Duration,
    stats: ReassemblyStats,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(DEFAULT_DEADLINE)
    }
}

/// `a` comes after `b` in wrapping frame-id order.
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Reassembler {
    /// A reassembler that abandons a partial frame `deadline` after its first piece.
    pub fn new(deadline: Duration) -> Self {
        Self {
            partials: Vec::with_capacity(MAX_FRAMES_IN_FLIGHT),
            held: Vec::new(),
            held_since: None,
            ready: std::collections::VecDeque::new(),
            last_done: None,
            highest_seen: None,
            absent: Vec::new(),
            rebuilt: std::collections::VecDeque::new(),
            deadline,
            hold: DEFAULT_HOLD,
            stats: ReassemblyStats::default(),
        }
    }

    /// Sets how long complete frames wait for an older missing one.
    pub fn with_hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// The next frame ready for the decoder, in frame order.
    pub fn pop_ready(&mut self) -> Option<CompleteFrame> {
        self.ready.pop_front()
    }

    /// What to ask the sender to resend now: pieces of frames that went quiet or were
    /// overtaken, and frames never seen at all. Each frame is asked for a few times at most.
    pub fn nacks(&mut self, now: Instant) -> Vec<NackRequest> {
        let mut out = Vec::new();
        let due = |n: u8, last: Option<Instant>| {
            n < MAX_NACKS && last.is_none_or(|t| now.saturating_duration_since(t) >= NACK_RETRY)
        };
        let highest = self.highest_seen;
        for p in &mut self.partials {
            // a newer frame has started: this one's stragglers are probably lost
            let overtaken = highest.is_some_and(|h| newer(h, p.meta.frame_id));
            let quiet = now.saturating_duration_since(p.last_arrival) >= NACK_QUIET;
            if (overtaken || quiet) && due(p.nacks, p.last_nack) {
                let first = p.nacks == 0;
                p.nacks += 1;
                p.last_nack = Some(now);
                let missing: Vec<u16> = p
                    .pieces
                    .iter()
                    .enumerate()
                    .filter(|(_, piece)| piece.is_none())
                    .map(|(i, _)| i as u16)
                    .take(crate::proto::message::MAX_NACK_INDICES)
                    .collect();
                out.push(NackRequest {
                    frame_id: p.meta.frame_id,
                    missing: Some(missing),
                    first,
                });
            }
        }
        let (last_done, deadline) = (self.last_done, self.deadline);
        self.absent.retain(|a| {
            last_done.is_none_or(|d| newer(a.frame_id, d))
                && now.saturating_duration_since(a.noticed) < deadline
        });
        for a in &mut self.absent {
            if due(a.nacks, a.last_nack) {
                let first = a.nacks == 0;
                a.nacks += 1;
                a.last_nack = Some(now);
                out.push(NackRequest {
                    frame_id: a.frame_id,
                    missing: None,
                    first,
                });
            }
        }
        out
    }

    /// When [`Self::nacks`] next has something to ask for, if nothing arrives before: a
    /// frame going quiet, or a request due again.
    pub fn next_nack_at(&self) -> Option<Instant> {
        let again =
            |n: u8, last: Option<Instant>| (n < MAX_NACKS).then(|| last.map(|t| t + NACK_RETRY));
        let highest = self.highest_seen;
        let partials = self.partials.iter().filter_map(|p| {
            // overtaken by a newer frame, it is asked for as soon as a request may go
            let overtaken = highest.is_some_and(|h| newer(h, p.meta.frame_id));
            let quiet = (!overtaken).then(|| p.last_arrival + NACK_QUIET);
            match again(p.nacks, p.last_nack)? {
                Some(retry) => Some(quiet.map_or(retry, |q| q.max(retry))),
                None => Some(quiet.unwrap_or(p.last_arrival)),
            }
        });
        let absent = self
            .absent
            .iter()
            .filter_map(|a| again(a.nacks, a.last_nack).flatten());
        partials.chain(absent).min()
    }

    /// Hands out a complete frame in order, or holds it until the frames before it come.
    fn deliver(&mut self, mut c: CompleteFrame, now: Instant) {
        let id = c.meta.frame_id;
        let in_order = match self.last_done {
            Some(d) => id == d.wrapping_add(1),
            // the first frame of a stream waits only for older frames already in progress
            None => !self.partials.iter().any(|p| newer(id, p.meta.frame_id)),
        };
        if !in_order {
            let pos = self
                .held
                .iter()
                .position(|h| newer(h.meta.frame_id, c.meta.frame_id))
                .unwrap_or(self.held.len());
            self.held.insert(pos, c);
            self.held_since.get_or_insert(now);
            if self.held.len() > MAX_FRAMES_IN_FLIGHT {
                self.release_held(true);
            }
            return;
        }
        c.gap = false;
        self.last_done = Some(c.meta.frame_id);
        self.ready.push_back(c);
        // the hole is filled: everything held right behind it follows
        while let Some(first) = self.held.first() {
            let next = self.last_done.map(|d| d.wrapping_add(1));
            if Some(first.meta.frame_id) != next {
                break;
            }
            let mut f = self.held.remove(0);
            f.gap = false;
            self.last_done = Some(f.meta.frame_id);
            self.ready.push_back(f);
        }
        self.held_since = if self.held.is_empty() {
            None
        } else {
            Some(now)
        };
    }

    /// Gives up on the frames missing before the held ones: releases those, the first marked
    /// as following a gap, and forgets the partial frames they overtook.
    fn release_held(&mut self, _forced: bool) {
        for mut f in std::mem::take(&mut self.held) {
            // frame ids half the number space apart have no order: never hand out a frame
            // that is not after the last one (found by fuzzing)
            if self.last_done.is_some_and(|d| !newer(f.meta.frame_id, d)) {
                self.stats.late += 1;
                continue;
            }
            f.gap = self
                .last_done
                .is_some_and(|d| f.meta.frame_id != d.wrapping_add(1));
            self.last_done = Some(f.meta.frame_id);
            self.ready.push_back(f);
        }
        self.held_since = None;
        if let Some(done) = self.last_done {
            let before = self.partials.len();
            self.partials.retain(|q| newer(q.meta.frame_id, done));
            self.stats.abandoned += (before - self.partials.len()) as u64;
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Forgets every partial frame and the frame order, for a new call.
    pub fn reset(&mut self) {
        self.partials.clear();
        self.held.clear();
        self.held_since = None;
        self.ready.clear();
        self.last_done = None;
        self.highest_seen = None;
        self.absent.clear();
        self.rebuilt.clear();
    }

    /// Takes one fragment received at `now`. Call [`Reassembler::expire`] regularly too.
    pub fn push(&mut self, frag: VideoFragment, now: Instant) -> ReassemblyEvent {
        if let Some(pos) = self
            .rebuilt
            .iter()
            .position(|r| (r.0, r.1) == (frag.frame_id, frag.index))
        {
            // its parity overtook it: not lost after all
            self.rebuilt.remove(pos);
            self.stats.late += 1;
            return ReassemblyEvent::Dropped;
        }
        let pos = match self.partial_for(FrameMeta::from(&frag), frag.count, now) {
            Ok(pos) => pos,
            Err(dropped) => return dropped,
        };
        let p = &mut self.partials[pos];
        let index = usize::from(frag.index);
        if let Some((frame_len, piece)) = p.layout {
            if fragment_len(frame_len, frag.count, piece, index) != Some(frag.payload.len()) {
                self.stats.inconsistent += 1;
                return ReassemblyEvent::Dropped;
            }
        }
        let slot = &mut p.pieces[index];
        if slot.is_some() {
            self.stats.duplicates += 1;
            return ReassemblyEvent::Dropped;
        }
        *slot = Some(frag.payload);
        p.received += 1;
        p.last_arrival = now;
        self.complete_if_whole(pos, now)
    }

    /// Takes one parity fragment received at `now`: rebuilds the lost fragments of its block
    /// as soon as the block has as many parity shards as it misses fragments.
    pub fn push_parity(&mut self, par: ParityFragment, now: Instant) -> ReassemblyEvent {
        let pos = match self.partial_for(FrameMeta::from(&par), par.count, now) {
            Ok(pos) => pos,
            Err(dropped) => return dropped,
        };
        let p = &mut self.partials[pos];
        let layout = (par.frame_len, par.payload.len());
        let count = usize::from(par.count);
        let (block, shard, shards) = (
            usize::from(par.block),
            usize::from(par.shard),
            usize::from(par.shards),
        );
        let known = p.parity.get(block).map_or(0, Vec::len);
        if p.layout.is_some_and(|l| l != layout)
            || block >= blocks_for(count)
            || shard >= shards
            || shards > super::parity::max_parity(super::parity::data_in_block(count, block))
            || (known != 0 && known != shards)
        {
            self.stats.inconsistent += 1;
            return ReassemblyEvent::Dropped;
        }
        if p.layout.is_none() {
            p.layout = Some(layout);
            p.parity = vec![Vec::new(); blocks_for(count)];
        }
        let shards_of_block = &mut p.parity[block];
        if shards_of_block.is_empty() {
            *shards_of_block = vec![None; shards];
        }
        let slot = &mut shards_of_block[shard];
        if slot.is_some() {
            self.stats.duplicates += 1;
            return ReassemblyEvent::Dropped;
        }
        *slot = Some(par.payload);
        p.last_arrival = now;
        self.complete_if_whole(pos, now)
    }

    /// The partial frame a fragment of `meta` belongs to, started if new; `Err` when the
    /// fragment is late, a duplicate or contradicts what arrived before.
    fn partial_for(
        &mut self,
        meta: FrameMeta,
        count: u16,
        now: Instant,
    ) -> Result<usize, ReassemblyEvent> {
        if let Some(done) = self.last_done {
            if !newer(meta.frame_id, done) {
                self.stats.late += 1;
                return Err(ReassemblyEvent::Dropped);
            }
        }
        if self.held.iter().any(|h| h.meta.frame_id == meta.frame_id) {
            // complete already, waiting for an older frame (found by fuzzing: a late copy
            // would otherwise start the frame again and hand it out twice)
            self.stats.duplicates += 1;
            return Err(ReassemblyEvent::Dropped);
        }
        self.note_seen(meta.frame_id, now);
        if let Some(pos) = self
            .partials
            .iter()
            .position(|p| p.meta.frame_id == meta.frame_id)
        {
            let p = &self.partials[pos];
            if p.meta != meta || p.pieces.len() != usize::from(count) {
                self.stats.inconsistent += 1;
                return Err(ReassemblyEvent::Dropped);
            }
            return Ok(pos);
        }
        if self.partials.len() >= MAX_FRAMES_IN_FLIGHT {
            let oldest = self.oldest_index();
            self.partials.swap_remove(oldest);
            self.stats.abandoned += 1;
        }
        self.partials.push(Partial {
            meta,
            pieces: vec![None; usize::from(count)],
            received: 0,
            parity: Vec::new(),
            layout: None,
            first_seen: now,
            last_arrival: now,
            nacks: 0,
            last_nack: None,
        });
        Ok(self.partials.len() - 1)
    }

    /// Rebuilds what the parity allows, and hands the frame on once every piece is there.
    fn complete_if_whole(&mut self, pos: usize, now: Instant) -> ReassemblyEvent {
        let id = self.partials[pos].meta.frame_id;
        for index in rebuild(&mut self.partials[pos]) {
            if self.rebuilt.len() >= MAX_REBUILT {
                self.rebuilt.pop_front();
                self.stats.recovered += 1;
            }
            self.rebuilt.push_back((id, index, now));
        }
        let p = &self.partials[pos];
        if p.received < p.pieces.len() {
            return ReassemblyEvent::Pending;
        }
        let p = self.partials.swap_remove(pos);
        let data: Vec<u8> = p.pieces.into_iter().flatten().flatten().collect();
        self.stats.completed += 1;
        self.deliver(
            CompleteFrame {
                meta: p.meta,
                data,
                gap: false,
            },
            now,
        );
        ReassemblyEvent::Completed(p.meta.frame_id)
    }

    /// Keeps the newest frame id seen, and remembers the ids skipped over as absent.
    fn note_seen(&mut self, id: u32, now: Instant) {
        self.absent.retain(|a| a.frame_id != id);
        let Some(h) = self.highest_seen else {
            self.highest_seen = Some(id);
            return;
        };
        if !newer(id, h) {
            return;
        }
        let skipped = id.wrapping_sub(h).wrapping_sub(1);
        for k in skipped.saturating_sub(MAX_ABSENT as u32)..skipped {
            let missing = h.wrapping_add(1).wrapping_add(k);
            let known = self.partials.iter().any(|p| p.meta.frame_id == missing)
                || self.absent.iter().any(|a| a.frame_id == missing);
            if !known {
                if self.absent.len() >= MAX_ABSENT {
                    self.absent.remove(0);
                }
                self.absent.push(Absent {
                    frame_id: missing,
                    noticed: now,
                    nacks: 0,
                    last_nack: None,
                });
            }
        }
        self.highest_seen = Some(id);
    }

    /// Abandons partial frames whose deadline has passed and releases frames that waited
    /// the hold time for a missing older one; returns how many partial frames were abandoned.
    pub fn expire(&mut self, now: Instant) -> usize {
        let deadline = self.deadline;
        let before = self.partials.len();
        self.partials
            .retain(|p| now.saturating_duration_since(p.first_seen) < deadline);
        let n = before - self.partials.len();
        self.stats.abandoned += n as u64;
        while self
            .rebuilt
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.2) >= REBUILT_WAIT)
        {
            self.rebuilt.pop_front();
            self.stats.recovered += 1;
        }
        if self
            .held_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.hold)
        {
            self.release_held(false);
        }
        n
    }

    /// Bytes held in partial frames right now.
    pub fn buffered_bytes(&self) -> usize {
        self.partials
            .iter()
            .flat_map(|p| p.pieces.iter().chain(p.parity.iter().flatten()).flatten())
            .map(Vec::len)
            .sum()
    }

    fn oldest_index(&self) -> usize {
        let mut oldest = 0;
        for (i, p) in self.partials.iter().enumerate() {
            if newer(self.partials[oldest].meta.frame_id, p.meta.frame_id) {
                oldest = i;
            }
        }
        oldest
    }
}

/// Fills the missing pieces of every block that has enough parity; returns their indices.
fn rebuild(p: &mut Partial) -> Vec<u16> {
    let mut rebuilt = Vec::new();
    let Some((frame_len, piece)) = p.layout else {
        return rebuilt;
    };
    let count = p.pieces.len();
    let blocks = blocks_for(count);
    for (block, parity) in p.parity.iter().enumerate() {
        let members: Vec<usize> = (block..count).step_by(blocks).collect();
        let data: Vec<Option<&[u8]>> = members.iter().map(|&i| p.pieces[i].as_deref()).collect();
        for (k, mut bytes) in rebuild_block(&data, parity, piece) {
            let index = members[k];
            if let Some(len) = fragment_len(frame_len, count as u16, piece, index) {
                bytes.truncate(len);
                p.pieces[index] = Some(bytes);
                p.received += 1;
                rebuilt.push(index as u16);
            }
        }
    }
    rebuilt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(frame_id: u32) -> FrameMeta {
        FrameMeta {
            frame_id,
            keyframe: true,
            codec: CodecId::Mjpeg,
            width: 640,
            height: 480,
            capture_us: 1000 + frame_id as u64,
        }
    }

    fn frame_bytes(id: u32, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u32 ^ id) as u8).collect()
    }

    /// Deterministic pseudo-random numbers for shuffling, losing and duplicating.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn fragments_fit_a_datagram_and_join_back() {
        for len in [
            1,
            100,
            MAX_FRAGMENT_PAYLOAD,
            MAX_FRAGMENT_PAYLOAD + 1,
            50_000,
        ] {
            let data = frame_bytes(3, len);
            let frags = fragment_frame(meta(3), &data).expect("fragment");
            assert_eq!(frags.len(), len.div_ceil(MAX_FRAGMENT_PAYLOAD));
            for f in &frags {
                let bytes = crate::proto::Message::Video(f.clone())
                    .encode()
                    .expect("encodes");
                assert!(bytes.len() <= crate::proto::message::MAX_DATAGRAM);
            }
            let mut r = Reassembler::default();
            let now = Instant::now();
            let mut out = None;
            for f in frags {
                r.push(f, now);
                while let Some(c) = r.pop_ready() {
                    out = Some(c);
                }
            }
            let c = out.expect("complete");
            assert_eq!(c.data, data);
            assert_eq!(c.meta, meta(3));
        }
    }

    #[test]
    fn too_large_or_empty_frames_are_refused() {
        assert!(fragment_frame(meta(1), &[]).is_err());
        let huge = vec![0u8; MAX_FRAGMENT_PAYLOAD * MAX_FRAGMENTS as usize + 1];
        assert!(fragment_frame(meta(1), &huge).is_err());
    }

    #[test]
    fn reordered_and_duplicated_fragments_still_join() {
        let mut rng = Rng(42);
        let data = frame_bytes(9, 20_000);
        let mut frags = fragment_frame(meta(9), &data).expect("fragment");
        let dup = frags[2].clone();
        frags.push(dup);
        for i in (1..frags.len()).rev() {
            frags.swap(i, rng.below(i + 1));
        }
        let mut r = Reassembler::default();
        let now = Instant::now();
        let mut completes = Vec::new();
        for f in frags {
            r.push(f, now);
            completes.extend(std::iter::from_fn(|| r.pop_ready()));
        }
        assert_eq!(completes.len(), 1);
        assert_eq!(completes[0].data, data);
        // the duplicate arrives either before completion (counted duplicate) or after (late)
        assert_eq!(r.stats().duplicates + r.stats().late, 1);
    }

    #[test]
    fn lossy_reordering_link_delivers_complete_frames_in_order_only() {
        let mut rng = Rng(7);
        let mut r = Reassembler::default();
        let start = Instant::now();
        let mut delivered = Vec::new();
        let mut in_flight: Vec<(usize, VideoFragment)> = Vec::new();
        for id in 0..200u32 {
            let data = frame_bytes(id, 3_000 + (id as usize * 37) % 9_000);
            for f in fragment_frame(meta(id), &data).expect("fragment") {
                if rng.below(100) < 5 {
                    continue; // lost
                }
                let delay = rng.below(3);
                in_flight.push((id as usize + delay, f.clone()));
                if rng.below(100) < 3 {
                    in_flight.push((id as usize + rng.below(3), f)); // duplicated
                }
            }
            let now = start + Duration::from_millis(33 * id as u64);
            let (due, later): (Vec<_>, Vec<_>) =
                in_flight.drain(..).partition(|(t, _)| *t <= id as usize);
            in_flight = later;
            for (_, f) in due {
                r.push(f, now);
                while let Some(c) = r.pop_ready() {
                    assert_eq!(c.data, frame_bytes(c.meta.frame_id, c.data.len()));
                    delivered.push(c.meta.frame_id);
                }
            }
            r.expire(now);
            while let Some(c) = r.pop_ready() {
                delivered.push(c.meta.frame_id);
            }
            assert!(r.partials.len() <= MAX_FRAMES_IN_FLIGHT);
        }
        r.expire(start + Duration::from_secs(60));
        while let Some(c) = r.pop_ready() {
            delivered.push(c.meta.frame_id);
        }
        assert!(delivered.windows(2).all(|w| w[0] < w[1]), "in order");
        assert!(
            delivered.len() > 100,
            "most frames delivered: {}",
            delivered.len()
        );
        let s = r.stats();
        assert_eq!(s.completed as usize, delivered.len());
        assert!(s.abandoned > 0, "losses abandon frames");
    }

    fn parity(id: u32, data: &[u8], group: usize) -> Vec<ParityFragment> {
        crate::proto::parity::parity_fragments(meta(id), data, group).expect("parity")
    }

    #[test]
    fn lost_fragments_are_rebuilt_from_as_many_shards_without_asking() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        let data = frame_bytes(4, 6_000);
        let frags = fragment_frame(meta(4), &data).expect("fragment");
        assert_eq!(frags.len(), 5);
        // 3 shards for 5 fragments; lose 3 and 4 (the short last one) and one shard
        for f in frags.iter().filter(|f| f.index < 3) {
            assert_eq!(r.push(f.clone(), t0), ReassemblyEvent::Pending);
        }
        let pars = parity(4, &data, 2);
        assert_eq!(pars.len(), 3);
        assert_eq!(r.push_parity(pars[2].clone(), t0), ReassemblyEvent::Pending);
        assert_eq!(
            r.push_parity(pars[0].clone(), t0),
            ReassemblyEvent::Completed(4)
        );
        let c = r.pop_ready().expect("rebuilt");
        assert_eq!(c.data, data);
        assert!(r.nacks(t0 + Duration::from_millis(100)).is_empty());
        // one of the two turns up after all: only the other counts as lost
        assert_eq!(r.push(frags[4].clone(), t0), ReassemblyEvent::Dropped);
        assert_eq!(r.stats().recovered, 0);
        r.expire(t0 + REBUILT_WAIT);
        assert_eq!(r.stats().recovered, 1);
    }

    #[test]
    fn parity_first_and_a_one_fragment_frame_from_its_parity_alone() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        let data = frame_bytes(0, 900);
        let pars = parity(0, &data, 4);
        assert_eq!(pars.len(), 1);
        assert_eq!(
            r.push_parity(pars[0].clone(), t0),
            ReassemblyEvent::Completed(0)
        );
        assert_eq!(r.pop_ready().expect("frame").data, data);
        // a late copy of the data is late, not a second frame
        let f = fragment_frame(meta(0), &data).expect("fragment");
        assert_eq!(r.push(f[0].clone(), t0), ReassemblyEvent::Dropped);
        assert!(r.pop_ready().is_none());
    }

    #[test]
    fn it_tells_when_the_next_request_is_due() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        assert_eq!(r.next_nack_at(), None, "nothing missing");
        let data = frame_bytes(3, 4_000);
        let frags = fragment_frame(meta(3), &data).expect("fragment");
        for f in frags.iter().filter(|f| f.index != 1) {
            r.push(f.clone(), t0);
        }
        // quiet for NACK_QUIET after the last fragment: then asked for, and again each
        // NACK_RETRY, a few times
        let mut due = r.next_nack_at().expect("a fragment is missing");
        assert_eq!(due, t0 + NACK_QUIET);
        assert!(r.nacks(due - Duration::from_millis(1)).is_empty());
        let mut asked = 0;
        while let Some(next) = r.next_nack_at() {
            assert!(next >= due);
            due = next;
            assert_eq!(r.nacks(due).len(), 1, "due at {:?}", due - t0);
            asked += 1;
            assert!(asked <= usize::from(MAX_NACKS));
        }
        assert_eq!(asked, usize::from(MAX_NACKS));
        // a newer frame overtakes one still missing a piece: asked for at once
        let mut r = Reassembler::default();
        for f in frags.iter().filter(|f| f.index != 1) {
            r.push(f.clone(), t0);
        }
        let next = fragment_frame(meta(4), &frame_bytes(4, 500)).expect("fragment");
        let t1 = t0 + Duration::from_millis(2);
        r.push(next[0].clone(), t1);
        assert!(r.next_nack_at().is_some_and(|t| t <= t1));
        assert_eq!(r.nacks(t1).len(), 1);
    }

    #[test]
    fn more_losses_than_shards_are_asked_for_and_one_resend_completes_it() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        let data = frame_bytes(9, 9_000);
        let frags = fragment_frame(meta(9), &data).expect("fragment");
        assert_eq!(frags.len(), 8);
        // 2 shards for 8 fragments; lose 2, 4 and 6
        for f in frags.iter().filter(|f| ![2, 4, 6].contains(&f.index)) {
            r.push(f.clone(), t0);
        }
        for p in parity(9, &data, 4) {
            r.push_parity(p, t0);
        }
        r.expire(t0 + REBUILT_WAIT);
        assert_eq!(r.stats().recovered, 0);
        let n = r.nacks(t0 + NACK_QUIET);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].missing, Some(vec![2, 4, 6]));
        // one resent fragment is enough: the parity rebuilds the others
        assert_eq!(
            r.push(frags[4].clone(), t0 + NACK_QUIET * 4),
            ReassemblyEvent::Completed(9)
        );
        assert_eq!(r.pop_ready().expect("frame").data, data);
        r.expire(t0 + NACK_QUIET * 4 + REBUILT_WAIT);
        assert_eq!(r.stats().recovered, 2);
    }

    #[test]
    fn parity_that_contradicts_the_frame_is_dropped() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        let data = frame_bytes(2, 5_000);
        let frags = fragment_frame(meta(2), &data).expect("fragment");
        let pars = parity(2, &data, 2);
        r.push_parity(pars[0].clone(), t0);
        let mut other_len = pars[1].clone();
        other_len.frame_len += 1;
        let mut other_shards = pars[1].clone();
        other_shards.shards = 1;
        other_shards.shard = 0;
        let mut other_meta = pars[1].clone();
        other_meta.width = 320;
        let mut too_many = pars[1].clone();
        too_many.shards = frags.len() as u16 + 1;
        let mut no_block = pars[1].clone();
        no_block.block = 1;
        for bad in [other_len, other_shards, other_meta, too_many, no_block] {
            assert_eq!(r.push_parity(bad, t0), ReassemblyEvent::Dropped);
        }
        assert_eq!(r.stats().inconsistent, 5);
        // a data fragment whose length the parity contradicts
        let mut short = frags[0].clone();
        short.payload.pop();
        assert_eq!(r.push(short, t0), ReassemblyEvent::Dropped);
        assert_eq!(r.stats().inconsistent, 6);
        // the honest pieces still make the frame
        for f in frags.iter().skip(1) {
            r.push(f.clone(), t0);
        }
        assert_eq!(r.pop_ready().expect("frame").data, data);
    }

    #[test]
    fn a_lossy_link_with_parity_needs_few_resends() {
        let mut r = Reassembler::default();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let t0 = Instant::now();
        let (mut whole, mut nacked) = (0, 0);
        for id in 0..300u32 {
            let now = t0 + Duration::from_millis(33 * u64::from(id));
            let data = frame_bytes(id, 1_500 + (id as usize * 53) % 4_000);
            let frags = fragment_frame(meta(id), &data).expect("fragment");
            for f in frags {
                if rng.below(100) >= 5 {
                    r.push(f, now);
                }
            }
            for p in parity(id, &data, 2) {
                if rng.below(100) >= 5 {
                    r.push_parity(p, now);
                }
            }
            nacked += r.nacks(now + NACK_QUIET).len();
            r.expire(now + REBUILT_WAIT);
            while let Some(c) = r.pop_ready() {
                assert_eq!(c.data, frame_bytes(c.meta.frame_id, c.data.len()));
                whole += 1;
            }
        }
        // without parity about one frame in five loses a fragment at 5 %
        assert!(nacked < 15, "{nacked} frames asked for resends");
        assert!(whole > 285, "{whole} frames whole");
        assert!(r.stats().recovered > 30);
    }

    #[test]
    fn deadline_abandons_incomplete_frames() {
        let mut r = Reassembler::new(Duration::from_millis(100));
        let t0 = Instant::now();
        let frags = fragment_frame(meta(1), &frame_bytes(1, 5_000)).expect("fragment");
        r.push(frags[0].clone(), t0);
        assert_eq!(r.expire(t0 + Duration::from_millis(50)), 0);
        assert_eq!(r.expire(t0 + Duration::from_millis(150)), 1);
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(r.stats().abandoned, 1);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_new_frames() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        for id in 0..10_000u32 {
            let mut m = meta(id);
            m.frame_id = id.wrapping_mul(2_654_435_761);
            let f = VideoFragment {
                frame_id: m.frame_id,
                index: 0,
                count: MAX_FRAGMENTS,
                keyframe: true,
                codec: CodecId::Mjpeg,
                width: 640,
                height: 480,
                capture_us: 0,
                payload: vec![0; MAX_FRAGMENT_PAYLOAD],
            };
            r.push(f, now);
            assert!(r.partials.len() <= MAX_FRAMES_IN_FLIGHT);
        }
        assert!(r.buffered_bytes() <= MAX_FRAMES_IN_FLIGHT * MAX_FRAGMENT_PAYLOAD);
    }

    #[test]
    fn contradicting_fragments_are_dropped() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let frags = fragment_frame(meta(5), &frame_bytes(5, 5_000)).expect("fragment");
        r.push(frags[0].clone(), now);
        let mut forged = frags[1].clone();
        forged.width = 320;
        assert_eq!(r.push(forged, now), ReassemblyEvent::Dropped);
        assert_eq!(r.stats().inconsistent, 1);
    }

    #[test]
    fn gap_is_reported_after_a_lost_frame() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let mut gaps = Vec::new();
        for id in [0u32, 1, 3] {
            for f in fragment_frame(meta(id), &frame_bytes(id, 100)).expect("fragment") {
                r.push(f, now);
                while let Some(c) = r.pop_ready() {
                    gaps.push(c.gap);
                }
            }
        }
        assert_eq!(gaps, vec![false, false], "3 waits for 2");
        r.expire(now + DEFAULT_HOLD);
        gaps.extend(std::iter::from_fn(|| r.pop_ready()).map(|c| c.gap));
        assert_eq!(gaps, vec![false, false, true]);
    }

    #[test]
    fn a_resent_fragment_fills_the_hole_and_the_held_frames_follow_in_order() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        let f1 = fragment_frame(meta(1), &frame_bytes(1, 5_000)).expect("fragment");
        let f2 = fragment_frame(meta(2), &frame_bytes(2, 5_000)).expect("fragment");
        for f in f1.iter().skip(1) {
            r.push(f.clone(), t0);
        }
        for f in &f2 {
            r.push(f.clone(), t0);
        }
        assert!(r.pop_ready().is_none(), "frame 2 waits for frame 1");
        let asks = r.nacks(t0);
        assert_eq!(
            asks,
            vec![NackRequest {
                frame_id: 1,
                missing: Some(vec![0]),
                first: true,
            }],
            "frame 1, overtaken by frame 2, asks for its first piece"
        );
        assert!(
            r.nacks(t0 + Duration::from_millis(5)).is_empty(),
            "not again at once"
        );
        r.push(f1[0].clone(), t0 + Duration::from_millis(40));
        let got: Vec<(u32, bool)> = std::iter::from_fn(|| r.pop_ready())
            .map(|c| (c.meta.frame_id, c.gap))
            .collect();
        assert_eq!(got, vec![(1, false), (2, false)]);
    }

    #[test]
    fn a_held_frame_is_never_handed_out_twice() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        let f1 = fragment_frame(meta(1), &frame_bytes(1, 5_000)).expect("fragment");
        let f2 = fragment_frame(meta(2), &frame_bytes(2, 100)).expect("fragment");
        r.push(f1[1].clone(), t0);
        r.push(f2[0].clone(), t0);
        assert_eq!(
            r.push(f2[0].clone(), t0),
            ReassemblyEvent::Dropped,
            "a copy of a held frame"
        );
        for f in &f1 {
            r.push(f.clone(), t0);
        }
        let ids: Vec<u32> = std::iter::from_fn(|| r.pop_ready())
            .map(|c| c.meta.frame_id)
            .collect();
        assert_eq!(ids, vec![1, 2]);
    }

    #[test]
    fn a_frame_never_seen_is_asked_for_whole_a_few_times() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        for id in [0u32, 2] {
            for f in fragment_frame(meta(id), &frame_bytes(id, 100)).expect("fragment") {
                r.push(f, t0);
            }
        }
        let mut asked = 0;
        for k in 0..20 {
            asked += r
                .nacks(t0 + Duration::from_millis(50 * k))
                .iter()
                .filter(|n| n.frame_id == 1 && n.missing.is_none())
                .count();
        }
        assert!((1..=MAX_NACKS as usize).contains(&asked), "{asked}");
    }

    #[test]
    fn frame_ids_wrap() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let mut got = Vec::new();
        for id in [u32::MAX - 1, u32::MAX, 0, 1] {
            for f in fragment_frame(meta(id), &frame_bytes(id, 10)).expect("fragment") {
                r.push(f, now);
                while let Some(c) = r.pop_ready() {
                    got.push(c.meta.frame_id);
                }
            }
        }
        assert_eq!(got, vec![u32::MAX - 1, u32::MAX, 0, 1]);
    }
}
