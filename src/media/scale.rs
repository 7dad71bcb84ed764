//! Shrinking a picture before it is encoded (the sent size follows the bitrate).

use opencv::core::{Mat, MatTraitConstManual, Size, Vec3b};
use opencv::imgproc;

use super::{CodecError, PixelFormat, VideoFrame};

/// `frame` resized to `width`×`height` (area averaging); the capture time is kept.
pub fn resize_bgr(frame: &VideoFrame, width: u32, height: u32) -> Result<VideoFrame, CodecError> {
    let backend = |e: opencv::Error| CodecError::InvalidInput(format!("resize: {e}"));
    if frame.format != PixelFormat::Bgr
        || frame.data.len() != frame.width as usize * frame.height as usize * 3
    {
        return Err(CodecError::InvalidInput(format!(
            "{} bytes for a {}x{} picture",
            frame.data.len(),
            frame.width,
            frame.height
        )));
    }
    let src = Mat::new_rows_cols_with_bytes::<Vec3b>(
        frame.height as i32,
        frame.width as i32,
        &frame.data,
    )
    .map_err(backend)?;
    let mut out = Mat::default();
    imgproc::resize(
        &src,
        &mut out,
        Size::new(width as i32, height as i32),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )
    .map_err(backend)?;
    Ok(VideoFrame {
        width,
        height,
        data: out.data_bytes().map_err(backend)?.to_vec(),
        capture_us: frame.capture_us,
        format: PixelFormat::Bgr,
    })
}

/// A BGR `frame` shrunk `k` times each way by averaging `k`×`k` blocks (the edge that does
/// not fill a block is left out); the capture time is kept. Pictures of other formats, and
/// `k` < 2, come back as they are; `k` over 16 counts as 16.
pub fn shrink_bgr_by(frame: &VideoFrame, k: u32) -> VideoFrame {
    // at most 16: a column of 16 bytes adds up within a u16
    let k = k.min(16);
    let (w, h) = (frame.width / k.max(1), frame.height / k.max(1));
    let stride = frame.width as usize * 3;
    if k < 2
        || w == 0
        || h == 0
        || frame.format != PixelFormat::Bgr
        || frame.data.len() < stride * frame.height as usize
    {
        return frame.clone();
    }
    let k = k as usize;
    let area = (k * k) as u32;
    let mut data = Vec::with_capacity(w as usize * h as usize * 3);
    // rows are added up first (a plain loop over bytes the compiler vectorises), then the
    // columns of each block
    let mut rows = vec![0u16; stride];
    for oy in 0..h as usize {
        rows.fill(0);
        for row in frame.data[oy * k * stride..].chunks_exact(stride).take(k) {
            for (acc, &b) in rows.iter_mut().zip(row) {
                *acc += u16::from(b);
            }
        }
        for block in rows.chunks_exact(3 * k).take(w as usize) {
            let mut sum = [0u32; 3];
            for px in block.chunks_exact(3) {
                sum[0] += u32::from(px[0]);
                sum[1] += u32::from(px[1]);
                sum[2] += u32::from(px[2]);
            }
            data.extend(sum.map(|s| ((s + area / 2) / area) as u8));
        }
    }
    VideoFrame {
        width: w,
        height: h,
        data,
        capture_us: frame.capture_us,
        format: PixelFormat::Bgr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::TestPattern;
    use crate::media::stamp::{read_stamp, Picture, Rect};

    #[test]
    fn shrinking_by_a_whole_factor_averages_blocks() {
        // a 6x4 picture: left half dark, right half bright, blue channel = row
        let mut data = Vec::new();
        for y in 0..4u8 {
            for x in 0..6u8 {
                data.extend([y * 10, if x < 3 { 0 } else { 200 }, x]);
            }
        }
        let f = VideoFrame {
            width: 6,
            height: 4,
            data,
            capture_us: 7,
            format: PixelFormat::Bgr,
        };
        let s = shrink_bgr_by(&f, 3);
        assert_eq!((s.width, s.height, s.capture_us), (2, 1, 7));
        // block (0..3, 0..3): B = mean(0,10,20) = 10, G = 0, R = mean(0,1,2) = 1
        assert_eq!(&s.data[..3], &[10, 0, 1]);
        assert_eq!(&s.data[3..], &[10, 200, 4]);
        assert_eq!(shrink_bgr_by(&f, 1).data, f.data);
        let big = TestPattern::new(1280, 720).render(99, 5);
        let small = shrink_bgr_by(&big, 3);
        assert_eq!((small.width, small.height), (426, 240));
        let stamp = read_stamp(
            &Picture::bgr(&small.data, 426, 240),
            Rect::full(426, 240),
            false,
        );
        assert_eq!(stamp.map(|s| s.frame_no), Some(99));
    }

    #[test]
    fn half_size_keeps_the_stamp_readable() {
        let mut p = TestPattern::new(640, 480);
        let f = p.render(1234, 42);
        let half = resize_bgr(&f, 320, 240).expect("resize");
        assert_eq!((half.width, half.height, half.capture_us), (320, 240, 42));
        assert_eq!(half.data.len(), 320 * 240 * 3);
        let s = read_stamp(
            &Picture::bgr(&half.data, 320, 240),
            Rect::full(320, 240),
            false,
        )
        .expect("stamp");
        assert_eq!(s.frame_no, 1234);
    }

    #[test]
    fn a_short_buffer_is_refused() {
        let mut f = VideoFrame::black(64, 48);
        f.data.pop();
        assert!(resize_bgr(&f, 32, 24).is_err());
    }
}
