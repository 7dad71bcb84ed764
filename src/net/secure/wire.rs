//! Datagram framing. Every datagram starts with a type byte; all other fields have fixed
//! sizes per type and mode, so parsing is a length check and slicing, never allocation.
//!
//! ```text
//! INIT    1 | mode 1 | sender_idx 4 | noise msg1 (64 Tofu / 113 Code) | mac2 16    86 / 135 B
//! RESP    2 | mode 1 | sender_idx 4 | receiver_idx 4 | [spake2 B 33] | noise msg2 96   106 / 139 B
//! FINISH  3 | receiver_idx 4 | noise msg3 96                                            101 B
//! COOKIE  4 | receiver_idx 4 | cookie 16                                                 21 B
//! REJECT  5 | receiver_idx 4 | reason 1                                                   6 B
//! DATA    6 | counter 8 (LE) | ciphertext (plaintext + 16-byte Poly1305 tag)     25 B + payload
//! ```
//! Indices are little-endian `u32`s chosen at random by the side that names them, so an
//! off-path stranger cannot aim a reply at a handshake in progress.

use super::cookie::COOKIE_LEN;

/// Type byte of a handshake initiation.
pub const T_INIT: u8 = 1;
/// Type byte of a handshake response.
pub const T_RESP: u8 = 2;
/// Type byte of the final handshake message.
pub const T_FINISH: u8 = 3;
/// Type byte of a cookie reply.
pub const T_COOKIE: u8 = 4;
/// Type byte of a handshake rejection.
pub const T_REJECT: u8 = 5;
/// Type byte of an encrypted data datagram.
pub const T_DATA: u8 = 6;

/// Bytes a data datagram adds to its payload: type, counter and AEAD tag.
pub const DATA_OVERHEAD: usize = 1 + 8 + TAG_LEN;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// SPAKE2 message length (side byte and a compressed Ed25519 point).
pub const SPAKE_LEN: usize = 33;
/// Commitment to the initiator's SAS nonce, sent in msg1.
pub const COMMIT_LEN: usize = 32;
/// Length of Noise msg1: `e` and the SAS commitment, plus SPAKE2 A and a tag in code mode.
pub const fn noise1_len(mode: Mode) -> usize {
    // psk handshakes key the cipher from `e`, so the code-mode payload carries a tag
    match mode {
        Mode::Tofu => 32 + COMMIT_LEN,
        Mode::Code => 32 + COMMIT_LEN + SPAKE_LEN + TAG_LEN,
    }
}
/// Noise msg2 of XX: `e`, encrypted `s`, and an empty encrypted payload.
pub const NOISE2_LEN: usize = 32 + (32 + TAG_LEN) + TAG_LEN;
/// Noise msg3 of XX: encrypted `s` and the encrypted 32-byte SAS nonce.
pub const NOISE3_LEN: usize = (32 + TAG_LEN) + (32 + TAG_LEN);

/// Which handshake flavour a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Noise XX; keys are trusted on first use.
    Tofu,
    /// SPAKE2 over a one-time code, feeding Noise XXpsk2.
    Code,
}

impl Mode {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Tofu),
            1 => Some(Self::Code),
            _ => None,
        }
    }

    /// Its wire byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Tofu => 0,
            Self::Code => 1,
        }
    }
}

/// Why a responder refused a handshake (unauthenticated: only a hint to the initiator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The responder runs code mode and this initiator did not offer a code.
    CodeRequired,
    /// The responder has no code and this initiator offered one.
    NoCode,
    /// The code did not match.
    CodeMismatch,
    /// The responder has used up its tries for the code.
    CodeExhausted,
}

impl RejectReason {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::CodeRequired),
            2 => Some(Self::NoCode),
            3 => Some(Self::CodeMismatch),
            4 => Some(Self::CodeExhausted),
            _ => None,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::CodeRequired => 1,
            Self::NoCode => 2,
            Self::CodeMismatch => 3,
            Self::CodeExhausted => 4,
        }
    }
}

/// A parsed datagram borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Handshake initiation.
    Init {
        /// Handshake flavour.
        mode: Mode,
        /// The initiator's index for this attempt.
        sender: u32,
        /// Noise msg1.
        noise: &'a [u8],
        /// Everything before `mac2`, which `mac2` covers.
        before_mac2: &'a [u8],
        /// Cookie MAC, zeros when the initiator has no cookie.
        mac2: [u8; COOKIE_LEN],
    },
    /// Handshake response.
    Resp {
        /// Handshake flavour.
        mode: Mode,
        /// The responder's index.
        sender: u32,
        /// The initiator's index being answered.
        receiver: u32,
        /// SPAKE2 B message, in code mode.
        spake: Option<&'a [u8]>,
        /// Noise msg2.
        noise: &'a [u8],
    },
    /// Final handshake message.
    Finish {
        /// The responder's index.
        receiver: u32,
        /// Noise msg3.
        noise: &'a [u8],
    },
    /// Cookie reply to an initiation without a valid `mac2`.
    Cookie {
        /// The initiator's index.
        receiver: u32,
        /// Cookie to make `mac2` with.
        cookie: [u8; COOKIE_LEN],
    },
    /// Handshake refused.
    Reject {
        /// The index of the refused side.
        receiver: u32,
        /// Why.
        reason: RejectReason,
    },
    /// Transport data.
    Data {
        /// Nonce counter.
        counter: u64,
        /// Ciphertext with tag.
        ciphertext: &'a [u8],
    },
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn arr16(b: &[u8]) -> Option<[u8; 16]> {
    b.try_into().ok()
}

/// Parses a datagram; `None` when its type is unknown or its length wrong for the type.
pub fn parse(b: &[u8]) -> Option<Frame<'_>> {
    let (&ty, _) = b.split_first()?;
    match ty {
        T_INIT => {
            let mode = Mode::from_byte(*b.get(1)?)?;
            let n = noise1_len(mode);
            if b.len() != 6 + n + COOKIE_LEN {
                return None;
            }
            Some(Frame::Init {
                mode,
                sender: u32_at(b, 2)?,
                noise: &b[6..6 + n],
                before_mac2: &b[..6 + n],
                mac2: arr16(&b[6 + n..])?,
            })
        }
        T_RESP => {
            let mode = Mode::from_byte(*b.get(1)?)?;
            let spake_len = if mode == Mode::Code { SPAKE_LEN } else { 0 };
            if b.len() != 10 + spake_len + NOISE2_LEN {
                return None;
            }
            Some(Frame::Resp {
                mode,
                sender: u32_at(b, 2)?,
                receiver: u32_at(b, 6)?,
                spake: (mode == Mode::Code).then(|| &b[10..10 + SPAKE_LEN]),
                noise: &b[10 + spake_len..],
            })
        }
        T_FINISH if b.len() == 5 + NOISE3_LEN => Some(Frame::Finish {
            receiver: u32_at(b, 1)?,
            noise: &b[5..],
        }),
        T_COOKIE if b.len() == 5 + COOKIE_LEN => Some(Frame::Cookie {
            receiver: u32_at(b, 1)?,
            cookie: arr16(&b[5..])?,
        }),
        T_REJECT if b.len() == 6 => Some(Frame::Reject {
            receiver: u32_at(b, 1)?,
            reason: RejectReason::from_byte(b[5])?,
        }),
        T_DATA if b.len() >= DATA_OVERHEAD => {
            let c = b.get(1..9)?;
            let mut ctr = [0u8; 8];
            ctr.copy_from_slice(c);
            Some(Frame::Data {
                counter: u64::from_le_bytes(ctr),
                ciphertext: &b[9..],
            })
        }
        _ => None,
    }
}

/// An INIT without its `mac2` (the caller appends it).
pub fn init_before_mac2(mode: Mode, sender: u32, noise: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(6 + noise.len() + COOKIE_LEN);
    v.push(T_INIT);
    v.push(mode.byte());
    v.extend_from_slice(&sender.to_le_bytes());
    v.extend_from_slice(noise);
    v
}

/// A RESP datagram.
pub fn resp(mode: Mode, sender: u32, receiver: u32, spake: &[u8], noise: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(10 + spake.len() + noise.len());
    v.push(T_RESP);
    v.push(mode.byte());
    v.extend_from_slice(&sender.to_le_bytes());
    v.extend_from_slice(&receiver.to_le_bytes());
    v.extend_from_slice(spake);
    v.extend_from_slice(noise);
    v
}

/// A FINISH datagram.
pub fn finish(receiver: u32, noise: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + noise.len());
    v.push(T_FINISH);
    v.extend_from_slice(&receiver.to_le_bytes());
    v.extend_from_slice(noise);
    v
}

/// A COOKIE datagram.
pub fn cookie(receiver: u32, cookie: &[u8; COOKIE_LEN]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + COOKIE_LEN);
    v.push(T_COOKIE);
    v.extend_from_slice(&receiver.to_le_bytes());
    v.extend_from_slice(cookie);
    v
}

/// A REJECT datagram.
pub fn reject(receiver: u32, reason: RejectReason) -> Vec<u8> {
    let mut v = Vec::with_capacity(6);
    v.push(T_REJECT);
    v.extend_from_slice(&receiver.to_le_bytes());
    v.push(reason.byte());
    v
}

/// The header of a DATA datagram; the ciphertext follows.
pub fn data_header(counter: u64) -> [u8; 9] {
    let mut h = [0u8; 9];
    h[0] = T_DATA;
    h[1..].copy_from_slice(&counter.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_parser_agree() {
        for mode in [Mode::Tofu, Mode::Code] {
            let noise = vec![7u8; noise1_len(mode)];
            let mut m = init_before_mac2(mode, 0xdead_beef, &noise);
            m.extend_from_slice(&[9u8; 16]);
            match parse(&m) {
                Some(Frame::Init {
                    mode: got,
                    sender,
                    noise: n,
                    before_mac2,
                    mac2,
                }) => {
                    assert_eq!(
                        (got, sender, n, mac2),
                        (mode, 0xdead_beef, &noise[..], [9; 16])
                    );
                    assert_eq!(before_mac2, &m[..m.len() - 16]);
                }
                other => panic!("{other:?}"),
            }
            let spake = if mode == Mode::Code {
                vec![1u8; 33]
            } else {
                vec![]
            };
            let r = resp(mode, 1, 2, &spake, &[3u8; NOISE2_LEN]);
            assert!(matches!(
                parse(&r),
                Some(Frame::Resp {
                    sender: 1,
                    receiver: 2,
                    ..
                })
            ));
            assert_eq!(parse(&r[..r.len() - 1]), None);
        }
        let f = finish(5, &[0u8; NOISE3_LEN]);
        assert!(matches!(parse(&f), Some(Frame::Finish { receiver: 5, .. })));
        let c = cookie(6, &[1u8; 16]);
        assert!(matches!(parse(&c), Some(Frame::Cookie { receiver: 6, .. })));
        let r = reject(7, RejectReason::CodeMismatch);
        assert!(matches!(
            parse(&r),
            Some(Frame::Reject {
                receiver: 7,
                reason: RejectReason::CodeMismatch
            })
        ));
        let mut d = data_header(42).to_vec();
        d.extend_from_slice(&[0u8; TAG_LEN]);
        assert!(matches!(parse(&d), Some(Frame::Data { counter: 42, .. })));
        assert_eq!(parse(&d[..DATA_OVERHEAD - 1]), None);
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[99, 0, 0]), None);
    }
}
