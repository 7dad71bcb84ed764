//! The picture size to send for a bitrate. Below some bits per pixel a codec falls apart into
//! blocks (H.264) or cannot get under the bitrate at all (MJPEG, which has no rate control):
//! then a smaller, sharper picture is the better call. Sans-IO.

use crate::proto::CodecId;

/// Sizes tried, as fractions of the full size's sides.
const SCALES: [(u32, u32); 7] = [(1, 1), (3, 4), (1, 2), (3, 8), (1, 4), (3, 16), (1, 8)];
/// Smallest width sent.
const MIN_WIDTH: u32 = 160;

/// Bits per pixel per frame below which the size steps down, and above which (for the next
/// size up) it steps back up: H.264 looks fine from about 0.03; MJPEG at quality 75 needs
/// about 0.3 for the test pattern and more for a camera.
fn thresholds(codec: CodecId) -> (f64, f64) {
    match codec {
        CodecId::H264 => (0.02, 0.04),
        CodecId::Mjpeg => (0.25, 0.5),
    }
}

/// Steps the sent picture size down and up with the bitrate target.
#[derive(Debug, Clone)]
pub struct SizeLadder {
    full: (u32, u32),
    fps: f64,
    down_bpp: f64,
    up_bpp: f64,
    step: usize,
}

impl SizeLadder {
    /// A ladder under `full` for `codec` at `fps` frames a second, starting at full size.
    pub fn new(full: (u32, u32), fps: u32, codec: CodecId) -> Self {
        let (down_bpp, up_bpp) = thresholds(codec);
        Self {
            full,
            fps: f64::from(fps.max(1)),
            down_bpp,
            up_bpp,
            step: 0,
        }
    }

    /// The size to send now.
    pub fn size(&self) -> (u32, u32) {
        size_at(self.full, self.step)
    }

    fn steps(&self) -> usize {
        (0..SCALES.len())
            .take_while(|&s| s == 0 || size_at(self.full, s).0 >= MIN_WIDTH)
            .count()
    }

    fn bpp(&self, step: usize, bps: u32) -> f64 {
        let (w, h) = size_at(self.full, step);
        f64::from(bps) / (f64::from(w) * f64::from(h) * self.fps)
    }

    /// Takes a new bitrate target; returns the new size when it changed.
    pub fn on_bitrate(&mut self, bps: u32) -> Option<(u32, u32)> {
        let before = self.step;
        while self.step + 1 < self.steps() && self.bpp(self.step, bps) < self.down_bpp {
            self.step += 1;
        }
        if self.step == before && self.step > 0 && self.bpp(self.step - 1, bps) > self.up_bpp {
            self.step -= 1;
        }
        (self.step != before).then(|| self.size())
    }
}

/// `full` scaled by step `step`, both sides even (4:2:0 needs it).
fn size_at(full: (u32, u32), step: usize) -> (u32, u32) {
    let (n, d) = SCALES[step.min(SCALES.len() - 1)];
    let even = |v: u32| ((v * n / d) & !1).max(2);
    if step == 0 {
        full
    } else {
        (even(full.0), even(full.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_720p_steps_down_under_a_squeeze_and_back_up() {
        let mut l = SizeLadder::new((1280, 720), 30, CodecId::H264);
        assert_eq!(l.on_bitrate(1_500_000), None);
        assert_eq!(l.size(), (1280, 720));
        // 0.54 Mbit/s is under 0.02 bit/pixel at 720p30
        assert_eq!(l.on_bitrate(540_000), Some((960, 540)));
        // the floor of the rate controller
        assert_eq!(l.on_bitrate(150_000), Some((640, 360)));
        // climbing back one step per change, with hysteresis
        assert_eq!(l.on_bitrate(300_000), None);
        assert_eq!(l.on_bitrate(500_000), None);
        assert_eq!(l.on_bitrate(700_000), Some((960, 540)));
        assert_eq!(l.on_bitrate(1_000_000), None);
        assert_eq!(l.on_bitrate(1_200_000), Some((1280, 720)));
    }

    #[test]
    fn mjpeg_finds_a_size_that_fits_a_megabit() {
        let mut l = SizeLadder::new((640, 480), 30, CodecId::Mjpeg);
        assert_eq!(l.on_bitrate(2_500_000), None);
        assert_eq!(l.on_bitrate(900_000), Some((320, 240)));
        assert_eq!(l.on_bitrate(150_000), Some((160, 120)));
        assert_eq!(l.on_bitrate(100_000), None, "never under 160 px wide");
        let mut hd = SizeLadder::new((1280, 720), 30, CodecId::Mjpeg);
        assert_eq!(hd.on_bitrate(150_000), Some((160, 90)));
    }

    #[test]
    fn sizes_stay_even_and_small_pictures_do_not_step() {
        let mut l = SizeLadder::new((322, 242), 30, CodecId::H264);
        assert_eq!(l.on_bitrate(1), Some((160, 120)));
        let (w, h) = l.size();
        assert!(w % 2 == 0 && h % 2 == 0);
        let mut tiny = SizeLadder::new((160, 120), 30, CodecId::H264);
        assert_eq!(tiny.on_bitrate(1), None);
    }
}
