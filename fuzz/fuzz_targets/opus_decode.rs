//! `OpusDecoder::decode` and `conceal` on arbitrary packets and buffer sizes.
//!
//! Input: records (`prattle_fuzz::Records`), all for one decoder. A record's control byte
//! picks the call (`ctl & 3`: 2 conceals, the others decode) and the output buffer
//! size (`OUT[ctl >> 2 & 7]` samples); the body is the packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prattle::media::opus_codec::OpusDecoder;
use prattle_fuzz::Records;

const OUT: [usize; 8] = [0, 1, 119, 480, 960, 1920, 5760, 8000];

fuzz_target!(|data: &[u8]| {
    let mut dec = OpusDecoder::new().expect("decoder");
    let mut pcm = vec![0i16; 8000];
    for (ctl, packet) in Records::new(data) {
        let out = &mut pcm[..OUT[usize::from(ctl >> 2 & 7)]];
        let got = match ctl & 3 {
            2 => dec.conceal(out),
            _ => dec.decode(packet, out),
        };
        if let Ok(n) = got {
            assert!(n <= out.len(), "{n} samples into {}", out.len());
        }
    }
});
