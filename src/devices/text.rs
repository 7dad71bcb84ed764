//! Text for overlays, drawn with the public-domain 8×8 bitmap font into RGBA pixels.

use font8x8::{UnicodeFonts, BASIC_FONTS};

/// Pixel size of a glyph cell before scaling.
pub const GLYPH: u32 = 8;

/// Renders `text` at `scale` into RGBA bytes (white on transparent); returns (w, h, pixels).
pub fn render(text: &str, scale: u32) -> (u32, u32, Vec<u8>) {
    let chars: Vec<char> = text.chars().collect();
    let scale = scale.max(1);
    let w = (chars.len() as u32 * GLYPH * scale).max(1);
    let h = GLYPH * scale;
    let mut px = vec![0u8; (w * h * 4) as usize];
    for (ci, c) in chars.iter().enumerate() {
        let glyph = BASIC_FONTS.get(*c).or_else(|| BASIC_FONTS.get('?'));
        let Some(glyph) = glyph else { continue };
        for (gy, row) in glyph.iter().enumerate() {
            for gx in 0..GLYPH {
                if row & (1 << gx) == 0 {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let x = ci as u32 * GLYPH * scale + gx * scale + sx;
                        let y = gy as u32 * scale + sy;
                        let i = ((y * w + x) * 4) as usize;
                        px[i..i + 4].copy_from_slice(&[255, 255, 255, 255]);
                    }
                }
            }
        }
    }
    (w, h, px)
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_has_ink_and_the_right_size() {
        let (w, h, px) = super::render("Hi", 2);
        assert_eq!((w, h), (32, 16));
        assert!(px.chunks(4).any(|p| p[3] == 255));
        let (_, _, blank) = super::render(" ", 1);
        assert!(blank.iter().all(|&b| b == 0));
    }
}
