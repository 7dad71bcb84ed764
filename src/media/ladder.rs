//! The picture size and frame rate to send for a bitrate. Below some bits per pixel a codec
//! falls apart into blocks (H.264) or cannot get under the bitrate at all (MJPEG, whose
//! quality bottoms out): then a smaller, sharper picture, and past half size fewer of them, is
//! the better call. Sans-IO.

use std::time::{Duration, Instant};

use crate::proto::CodecId;

/// The rungs, from the full picture down: sides scaled by `num/den`, every `div`-th camera
/// frame sent. Motion stays smooth down to half size; below that the frame rate steps down
/// with the size, to a third of the camera's.
const RUNGS: [Rung; 9] = [
    Rung::new(1, 1, 1),
    Rung::new(3, 4, 1),
    Rung::new(1, 2, 1),
    Rung::new(1, 2, 2),
    Rung::new(3, 8, 2),
    Rung::new(1, 4, 2),
    Rung::new(1, 4, 3),
    Rung::new(3, 16, 3),
    Rung::new(1, 8, 3),
];
/// Smallest width sent.
const MIN_WIDTH: u32 = 160;
/// A step up waits until the bitrate has allowed it this long: a bigger picture starts with a
/// keyframe, and a keyframe sent while a slow start overshoots the link (the overshoot is
/// undone within a report or two) overflowed a shallow buffer and froze the picture for
/// most of a second.
pub const UP_HOLD: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Rung {
    num: u32,
    den: u32,
    div: u32,
}

impl Rung {
    const fn new(num: u32, den: u32, div: u32) -> Self {
        Self { num, den, div }
    }
}

/// What to send: the picture size, and one camera frame in `divisor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Width and height, both even.
    pub size: (u32, u32),
    /// Every `divisor`-th camera frame is sent (1: all of them).
    pub divisor: u32,
}

/// Bits per pixel per frame below which the ladder steps down, and above which (for the next
/// rung up) it steps back up: H.264 looks fine from about 0.03; MJPEG at quality 75 needs
/// about 0.3 for the test pattern and more for a camera.
fn thresholds(codec: CodecId) -> (f64, f64) {
    match codec {
        CodecId::H264 => (0.02, 0.04),
        CodecId::Mjpeg => (0.25, 0.5),
    }
}

/// Steps the sent picture size and frame rate down and up with the bitrate target.
#[derive(Debug, Clone)]
pub struct Ladder {
    full: (u32, u32),
    fps: f64,
    down_bpp: f64,
    up_bpp: f64,
    rung: usize,
    /// The bitrate target.
    bps: u32,
    /// Since when the bitrate has allowed the next step up.
    up_since: Option<Instant>,
}

impl Ladder {
    /// A ladder under `full` for `codec` at `fps` camera frames a second, starting at the top.
    pub fn new(full: (u32, u32), fps: u32, codec: CodecId) -> Self {
        let (down_bpp, up_bpp) = thresholds(codec);
        Self {
            full,
            fps: f64::from(fps.max(1)),
            down_bpp,
            up_bpp,
            rung: 0,
            bps: 0,
            up_since: None,
        }
    }

    /// What to send now.
    pub fn step(&self) -> Step {
        step_at(self.full, self.rung)
    }

    /// The picture size to send now.
    pub fn size(&self) -> (u32, u32) {
        self.step().size
    }

    /// Frames a second sent now.
    pub fn fps(&self) -> f64 {
        self.fps / f64::from(self.step().divisor)
    }

    fn rungs(&self) -> usize {
        (0..RUNGS.len())
            .take_while(|&r| r == 0 || step_at(self.full, r).size.0 >= MIN_WIDTH)
            .count()
    }

    fn bpp(&self, rung: usize, bps: u32) -> f64 {
        let Step {
            size: (w, h),
            divisor,
        } = step_at(self.full, rung);
        f64::from(bps) / (f64::from(w) * f64::from(h) * self.fps / f64::from(divisor))
    }

    /// Takes a new bitrate target at `now`; returns the new step when it changed. Steps
    /// down at once, up one rung at a time once the bitrate has allowed it for [`UP_HOLD`].
    pub fn on_bitrate(&mut self, bps: u32, now: Instant) -> Option<Step> {
        self.bps = bps;
        let before = self.rung;
        while self.rung + 1 < self.rungs() && self.bpp(self.rung, bps) < self.down_bpp {
            self.rung += 1;
        }
        if self.rung != before {
            self.up_since = None;
            return Some(self.step());
        }
        self.poll(now)
    }

    /// Takes a bitrate target that a probe of the path found room for: no overshoot to wait
    /// out, so the picture goes straight to the biggest rung the bitrate allows, judged
    /// half-way between the two thresholds: the step up's margin is there for targets that
    /// come and go, and a probe is a measurement. (A 720p H.264 call on a 1.5 Mbit/s link
    /// found 1.35 Mbit/s, of which the parity leaves the picture 1.08: 0.039 bit per pixel,
    /// just under the step up's 0.04, so every such call started at 960x540 and stepped up
    /// 1.7 s later, with a second keyframe in the call's first seconds.) Returns the new step
    /// when it changed.
    pub fn on_probed_bitrate(&mut self, bps: u32, now: Instant) -> Option<Step> {
        let before = self.rung;
        let _ = self.on_bitrate(bps, now);
        let enough = (self.down_bpp + self.up_bpp) / 2.0;
        while self.rung > 0 && self.bpp(self.rung - 1, bps) >= enough {
            self.rung -= 1;
        }
        self.up_since = None;
        (self.rung != before).then(|| self.step())
    }

    /// Steps up when the bitrate has allowed it for long enough; returns the new step then.
    pub fn poll(&mut self, now: Instant) -> Option<Step> {
        let up = self.rung > 0 && self.bpp(self.rung - 1, self.bps) > self.up_bpp;
        if !up {
            self.up_since = None;
            return None;
        }
        let since = *self.up_since.get_or_insert(now);
        if now.saturating_duration_since(since) < UP_HOLD {
            return None;
        }
        // the next rung up waits its own hold
        self.rung -= 1;
        self.up_since = None;
        Some(self.step())
    }
}

/// `full` on rung `rung`, both sides even (4:2:0 needs it).
fn step_at(full: (u32, u32), rung: usize) -> Step {
    let r = RUNGS[rung.min(RUNGS.len() - 1)];
    let even = |v: u32| ((v * r.num / r.den) & !1).max(2);
    let size = if rung == 0 {
        full
    } else {
        (even(full.0), even(full.1))
    };
    Step {
        size,
        divisor: r.div,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ladder on a clock on which every step up the bitrate allows waits out its hold.
    struct Held {
        l: Ladder,
        now: Instant,
    }

    impl Held {
        fn new(full: (u32, u32), fps: u32, codec: CodecId) -> Self {
            Self {
                l: Ladder::new(full, fps, codec),
                now: Instant::now(),
            }
        }

        fn on_bitrate(&mut self, bps: u32) -> Option<Step> {
            self.now += UP_HOLD * 2;
            let now = self.now;
            self.l
                .on_bitrate(bps, now)
                .or_else(|| self.l.poll(now + UP_HOLD))
        }

        fn size(&self) -> (u32, u32) {
            self.l.size()
        }

        fn fps(&self) -> f64 {
            self.l.fps()
        }
    }

    fn step(w: u32, h: u32, divisor: u32) -> Option<Step> {
        Some(Step {
            size: (w, h),
            divisor,
        })
    }

    #[test]
    fn h264_720p_steps_down_under_a_squeeze_and_back_up() {
        let mut l = Held::new((1280, 720), 30, CodecId::H264);
        assert_eq!(l.on_bitrate(1_500_000), None);
        assert_eq!(l.size(), (1280, 720));
        // 0.54 Mbit/s is under 0.02 bit/pixel at 720p30
        assert_eq!(l.on_bitrate(540_000), step(960, 540, 1));
        assert_eq!(l.on_bitrate(150_000), step(640, 360, 1));
        // below half size the frame rate goes too
        assert_eq!(l.on_bitrate(100_000), step(640, 360, 2));
        assert_eq!(l.fps(), 15.0);
        assert_eq!(l.on_bitrate(30_000), step(320, 180, 2));
        // climbing back one step per change, with hysteresis
        assert_eq!(l.on_bitrate(60_000), None);
        assert_eq!(l.on_bitrate(300_000), step(480, 270, 2));
        assert_eq!(l.on_bitrate(300_000), step(640, 360, 2));
        assert_eq!(l.on_bitrate(300_000), step(640, 360, 1));
        assert_eq!(l.on_bitrate(500_000), None);
        assert_eq!(l.on_bitrate(700_000), step(960, 540, 1));
        assert_eq!(l.on_bitrate(1_000_000), None);
        assert_eq!(l.on_bitrate(1_200_000), step(1280, 720, 1));
        assert_eq!(l.fps(), 30.0);
    }

    #[test]
    fn a_step_up_waits_for_the_bitrate_to_hold() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut l = Ladder::new((1280, 720), 30, CodecId::H264);
        assert_eq!(l.on_bitrate(500_000, ms(0)), step(960, 540, 1));
        // a slow start passes the full size's threshold and is undone within a report
        assert_eq!(l.on_bitrate(1_220_000, ms(2000)), None);
        assert_eq!(l.poll(ms(2200)), None);
        assert_eq!(l.on_bitrate(976_000, ms(2250)), None);
        assert_eq!(l.poll(ms(3500)), None, "the hold starts afresh");
        // held for a second: up
        assert_eq!(l.on_bitrate(1_300_000, ms(4000)), None);
        assert_eq!(l.poll(ms(4500)), None);
        assert_eq!(l.poll(ms(5000)), step(1280, 720, 1));
        // down at once
        assert_eq!(l.on_bitrate(100_000, ms(5010)), step(640, 360, 2));
    }

    #[test]
    fn a_probed_bitrate_is_taken_at_once() {
        let t0 = Instant::now();
        let mut l = Ladder::new((1280, 720), 30, CodecId::Mjpeg);
        // the call starts at 0.8 Mbit/s: three eighths of the size at 15 fps
        assert_eq!(l.on_bitrate(800_000, t0), step(480, 270, 2));
        // a probe finds room for 5.5 Mbit/s: straight up two rungs to half size, no hold
        assert_eq!(l.on_probed_bitrate(5_500_000, t0), step(640, 360, 1));
        assert_eq!(l.on_probed_bitrate(5_500_000, t0), None);
        // and for all of it
        assert_eq!(l.on_probed_bitrate(16_600_000, t0), step(1280, 720, 1));
        // a probed bitrate under the current step still steps down
        assert_eq!(l.on_probed_bitrate(900_000, t0), step(640, 360, 2));
        // H.264 at 720p: the start's 0.4 Mbit/s is sent at 960x540; a probe's 1.08 Mbit/s
        // (0.039 bit per pixel) goes to full size at once, where a report would wait for 0.04
        let mut l = Ladder::new((1280, 720), 30, CodecId::H264);
        assert_eq!(l.on_bitrate(400_000, t0), step(960, 540, 1));
        let mut reported = l.clone();
        assert_eq!(l.on_probed_bitrate(1_080_000, t0), step(1280, 720, 1));
        assert_eq!(reported.on_bitrate(1_080_000, t0), None);
        assert_eq!(
            reported.poll(t0 + UP_HOLD * 2),
            None,
            "under 0.04: no step up"
        );
        // but not below half-way between the thresholds (0.03)
        let mut l = Ladder::new((1280, 720), 30, CodecId::H264);
        assert_eq!(l.on_bitrate(400_000, t0), step(960, 540, 1));
        assert_eq!(l.on_probed_bitrate(800_000, t0), None);
    }

    #[test]
    fn mjpeg_finds_a_step_that_fits_a_megabit() {
        let mut l = Held::new((640, 480), 30, CodecId::Mjpeg);
        assert_eq!(l.on_bitrate(2_500_000), None);
        assert_eq!(l.on_bitrate(900_000), step(320, 240, 1));
        assert_eq!(l.on_bitrate(150_000), step(160, 120, 2));
        assert_eq!(l.on_bitrate(50_000), step(160, 120, 3));
        assert_eq!(l.on_bitrate(10_000), None, "never under 160 px wide");
        let mut hd = Held::new((1280, 720), 30, CodecId::Mjpeg);
        assert_eq!(hd.on_bitrate(900_000), step(640, 360, 2));
        assert_eq!(hd.on_bitrate(150_000), step(320, 180, 3));
        assert_eq!(hd.on_bitrate(60_000), step(160, 90, 3));
    }

    #[test]
    fn sizes_stay_even_and_small_pictures_do_not_step() {
        let mut l = Held::new((322, 242), 30, CodecId::H264);
        assert_eq!(l.on_bitrate(1), step(160, 120, 2));
        let (w, h) = l.size();
        assert!(w % 2 == 0 && h % 2 == 0);
        let mut tiny = Held::new((160, 120), 30, CodecId::H264);
        assert_eq!(tiny.on_bitrate(1), None);
    }
}
