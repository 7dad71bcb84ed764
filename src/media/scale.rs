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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::TestPattern;
    use crate::media::stamp::{read_stamp, Picture, Rect};

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
