//! Rate control for Motion JPEG: the JPEG quality of the next picture from the size of the
//! last one, so that a stream of JPEGs keeps to a bitrate target. Sans-IO.
//!
//! libjpeg scales its quantisation tables by `S` = 5000/q below quality 50 and 200 − 2q
//! above; a picture's size falls roughly as a power of `S`. The controller steers `S` in
//! the log domain towards the per-frame budget, never above the quality the user asked for.
//! Without it MJPEG ignored the bitrate target: under a 1 Mbit/s cap the sender stepped down
//! to 160×120 at 10 fps and still sent six times its target, its pacer holding every frame
//! for 100 ms.

/// Lowest quality used: below it JPEG is mush, and a smaller picture is the better call
/// (the size ladder's job).
pub const MIN_QUALITY: u8 = 10;
/// How a picture's size follows the quantisation scale: size ∝ S^-EXPONENT (0.6–0.9 for
/// camera pictures and the test pattern).
const EXPONENT: f64 = 0.75;
/// Share of a correction applied per picture: damps the noise of single pictures.
const GAIN: f64 = 0.7;
/// Largest change of `S` per picture (either way).
const MAX_STEP: f64 = 4.0;
/// The size aimed at, as a share of the budget: headroom for the next picture's noise.
const AIM: f64 = 0.9;
/// A picture this far over its budget is encoded again at once at the corrected quality.
pub const REDO_OVER: f64 = 1.5;

/// The quantisation scale of a quality.
fn scale_of(q: f64) -> f64 {
    if q < 50.0 {
        5000.0 / q
    } else {
        (200.0 - 2.0 * q).max(1.0)
    }
}

/// The quality of a quantisation scale.
fn quality_of(s: f64) -> f64 {
    if s > 100.0 {
        5000.0 / s
    } else {
        (200.0 - s) / 2.0
    }
}

/// The JPEG quality to encode at, following a bytes-per-picture budget.
#[derive(Debug, Clone)]
pub struct JpegRate {
    max_quality: u8,
    /// Current quantisation scale.
    scale: f64,
    /// Bytes per picture, once a bitrate is set.
    budget: Option<f64>,
    fps: f64,
}

impl JpegRate {
    /// Starts at `max_quality` (1–100) for pictures sent `fps` times a second, with no budget.
    pub fn new(max_quality: u8, fps: u32) -> Self {
        let max_quality = max_quality.clamp(1, 100);
        Self {
            max_quality,
            scale: scale_of(f64::from(max_quality)),
            budget: None,
            fps: f64::from(fps.max(1)),
        }
    }

    /// Follows a bitrate target, bit/s.
    pub fn set_bitrate(&mut self, bps: u32) {
        self.budget = Some(f64::from(bps) / 8.0 / self.fps);
    }

    /// The budget of one picture, bytes.
    pub fn budget(&self) -> Option<f64> {
        self.budget
    }

    /// The quality for the next picture.
    pub fn quality(&self) -> u8 {
        let lo = f64::from(MIN_QUALITY.min(self.max_quality));
        quality_of(self.scale)
            .round()
            .clamp(lo, f64::from(self.max_quality)) as u8
    }

    /// Whether a picture of `bytes` is so far over the budget that it should be encoded again
    /// (after [`JpegRate::on_encoded`] lowered the quality).
    pub fn redo(&self, bytes: usize, quality_used: u8) -> bool {
        self.budget
            .is_some_and(|b| bytes as f64 > b * REDO_OVER && self.quality() < quality_used)
    }

    /// A picture came out `bytes` long: steers the quality of the next.
    pub fn on_encoded(&mut self, bytes: usize) {
        let Some(budget) = self.budget else {
            return;
        };
        if bytes == 0 || budget <= 0.0 {
            return;
        }
        let ratio = bytes as f64 / (budget * AIM);
        let step = ratio.powf(GAIN / EXPONENT).clamp(1.0 / MAX_STEP, MAX_STEP);
        let lo = scale_of(f64::from(self.max_quality));
        let hi = scale_of(f64::from(MIN_QUALITY.min(self.max_quality)));
        self.scale = (self.scale * step).clamp(lo, hi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture's size at `q` for a scene of `detail`: the power law, with a fixed header.
    fn size(q: u8, detail: f64) -> usize {
        (600.0 + detail * scale_of(f64::from(q)).powf(-0.8)) as usize
    }

    #[test]
    fn quality_and_scale_are_inverse() {
        for q in 1..=99 {
            let back = quality_of(scale_of(f64::from(q)));
            assert!((back - f64::from(q)).abs() < 1e-9, "{q} → {back}");
        }
    }

    #[test]
    fn without_a_budget_the_quality_asked_for_stays() {
        let mut r = JpegRate::new(75, 30);
        r.on_encoded(1 << 20);
        assert_eq!(r.quality(), 75);
    }

    #[test]
    fn a_tight_budget_is_met_within_a_few_pictures_and_held() {
        let mut r = JpegRate::new(75, 30);
        r.set_bitrate(1_000_000);
        let budget = r.budget().expect("budget");
        let detail = 400_000.0;
        assert!(size(75, detail) as f64 > 3.0 * budget, "starts far over");
        let mut sizes = Vec::new();
        for _ in 0..30 {
            let n = size(r.quality(), detail);
            sizes.push(n);
            r.on_encoded(n);
        }
        for (i, &n) in sizes.iter().enumerate().skip(6) {
            let share = n as f64 / budget;
            assert!(
                (0.7..=1.05).contains(&share),
                "picture {i}: {share:.2} of the budget"
            );
        }
        assert!(r.quality() < 75);
    }

    #[test]
    fn a_generous_budget_climbs_back_to_the_quality_asked_for_and_never_above() {
        let mut r = JpegRate::new(60, 30);
        r.set_bitrate(100_000);
        for _ in 0..20 {
            r.on_encoded(size(r.quality(), 400_000.0));
        }
        assert!(r.quality() < 30, "squeezed: {}", r.quality());
        r.set_bitrate(50_000_000);
        for _ in 0..20 {
            r.on_encoded(size(r.quality(), 400_000.0));
            assert!(r.quality() <= 60);
        }
        assert_eq!(r.quality(), 60);
    }

    #[test]
    fn the_quality_never_falls_under_the_floor() {
        let mut r = JpegRate::new(75, 30);
        r.set_bitrate(1_000);
        for _ in 0..50 {
            r.on_encoded(size(r.quality(), 4_000_000.0));
        }
        assert_eq!(r.quality(), MIN_QUALITY);
        assert!(!r.redo(1 << 20, MIN_QUALITY), "nothing lower to redo at");
    }

    #[test]
    fn a_picture_far_over_is_redone_once_the_quality_fell() {
        let mut r = JpegRate::new(75, 30);
        r.set_bitrate(300_000);
        let used = r.quality();
        let n = size(used, 2_000_000.0);
        r.on_encoded(n);
        assert!(r.quality() < used);
        assert!(r.redo(n, used));
        assert!(!r.redo(1000, used), "under the budget");
    }
}
