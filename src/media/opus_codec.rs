//! Opus encode/decode for the call audio path: 48 kHz mono, 5 ms frames, low-delay mode.
//!
//! Low-delay mode (CELT only) looks 2.5 ms ahead where the VoIP mode looks 6.5 ms ahead, and
//! 5 ms frames wait 5 ms less for their samples than 10 ms ones: mic→speaker 38 → 27 ms
//! here. It has no in-band FEC (that is SILK's); a lost packet is replaced instead by the
//! copy of it that the next packet carries (see `AudioFrame::previous`).
//!
//! Sans-IO: callers hand in PCM / packets and get PCM / packets back.

use opus::{Application, Bitrate, Channels};

/// Sample rate of all PCM going in and out of the codec.
pub const SAMPLE_RATE: u32 = 48_000;
/// Frame duration in milliseconds: 2.5, 5, 10 or 20 in low-delay mode.
pub const FRAME_MS: u32 = 5;
/// Mono samples per frame, derived so that changing `FRAME_MS` is a one-line edit.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE * FRAME_MS / 1000) as usize;
/// Largest packet we produce or accept; a single Opus frame is at most 1276 bytes and the
/// UDP path cannot carry more than an MTU anyway.
pub const MAX_PACKET_BYTES: usize = 1500;
/// Longest duration one Opus packet may carry (120 ms at 48 kHz).
const MAX_PACKET_SAMPLES: usize = 5760;

const MIN_BITRATE_BPS: i32 = 6_000;
const MAX_BITRATE_BPS: i32 = 510_000;

/// Errors from the Opus wrapper; a bad packet from the network ends up here, never in a panic.
#[derive(Debug, thiserror::Error)]
pub enum AudioCodecError {
    /// The encoder was given a PCM buffer that is not exactly one frame.
    #[error("expected {expected} PCM samples per frame, got {got}")]
    BadFrameLength {
        /// Required length (`FRAME_SAMPLES`).
        expected: usize,
        /// Length that was passed.
        got: usize,
    },
    /// The decode output buffer cannot hold a frame.
    #[error("output buffer holds {got} samples, need at least {needed}")]
    OutputTooSmall {
        /// Minimum length required.
        needed: usize,
        /// Length that was passed.
        got: usize,
    },
    /// An empty packet was passed where real data is required (use `conceal` for loss).
    #[error("empty packet")]
    EmptyPacket,
    /// The packet is larger than any packet a peer may legitimately send.
    #[error("packet of {0} bytes exceeds the {MAX_PACKET_BYTES}-byte limit")]
    PacketTooLarge(usize),
    /// A bitrate or loss percentage outside the range libopus accepts.
    #[error("invalid {what}: {value}")]
    InvalidSetting {
        /// Which setting.
        what: &'static str,
        /// The rejected value.
        value: i32,
    },
    /// libopus itself reported an error (corrupt packet, bad argument, ...).
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// Mono low-delay Opus encoder.
pub struct OpusEncoder {
    inner: opus::Encoder,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates an encoder at `bitrate_bps` that expects `expected_loss_pct` loss (CELT then
    /// leans less on the frame before).
    pub fn new(bitrate_bps: i32, expected_loss_pct: i32) -> Result<Self, AudioCodecError> {
        let inner = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::LowDelay)?;
        let mut enc = Self { inner };
        enc.set_bitrate(bitrate_bps)?;
        enc.set_expected_loss(expected_loss_pct)?;
        Ok(enc)
    }

    /// Changes the target bitrate (6 000..=510 000 bit/s), e.g. from congestion control.
    pub fn set_bitrate(&mut self, bps: i32) -> Result<(), AudioCodecError> {
        if !(MIN_BITRATE_BPS..=MAX_BITRATE_BPS).contains(&bps) {
            return Err(AudioCodecError::InvalidSetting {
                what: "bitrate",
                value: bps,
            });
        }
        self.inner.set_bitrate(Bitrate::Bits(bps))?;
        Ok(())
    }

    /// Updates the packet-loss hint (0..=100 %).
    pub fn set_expected_loss(&mut self, pct: i32) -> Result<(), AudioCodecError> {
        if !(0..=100).contains(&pct) {
            return Err(AudioCodecError::InvalidSetting {
                what: "expected loss percentage",
                value: pct,
            });
        }
        self.inner.set_packet_loss_perc(pct)?;
        Ok(())
    }

    /// Encodes exactly one frame (`FRAME_SAMPLES` mono samples) into one packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>, AudioCodecError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(AudioCodecError::BadFrameLength {
                expected: FRAME_SAMPLES,
                got: pcm.len(),
            });
        }
        Ok(self.inner.encode_vec(pcm, MAX_PACKET_BYTES)?)
    }
}

/// Mono Opus decoder with a packet-loss concealment entry point.
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// Creates a 48 kHz mono decoder.
    pub fn new() -> Result<Self, AudioCodecError> {
        Ok(Self {
            inner: opus::Decoder::new(SAMPLE_RATE, Channels::Mono)?,
        })
    }

    /// Decodes a received packet into `out`, returning the number of samples written.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, AudioCodecError> {
        check_packet(packet)?;
        // The opus crate panics on lengths beyond i32, and no packet is longer than 120 ms.
        let n = out.len().min(MAX_PACKET_SAMPLES);
        let (out, _) = out.split_at_mut(n);
        Ok(self.inner.decode(packet, out, false)?)
    }

    /// Synthesises one frame of packet-loss concealment for a frame with no data at all.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, AudioCodecError> {
        let out = frame_slice(out)?;
        Ok(self.inner.decode(&[], out, false)?)
    }
}

fn check_packet(packet: &[u8]) -> Result<(), AudioCodecError> {
    // libopus treats an empty buffer as "lost", which would silently turn a bug into PLC.
    if packet.is_empty() {
        return Err(AudioCodecError::EmptyPacket);
    }
    if packet.len() > MAX_PACKET_BYTES {
        return Err(AudioCodecError::PacketTooLarge(packet.len()));
    }
    Ok(())
}

fn frame_slice(out: &mut [i16]) -> Result<&mut [i16], AudioCodecError> {
    // PLC must be asked for exactly the missing duration, not the buffer size.
    let got = out.len();
    out.get_mut(..FRAME_SAMPLES)
        .ok_or(AudioCodecError::OutputTooSmall {
            needed: FRAME_SAMPLES,
            got,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift so tests are reproducible without a rand dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn sine(freq: f64, frames: usize, amp: f64) -> Vec<i16> {
        (0..frames * FRAME_SAMPLES)
            .map(|i| {
                let t = i as f64 / f64::from(SAMPLE_RATE);
                (amp * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    fn snr_db(reference: &[i16], test: &[i16]) -> f64 {
        let (mut sig, mut err) = (0.0f64, 0.0f64);
        for (&r, &t) in reference.iter().zip(test) {
            sig += f64::from(r).powi(2);
            err += (f64::from(r) - f64::from(t)).powi(2);
        }
        10.0 * (sig / err.max(1e-9)).log10()
    }

    fn encode_all(enc: &mut OpusEncoder, pcm: &[i16]) -> Vec<Vec<u8>> {
        pcm.chunks_exact(FRAME_SAMPLES)
            .map(|f| enc.encode(f).expect("encode"))
            .collect()
    }

    #[test]
    fn frame_constants_agree() {
        assert_eq!(FRAME_SAMPLES, (SAMPLE_RATE * FRAME_MS / 1000) as usize);
    }

    #[test]
    fn sine_round_trip_has_high_snr_after_delay_alignment() {
        let frames = 50;
        let input = sine(440.0, frames, 8000.0);
        let mut enc = OpusEncoder::new(32_000, 10).expect("encoder");
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut output = Vec::new();
        for pkt in encode_all(&mut enc, &input) {
            assert!(!pkt.is_empty() && pkt.len() <= MAX_PACKET_BYTES);
            let mut buf = [0i16; FRAME_SAMPLES];
            let n = dec.decode(&pkt, &mut buf).expect("decode");
            assert_eq!(n, FRAME_SAMPLES);
            output.extend_from_slice(&buf);
        }
        // Skip warm-up frames, then find the codec delay by searching for the best SNR.
        let start = 10 * FRAME_SAMPLES;
        let len = 30 * FRAME_SAMPLES;
        let (best_delay, best) = (0..2 * FRAME_SAMPLES)
            .map(|d| (d, snr_db(&input[start..start + len], &output[start + d..])))
            .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        println!("round trip: delay {best_delay} samples, SNR {best:.1} dB");
        assert!(best > 15.0, "round-trip SNR too low: {best:.1} dB");
        // low-delay mode: 2.5 ms of look-ahead (120 samples); the VoIP mode's is 312
        assert!(best_delay <= 130, "codec delay {best_delay} samples");
    }

    #[test]
    fn malformed_packets_are_errors() {
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut out = [0i16; FRAME_SAMPLES];
        assert!(matches!(
            dec.decode(&[], &mut out),
            Err(AudioCodecError::EmptyPacket)
        ));
        let huge = vec![0x55u8; 100_000];
        assert!(matches!(
            dec.decode(&huge, &mut out),
            Err(AudioCodecError::PacketTooLarge(_))
        ));
        // Code 3 TOC with no frame-count byte.
        assert!(dec.decode(&[0xFB], &mut out).is_err());
        // Code 1 (two equal frames) needs an even payload; three bytes is invalid.
        assert!(dec.decode(&[0x79, 1, 2, 3], &mut out).is_err());
        // Code 0 frame over the 1275-byte limit.
        assert!(dec.decode(&vec![0x78u8; 1300], &mut out).is_err());
        // Code 3 claiming 48 frames of 20 ms (960 ms) cannot fit any buffer: invalid.
        assert!(dec.decode(&[0x7B, 48, 0, 0], &mut out).is_err());
        // A 60 ms packet does not fit a 20 ms output buffer.
        let mut tiny = [0i16; 100];
        assert!(dec.decode(&[0x18, 0, 0], &mut tiny).is_err());
        assert!(matches!(
            dec.conceal(&mut tiny),
            Err(AudioCodecError::OutputTooSmall { .. })
        ));
        let mut enc = OpusEncoder::new(32_000, 10).expect("encoder");
        assert!(enc.encode(&[0i16; FRAME_SAMPLES - 1]).is_err());
        assert!(enc.set_bitrate(-5).is_err());
        assert!(enc.set_expected_loss(101).is_err());
    }

    #[test]
    fn random_bytes_never_panic_and_never_overrun() {
        // Many random byte strings are syntactically valid Opus, so the contract is: Err or
        // a sane sample count, never a panic, and the decoder keeps working afterwards.
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut out = [0i16; FRAME_SAMPLES];
        let mut errors = 0;
        for _ in 0..20_000 {
            let len = (rng.next() % 1600) as usize;
            let pkt: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            match dec.decode(&pkt, &mut out) {
                Ok(n) => assert!(n <= FRAME_SAMPLES),
                Err(_) => errors += 1,
            }
        }
        assert!(
            errors > 0,
            "random garbage should be rejected at least sometimes"
        );
        let mut enc = OpusEncoder::new(32_000, 10).expect("encoder");
        let pkt = enc.encode(&sine(440.0, 1, 8000.0)).expect("encode");
        assert_eq!(dec.decode(&pkt, &mut out).expect("decode"), FRAME_SAMPLES);
    }
}
