//! Shrinking a picture before it is encoded (the sent size follows the bitrate).

use opencv::core::{Mat, MatTraitConstManual, Size, ToInputArray, Vec3b};
use opencv::imgproc;

use super::{CodecError, PixelFormat, VideoFrame};

/// `frame` resized to `width`×`height`; the capture time is kept.
///
/// A shrink by a whole factor averages blocks; what is left after the largest whole factor
/// that divides the picture (less than 2 each way) is interpolated. OpenCV's area averaging
/// by a fraction took 2.7 ms for 1280×720 → 960×540 here, on every frame sent at that size;
/// the block average and the interpolation together take a fifth of that (`benches/codec.rs`).
pub fn resize_bgr(frame: &VideoFrame, width: u32, height: u32) -> Result<VideoFrame, CodecError> {
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
    if width == 0 || height == 0 {
        return Err(CodecError::InvalidInput(format!(
            "resize to {width}x{height}"
        )));
    }
    let src = Mat::new_rows_cols_with_bytes::<Vec3b>(
        frame.height as i32,
        frame.width as i32,
        &frame.data,
    )
    .map_err(backend)?;
    // the largest whole factor both ways that divides the picture exactly (OpenCV's fast path)
    let k = (2..=(frame.width / width).min(frame.height / height))
        .rev()
        .find(|k| frame.width.is_multiple_of(*k) && frame.height.is_multiple_of(*k))
        .unwrap_or(1);
    let (bw, bh) = (frame.width / k, frame.height / k);
    let out = if k == 1 {
        resize_rest(&src, (bw, bh), (width, height))
    } else {
        let blocks = resize(&src, (bw, bh), imgproc::INTER_AREA)?;
        if (bw, bh) == (width, height) {
            Ok(blocks)
        } else {
            resize_rest(&blocks, (bw, bh), (width, height))
        }
    }?;
    Ok(VideoFrame {
        width,
        height,
        data: out.data_bytes().map_err(backend)?.to_vec(),
        capture_us: frame.capture_us,
        format: PixelFormat::Bgr,
    })
}

fn backend(e: opencv::Error) -> CodecError {
    CodecError::InvalidInput(format!("resize: {e}"))
}

/// `src` resized to `w`×`h` by OpenCV with interpolation `how`.
fn resize(src: &impl ToInputArray, (w, h): (u32, u32), how: i32) -> Result<Mat, CodecError> {
    let mut out = Mat::default();
    imgproc::resize(src, &mut out, Size::new(w as i32, h as i32), 0.0, 0.0, how)
        .map_err(backend)?;
    Ok(out)
}

/// A `from`-sized picture resized to `to` by less than a whole factor: interpolated, or
/// averaged when interpolation would skip pixels (odd sizes only; slow).
fn resize_rest(
    src: &impl ToInputArray,
    from: (u32, u32),
    to: (u32, u32),
) -> Result<Mat, CodecError> {
    let how = if to.0 * 2 <= from.0 || to.1 * 2 <= from.1 {
        imgproc::INTER_AREA
    } else {
        imgproc::INTER_LINEAR
    };
    resize(src, to, how)
}

/// Averages `k`×`k` blocks of the BGR picture `src` (rows `stride` bytes apart) into `out`,
/// `w` pixels a row, as many rows as `out` holds.
#[inline(always)]
fn shrink_into(src: &[u8], stride: usize, k: usize, w: usize, out: &mut [u8]) {
    let area = (k * k) as u32;
    // rows are added up first (a plain loop over bytes the compiler vectorises), then the
    // columns of each block
    let mut rows = vec![0u16; stride];
    for (oy, out_row) in out.chunks_exact_mut(w * 3).enumerate() {
        rows.fill(0);
        for row in src[oy * k * stride..].chunks_exact(stride).take(k) {
            for (acc, &b) in rows.iter_mut().zip(row) {
                *acc += u16::from(b);
            }
        }
        for (px, block) in out_row.chunks_exact_mut(3).zip(rows.chunks_exact(3 * k)) {
            let (mut b, mut g, mut r) = (0u32, 0u32, 0u32);
            for p in block.chunks_exact(3) {
                b += u32::from(p[0]);
                g += u32::from(p[1]);
                r += u32::from(p[2]);
            }
            px[0] = ((b + area / 2) / area) as u8;
            px[1] = ((g + area / 2) / area) as u8;
            px[2] = ((r + area / 2) / area) as u8;
        }
    }
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
    let mut data = vec![0u8; w as usize * h as usize * 3];
    // the factors a window uses, with `k` a constant in each copy: the divisions become
    // multiplications and the block loops unroll (`cargo bench --bench codec -- self_view`:
    // 720p by 3 0.69 -> 0.32 ms, 480p by 2 0.43 -> 0.12 ms)
    let src = &frame.data[..];
    match k {
        2 => shrink_into(src, stride, 2, w as usize, &mut data),
        3 => shrink_into(src, stride, 3, w as usize, &mut data),
        4 => shrink_into(src, stride, 4, w as usize, &mut data),
        _ => shrink_into(src, stride, k, w as usize, &mut data),
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
    fn shrinking_by_a_fraction_keeps_the_stamp_and_the_colours() {
        let f = TestPattern::new(1280, 720).render(777, 9);
        for (w, h) in [(960, 540), (480, 270), (240, 134)] {
            let s = resize_bgr(&f, w, h).expect("resize");
            assert_eq!((s.width, s.height, s.capture_us), (w, h, 9));
            assert_eq!(s.data.len(), (w * h * 3) as usize);
            let stamp = read_stamp(&Picture::bgr(&s.data, w, h), Rect::full(w, h), false);
            assert_eq!(stamp.map(|s| s.frame_no), Some(777), "{w}x{h}");
        }
        // a flat picture stays flat, whichever way it is shrunk
        let mut flat = VideoFrame::black(1280, 720);
        for px in flat.data.chunks_exact_mut(3) {
            px.copy_from_slice(&[10, 120, 230]);
        }
        for (w, h) in [(960, 540), (480, 270), (427, 240), (1279, 719)] {
            let s = resize_bgr(&flat, w, h).expect("resize");
            assert!(
                s.data.chunks_exact(3).all(|p| p == [10, 120, 230]),
                "{w}x{h}"
            );
        }
        assert!(resize_bgr(&flat, 0, 10).is_err());
    }

    #[test]
    fn a_short_buffer_is_refused() {
        let mut f = VideoFrame::black(64, 48);
        f.data.pop();
        assert!(resize_bgr(&f, 32, 24).is_err());
    }
}
