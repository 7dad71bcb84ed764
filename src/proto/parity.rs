//! Forward error correction for video: Reed-Solomon parity over blocks of a frame's
//! fragments, so that lost fragments are rebuilt on arrival instead of a round trip later,
//! and the policy that decides how much parity the reported loss is worth.

use reed_solomon_erasure::galois_8::ReedSolomon;

use super::fragment::{cut, fragment_count, FrameMeta};
use super::message::ParityFragment;
use super::ProtoError;

/// Most data fragments in one parity block: GF(2⁸) codes hold 256 shards, data and parity
/// together.
pub const BLOCK_DATA: usize = 128;

/// Parity blocks of a frame of `count` fragments.
pub fn blocks_for(count: usize) -> usize {
    count.div_ceil(BLOCK_DATA).max(1)
}

/// Data fragments in block `block` of a frame of `count` fragments: the indices that are
/// `block` modulo the block count (interleaved, so a burst of losses spreads over blocks).
pub fn data_in_block(count: usize, block: usize) -> usize {
    count.saturating_sub(block).div_ceil(blocks_for(count))
}

/// The most parity shards a block of `data` fragments may have: as many as its data, and
/// three for the smallest blocks (all within GF(2⁸)'s 256 shards).
pub fn max_parity(data: usize) -> usize {
    data.max(3).min(256usize.saturating_sub(data))
}

/// The share of blocks, at independent loss `loss`, that lose more than `parity` of their
/// `data + parity` fragments: those parity cannot rebuild.
pub fn unrecoverable(data: usize, parity: usize, loss: f64) -> f64 {
    let n = data + parity;
    let mut choose = 1.0f64;
    let mut kept = 0.0;
    for k in 0..=parity.min(n) {
        if k > 0 {
            choose = choose * (n + 1 - k) as f64 / k as f64;
        }
        kept += choose * loss.powi(k as i32) * (1.0 - loss).powi((n - k) as i32);
    }
    (1.0 - kept).max(0.0)
}

/// The loss heavy groups are chosen for ([`ParityPolicy`]: from 4 % reported), with a margin.
const HEAVY_DESIGN_LOSS: f64 = 0.06;

/// Blocks parity may fail to rebuild at the loss its group size is chosen for: about one
/// frame in a thousand, about two a minute at 30 fps. Each costs a round trip and holds the
/// frames behind it (at 5 % loss with 30±10 ms each way, four pictures 60–150 ms late).
const RESIDUAL: f64 = 0.001;

/// Parity shards for a block of `data` fragments: one for every `group_size` (rounded up),
/// and in groups smaller than light ones (heavy loss) more for small blocks, where that
/// leaves more than one in a thousand of them unrebuilt at 6 % loss. One shard for a
/// one-fragment frame is a copy, and both are lost one time in 400 at 5 % loss: half of the
/// e2e bench's 10 s calls under 5 % loss had such a picture, shown 100–150 ms late with the
/// three behind it waiting for it. Light groups (the start of a call, and light loss) stay
/// as they are: there the parity is a precaution.
pub fn parity_shards(data: usize, group_size: usize) -> usize {
    let least = data.div_ceil(group_size.max(1)).max(1);
    if group_size >= LIGHT_GROUP {
        return least;
    }
    let most = max_parity(data).max(least);
    (least..=most)
        .find(|&m| unrecoverable(data, m, HEAVY_DESIGN_LOSS) <= RESIDUAL)
        .unwrap_or(most)
}

/// The parity fragments of a frame: per block, [`parity_shards`] for its data fragments.
/// The frame is cut exactly as [`super::fragment_frame`] cuts it.
pub fn parity_fragments(
    meta: FrameMeta,
    data: &[u8],
    group_size: usize,
) -> Result<Vec<ParityFragment>, ProtoError> {
    let (count, piece) = cut(data)?;
    let blocks = blocks_for(count);
    let chunks: Vec<&[u8]> = data.chunks(piece).collect();
    let mut out = Vec::new();
    for block in 0..blocks {
        let n = data_in_block(count, block);
        let m = parity_shards(n, group_size);
        let rs = ReedSolomon::new(n, m).map_err(|_| ProtoError::Invalid("parity shape"))?;
        let mut shards: Vec<Vec<u8>> = (block..count)
            .step_by(blocks)
            .map(|i| {
                let mut s = chunks.get(i).copied().unwrap_or_default().to_vec();
                s.resize(piece, 0);
                s
            })
            .chain(std::iter::repeat_n(vec![0u8; piece], m))
            .collect();
        rs.encode(&mut shards)
            .map_err(|_| ProtoError::Invalid("parity shape"))?;
        out.extend(
            shards
                .into_iter()
                .skip(n)
                .enumerate()
                .map(|(k, payload)| ParityFragment {
                    block: block as u16,
                    shard: k as u16,
                    shards: m as u16,
                    count: count as u16,
                    frame_len: data.len() as u32,
                    ..ParityFragment::new(meta, payload)
                }),
        );
    }
    Ok(out)
}

/// Rebuilds the missing data fragments of one block from what is there of it, if enough
/// is: `data` are the block's fragments (in index order), `parity` its parity shards, all
/// fragments but the frame's last `piece` bytes long. Returns the rebuilt fragments, each
/// `piece` bytes (the caller trims the last one), by position in `data`.
pub fn rebuild_block(
    data: &[Option<&[u8]>],
    parity: &[Option<Vec<u8>>],
    piece: usize,
) -> Vec<(usize, Vec<u8>)> {
    let missing = data.iter().filter(|d| d.is_none()).count();
    let have = parity.iter().flatten().count();
    if missing == 0 || missing > have || parity.is_empty() {
        return Vec::new();
    }
    let Ok(rs) = ReedSolomon::new(data.len(), parity.len()) else {
        return Vec::new();
    };
    let mut shards: Vec<Option<Vec<u8>>> = data
        .iter()
        .map(|d| {
            d.map(|d| {
                let mut s = d.to_vec();
                s.resize(piece, 0);
                s
            })
        })
        .chain(
            parity
                .iter()
                .map(|p| p.clone().filter(|p| p.len() == piece)),
        )
        .collect();
    if rs.reconstruct_data(&mut shards).is_err() {
        return Vec::new();
    }
    data.iter()
        .enumerate()
        .filter(|(_, d)| d.is_none())
        .filter_map(|(k, _)| shards[k].take().map(|s| (k, s)))
        .collect()
}

/// Length of fragment `index` of a frame of `frame_len` bytes cut into `count` fragments of
/// `piece` bytes (the last one shorter), or `None` if the numbers do not fit together.
pub fn fragment_len(frame_len: u32, count: u16, piece: usize, index: usize) -> Option<usize> {
    let count = usize::from(count);
    let before = piece.checked_mul(index)?;
    let len = usize::try_from(frame_len).ok()?.checked_sub(before)?;
    (index < count && len > 0).then_some(len.min(piece))
}

/// How much parity a sender adds, from the loss the receiver reports (which counts the
/// fragments parity rebuilt, so that turning parity on does not hide the loss that
/// needs it). Resends repair light loss for a few percent more bytes; parity costs a fixed
/// share, and pays off when so many frames lose a fragment that waiting a round trip for
/// each would stall the picture often.
///
/// More parity follows the reported loss at once; less only once a slow average agrees too,
/// and heavy parity only 5 s after the last report of loss: a report covers a quarter second
/// of a few dozen fragments (at 480p a handful), so at 5 % random loss the smoothed figure
/// swings between 0 and 6 %, and following it down would drop the parity just before the
/// frames that needed it. A call starts with light parity, until the link has shown it is
/// clean (5 s of reports under 1 %): the first second of a call on a lossy link is when the
/// picture should come up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParityPolicy {
    group: Option<usize>,
    /// The reported loss, averaged over about 2.5 s (a tenth of each report).
    slow: f32,
    /// Reports to go before heavy loss last reported may be believed gone.
    heavy_hold: u32,
    /// Reports in a row under [`OFF_LOSS`].
    quiet: u32,
}

/// Loss at which parity starts (groups of [`LIGHT_GROUP`]), and under which it stops.
const ON_LOSS: f32 = 0.02;
const OFF_LOSS: f32 = 0.01;
/// Loss at which groups shrink to [`HEAVY_GROUP`], and under which they grow back.
const HEAVY_LOSS: f32 = 0.04;
const LIGHT_LOSS: f32 = 0.025;
/// Data fragments per parity fragment under light and heavy loss.
const LIGHT_GROUP: usize = 4;
const HEAVY_GROUP: usize = 2;
/// Weight of a report in the slow average.
const SLOW_WEIGHT: f32 = 0.1;
/// Groups stay heavy for this many reports (5 s) after a report of heavy loss, renewed by
/// every report over [`LIGHT_LOSS`] while they are. A report of 480p at the QP floor counts
/// 7–9 fragments, so each says 0 or 11–14 % lost, and even the slow average of 5 % random
/// loss fell under [`LIGHT_LOSS`] now and then: light groups give a one-fragment frame one
/// copy, and at 5 % loss one such frame in 400 lost both and waited for a resend (freezes of
/// 130–165 ms in 4 of the 8 H.264 loss rows of a sitting of the e2e tables).
const HEAVY_HOLD_REPORTS: u32 = 20;
/// Parity stops after this many reports in a row under [`OFF_LOSS`] (5 s), not before. At
/// 480p a report counts 7–9 fragments, and at 5 % loss a third of them count none lost: the
/// slow average, which a call starts at [`ON_LOSS`], came under [`OFF_LOSS`] after seven
/// such reports in a row (one call in fifteen), and the parity, and with it the sound's
/// copies, went off for a while on a lossy link (an integration test then found only 45 of
/// 65 lost sound packets played from a copy).
const QUIET_REPORTS: u32 = 20;

impl Default for ParityPolicy {
    fn default() -> Self {
        Self {
            group: Some(LIGHT_GROUP),
            slow: ON_LOSS,
            heavy_hold: 0,
            quiet: 0,
        }
    }
}

impl ParityPolicy {
    /// Data fragments per parity fragment, or `None`: no parity.
    pub fn group(&self) -> Option<usize> {
        self.group
    }

    /// Share of the video bitrate left to the encoder (the parity takes the rest), for frames
    /// of about `frame_bytes` (the bitrate's share of one frame).
    pub fn media_share(&self, frame_bytes: usize) -> f64 {
        self.group.map_or(1.0, |g| {
            let n = fragment_count(frame_bytes).clamp(1, BLOCK_DATA);
            n as f64 / (n + parity_shards(n, g)) as f64
        })
    }

    /// Takes the smoothed reported loss (0–1) at each report; returns whether the parity
    /// changed.
    pub fn on_loss(&mut self, loss: f32) -> bool {
        let loss = if loss.is_finite() {
            loss.clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.slow += SLOW_WEIGHT * (loss - self.slow);
        let high = loss.max(self.slow);
        // heavy loss starts the hold; while groups are heavy, a report over LIGHT_LOSS renews it
        self.heavy_hold =
            if loss >= HEAVY_LOSS || (self.group == Some(HEAVY_GROUP) && loss >= LIGHT_LOSS) {
                HEAVY_HOLD_REPORTS
            } else {
                self.heavy_hold.saturating_sub(1)
            };
        self.quiet = if loss < OFF_LOSS {
            self.quiet.saturating_add(1)
        } else {
            0
        };
        let stays_heavy =
            self.group == Some(HEAVY_GROUP) && (high >= LIGHT_LOSS || self.heavy_hold > 0);
        let next = if loss >= HEAVY_LOSS || stays_heavy {
            Some(HEAVY_GROUP)
        } else if high < OFF_LOSS && self.quiet >= QUIET_REPORTS {
            None
        } else if loss >= ON_LOSS || self.group.is_some() {
            Some(LIGHT_GROUP)
        } else {
            None
        };
        let changed = next != self.group;
        self.group = next;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{fragment_frame, CodecId};

    fn meta() -> FrameMeta {
        FrameMeta {
            frame_id: 3,
            keyframe: false,
            codec: CodecId::H264,
            width: 640,
            height: 480,
            capture_us: 9,
        }
    }

    #[test]
    fn any_as_many_lost_fragments_as_parity_shards_are_rebuilt() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in [1, 700, 2_432, 5_000, 24_001, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let frags = fragment_frame(meta(), &data).expect("fragments");
            let blocks = blocks_for(frags.len());
            for group_size in [1, 2, 4] {
                let parity = parity_fragments(meta(), &data, group_size).expect("parity");
                let per_block: usize = (0..blocks)
                    .map(|b| parity_shards(data_in_block(frags.len(), b), group_size))
                    .sum();
                assert_eq!(parity.len(), per_block);
                for p in &parity {
                    assert!(crate::proto::Message::Parity(p.clone()).encode().is_ok());
                }
                for block in 0..blocks {
                    let members: Vec<_> = frags
                        .iter()
                        .filter(|f| usize::from(f.index) % blocks == block)
                        .collect();
                    let shards: Vec<Option<Vec<u8>>> = parity
                        .iter()
                        .filter(|p| usize::from(p.block) == block)
                        .map(|p| Some(p.payload.clone()))
                        .collect();
                    // lose as many fragments as there are shards, at pseudo-random places
                    let mut lost = vec![false; members.len()];
                    for _ in 0..shards.len() {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        lost[(seed % members.len() as u64) as usize] = true;
                    }
                    let have: Vec<Option<&[u8]>> = members
                        .iter()
                        .zip(&lost)
                        .map(|(f, &l)| (!l).then_some(f.payload.as_slice()))
                        .collect();
                    let piece = parity[0].payload.len();
                    let rebuilt = rebuild_block(&have, &shards, piece);
                    assert_eq!(rebuilt.len(), lost.iter().filter(|l| **l).count());
                    for (k, mut bytes) in rebuilt {
                        let f = members[k];
                        let n = fragment_len(len as u32, f.count, piece, usize::from(f.index))
                            .expect("a length");
                        bytes.truncate(n);
                        assert_eq!(bytes, f.payload, "len {len} fragment {}", f.index);
                    }
                }
            }
        }
    }

    #[test]
    fn more_losses_than_shards_rebuild_nothing() {
        let data = vec![5u8; 5_000];
        let frags = fragment_frame(meta(), &data).expect("fragments");
        let parity = parity_fragments(meta(), &data, 4).expect("parity");
        assert_eq!(parity.len(), 2);
        let have: Vec<Option<&[u8]>> = frags
            .iter()
            .map(|f| (f.index > 2).then_some(f.payload.as_slice()))
            .collect();
        let shards: Vec<_> = parity.iter().map(|p| Some(p.payload.clone())).collect();
        assert!(rebuild_block(&have, &shards, parity[0].payload.len()).is_empty());
    }

    #[test]
    fn small_blocks_get_enough_parity_for_the_loss() {
        // the textbook figures: a copy of a one-fragment frame fails when both are lost
        assert!((unrecoverable(1, 1, 0.05) - 0.0025).abs() < 1e-12);
        assert!(
            (unrecoverable(2, 1, 0.05) - (3.0 * 0.0025 * 0.95 + 0.05f64.powi(3))).abs() < 1e-12
        );
        assert_eq!(unrecoverable(4, 0, 0.0), 0.0);
        // heavy loss (groups of 2): one- and two-fragment frames get two shards, and
        // every block stays under the residual at 5 % (and at the 6 % it is chosen for)
        assert_eq!(parity_shards(1, HEAVY_GROUP), 2);
        assert_eq!(parity_shards(2, HEAVY_GROUP), 2);
        for n in 1..=BLOCK_DATA {
            let m = parity_shards(n, HEAVY_GROUP);
            assert!(
                m >= n.div_ceil(HEAVY_GROUP) && m <= max_parity(n),
                "{n}: {m}"
            );
            assert!(
                unrecoverable(n, m, HEAVY_DESIGN_LOSS) <= RESIDUAL,
                "{n}: {m}"
            );
        }
        // light groups: one shard for every four fragments, whatever the size
        assert_eq!(parity_shards(1, LIGHT_GROUP), 1);
        assert_eq!(parity_shards(2, LIGHT_GROUP), 1);
        assert_eq!(parity_shards(40, LIGHT_GROUP), 10);
        // the shards a message may carry bound what a block holds
        assert_eq!(max_parity(1), 3);
        assert_eq!(max_parity(5), 5);
        assert_eq!(max_parity(BLOCK_DATA), BLOCK_DATA);
    }

    #[test]
    fn fragment_lengths_out_of_range_are_none() {
        assert_eq!(fragment_len(10, 3, 4, 2), Some(2));
        assert_eq!(fragment_len(10, 3, 4, 3), None);
        assert_eq!(fragment_len(8, 3, 4, 2), None);
        assert_eq!(fragment_len(u32::MAX, 2, usize::MAX, 1), None);
    }

    #[test]
    fn parity_follows_the_loss_up_at_once_and_down_slowly() {
        let mut p = ParityPolicy::default();
        assert_eq!(p.group(), Some(LIGHT_GROUP), "a call starts protected");
        // a clean link turns it off after QUIET_REPORTS reports in a row (5 s)
        let clean = (0..40).take_while(|_| !p.on_loss(0.0)).count();
        assert_eq!(p.group(), None);
        assert_eq!(clean + 1, QUIET_REPORTS as usize, "{clean} reports");
        assert_eq!(p.media_share(5_000), 1.0);
        assert!(!p.on_loss(0.015));
        assert!(p.on_loss(0.025));
        assert_eq!(p.group(), Some(LIGHT_GROUP));
        assert!(p.on_loss(0.05));
        assert_eq!(p.group(), Some(HEAVY_GROUP));
        // a 24-fragment frame keeps two thirds; a 4-fragment one (1 Mbit/s at 30 fps) has
        // three shards, not two: 4/7
        assert!(
            (p.media_share(24 * super::super::message::MAX_FRAGMENT_PAYLOAD) - 2.0 / 3.0).abs()
                < 1e-9
        );
        assert!((p.media_share(4_100) - 4.0 / 7.0).abs() < 1e-9);
        // 5 % random loss reported as it swings (once the slow average has seen a few
        // seconds of it): the parity stays heavy
        for _ in 0..10 {
            p.on_loss(0.05);
        }
        for loss in [0.05, 0.06, 0.03, 0.022, 0.05, 0.04, 0.025, 0.02, 0.055] {
            assert!(!p.on_loss(loss), "dropped at {loss}");
        }
        // the link clears: heavy for the hold after the last heavy report, then none (the
        // slow average has come down by then)
        let mut seen = vec![];
        for i in 0..40 {
            if p.on_loss(0.0) {
                seen.push((i, p.group()));
            }
        }
        assert_eq!(seen, vec![(HEAVY_HOLD_REPORTS as usize - 1, None)]);
        // 5 % random loss over reports of 8 fragments each (0 or 1 lost, smoothed as the rate
        // controller does): once heavy, it stays heavy
        let mut p = ParityPolicy::default();
        let (mut fast, mut rng, mut light, mut none) = (0.0f32, 7u64, 0, 0);
        for i in 0..400 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // the call's first 2 s happen to lose nothing
            let lost = (0..8)
                .filter(|k| i >= 8 && (rng >> (8 * k)) % 100 < 5)
                .count();
            fast += 0.25 * (lost as f32 / 8.0 - fast);
            p.on_loss(fast);
            none += usize::from(p.group().is_none());
            if i >= 48 && p.group() != Some(HEAVY_GROUP) {
                light += 1;
            }
        }
        assert_eq!(none, 0, "reports without parity on a lossy link");
        assert_eq!(light, 0, "reports out of 352 with lighter parity");
        let mut q = ParityPolicy::default();
        assert!(q.on_loss(0.1));
        assert_eq!(
            q.group(),
            Some(HEAVY_GROUP),
            "heavy loss goes straight to small groups"
        );
        assert!(
            !q.on_loss(f32::NAN),
            "a garbled figure counts as heavy loss"
        );
    }
}
