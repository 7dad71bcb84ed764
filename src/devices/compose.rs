//! Drawing into a 32-bit BGRx pixel buffer: the window's own framebuffer, used where the only
//! OpenGL is a software one (see `window_cpu.rs`). Pictures are converted straight into the
//! buffer (I420 by `media::yuv`, BGR by OpenCV), scaled and mirrored by OpenCV's vectorised
//! code; boxes and text are plain loops over their few pixels. Pure: no window needed, tested
//! on a `Vec`.

use opencv::boxed_ref::BoxedRefMut;
use opencv::core::{Mat, Size, ToInputArray, ToOutputArray, Vec3b, Vec4b};
use opencv::imgproc;
use opencv::prelude::*;

use crate::media::stamp::Rect;
use crate::media::yuv;
use crate::media::{PixelFormat, VideoFrame};

/// Why a picture could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The buffer is not a whole number of 4-byte pixels per row, or too short.
    #[error("pixel buffer of {len} bytes cannot hold {width}x{height} at pitch {pitch}")]
    Buffer {
        /// Bytes given.
        len: usize,
        /// Pixels per row.
        width: u32,
        /// Rows.
        height: u32,
        /// Bytes per row.
        pitch: usize,
    },
    /// The picture's bytes do not match its size and format.
    #[error("{len} bytes for a {width}x{height} picture")]
    Picture {
        /// Bytes in the picture.
        len: usize,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
    },
    /// OpenCV failed.
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
    /// The colour conversion refused the sizes.
    #[error(transparent)]
    Convert(#[from] yuv::ConvertError),
}

/// Working pictures kept between draws, so that a draw allocates nothing.
#[derive(Default)]
pub struct Scratch {
    /// An I420 picture converted to BGRA, to scale or mirror.
    bgra: Vec<u8>,
    /// A BGR picture converted to BGRA, to scale or mirror.
    converted: Mat,
    scaled: Mat,
}

/// A BGRx buffer of `width`×`height` pixels, `pitch` bytes a row.
pub struct Pixels<'a> {
    data: &'a mut [u8],
    width: u32,
    height: u32,
    pitch: usize,
}

impl<'a> Pixels<'a> {
    /// Wraps `data`; its rows are `pitch` bytes apart, a multiple of 4 of at least `4 * width`.
    pub fn new(
        data: &'a mut [u8],
        width: u32,
        height: u32,
        pitch: usize,
    ) -> Result<Self, ComposeError> {
        let fits = pitch.is_multiple_of(4)
            && pitch >= width as usize * 4
            && data.len() >= pitch * height as usize
            && width > 0
            && height > 0;
        if !fits {
            return Err(ComposeError::Buffer {
                len: data.len(),
                width,
                height,
                pitch,
            });
        }
        Ok(Self {
            data,
            width,
            height,
            pitch,
        })
    }

    /// `r` cut to the buffer, as (x0, y0, x1, y1); `None` when nothing is left.
    fn clip(&self, r: Rect) -> Option<(usize, usize, usize, usize)> {
        let c = r.intersect(Rect::full(self.width, self.height))?;
        let (x0, y0) = (c.x as usize, c.y as usize);
        Some((x0, y0, x0 + c.w as usize, y0 + c.h as usize))
    }

    /// The pixel at (`x`, `y`) as (B, G, R); for tests and checks.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = y as usize * self.pitch + x as usize * 4;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// Paints `r` (clipped) in `rgb`.
    pub fn fill(&mut self, r: Rect, rgb: [u8; 3]) {
        let Some((x0, y0, x1, y1)) = self.clip(r) else {
            return;
        };
        let px = [rgb[2], rgb[1], rgb[0], 255];
        for y in y0..y1 {
            let row = &mut self.data[y * self.pitch + x0 * 4..y * self.pitch + x1 * 4];
            for p in row.chunks_exact_mut(4) {
                p.copy_from_slice(&px);
            }
        }
    }

    /// Darkens `r` (clipped) as black at `alpha` (0–255) over it would.
    pub fn shade(&mut self, r: Rect, alpha: u8) {
        let Some((x0, y0, x1, y1)) = self.clip(r) else {
            return;
        };
        let keep = 255 - u32::from(alpha);
        for y in y0..y1 {
            let row = &mut self.data[y * self.pitch + x0 * 4..y * self.pitch + x1 * 4];
            for b in row.iter_mut() {
                *b = ((u32::from(*b) * keep + 127) / 255) as u8;
            }
        }
    }

    /// Paints white where `mask` (RGBA, `w`×`h`, as `text::render` makes it) is opaque,
    /// with its top left at (`x`, `y`); only inside `within` and the buffer.
    pub fn ink(&mut self, mask: &[u8], w: u32, h: u32, x: i32, y: i32, within: Rect) {
        if mask.len() < w as usize * h as usize * 4 {
            return;
        }
        let (Some((x0, y0, x1, y1)), Some((cx0, cy0, cx1, cy1))) =
            (self.clip(Rect { x, y, w, h }), self.clip(within))
        else {
            return;
        };
        let (x0, y0, x1, y1) = (x0.max(cx0), y0.max(cy0), x1.min(cx1), y1.min(cy1));
        for py in y0..y1 {
            let my = (py as i64 - i64::from(y)) as usize;
            for px in x0..x1 {
                let mx = (px as i64 - i64::from(x)) as usize;
                if mask[(my * w as usize + mx) * 4 + 3] >= 128 {
                    let i = py * self.pitch + px * 4;
                    self.data[i..i + 3].copy_from_slice(&[255, 255, 255]);
                }
            }
        }
    }

    /// Runs `draw` on rectangle `r` of the buffer, as an OpenCV BGRA picture.
    fn with_rect(
        &mut self,
        r: opencv::core::Rect,
        draw: impl FnOnce(&mut BoxedRefMut<'_, Mat>) -> opencv::Result<()>,
    ) -> opencv::Result<()> {
        let (rows, cols) = (self.height as i32, (self.pitch / 4) as i32);
        let len = self.pitch * self.height as usize;
        let mut whole =
            Mat::new_rows_cols_with_bytes_mut::<Vec4b>(rows, cols, &mut self.data[..len])?;
        draw(&mut whole.roi_mut(r)?)
    }

    /// Draws `f` (I420 or BGR) scaled into `dst`, mirrored left to right if `mirror`.
    /// A `dst` not wholly inside the buffer draws nothing.
    pub fn picture(
        &mut self,
        f: &VideoFrame,
        dst: Rect,
        mirror: bool,
        scratch: &mut Scratch,
    ) -> Result<(), ComposeError> {
        let inside = dst.x >= 0
            && dst.y >= 0
            && dst.w > 0
            && dst.h > 0
            && dst.x as u64 + u64::from(dst.w) <= u64::from(self.width)
            && dst.y as u64 + u64::from(dst.h) <= u64::from(self.height);
        if !inside || f.width == 0 || f.height == 0 {
            return Ok(());
        }
        let (w, h) = (f.width as usize, f.height as usize);
        let bad = ComposeError::Picture {
            len: f.data.len(),
            width: f.width,
            height: f.height,
        };
        let len = self.pitch * self.height as usize;
        let same_size = (f.width, f.height) == (dst.w, dst.h);
        let rect = opencv::core::Rect::new(dst.x, dst.y, dst.w as i32, dst.h as i32);
        // the picture as BGRA: at its own size and not mirrored straight into the buffer (and
        // done), else into the scratch, to be scaled or mirrored into the buffer below
        match f.format {
            PixelFormat::I420 => {
                let planes = match f.planes() {
                    Some((y, u, v))
                        if w % 2 == 0 && h % 2 == 0 && f.data.len() == w * h * 3 / 2 =>
                    {
                        yuv::Planes {
                            y,
                            u,
                            v,
                            width: f.width,
                            height: f.height,
                        }
                    }
                    _ => return Err(bad),
                };
                if same_size && !mirror {
                    let at = dst.y as usize * self.pitch + dst.x as usize * 4;
                    yuv::i420_to_bgra(planes, &mut self.data[at..len], self.pitch)?;
                    return Ok(());
                }
                scratch.bgra.resize(w * h * 4, 0);
                yuv::i420_to_bgra(planes, &mut scratch.bgra, w * 4)?;
                let bgra =
                    Mat::new_rows_cols_with_bytes::<Vec4b>(h as i32, w as i32, &scratch.bgra)?;
                self.with_rect(rect, |out| {
                    place(&bgra, out, f, dst, mirror, &mut scratch.scaled)
                })?;
            }
            PixelFormat::Bgr => {
                if f.data.len() != w * h * 3 {
                    return Err(bad);
                }
                let m = Mat::new_rows_cols_with_bytes::<Vec3b>(h as i32, w as i32, &f.data)?;
                if same_size && !mirror {
                    // OpenCV keeps a destination of the right size and type
                    self.with_rect(rect, |out| {
                        imgproc::cvt_color_def(&m, out, imgproc::COLOR_BGR2BGRA)
                    })?;
                    return Ok(());
                }
                imgproc::cvt_color_def(&m, &mut scratch.converted, imgproc::COLOR_BGR2BGRA)?;
                let converted = &scratch.converted;
                self.with_rect(rect, |out| {
                    place(converted, out, f, dst, mirror, &mut scratch.scaled)
                })?;
            }
        }
        Ok(())
    }
}

/// Puts `src`, the BGRA picture `f` converted, into `out` (the buffer's `dst`): scaled to
/// its size, mirrored left to right if `mirror`.
fn place(
    src: &impl ToInputArray,
    out: &mut impl ToOutputArray,
    f: &VideoFrame,
    dst: Rect,
    mirror: bool,
    scaled: &mut Mat,
) -> opencv::Result<()> {
    let shrinking = dst.w * 2 <= f.width || dst.h * 2 <= f.height;
    let interpolation = if shrinking {
        imgproc::INTER_AREA
    } else {
        imgproc::INTER_LINEAR
    };
    let size = Size::new(dst.w as i32, dst.h as i32);
    match ((f.width, f.height) == (dst.w, dst.h), mirror) {
        (true, _) => opencv::core::flip(src, out, 1),
        (false, false) => imgproc::resize(src, out, size, 0.0, 0.0, interpolation),
        (false, true) => {
            imgproc::resize(src, scaled, size, 0.0, 0.0, interpolation)?;
            opencv::core::flip(scaled, out, 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::h264::to_i420;
    use crate::media::pattern::TestPattern;
    use crate::media::stamp;

    fn rect(x: i32, y: i32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }

    #[test]
    fn a_buffer_too_short_or_unaligned_is_refused() {
        let mut v = vec![0u8; 100];
        assert!(Pixels::new(&mut v, 5, 5, 20).is_ok());
        assert!(Pixels::new(&mut v, 5, 6, 20).is_err());
        assert!(Pixels::new(&mut v, 5, 5, 18).is_err());
        assert!(Pixels::new(&mut v, 6, 4, 20).is_err());
    }

    #[test]
    fn fill_and_shade_stay_inside_their_clipped_rectangle() {
        let (w, h, pitch) = (10u32, 8u32, 48usize);
        let mut v = vec![0u8; pitch * h as usize];
        let mut p = Pixels::new(&mut v, w, h, pitch).unwrap();
        p.fill(rect(-3, -3, 100, 100), [200, 100, 50]);
        assert_eq!(p.pixel(9, 7), Some([50, 100, 200]));
        p.shade(rect(2, 2, 3, 3), 128);
        assert_eq!(p.pixel(2, 2), Some([25, 50, 100]));
        assert_eq!(p.pixel(5, 2), Some([50, 100, 200]));
        assert_eq!(p.pixel(1, 1), Some([50, 100, 200]));
        assert_eq!(p.pixel(10, 0), None);
        // the padding past the width is never touched
        assert!(v.chunks(pitch).all(|row| row[40..].iter().all(|&b| b == 0)));
    }

    #[test]
    fn ink_paints_the_glyphs_white_and_clips() {
        let (tw, th, mask) = crate::devices::text::render("Hi", 1);
        let mut v = vec![0u8; 32 * 4 * 8];
        let mut p = Pixels::new(&mut v, 32, 8, 128).unwrap();
        p.ink(&mask, tw, th, 20, 0, rect(0, 0, 32, 8));
        // nothing outside `within`
        p.ink(&mask, tw, th, 0, 0, rect(0, 0, 0, 8));
        let inked = |p: &Pixels| {
            (0..32)
                .flat_map(|x| (0..8).map(move |y| (x, y)))
                .filter(|&(x, y)| p.pixel(x, y) == Some([255, 255, 255]))
                .count()
        };
        let part = inked(&p);
        let full = mask.chunks(4).filter(|m| m[3] == 255).count();
        assert!(part > 0 && part < full, "{part} of {full}");
        assert!((0..20).all(|x| p.pixel(x, 3) == Some([0, 0, 0])));
    }

    /// The stamp survives the trip into the buffer, at its size and scaled, mirrored back.
    #[test]
    fn pictures_land_where_asked_converted_scaled_and_mirrored() {
        let bgr = TestPattern::new(320, 240).render(7, 1_000);
        let i420 = to_i420(&bgr).unwrap();
        let (w, h, pitch) = (400u32, 300u32, 1700usize);
        let mut v = vec![0u8; pitch * h as usize];
        let mut scratch = Scratch::default();
        let mut draw = |v: &mut Vec<u8>, f: &VideoFrame, at: Rect, mirror: bool| {
            Pixels::new(v, w, h, pitch)
                .unwrap()
                .picture(f, at, mirror, &mut scratch)
        };
        let read = |v: &[u8], at: Rect| {
            let pic = stamp::Picture {
                data: v,
                width: w,
                height: h,
                stride: pitch,
                bpp: 4,
            };
            stamp::read_stamp(&pic, at, false).map(|s| s.frame_no)
        };
        let at = rect(40, 30, 320, 240);
        draw(&mut v, &i420, at, false).unwrap();
        assert_eq!(read(&v, at), Some(7));
        let big = rect(0, 0, 400, 300);
        draw(&mut v, &bgr, big, false).unwrap();
        assert_eq!(read(&v, big), Some(7));
        // mirrored: the stamp reads backwards, so it is no longer found as it was
        let small = rect(10, 10, 160, 120);
        draw(&mut v, &bgr, small, true).unwrap();
        let p = Pixels::new(&mut v, w, h, pitch).unwrap();
        let left = p.pixel(12, 60).unwrap();
        let right = p.pixel(167, 60).unwrap();
        let src = |x: u32| {
            let i = (120 * 320 + x) as usize * 3;
            [bgr.data[i], bgr.data[i + 1], bgr.data[i + 2]]
        };
        let near = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 40);
        assert!(
            near(left, src(315)) && near(right, src(5)),
            "{left:?} {right:?}"
        );
        // a picture whose bytes do not match its size is refused; one outside draws nothing
        let mut short = i420.clone();
        short.data.pop();
        assert!(draw(&mut v, &short, at, false).is_err());
        let before = v.clone();
        draw(&mut v, &i420, rect(100, 100, 320, 240), false).unwrap();
        assert!(v == before);
    }
}
