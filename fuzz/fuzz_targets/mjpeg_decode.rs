//! `MjpegDecoder::decode` (OpenCV's libjpeg-turbo) on arbitrary bytes: a frame from the
//! network either decodes to a consistent picture or is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prattle::media::mjpeg::MjpegDecoder;
use prattle::media::VideoDecoder;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = MjpegDecoder.decode(data) {
        assert!(f.width > 0 && f.height > 0);
        assert_eq!(f.data.len(), f.width as usize * f.height as usize * 3);
    }
});
