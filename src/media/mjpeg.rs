//! Motion JPEG through OpenCV's libjpeg-turbo: every frame a keyframe, its quality following
//! the bitrate target.

use opencv::core::{Mat, MatTraitConst, MatTraitConstManual, Vec3b, Vector};
use opencv::imgcodecs;

use super::jpeg_rate::JpegRate;
use super::{CodecError, EncodedFrame, PixelFormat, VideoDecoder, VideoEncoder, VideoFrame};
use crate::proto::CodecId;

fn backend(e: opencv::Error) -> CodecError {
    CodecError::Backend {
        codec: CodecId::Mjpeg,
        message: e.to_string(),
    }
}

/// JPEG encoder whose quality follows the bitrate target ([`JpegRate`]).
#[derive(Debug)]
pub struct MjpegEncoder {
    rate: JpegRate,
    /// `IMWRITE_JPEG_QUALITY` and the quality, set before each encode.
    params: Vector<i32>,
    out: Vector<u8>,
}

impl MjpegEncoder {
    /// An encoder at `quality` (1–100; clamped) at most, for `fps` pictures a second.
    pub fn new(quality: u8, fps: u32) -> Self {
        Self {
            rate: JpegRate::new(quality, fps),
            params: Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, 0]),
            out: Vector::new(),
        }
    }

    /// The quality the next picture is encoded at.
    pub fn quality(&self) -> u8 {
        self.rate.quality()
    }

    fn encode_at(
        &mut self,
        mat: &impl opencv::core::ToInputArray,
        quality: u8,
    ) -> Result<usize, CodecError> {
        self.params.set(1, i32::from(quality)).map_err(backend)?;
        self.out.clear();
        imgcodecs::imencode(".jpg", mat, &mut self.out, &self.params).map_err(backend)?;
        self.rate.on_encoded(self.out.len());
        Ok(self.out.len())
    }
}

impl VideoEncoder for MjpegEncoder {
    fn codec(&self) -> CodecId {
        CodecId::Mjpeg
    }

    fn encode(
        &mut self,
        frame: &VideoFrame,
        _force_keyframe: bool,
    ) -> Result<EncodedFrame, CodecError> {
        if frame.format != PixelFormat::Bgr {
            return Err(CodecError::InvalidInput(
                "the encoder takes BGR pictures".into(),
            ));
        }
        let mat = Mat::new_rows_cols_with_bytes::<Vec3b>(
            frame.height as i32,
            frame.width as i32,
            &frame.data,
        )
        .map_err(backend)?;
        let quality = self.rate.quality();
        let bytes = self.encode_at(&mat, quality)?;
        if self.rate.redo(bytes, quality) {
            // far over the budget (a new scene, a bigger picture): better a second encode
            // than a burst the link cannot carry
            let lower = self.rate.quality();
            self.encode_at(&mat, lower)?;
        }
        Ok(EncodedFrame {
            data: self.out.as_slice().to_vec(),
            keyframe: true,
        })
    }

    fn set_target_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        self.rate.set_bitrate(bps);
        Ok(())
    }
}

/// Largest picture side decoded; a forged header must not make the library allocate gigabytes.
const MAX_SIDE: u16 = 4096;

/// The picture size in a JPEG's frame header (SOFn), without decoding anything.
fn jpeg_size(data: &[u8]) -> Option<(u16, u16)> {
    let mut i = 2;
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let marker = data[i + 1];
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = data.get(i + 5..i + 7)?;
            let w = data.get(i + 7..i + 9)?;
            return Some((
                u16::from_be_bytes([w[0], w[1]]),
                u16::from_be_bytes([h[0], h[1]]),
            ));
        }
        if len < 2 {
            return None;
        }
        i += 2 + len;
    }
    None
}

/// JPEG decoder.
#[derive(Debug, Default)]
pub struct MjpegDecoder;

impl VideoDecoder for MjpegDecoder {
    fn codec(&self) -> CodecId {
        CodecId::Mjpeg
    }

    fn decode(&mut self, data: &[u8]) -> Result<VideoFrame, CodecError> {
        // a JPEG starts with SOI; refuse anything else before handing it to the library
        if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
            return Err(CodecError::Corrupt);
        }
        match jpeg_size(data) {
            Some((w, h)) if w > 0 && h > 0 && w <= MAX_SIDE && h <= MAX_SIDE => {}
            _ => return Err(CodecError::Corrupt),
        }
        let buf = Mat::from_slice(data).map_err(backend)?;
        let mat = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR).map_err(backend)?;
        if mat.empty() || mat.typ() != opencv::core::CV_8UC3 {
            return Err(CodecError::Corrupt);
        }
        let size = mat.size().map_err(backend)?;
        let bytes = mat.data_bytes().map_err(backend)?;
        Ok(VideoFrame {
            width: size.width as u32,
            height: size.height as u32,
            data: bytes.to_vec(),
            capture_us: 0,
            format: PixelFormat::Bgr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::TestPattern;
    use crate::media::stamp::{read_stamp, Picture, Rect, Stamp};

    #[test]
    fn round_trip_keeps_size_and_stamp() {
        let mut pattern = TestPattern::new(640, 480);
        let frame = pattern.render(1234, 987_654_321);
        let mut enc = MjpegEncoder::new(80, 30);
        let jpeg = enc.encode(&frame, false).expect("encode");
        assert!(jpeg.keyframe);
        assert!(jpeg.data.len() < frame.data.len() / 5, "compresses");
        let out = MjpegDecoder.decode(&jpeg.data).expect("decode");
        assert_eq!((out.width, out.height), (640, 480));
        let pic = Picture::bgr(&out.data, 640, 480);
        assert_eq!(
            read_stamp(&pic, Rect::full(640, 480), false),
            Some(Stamp {
                frame_no: 1234,
                capture_us: 987_654_321
            })
        );
    }

    #[test]
    fn lower_quality_is_smaller() {
        let frame = TestPattern::new(640, 480).render(1, 1);
        let hi = MjpegEncoder::new(90, 30)
            .encode(&frame, false)
            .expect("encode");
        let lo = MjpegEncoder::new(30, 30)
            .encode(&frame, false)
            .expect("encode");
        assert!(lo.data.len() < hi.data.len());
    }

    #[test]
    fn a_bitrate_target_is_kept_on_a_moving_picture() {
        let mut pattern = TestPattern::new(320, 240);
        let mut enc = MjpegEncoder::new(75, 30);
        let free = enc
            .encode(&pattern.render(0, 0), false)
            .expect("encode")
            .data
            .len();
        // 70 % of what quality 75 costs (the test pattern costs 55 % of it at quality 10)
        let bps = (free * 8 * 30 * 7 / 10) as u32;
        enc.set_target_bitrate(bps).expect("bitrate");
        let budget = f64::from(bps) / 8.0 / 30.0;
        let mut total = 0;
        for i in 1..=60u32 {
            let n = enc
                .encode(&pattern.render(i, u64::from(i)), false)
                .expect("encode")
                .data
                .len();
            assert!(
                (n as f64) < budget * 1.6,
                "picture {i}: {n} bytes for a budget of {budget:.0}"
            );
            if i > 10 {
                total += n;
            }
        }
        let mean = total as f64 / 50.0;
        assert!(
            (0.6..=1.05).contains(&(mean / budget)),
            "mean {mean:.0} for a budget of {budget:.0}"
        );
        assert!(enc.quality() < 75);
        // a generous target brings the quality asked for back
        enc.set_target_bitrate(bps * 20).expect("bitrate");
        for i in 61..=80u32 {
            enc.encode(&pattern.render(i, u64::from(i)), false)
                .expect("encode");
        }
        assert_eq!(enc.quality(), 75);
    }

    #[test]
    fn a_forged_giant_size_is_refused_before_decoding() {
        let frame = TestPattern::new(320, 240).render(5, 5);
        let mut jpeg = MjpegEncoder::new(70, 30)
            .encode(&frame, false)
            .expect("encode")
            .data;
        assert_eq!(jpeg_size(&jpeg), Some((320, 240)));
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline frame header");
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xF0, 0xFF, 0xF0]);
        assert!(MjpegDecoder.decode(&jpeg).is_err());
    }

    #[test]
    fn garbage_and_truncated_jpeg_are_errors_not_panics() {
        let frame = TestPattern::new(320, 240).render(5, 5);
        let jpeg = MjpegEncoder::new(70, 30)
            .encode(&frame, false)
            .expect("encode");
        assert!(MjpegDecoder.decode(&[]).is_err());
        assert!(MjpegDecoder.decode(b"not a jpeg at all").is_err());
        for cut in [4, 20, 200, jpeg.data.len() / 2] {
            // libjpeg may return a partly grey picture for a cut stream: fine, as long as
            // nothing panics and a size comes back consistent with the bytes
            if let Ok(f) = MjpegDecoder.decode(&jpeg.data[..cut]) {
                assert_eq!(f.data.len(), (f.width * f.height * 3) as usize);
            }
        }
    }
}
