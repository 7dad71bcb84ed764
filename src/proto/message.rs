//! Message types and their versioned binary encoding.
//!
//! Every datagram starts with the magic `Pr`, the protocol version and a kind byte. Decoding
//! checks every length and range, so any byte string either decodes to a valid message or
//! yields a [`ProtoError`]; nothing here panics on input.

use super::fragment::FrameMeta;
use super::wire::{Reader, Writer};
use super::ProtoError;

/// First two bytes of every Prattle datagram.
pub const MAGIC: [u8; 2] = *b"Pr";
/// The protocol version this build speaks.
pub const VERSION: u8 = 2;
/// Largest datagram we send: laminar drops unreliable payloads over 1452 bytes without telling.
pub const MAX_DATAGRAM: usize = 1250;
/// Bytes of a video fragment header (magic, version, kind and the fragment fields).
pub const VIDEO_HEADER_LEN: usize = 4 + 4 + 2 + 2 + 1 + 1 + 2 + 2 + 8;
/// Bytes of a parity fragment header: a video header plus the block's parity shape and the
/// frame's length.
pub const PARITY_HEADER_LEN: usize = VIDEO_HEADER_LEN + 2 + 2 + 4;
/// Largest slice of an encoded frame carried by one fragment (a parity fragment, a little
/// longer, fits the datagram too).
pub const MAX_FRAGMENT_PAYLOAD: usize = MAX_DATAGRAM - PARITY_HEADER_LEN;
/// Most fragments one frame may have (about 1.2 MB per frame).
pub const MAX_FRAGMENTS: u16 = 1024;
/// Largest picture side we accept.
pub const MAX_SIDE: u16 = 4096;

const KIND_HELLO: u8 = 1;
const KIND_ACCEPT: u8 = 2;
const KIND_STATE: u8 = 3;
const KIND_BYE: u8 = 4;
const KIND_KEYFRAME_REQUEST: u8 = 5;
const KIND_VIDEO: u8 = 6;
const KIND_AUDIO: u8 = 7;
const KIND_NACK: u8 = 8;
const KIND_REPORT: u8 = 9;
const KIND_PARITY: u8 = 10;
const KIND_PROBE: u8 = 11;
const KIND_PROBE_RESULT: u8 = 12;

/// Most datagrams one bandwidth probe may have (the receiver keeps one bit for each).
pub const MAX_PROBE_PACKETS: u16 = 64;
/// Bytes of a probe datagram's header (magic, version, kind, cluster, index, count, size).
pub const PROBE_HEADER_LEN: usize = 4 + 2 + 2 + 2 + 2;

/// Fragment indices one resend request names at most.
pub const MAX_NACK_INDICES: usize = 128;
/// Marks a request for a whole frame.
const NACK_ALL: u16 = u16::MAX;

/// Largest encoded audio frame we carry: Opus at our highest bitrate (256 kbit/s) takes 160
/// bytes for a 5 ms frame and 320 for 10 ms; two of them fit in one datagram.
pub const MAX_AUDIO_PAYLOAD: usize = 600;

const FLAG_CAMERA_ON: u8 = 1;
const FLAG_MUTED: u8 = 2;
const FLAG_KEYFRAME: u8 = 1;

/// Which codec produced a video frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecId {
    /// Motion JPEG: every frame is a keyframe.
    Mjpeg,
    /// H.264 (reserved for the next codec).
    H264,
}

impl CodecId {
    fn to_byte(self) -> u8 {
        match self {
            CodecId::Mjpeg => 1,
            CodecId::H264 => 2,
        }
    }
    fn from_byte(b: u8) -> Result<Self, ProtoError> {
        match b {
            1 => Ok(CodecId::Mjpeg),
            2 => Ok(CodecId::H264),
            _ => Err(ProtoError::Invalid("codec")),
        }
    }
}

/// The sender's full media state, repeated regularly so that a lost copy never matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSnapshot {
    /// Session id of the sender.
    pub from: u64,
    /// Increases with every snapshot; older ones are ignored.
    pub seq: u32,
    /// Whether the sender's camera is on and delivering.
    pub camera_on: bool,
    /// Whether the sender's microphone is muted.
    pub muted: bool,
}

/// One piece of an encoded video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFragment {
    /// Frame counter of the sender, wrapping.
    pub frame_id: u32,
    /// Index of this piece, below `count`.
    pub index: u16,
    /// Number of pieces of the frame.
    pub count: u16,
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
    /// This piece of the encoded frame.
    pub payload: Vec<u8>,
}

/// A Reed-Solomon parity shard over a block of a frame's fragments: a block with `shards`
/// parity fragments rebuilds any `shards` of its fragments that are lost.
///
/// A frame's fragments fall into [`super::parity::blocks_for`] blocks of at most
/// [`super::parity::BLOCK_DATA`]; block `b` holds the fragments whose index is `b` modulo the
/// block count. Every fragment but the last is `frame_len / count` bytes rounded up, which is
/// the parity's length; a shorter last fragment counts zero-padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParityFragment {
    /// Frame counter of the sender, wrapping.
    pub frame_id: u32,
    /// Which block this parity covers.
    pub block: u16,
    /// Which of the block's parity shards this is, below `shards`.
    pub shard: u16,
    /// Parity shards of the block: at most as many as it has fragments.
    pub shards: u16,
    /// Data fragments of the frame.
    pub count: u16,
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
    /// Bytes of the whole encoded frame.
    pub frame_len: u32,
    /// The Reed-Solomon parity shard.
    pub payload: Vec<u8>,
}

impl VideoFragment {
    /// Piece `index` of `count` of the frame `m`.
    pub fn new(m: FrameMeta, index: u16, count: u16, payload: Vec<u8>) -> Self {
        Self {
            frame_id: m.frame_id,
            index,
            count,
            keyframe: m.keyframe,
            codec: m.codec,
            width: m.width,
            height: m.height,
            capture_us: m.capture_us,
            payload,
        }
    }
}

impl ParityFragment {
    /// A parity shard of the frame `m`, its place in the frame (block, shard, shards, count,
    /// frame_len) still to be filled in.
    pub fn new(m: FrameMeta, payload: Vec<u8>) -> Self {
        Self {
            frame_id: m.frame_id,
            block: 0,
            shard: 0,
            shards: 0,
            count: 0,
            keyframe: m.keyframe,
            codec: m.codec,
            width: m.width,
            height: m.height,
            capture_us: m.capture_us,
            frame_len: 0,
            payload,
        }
    }
}

/// Everything that travels between two peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "I want a call"; `from` is the sender's random session id.
    Hello {
        /// Sender's session id.
        from: u64,
    },
    /// "Call accepted"; `to` echoes the session id of the hello it answers.
    Accept {
        /// Sender's session id.
        from: u64,
        /// The session id being answered.
        to: u64,
    },
    /// The sender's media state; doubles as keep-alive.
    State(StateSnapshot),
    /// The sender hangs up.
    Bye {
        /// Sender's session id.
        from: u64,
    },
    /// The receiver cannot decode until a frame that stands on its own arrives.
    KeyframeRequest {
        /// Sender's session id.
        from: u64,
        /// Last frame the receiver could not decode.
        frame_id: u32,
    },
    /// A piece of a video frame.
    Video(VideoFragment),
    /// Forward error correction for a video frame.
    Parity(ParityFragment),
    /// One encoded audio frame.
    Audio(AudioFrame),
    /// What the receiver saw of our video lately, for bandwidth adaptation.
    Report {
        /// Missing video fragments, per thousand.
        loss_permille: u16,
        /// Video that arrived, kbit/s.
        receive_kbps: u32,
        /// Standing queue on the path: the interval's smallest one-way delay above the
        /// smallest of the last 10 s, ms.
        queue_ms: u16,
        /// Inter-arrival jitter of frames (RFC 3550), ms.
        jitter_ms: u16,
        /// How fast our frames' fragments came in (median of the interval's frames, each
        /// timed from its first fragment to its last), kbit/s; 0: too few frames timed, or
        /// their rates disagree.
        path_kbps: u32,
        /// The last frame that arrived and how long ago (ms), for the sender's round trip.
        echo: Option<(u32, u16)>,
    },
    /// One datagram of a bandwidth probe (see `media::probe`).
    Probe(ProbePacket),
    /// How a probe's datagrams arrived.
    ProbeResult(ProbeResult),
    /// "Send these fragments of this frame again" (`None`: all of it).
    Nack {
        /// The frame.
        frame_id: u32,
        /// Missing fragment indices, or the whole frame.
        missing: Option<Vec<u16>>,
    },
}

/// One datagram of a bandwidth probe: a burst sent at a set rate, padded to `size`, whose
/// arrival rate tells how fast the path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePacket {
    /// Which burst.
    pub cluster: u16,
    /// This datagram's place in the burst, below `count`.
    pub index: u16,
    /// Datagrams in the burst, at most [`MAX_PROBE_PACKETS`].
    pub count: u16,
    /// Bytes of the whole datagram, padding included: from [`PROBE_HEADER_LEN`] to
    /// [`MAX_DATAGRAM`].
    pub size: u16,
}

/// What the receiver tells of a probe's burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResult {
    /// Which burst.
    pub cluster: u16,
    /// Its arrival rate, kbit/s (`u32::MAX`: all at once, too fast to time).
    pub kbps: u32,
    /// It arrived in order and evenly spaced, as from the queue of a bottleneck; a path that
    /// jitters spreads a burst too, but unevenly and out of order.
    pub even: bool,
}

/// One encoded audio frame, sent unreliably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Packet counter of the sender, wrapping.
    pub seq: u32,
    /// Media time of the first sample, in 48 kHz samples, wrapping.
    pub timestamp: u32,
    /// Capture time, microseconds since the UNIX epoch on the sender's clock.
    pub capture_us: u64,
    /// The Opus packet.
    pub payload: Vec<u8>,
    /// The previous frame's Opus packet (`seq - 1`) once more, so that a lost packet is
    /// replaced by a real copy from the next one instead of a guess.
    pub previous: Option<Vec<u8>>,
}

fn audio_payload_ok(p: &[u8]) -> bool {
    !p.is_empty() && p.len() <= MAX_AUDIO_PAYLOAD
}

impl Message {
    /// Encodes the message into one datagram payload, refusing anything over [`MAX_DATAGRAM`].
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut w = Writer::with_capacity(64);
        w.bytes(&MAGIC);
        w.u8(VERSION);
        match self {
            Message::Hello { from } => {
                w.u8(KIND_HELLO);
                w.u64(*from);
            }
            Message::Accept { from, to } => {
                w.u8(KIND_ACCEPT);
                w.u64(*from);
                w.u64(*to);
            }
            Message::State(s) => {
                w.u8(KIND_STATE);
                w.u64(s.from);
                w.u32(s.seq);
                let mut flags = 0;
                if s.camera_on {
                    flags |= FLAG_CAMERA_ON;
                }
                if s.muted {
                    flags |= FLAG_MUTED;
                }
                w.u8(flags);
            }
            Message::Bye { from } => {
                w.u8(KIND_BYE);
                w.u64(*from);
            }
            Message::KeyframeRequest { from, frame_id } => {
                w.u8(KIND_KEYFRAME_REQUEST);
                w.u64(*from);
                w.u32(*frame_id);
            }
            Message::Report {
                loss_permille,
                receive_kbps,
                queue_ms,
                jitter_ms,
                path_kbps,
                echo,
            } => {
                w.u8(KIND_REPORT);
                w.u16((*loss_permille).min(1000));
                w.u32(*receive_kbps);
                w.u16(*queue_ms);
                w.u16(*jitter_ms);
                w.u32(*path_kbps);
                match echo {
                    Some((frame_id, held_ms)) => {
                        w.u8(1);
                        w.u32(*frame_id);
                        w.u16(*held_ms);
                    }
                    None => w.u8(0),
                }
            }
            Message::Probe(p) => {
                if p.count == 0 || p.count > MAX_PROBE_PACKETS || p.index >= p.count {
                    return Err(ProtoError::Invalid("probe index"));
                }
                let size = usize::from(p.size);
                if size < PROBE_HEADER_LEN {
                    return Err(ProtoError::Invalid("probe size"));
                }
                w.u8(KIND_PROBE);
                w.u16(p.cluster);
                w.u16(p.index);
                w.u16(p.count);
                w.u16(p.size);
                // zeros up to the size (encrypted on the wire like everything else); over
                // MAX_DATAGRAM is refused below
                w.bytes(&vec![0; size - PROBE_HEADER_LEN]);
            }
            Message::ProbeResult(r) => {
                w.u8(KIND_PROBE_RESULT);
                w.u16(r.cluster);
                w.u32(r.kbps);
                w.u8(u8::from(r.even));
            }
            Message::Nack { frame_id, missing } => {
                w.u8(KIND_NACK);
                w.u32(*frame_id);
                match missing {
                    None => w.u16(NACK_ALL),
                    Some(m) => {
                        if m.len() > MAX_NACK_INDICES {
                            return Err(ProtoError::Invalid("too many indices"));
                        }
                        w.u16(m.len() as u16);
                        for i in m {
                            w.u16(*i);
                        }
                    }
                }
            }
            Message::Audio(a) => {
                if !audio_payload_ok(&a.payload)
                    || !a.previous.as_deref().is_none_or(audio_payload_ok)
                {
                    return Err(ProtoError::Invalid("audio payload size"));
                }
                w.u8(KIND_AUDIO);
                w.u32(a.seq);
                w.u32(a.timestamp);
                w.u64(a.capture_us);
                // the length fits: it was checked against MAX_AUDIO_PAYLOAD
                w.u16(a.payload.len() as u16);
                w.bytes(&a.payload);
                if let Some(p) = &a.previous {
                    w.bytes(p);
                }
            }
            Message::Video(v) => {
                validate_video(v)?;
                w = Writer::with_capacity(VIDEO_HEADER_LEN + v.payload.len());
                write_frame_head(&mut w, KIND_VIDEO, &v.into(), v.index, v.count);
                w.bytes(&v.payload);
            }
            Message::Parity(p) => {
                validate_parity(p)?;
                w = Writer::with_capacity(PARITY_HEADER_LEN + p.payload.len());
                write_frame_head(&mut w, KIND_PARITY, &p.into(), p.block, p.count);
                w.u16(p.shard);
                w.u16(p.shards);
                w.u32(p.frame_len);
                w.bytes(&p.payload);
            }
        }
        let out = w.finish();
        if out.len() > MAX_DATAGRAM {
            return Err(ProtoError::Oversized(out.len()));
        }
        Ok(out)
    }

    /// Decodes one datagram payload; any malformed input is an error, never a panic.
    pub fn decode(buf: &[u8]) -> Result<Message, ProtoError> {
        if buf.len() > MAX_DATAGRAM {
            return Err(ProtoError::Oversized(buf.len()));
        }
        let mut r = Reader::new(buf);
        let magic = [r.u8()?, r.u8().map_err(|_| ProtoError::Foreign)?];
        if magic != MAGIC {
            return Err(ProtoError::Foreign);
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(ProtoError::Version(version));
        }
        let kind = r.u8()?;
        let msg = match kind {
            KIND_HELLO => Message::Hello { from: r.u64()? },
            KIND_ACCEPT => Message::Accept {
                from: r.u64()?,
                to: r.u64()?,
            },
            KIND_STATE => {
                let from = r.u64()?;
                let seq = r.u32()?;
                let flags = r.u8()?;
                Message::State(StateSnapshot {
                    from,
                    seq,
                    camera_on: flags & FLAG_CAMERA_ON != 0,
                    muted: flags & FLAG_MUTED != 0,
                })
            }
            KIND_BYE => Message::Bye { from: r.u64()? },
            KIND_KEYFRAME_REQUEST => Message::KeyframeRequest {
                from: r.u64()?,
                frame_id: r.u32()?,
            },
            KIND_VIDEO => {
                let (meta, index, count) = read_frame_head(&mut r)?;
                let v = VideoFragment::new(meta, index, count, r.rest().to_vec());
                validate_video(&v)?;
                Message::Video(v)
            }
            KIND_PARITY => {
                let (meta, block, count) = read_frame_head(&mut r)?;
                let (shard, shards, frame_len) = (r.u16()?, r.u16()?, r.u32()?);
                let p = ParityFragment {
                    block,
                    shard,
                    shards,
                    count,
                    frame_len,
                    ..ParityFragment::new(meta, r.rest().to_vec())
                };
                validate_parity(&p)?;
                Message::Parity(p)
            }
            KIND_REPORT => {
                let loss_permille = r.u16()?;
                if loss_permille > 1000 {
                    return Err(ProtoError::Invalid("loss"));
                }
                let receive_kbps = r.u32()?;
                let queue_ms = r.u16()?;
                let jitter_ms = r.u16()?;
                let path_kbps = r.u32()?;
                let echo = match r.u8()? {
                    0 => None,
                    1 => Some((r.u32()?, r.u16()?)),
                    _ => return Err(ProtoError::Invalid("echo flag")),
                };
                Message::Report {
                    loss_permille,
                    receive_kbps,
                    queue_ms,
                    jitter_ms,
                    path_kbps,
                    echo,
                }
            }
            KIND_PROBE => {
                let (cluster, index, count) = (r.u16()?, r.u16()?, r.u16()?);
                if count == 0 || count > MAX_PROBE_PACKETS || index >= count {
                    return Err(ProtoError::Invalid("probe index"));
                }
                let size = r.u16()?;
                if usize::from(size) != buf.len() {
                    return Err(ProtoError::Invalid("probe size"));
                }
                // the padding is not looked at
                let _ = r.rest();
                Message::Probe(ProbePacket {
                    cluster,
                    index,
                    count,
                    size,
                })
            }
            KIND_PROBE_RESULT => Message::ProbeResult(ProbeResult {
                cluster: r.u16()?,
                kbps: r.u32()?,
                even: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(ProtoError::Invalid("even flag")),
                },
            }),
            KIND_NACK => {
                let frame_id = r.u32()?;
                let n = r.u16()?;
                let missing = if n == NACK_ALL {
                    None
                } else {
                    if usize::from(n) > MAX_NACK_INDICES {
                        return Err(ProtoError::Invalid("too many indices"));
                    }
                    let mut v = Vec::with_capacity(usize::from(n));
                    for _ in 0..n {
                        let i = r.u16()?;
                        if i >= MAX_FRAGMENTS {
                            return Err(ProtoError::Invalid("fragment index"));
                        }
                        v.push(i);
                    }
                    Some(v)
                };
                Message::Nack { frame_id, missing }
            }
            KIND_AUDIO => {
                let seq = r.u32()?;
                let timestamp = r.u32()?;
                let capture_us = r.u64()?;
                let len = usize::from(r.u16()?);
                if len == 0 || len > MAX_AUDIO_PAYLOAD {
                    return Err(ProtoError::Invalid("audio payload size"));
                }
                let payload = r.take(len)?.to_vec();
                let rest = r.rest();
                if rest.len() > MAX_AUDIO_PAYLOAD {
                    return Err(ProtoError::Invalid("audio payload size"));
                }
                Message::Audio(AudioFrame {
                    seq,
                    timestamp,
                    capture_us,
                    payload,
                    previous: (!rest.is_empty()).then(|| rest.to_vec()),
                })
            }
            other => return Err(ProtoError::UnknownKind(other)),
        };
        r.expect_end()?;
        Ok(msg)
    }

    /// The session id of the sender, for control messages.
    pub fn sender(&self) -> Option<u64> {
        match self {
            Message::Hello { from }
            | Message::Accept { from, .. }
            | Message::Bye { from }
            | Message::KeyframeRequest { from, .. } => Some(*from),
            Message::State(s) => Some(s.from),
            Message::Video(_)
            | Message::Parity(_)
            | Message::Audio(_)
            | Message::Nack { .. }
            | Message::Probe(_)
            | Message::ProbeResult(_)
            | Message::Report { .. } => None,
        }
    }
}

/// The header of video and parity fragments, after magic and version: the kind, the frame's
/// id, a slot (the fragment's index, or the parity's block), the fragment count and the rest
/// of the frame's description.
fn write_frame_head(w: &mut Writer, kind: u8, m: &FrameMeta, slot: u16, count: u16) {
    w.bytes(&MAGIC);
    w.u8(VERSION);
    w.u8(kind);
    w.u32(m.frame_id);
    w.u16(slot);
    w.u16(count);
    w.u8(if m.keyframe { FLAG_KEYFRAME } else { 0 });
    w.u8(m.codec.to_byte());
    w.u16(m.width);
    w.u16(m.height);
    w.u64(m.capture_us);
}

/// Reads what [`write_frame_head`] wrote after the kind: the frame, the slot and the count.
fn read_frame_head(r: &mut Reader<'_>) -> Result<(FrameMeta, u16, u16), ProtoError> {
    let frame_id = r.u32()?;
    let slot = r.u16()?;
    let count = r.u16()?;
    let flags = r.u8()?;
    let meta = FrameMeta {
        frame_id,
        keyframe: flags & FLAG_KEYFRAME != 0,
        codec: CodecId::from_byte(r.u8()?)?,
        width: r.u16()?,
        height: r.u16()?,
        capture_us: r.u64()?,
    };
    Ok((meta, slot, count))
}

fn validate_video(v: &VideoFragment) -> Result<(), ProtoError> {
    if v.count == 0 || v.count > MAX_FRAGMENTS {
        return Err(ProtoError::Invalid("fragment count"));
    }
    if v.index >= v.count {
        return Err(ProtoError::Invalid("fragment index"));
    }
    if v.payload.is_empty() || v.payload.len() > MAX_FRAGMENT_PAYLOAD {
        return Err(ProtoError::Invalid("fragment payload size"));
    }
    if v.width == 0 || v.height == 0 || v.width > MAX_SIDE || v.height > MAX_SIDE {
        return Err(ProtoError::Invalid("picture size"));
    }
    Ok(())
}

fn validate_parity(p: &ParityFragment) -> Result<(), ProtoError> {
    if p.count == 0 || p.count > MAX_FRAGMENTS {
        return Err(ProtoError::Invalid("fragment count"));
    }
    let blocks = super::parity::blocks_for(usize::from(p.count));
    let block = usize::from(p.block);
    if block >= blocks {
        return Err(ProtoError::Invalid("parity block"));
    }
    let data = super::parity::data_in_block(usize::from(p.count), block);
    if p.shards == 0
        || usize::from(p.shards) > super::parity::max_parity(data)
        || p.shard >= p.shards
    {
        return Err(ProtoError::Invalid("parity shard"));
    }
    if p.payload.is_empty() || p.payload.len() > MAX_FRAGMENT_PAYLOAD {
        return Err(ProtoError::Invalid("fragment payload size"));
    }
    // the parity is as long as every fragment but the last, which holds at least one byte
    let (len, count, piece) = (
        u64::from(p.frame_len),
        u64::from(p.count),
        p.payload.len() as u64,
    );
    if len.div_ceil(count) != piece || len <= piece * (count - 1) {
        return Err(ProtoError::Invalid("parity frame length"));
    }
    if p.width == 0 || p.height == 0 || p.width > MAX_SIDE || p.height > MAX_SIDE {
        return Err(ProtoError::Invalid("picture size"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment() -> VideoFragment {
        VideoFragment {
            frame_id: 7,
            index: 1,
            count: 3,
            keyframe: true,
            codec: CodecId::Mjpeg,
            width: 640,
            height: 480,
            capture_us: 1_700_000_000_000_000,
            payload: vec![9; 100],
        }
    }

    fn parity() -> ParityFragment {
        ParityFragment {
            frame_id: 7,
            block: 0,
            shard: 1,
            shards: 2,
            count: 3,
            keyframe: false,
            codec: CodecId::H264,
            width: 1280,
            height: 720,
            capture_us: 1_700_000_000_000_000,
            frame_len: 250,
            payload: vec![3; 84],
        }
    }

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Hello { from: 1 },
            Message::Accept { from: 2, to: 3 },
            Message::State(StateSnapshot {
                from: 4,
                seq: 5,
                camera_on: true,
                muted: false,
            }),
            Message::State(StateSnapshot {
                from: u64::MAX,
                seq: u32::MAX,
                camera_on: false,
                muted: true,
            }),
            Message::Bye { from: 6 },
            Message::KeyframeRequest {
                from: 8,
                frame_id: 9,
            },
            Message::Video(fragment()),
            Message::Parity(parity()),
            Message::Nack {
                frame_id: 3,
                missing: Some(vec![0, 5, 9]),
            },
            Message::Nack {
                frame_id: 4,
                missing: None,
            },
            Message::Report {
                loss_permille: 25,
                receive_kbps: 1_234,
                queue_ms: 12,
                jitter_ms: 3,
                path_kbps: 987,
                echo: Some((77, 40)),
            },
            Message::Report {
                loss_permille: 0,
                receive_kbps: 0,
                queue_ms: 0,
                jitter_ms: 0,
                path_kbps: 0,
                echo: None,
            },
            Message::Probe(ProbePacket {
                cluster: 3,
                index: 4,
                count: 5,
                size: 1200,
            }),
            Message::Probe(ProbePacket {
                cluster: u16::MAX,
                index: 0,
                count: MAX_PROBE_PACKETS,
                size: PROBE_HEADER_LEN as u16,
            }),
            Message::ProbeResult(ProbeResult {
                cluster: 3,
                kbps: u32::MAX,
                even: false,
            }),
            Message::ProbeResult(ProbeResult {
                cluster: 0,
                kbps: 1,
                even: true,
            }),
            Message::Audio(AudioFrame {
                seq: 1,
                timestamp: 960,
                capture_us: 5,
                payload: vec![0xF8; 60],
                previous: None,
            }),
            Message::Audio(AudioFrame {
                seq: 2,
                timestamp: 1200,
                capture_us: 6,
                payload: vec![0xF8; 20],
                previous: Some(vec![0xF8; 21]),
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all_messages() {
            let bytes = m.encode().expect("encode");
            assert_eq!(Message::decode(&bytes), Ok(m));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for m in all_messages() {
            let bytes = m.encode().expect("encode");
            for n in 0..bytes.len() {
                if matches!(m, Message::Video(_)) && n > VIDEO_HEADER_LEN {
                    // a shorter payload is still a valid fragment
                    continue;
                }
                if let Message::Audio(AudioFrame {
                    previous: Some(p), ..
                }) = &m
                {
                    if n >= bytes.len() - p.len() {
                        // a shorter copy of the previous frame, or none, is still valid
                        continue;
                    }
                }
                assert!(Message::decode(&bytes[..n]).is_err(), "{m:?} cut at {n}");
            }
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = Message::Hello { from: 1 }.encode().expect("encode");
        bytes.push(0);
        assert_eq!(Message::decode(&bytes), Err(ProtoError::TrailingBytes(1)));
    }

    #[test]
    fn foreign_version_and_kind_are_named() {
        assert_eq!(Message::decode(b"GET / HTTP/1.1"), Err(ProtoError::Foreign));
        assert_eq!(
            Message::decode(&[b'P', b'r', 9, 1]),
            Err(ProtoError::Version(9))
        );
        assert_eq!(
            Message::decode(&[b'P', b'r', VERSION, 200]),
            Err(ProtoError::UnknownKind(200))
        );
    }

    #[test]
    fn invalid_fragments_are_rejected_both_ways() {
        let cases: Vec<fn(&mut VideoFragment)> = vec![
            |v| v.count = 0,
            |v| v.index = v.count,
            |v| v.count = MAX_FRAGMENTS + 1,
            |v| v.payload.clear(),
            |v| v.payload = vec![0; MAX_FRAGMENT_PAYLOAD + 1],
            |v| v.width = 0,
            |v| v.height = MAX_SIDE + 1,
        ];
        for mutate in cases {
            let mut v = fragment();
            mutate(&mut v);
            assert!(Message::Video(v.clone()).encode().is_err(), "{v:?}");
            // forge the same bytes by hand: decode must refuse them too
            let mut ok = fragment();
            ok.payload = vec![1; 10];
            let mut bytes = Message::Video(ok).encode().expect("encode");
            bytes[8..10].copy_from_slice(&v.index.to_be_bytes());
            bytes[10..12].copy_from_slice(&v.count.to_be_bytes());
            bytes[14..16].copy_from_slice(&v.width.to_be_bytes());
            bytes[16..18].copy_from_slice(&v.height.to_be_bytes());
            bytes.truncate(VIDEO_HEADER_LEN);
            bytes.extend_from_slice(&v.payload);
            assert!(Message::decode(&bytes).is_err(), "forged {v:?}");
        }
    }

    #[test]
    fn invalid_parity_is_rejected_both_ways() {
        let cases: Vec<fn(&mut ParityFragment)> = vec![
            |p| p.count = 0,
            |p| p.block = 1,
            |p| p.shards = 0,
            |p| p.shard = p.shards,
            |p| p.shards = 4,
            |p| p.frame_len = 84 * 3 + 1,
            |p| p.frame_len = 84 * 2,
            |p| p.payload.push(0),
            |p| p.width = MAX_SIDE + 1,
        ];
        for mutate in cases {
            let mut p = parity();
            mutate(&mut p);
            assert!(Message::Parity(p.clone()).encode().is_err(), "{p:?}");
            let mut bytes = Message::Parity(parity()).encode().expect("encode");
            bytes[8..10].copy_from_slice(&p.block.to_be_bytes());
            bytes[10..12].copy_from_slice(&p.count.to_be_bytes());
            bytes[14..16].copy_from_slice(&p.width.to_be_bytes());
            bytes[26..28].copy_from_slice(&p.shard.to_be_bytes());
            bytes[28..30].copy_from_slice(&p.shards.to_be_bytes());
            bytes[30..34].copy_from_slice(&p.frame_len.to_be_bytes());
            bytes.truncate(PARITY_HEADER_LEN);
            bytes.extend_from_slice(&p.payload);
            assert!(Message::decode(&bytes).is_err(), "forged {p:?}");
        }
        // the longest parity fragment fits a datagram
        let mut p = parity();
        p.count = 2;
        p.shards = 1;
        p.shard = 0;
        p.frame_len = 2 * MAX_FRAGMENT_PAYLOAD as u32;
        p.payload = vec![1; MAX_FRAGMENT_PAYLOAD];
        let bytes = Message::Parity(p.clone()).encode().expect("fits");
        assert_eq!(bytes.len(), MAX_DATAGRAM);
        assert_eq!(Message::decode(&bytes), Ok(Message::Parity(p)));
    }

    #[test]
    fn invalid_probes_are_rejected_both_ways() {
        let probe = |index, count, size| {
            Message::Probe(ProbePacket {
                cluster: 1,
                index,
                count,
                size,
            })
        };
        for (index, count, size) in [
            (0, 0, 100),
            (5, 5, 100),
            (0, MAX_PROBE_PACKETS + 1, 100),
            (0, 5, PROBE_HEADER_LEN as u16 - 1),
            (0, 5, MAX_DATAGRAM as u16 + 1),
        ] {
            assert!(
                probe(index, count, size).encode().is_err(),
                "{index} {count} {size}"
            );
            // forged by hand: the header's fields, and the size against what arrived
            let mut bytes = probe(0, 5, 100).encode().expect("encode");
            bytes[6..8].copy_from_slice(&index.to_be_bytes());
            bytes[8..10].copy_from_slice(&count.to_be_bytes());
            bytes[10..12].copy_from_slice(&size.to_be_bytes());
            assert!(
                Message::decode(&bytes).is_err(),
                "forged {index} {count} {size}"
            );
        }
        // the biggest probe is one datagram
        let bytes = probe(0, 1, MAX_DATAGRAM as u16).encode().expect("fits");
        assert_eq!(bytes.len(), MAX_DATAGRAM);
    }

    #[test]
    fn oversized_datagrams_are_rejected() {
        let mut big = vec![0u8; MAX_DATAGRAM + 1];
        big[..4].copy_from_slice(&[b'P', b'r', VERSION, KIND_VIDEO]);
        assert_eq!(
            Message::decode(&big),
            Err(ProtoError::Oversized(MAX_DATAGRAM + 1))
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift: deterministic pseudo-random input of every length up to a datagram
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..1400 {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            if len > 4 && len % 3 == 0 {
                buf[..3].copy_from_slice(&[b'P', b'r', VERSION]);
            }
            let _ = Message::decode(&buf);
        }
    }
}
