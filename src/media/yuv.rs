//! Colour conversions from BGR (the camera's pictures) to I420 (the codec's) and from I420 to
//! BGRA (the window's framebuffer), BT.601 limited range, by yuvutils-rs's vector code (AVX2
//! on this machine, chosen at run time) on the calling thread. At 1280×720 BGR to I420 takes
//! 0.25 ms where our own autovectorised loops took 0.53 ms, as exact (within a step); I420 to
//! BGRA 0.21 ms where OpenCV's took 0.32 ms on two threads (`cargo bench --bench codec --
//! colour`), for the screen only: its green is 0.4 of a step high on average, at most 2.5
//! steps off (`h264::i420_to_bgr`, through which Y-PSNR is measured, stays exact). Sizes are
//! checked: a conversion either runs in full or says why not.

use yuvutils_rs::{
    BufferStoreMut, YuvConversionMode, YuvError, YuvPlanarImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

/// Why a conversion did not run (a plane or buffer too short for the size, an odd size).
#[derive(Debug, thiserror::Error)]
#[error("colour conversion: {0}")]
pub struct ConvertError(#[from] YuvError);

/// Three I420 planes of a `width`×`height` picture, tightly packed (chroma `width/2` a row).
#[derive(Debug, Clone, Copy)]
pub struct Planes<'a> {
    /// Luma, `width * height` bytes.
    pub y: &'a [u8],
    /// Blue-difference chroma.
    pub u: &'a [u8],
    /// Red-difference chroma.
    pub v: &'a [u8],
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
}

/// The same planes, to write.
#[derive(Debug)]
pub struct PlanesMut<'a> {
    /// Luma, `width * height` bytes.
    pub y: &'a mut [u8],
    /// Blue-difference chroma.
    pub u: &'a mut [u8],
    /// Red-difference chroma.
    pub v: &'a mut [u8],
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
}

const RANGE: YuvRange = YuvRange::Limited;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;

impl Planes<'_> {
    fn image(&self) -> YuvPlanarImage<'_, u8> {
        YuvPlanarImage {
            y_plane: self.y,
            y_stride: self.width,
            u_plane: self.u,
            u_stride: self.width / 2,
            v_plane: self.v,
            v_stride: self.width / 2,
            width: self.width,
            height: self.height,
        }
    }
}

/// `bgr` (`width * 3` bytes a row) into `out`'s planes.
pub fn bgr_to_i420(bgr: &[u8], out: PlanesMut<'_>) -> Result<(), ConvertError> {
    let (width, height) = (out.width, out.height);
    let mut image = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(out.y),
        y_stride: width,
        u_plane: BufferStoreMut::Borrowed(out.u),
        u_stride: width / 2,
        v_plane: BufferStoreMut::Borrowed(out.v),
        v_stride: width / 2,
        width,
        height,
    };
    yuvutils_rs::bgr_to_yuv420(
        &mut image,
        bgr,
        width * 3,
        RANGE,
        MATRIX,
        YuvConversionMode::Balanced,
    )?;
    Ok(())
}

/// `src` into `out` as BGRA (alpha opaque), rows `stride` bytes apart: `out` may start inside
/// a larger buffer, such as a rectangle of a window's framebuffer.
pub fn i420_to_bgra(src: Planes<'_>, out: &mut [u8], stride: usize) -> Result<(), ConvertError> {
    let stride = u32::try_from(stride).map_err(|_| YuvError::PointerOverflow)?;
    yuvutils_rs::yuv420_to_bgra(&src.image(), out, stride, RANGE, MATRIX)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BT.601 limited range in floating point, for (B, G, R): (Y, U, V).
    fn forward(bgr: [u8; 3]) -> [f64; 3] {
        let (b, g, r) = (f64::from(bgr[0]), f64::from(bgr[1]), f64::from(bgr[2]));
        let ey = 0.299 * r + 0.587 * g + 0.114 * b;
        [
            16.0 + 219.0 * ey / 255.0,
            128.0 + 224.0 * (b - ey) / (1.772 * 255.0),
            128.0 + 224.0 * (r - ey) / (1.402 * 255.0),
        ]
    }

    /// Its inverse, for (Y, U, V): (B, G, R), clamped.
    fn inverse(y: u8, u: u8, v: u8) -> [f64; 3] {
        let ey = (f64::from(y) - 16.0) * 255.0 / 219.0;
        let pb = (f64::from(u) - 128.0) * 255.0 / 224.0;
        let pr = (f64::from(v) - 128.0) * 255.0 / 224.0;
        let (r, b) = (ey + 1.402 * pr, ey + 1.772 * pb);
        let g = (ey - 0.299 * r - 0.114 * b) / 0.587;
        [b, g, r].map(|c| c.clamp(0.0, 255.0))
    }

    /// A picture with smooth and sharp changes, `w * h * 3` bytes.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let edge = if (x / 7 + y / 5) % 2 == 0 { 40 } else { 0 };
                v.extend_from_slice(&[
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    ((x + y) % 200) as u8 + edge,
                ]);
            }
        }
        v
    }

    /// `bgr` (`w`×`h`) as I420 planes.
    fn convert(bgr: &[u8], w: usize, h: usize) -> Result<[Vec<u8>; 3], ConvertError> {
        let (mut y, mut u, mut v) = (vec![0; w * h], vec![0; w * h / 4], vec![0; w * h / 4]);
        let out = PlanesMut {
            y: &mut y,
            u: &mut u,
            v: &mut v,
            width: w as u32,
            height: h as u32,
        };
        bgr_to_i420(bgr, out)?;
        Ok([y, u, v])
    }

    #[test]
    fn every_pixel_matches_bt601_there_and_back() {
        // widths past and between the vector lengths, so that both the vector code and its
        // scalar tail are checked
        for (w, h) in [(2usize, 2usize), (14, 4), (72, 6), (640, 8)] {
            let bgr = picture(w, h);
            let [y, u, v] = convert(&bgr, w, h).unwrap();
            for (i, px) in bgr.chunks_exact(3).enumerate() {
                let want = forward([px[0], px[1], px[2]])[0];
                assert!(
                    (f64::from(y[i]) - want).abs() <= 1.0,
                    "{w}x{h} luma {i}: {} vs {want:.2}",
                    y[i]
                );
            }
            // chroma is the 2x2 block's average
            for cy in 0..h / 2 {
                for cx in 0..w / 2 {
                    let mut sum = [0.0; 3];
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let i = ((2 * cy + dy) * w + 2 * cx + dx) * 3;
                        let r = forward([bgr[i], bgr[i + 1], bgr[i + 2]]);
                        sum.iter_mut().zip(r).for_each(|(s, r)| *s += r / 4.0);
                    }
                    let i = cy * w / 2 + cx;
                    assert!(
                        (f64::from(u[i]) - sum[1]).abs() <= 1.5
                            && (f64::from(v[i]) - sum[2]).abs() <= 1.5,
                        "{w}x{h} chroma ({cx},{cy}): {} {} vs {:.2} {:.2}",
                        u[i],
                        v[i],
                        sum[1],
                        sum[2]
                    );
                }
            }
            // and back into a buffer with padding between rows: each channel within 2.5 steps
            // of the exact inverse (green is 0.4 of a step high on average), alpha opaque
            let planes = Planes {
                y: &y,
                u: &u,
                v: &v,
                width: w as u32,
                height: h as u32,
            };
            let stride = w * 4 + 8;
            let mut bgra = vec![7; stride * h];
            i420_to_bgra(planes, &mut bgra, stride).unwrap();
            let mut bias = [0.0; 3];
            for (row, px) in bgra.chunks(stride).enumerate() {
                for x in 0..w {
                    let c = (row / 2) * (w / 2) + x / 2;
                    let want = inverse(y[row * w + x], u[c], v[c]);
                    for (k, want) in want.into_iter().enumerate() {
                        let got = f64::from(px[4 * x + k]);
                        assert!(
                            (got - want).abs() <= 2.5,
                            "{w}x{h} ({x},{row})[{k}]: {got} vs {want:.2}"
                        );
                        bias[k] += (got - want) / (w * h) as f64;
                    }
                    assert_eq!(px[4 * x + 3], 255);
                }
                assert!(px[w * 4..].iter().all(|&b| b == 7), "row {row} padding");
            }
            assert!(bias.iter().all(|b| b.abs() < 0.75), "{w}x{h} bias {bias:?}");
        }
    }

    #[test]
    fn flat_colours_convert_exactly_enough() {
        for bgr in [
            [255u8, 255, 255],
            [0, 0, 0],
            [0, 0, 255],
            [0, 255, 0],
            [90, 160, 30],
        ] {
            let src: Vec<u8> = bgr.iter().copied().cycle().take(4 * 4 * 3).collect();
            let [y, u, v] = convert(&src, 4, 4).unwrap();
            assert!(y.iter().all(|&l| l == y[0]) && u.iter().all(|&c| c == u[0]));
            for (got, want) in [y[0], u[0], v[0]].into_iter().zip(forward(bgr)) {
                assert!(
                    (f64::from(got) - want).abs() <= 1.0,
                    "{bgr:?}: {got} vs {want:.2}"
                );
            }
            let planes = Planes {
                y: &y,
                u: &u,
                v: &v,
                width: 4,
                height: 4,
            };
            let mut back = vec![0; 64];
            i420_to_bgra(planes, &mut back, 16).unwrap();
            assert!(
                back.chunks(4)
                    .all(|p| p[..3].iter().zip(&bgr).all(|(a, b)| a.abs_diff(*b) <= 2)),
                "{bgr:?} -> {:?}",
                &back[..4]
            );
        }
    }

    #[test]
    fn short_buffers_are_refused_not_a_panic() {
        let bgr = picture(8, 4);
        assert!(convert(&bgr[..90], 8, 4).is_err());
        let (y, u, v) = (vec![0; 32], vec![0; 8], vec![0; 8]);
        let planes = Planes {
            y: &y,
            u: &u[..3],
            v: &v,
            width: 8,
            height: 4,
        };
        assert!(i420_to_bgra(planes, &mut [0; 152], 40).is_err());
        let planes = Planes { u: &u, ..planes };
        assert!(i420_to_bgra(planes, &mut [0; 151], 40).is_err());
        assert!(i420_to_bgra(planes, &mut [0; 200], 30).is_err());
        assert!(i420_to_bgra(planes, &mut [0; 152], 40).is_ok());
        let odd = Planes { width: 7, ..planes };
        assert!(i420_to_bgra(odd, &mut [0; 200], 40).is_err());
    }
}
