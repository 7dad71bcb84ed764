//! `H264Decoder::decode` (OpenH264, then our I420 → BGR conversion) on a stream of arbitrary
//! access units from a hostile peer: each decodes to a consistent picture or is an error.
//!
//! Input: records (`prattle_fuzz::Records`), one access unit each, all for one decoder (the
//! decoder keeps reference frames between them); control bytes are ignored.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prattle::media::h264::H264Decoder;
use prattle::media::VideoDecoder;
use prattle_fuzz::Records;

fuzz_target!(|data: &[u8]| {
    let mut dec = H264Decoder::new().expect("decoder");
    for (_, unit) in Records::new(data) {
        if let Ok(f) = dec.decode(unit) {
            assert!(f.width > 0 && f.height > 0);
            assert_eq!(f.data.len(), f.width as usize * f.height as usize * 3);
        }
    }
});
