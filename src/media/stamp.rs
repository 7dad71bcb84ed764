//! The frame stamp: frame number and capture time written into the picture as a grid of
//! black and white blocks, and the reader that finds them again in a received, scaled or
//! mirrored picture — how tests and benchmarks prove what arrived and how late.
//!
//! Geometry is relative to the picture width: a block is `width / 40` pixels (16 px at
//! 640×480), the grid is 32 blocks wide and 4 high, starting one block down and four
//! across. Its 128 bits hold an 8-bit sync pattern, the frame number (32), the capture time
//! in microseconds (64), a CRC-16 and 8 zero bits.

/// Blocks across the picture width.
pub const BLOCKS_ACROSS: u32 = 40;
const COLS: u32 = 32;
const ROWS: u32 = 4;
const ORIGIN_COL: u32 = 4;
const ORIGIN_ROW: u32 = 1;
const SYNC: u8 = 0b1011_0010;

/// What a stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Frame number at the sender.
    pub frame_no: u32,
    /// Capture time, microseconds since the UNIX epoch.
    pub capture_us: u64,
}

/// A rectangle of a picture, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// The whole of a `w`×`h` picture.
    pub fn full(w: u32, h: u32) -> Self {
        Self { x: 0, y: 0, w, h }
    }

    /// Where this and `other` overlap, if they do.
    pub fn intersect(self, other: Rect) -> Option<Rect> {
        let end = |at: i32, len: u32| i64::from(at) + i64::from(len);
        let (x0, y0) = (self.x.max(other.x), self.y.max(other.y));
        let x1 = end(self.x, self.w).min(end(other.x, other.w));
        let y1 = end(self.y, self.h).min(end(other.y, other.h));
        (x1 > i64::from(x0) && y1 > i64::from(y0)).then(|| Rect {
            x: x0,
            y: y0,
            w: (x1 - i64::from(x0)) as u32,
            h: (y1 - i64::from(y0)) as u32,
        })
    }
}

/// A borrowed picture of 3 or 4 bytes per pixel with green in byte 1 (BGR, RGB, BGRA…).
#[derive(Debug, Clone, Copy)]
pub struct Picture<'a> {
    /// Pixel bytes.
    pub data: &'a [u8],
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row.
    pub stride: usize,
    /// Bytes per pixel: 1 (a luma plane), 3 or 4.
    pub bpp: usize,
}

impl<'a> Picture<'a> {
    /// A packed BGR24 picture.
    pub fn bgr(data: &'a [u8], width: u32, height: u32) -> Self {
        Self {
            data,
            width,
            height,
            stride: width as usize * 3,
            bpp: 3,
        }
    }

    /// The Y plane of a planar picture (I420).
    pub fn luma(data: &'a [u8], width: u32, height: u32) -> Self {
        Self {
            data,
            width,
            height,
            stride: width as usize,
            bpp: 1,
        }
    }

    /// Luma-like brightness of one pixel, symmetric in red and blue; 0 outside the picture.
    fn brightness(&self, x: i32, y: i32) -> u32 {
        if x < 0 || y < 0 || x as u32 >= self.width || y as u32 >= self.height {
            return 0;
        }
        let i = y as usize * self.stride + x as usize * self.bpp;
        if self.bpp == 1 {
            return self.data.get(i).map_or(0, |&v| u32::from(v));
        }
        match self.data.get(i..i + 3) {
            Some(p) => (u32::from(p[0]) + 2 * u32::from(p[1]) + u32::from(p[2])) / 4,
            None => 0,
        }
    }
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn payload(stamp: Stamp) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = SYNC;
    p[1..5].copy_from_slice(&stamp.frame_no.to_be_bytes());
    p[5..13].copy_from_slice(&stamp.capture_us.to_be_bytes());
    let crc = crc16(&p[..13]);
    p[13..15].copy_from_slice(&crc.to_be_bytes());
    p
}

fn bit(bytes: &[u8; 16], i: usize) -> bool {
    bytes[i / 8] & (0x80 >> (i % 8)) != 0
}

/// Block size in pixels for a picture `width` wide; 0 means too small to stamp.
pub fn block_size(width: u32) -> u32 {
    width / BLOCKS_ACROSS
}

/// Writes `stamp` into a packed BGR24 picture. Pictures too small for 2-pixel blocks are
/// left alone.
pub fn write_stamp(data: &mut [u8], width: u32, height: u32, stamp: Stamp) {
    let b = block_size(width);
    if b < 2 || (ORIGIN_ROW + ROWS + 1) * b > height {
        return;
    }
    let bits = payload(stamp);
    let stride = width as usize * 3;
    for row in 0..ROWS {
        for col in 0..COLS {
            let v = if bit(&bits, (row * COLS + col) as usize) {
                255
            } else {
                0
            };
            let x0 = ((ORIGIN_COL + col) * b) as usize;
            let y0 = ((ORIGIN_ROW + row) * b) as usize;
            for y in y0..y0 + b as usize {
                let start = y * stride + x0 * 3;
                if let Some(line) = data.get_mut(start..start + b as usize * 3) {
                    line.fill(v);
                }
            }
        }
    }
}

/// Reads a stamp from the part `rect` of `pic` where a stamped picture is shown (scaled to
/// fit `rect`, mirrored left-right if `mirrored`). `None` unless the checksum matches.
pub fn read_stamp(pic: &Picture<'_>, rect: Rect, mirrored: bool) -> Option<Stamp> {
    let b = rect.w as f32 / BLOCKS_ACROSS as f32;
    if b < 2.0 {
        return None;
    }
    let mut bits = [0u8; 16];
    for row in 0..ROWS {
        for col in 0..COLS {
            let cx = (ORIGIN_COL + col) as f32 * b + b / 2.0;
            let cy = (ORIGIN_ROW + row) as f32 * b + b / 2.0;
            let x = if mirrored {
                rect.x as f32 + rect.w as f32 - cx
            } else {
                rect.x as f32 + cx
            };
            let y = rect.y as f32 + cy;
            let r = (b / 4.0).max(1.0) as i32;
            let (xi, yi) = (x as i32, y as i32);
            let mut sum = 0;
            for dy in [-r, 0, r] {
                for dx in [-r, 0, r] {
                    sum += pic.brightness(xi + dx, yi + dy);
                }
            }
            if sum / 9 > 127 {
                let i = (row * COLS + col) as usize;
                bits[i / 8] |= 0x80 >> (i % 8);
            }
        }
    }
    if bits[0] != SYNC || bits[15] != 0 {
        return None;
    }
    let crc = u16::from_be_bytes([bits[13], bits[14]]);
    if crc != crc16(&bits[..13]) {
        return None;
    }
    let mut frame_no = [0u8; 4];
    frame_no.copy_from_slice(&bits[1..5]);
    let mut capture = [0u8; 8];
    capture.copy_from_slice(&bits[5..13]);
    Some(Stamp {
        frame_no: u32::from_be_bytes(frame_no),
        capture_us: u64::from_be_bytes(capture),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(w: u32, h: u32, s: Stamp) -> Vec<u8> {
        let mut data: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        write_stamp(&mut data, w, h, s);
        data
    }

    const S: Stamp = Stamp {
        frame_no: 0xDEAD_BEEF,
        capture_us: 1_764_000_000_123_456,
    };

    #[test]
    fn reads_back_at_every_common_size() {
        for (w, h) in [(320, 240), (640, 480), (1280, 720), (1920, 1080)] {
            let data = stamped(w, h, S);
            let pic = Picture::bgr(&data, w, h);
            assert_eq!(
                read_stamp(&pic, Rect::full(w, h), false),
                Some(S),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn reads_back_scaled_and_offset_inside_a_bigger_picture() {
        // nearest-neighbour scale 640x480 to 400x300 placed at (100, 50) in an 800x600 canvas
        let src = stamped(640, 480, S);
        let (cw, ch) = (800u32, 600u32);
        let mut canvas = vec![40u8; (cw * ch * 4) as usize];
        for y in 0..300u32 {
            for x in 0..400u32 {
                let sx = x * 640 / 400;
                let sy = y * 480 / 300;
                let s = ((sy * 640 + sx) * 3) as usize;
                let d = (((y + 50) * cw + x + 100) * 4) as usize;
                canvas[d..d + 3].copy_from_slice(&src[s..s + 3]);
            }
        }
        let pic = Picture {
            data: &canvas,
            width: cw,
            height: ch,
            stride: cw as usize * 4,
            bpp: 4,
        };
        let rect = Rect {
            x: 100,
            y: 50,
            w: 400,
            h: 300,
        };
        assert_eq!(read_stamp(&pic, rect, false), Some(S));
        assert_eq!(read_stamp(&pic, Rect::full(cw, ch), false), None);
    }

    #[test]
    fn reads_back_mirrored() {
        let (w, h) = (640u32, 480u32);
        let src = stamped(w, h, S);
        let mut flipped = vec![0u8; src.len()];
        for y in 0..h as usize {
            for x in 0..w as usize {
                let s = (y * w as usize + x) * 3;
                let d = (y * w as usize + (w as usize - 1 - x)) * 3;
                flipped[d..d + 3].copy_from_slice(&src[s..s + 3]);
            }
        }
        let pic = Picture::bgr(&flipped, w, h);
        assert_eq!(read_stamp(&pic, Rect::full(w, h), true), Some(S));
        assert_eq!(read_stamp(&pic, Rect::full(w, h), false), None);
    }

    #[test]
    fn unstamped_pictures_read_as_none() {
        let data = vec![128u8; 640 * 480 * 3];
        assert_eq!(
            read_stamp(&Picture::bgr(&data, 640, 480), Rect::full(640, 480), false),
            None
        );
        let white = vec![255u8; 640 * 480 * 3];
        assert_eq!(
            read_stamp(&Picture::bgr(&white, 640, 480), Rect::full(640, 480), false),
            None
        );
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let (w, h) = (640u32, 480u32);
        let mut data = stamped(w, h, S);
        // invert the block holding bit 20
        let b = block_size(w) as usize;
        let (col, row) = (20usize, 0usize);
        for y in (ORIGIN_ROW as usize + row) * b..(ORIGIN_ROW as usize + row + 1) * b {
            for x in (ORIGIN_COL as usize + col) * b..(ORIGIN_COL as usize + col + 1) * b {
                let i = (y * w as usize + x) * 3;
                for c in &mut data[i..i + 3] {
                    *c = 255 - *c;
                }
            }
        }
        assert_eq!(
            read_stamp(&Picture::bgr(&data, w, h), Rect::full(w, h), false),
            None
        );
    }
}
