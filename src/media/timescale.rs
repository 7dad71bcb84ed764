//! Playing a frame slightly faster, so that audio delay above the jitter buffer's target
//! melts away without a skipped frame (a click) — the "accelerate" of real-time playout.

/// Samples dropped per frame at most: 4 %, a pitch change too short and too small to hear.
const MAX_SHARE: usize = 25;
/// Share of the excess delay corrected per frame (a proportional controller).
const GAIN: f64 = 0.1;
/// Excess below this is tick noise and left alone, ms.
const DEAD_ZONE_MS: f64 = 0.5;

/// How many of `n` samples to drop when playout runs `excess_ms` behind its target at
/// `rate` samples per second.
pub fn samples_to_drop(excess_ms: f64, n: usize, rate: u32) -> usize {
    if !excess_ms.is_finite() || excess_ms <= DEAD_ZONE_MS || n < MAX_SHARE {
        return 0;
    }
    let want = (excess_ms * f64::from(rate) / 1000.0 * GAIN).round();
    (want as usize).clamp(1, n / MAX_SHARE)
}

/// Resamples `pcm` to `pcm.len() - drop` samples by linear interpolation into `out`; the
/// first and last samples are kept, so consecutive frames still join without a step.
pub fn shorten(pcm: &[i16], drop: usize, out: &mut Vec<i16>) {
    out.clear();
    let n = pcm.len();
    let m = n.saturating_sub(drop);
    if m < 2 || drop == 0 {
        out.extend_from_slice(&pcm[..m.min(n)]);
        return;
    }
    let step = (n - 1) as f64 / (m - 1) as f64;
    for i in 0..m {
        let x = i as f64 * step;
        let k = (x as usize).min(n - 1);
        let frac = x - k as f64;
        let a = f64::from(pcm[k]);
        let b = f64::from(pcm[(k + 1).min(n - 1)]);
        out.push((a + (b - a) * frac).round() as i16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_excess_no_drop_and_the_drop_is_bounded() {
        assert_eq!(samples_to_drop(0.0, 480, 48_000), 0);
        assert_eq!(samples_to_drop(0.4, 480, 48_000), 0);
        assert_eq!(samples_to_drop(-5.0, 480, 48_000), 0);
        assert_eq!(samples_to_drop(f64::NAN, 480, 48_000), 0);
        assert_eq!(samples_to_drop(1.0, 480, 48_000), 5);
        assert_eq!(samples_to_drop(100.0, 480, 48_000), 19);
    }

    #[test]
    fn shortened_tone_keeps_its_shape_and_ends() {
        let pcm: Vec<i16> = (0..480)
            .map(|i| (10_000.0 * (i as f64 * 2.0 * std::f64::consts::PI / 48.0).sin()) as i16)
            .collect();
        let mut out = Vec::new();
        shorten(&pcm, 19, &mut out);
        assert_eq!(out.len(), 461);
        assert_eq!(out[0], pcm[0]);
        assert_eq!(out[460], pcm[479]);
        // still a sine of about the same amplitude, at a 4 % higher pitch
        let peak = out.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        assert!((9_500..=10_000).contains(&peak), "peak {peak}");
        let crossings = |v: &[i16]| v.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        assert_eq!(crossings(&out), crossings(&pcm));
    }

    #[test]
    fn short_input_is_copied() {
        let mut out = Vec::new();
        shorten(&[1, 2, 3], 0, &mut out);
        assert_eq!(out, vec![1, 2, 3]);
        shorten(&[1, 2, 3], 5, &mut out);
        assert!(out.is_empty());
    }
}
