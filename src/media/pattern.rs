//! The built-in test pattern: moving content plus the frame stamp.

use super::stamp::{write_stamp, Stamp};
use super::{PixelFormat, VideoFrame};

/// Generates moving, stamped pictures of one size.
#[derive(Debug)]
pub struct TestPattern {
    width: u32,
    height: u32,
}

impl TestPattern {
    /// A pattern of `width`×`height` pixels.
    pub fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }

    /// Picture number `frame_no`, captured at `capture_us`: scrolling colour bands, a
    /// bouncing square, and the stamp.
    pub fn render(&mut self, frame_no: u32, capture_us: u64) -> VideoFrame {
        let mut data = Vec::new();
        self.render_into(frame_no, capture_us, &mut data);
        VideoFrame {
            width: self.width,
            height: self.height,
            data,
            capture_us,
            format: PixelFormat::Bgr,
        }
    }

    /// The same picture's BGR bytes into `data`, which keeps its allocation.
    pub fn render_into(&mut self, frame_no: u32, capture_us: u64, data: &mut Vec<u8>) {
        let (w, h) = (self.width as usize, self.height as usize);
        // filled row by row as it grows: a zeroed 720p picture cost a 2.7 MB memset first
        fill_background(data, w, h, frame_no);
        // a square that bounces from side to side in the lower half
        let side = (h / 6).max(4);
        let span = w.saturating_sub(side).max(1);
        let t = (frame_no as usize * 6) % (2 * span);
        let x0 = if t < span { t } else { 2 * span - t };
        let y0 = h / 2 + (h / 2).saturating_sub(side) / 2;
        for y in y0..(y0 + side).min(h) {
            for x in x0..(x0 + side).min(w) {
                let i = (y * w + x) * 3;
                data[i..i + 3].copy_from_slice(&[30, 220, 250]);
            }
        }
        write_stamp(
            data,
            self.width,
            self.height,
            Stamp {
                frame_no,
                capture_us,
            },
        );
    }
}

/// Scrolling colour bands along x, shaded along y: `data` becomes a `w`×`h` BGR picture.
fn fill_background(data: &mut Vec<u8>, w: usize, h: usize, frame_no: u32) {
    let stride = w * 3;
    let shift = (frame_no as usize).wrapping_mul(4);
    // the bands run along x and the shade along y: one row of bands, then each row is a
    // copy with its shade, or a copy of the row above when the shade did not change (a
    // per-pixel loop cost 3 ms of a 720p frame, 9 % of a core)
    let mut bands = vec![0u8; stride];
    for (x, px) in bands.chunks_exact_mut(3).enumerate() {
        let band = ((x + shift) / 8 % 64) as u8;
        px[0] = band.wrapping_mul(4);
        px[2] = 200u8.wrapping_sub(band.wrapping_mul(3));
    }
    data.clear();
    data.reserve(stride * h);
    let mut last_shade = None;
    for y in 0..h {
        let shade = (y * 255 / h.max(1)) as u8 / 2 + 40;
        let start = y * stride;
        if y > 0 && last_shade == Some(shade) {
            data.extend_from_within(start - stride..start);
            continue;
        }
        for px in bands.chunks_exact_mut(3) {
            px[1] = shade;
        }
        data.extend_from_slice(&bands);
        last_shade = Some(shade);
    }
}

/// Camera-like noise for picture `t` of a test: each byte of `data` raised by up to
/// `3 * (2^(32 - shift) - 1)` and lowered by `down`, from a hash of its index and `t`.
#[cfg(test)]
pub(crate) fn add_noise(data: &mut [u8], t: u32, shift: u32, down: u8) {
    for (i, px) in data.iter_mut().enumerate() {
        let r = (i as u32 ^ t.wrapping_mul(2_654_435_761)).wrapping_mul(2_246_822_519);
        *px = px
            .saturating_add((r >> shift) as u8 * 3)
            .saturating_sub(down);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::stamp::{read_stamp, Picture, Rect};

    #[test]
    fn bands_and_shades_are_the_per_pixel_formula() {
        for (w, h, n) in [(640, 480, 1), (1280, 720, 77), (322, 242, 1000), (8, 1, 3)] {
            let mut fast = vec![0u8; w * h * 3];
            fill_background(&mut fast, w, h, n);
            let shift = n as usize * 4;
            let mut want = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    let band = ((x + shift) / 8 % 64) as u8;
                    want.extend_from_slice(&[
                        band.wrapping_mul(4),
                        (y * 255 / h) as u8 / 2 + 40,
                        200u8.wrapping_sub(band.wrapping_mul(3)),
                    ]);
                }
            }
            assert!(fast == want, "{w}x{h} frame {n}");
        }
    }

    #[test]
    fn frames_move_and_carry_their_stamp() {
        let mut p = TestPattern::new(640, 480);
        let a = p.render(1, 100);
        let b = p.render(2, 200);
        assert_ne!(a.data, b.data, "content moves");
        let pic = Picture::bgr(&b.data, 640, 480);
        let s = read_stamp(&pic, Rect::full(640, 480), false).expect("stamp");
        assert_eq!((s.frame_no, s.capture_us), (2, 200));
    }
}
