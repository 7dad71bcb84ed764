//! How long the sound waits for late pictures. Lip sync holds pictures that come too early
//! for their sound, but never delays the sound; under a narrow link, though, a large
//! picture takes longer to get through than the sound (720p MJPEG under a 1 Mbit/s cap: the
//! sound heard 20–30 ms before its picture is seen). Then the sound's playout waits longer,
//! by what [`crate::media::lip_sync::LipSync::sound_shortfall_us`] says is missing, moved
//! half-way towards it twice a second (the sound's own delay is smoothed over half a second,
//! so a step is not all in the next estimate: a full step would overshoot), at most
//! [`MAX_STEP`] a step and [`MAX_EXTRA`] in all. Once a second, the sound of 720p MJPEG under
//! a 1 Mbit/s cap took most of a 10 s call to catch up with pictures that grew later as the
//! call's bitrate rose.
//! When pictures stop or lip sync is off, the wait winds down by the same steps.
//!
//! Sans-IO: the caller passes the time in.

use std::time::{Duration, Instant};

/// The most the sound waits for pictures.
pub const MAX_EXTRA: Duration = Duration::from_millis(100);
/// The most one step changes the wait.
pub const MAX_STEP: Duration = Duration::from_millis(10);
/// How often the wait moves.
pub const EVERY: Duration = Duration::from_millis(500);
/// A shortfall this small (either way) leaves the wait as it is.
pub const DEADBAND: Duration = Duration::from_millis(3);

/// The sound's extra wait, adjusted once every [`EVERY`].
#[derive(Debug, Default, Clone)]
pub struct SoundWait {
    extra_us: u64,
    next_at: Option<Instant>,
}

impl SoundWait {
    /// Takes the shortfall (see [`crate::media::lip_sync::LipSync::sound_shortfall_us`]) at
    /// `now`; returns how long the sound should wait on top of what its jitter needs.
    pub fn update(&mut self, now: Instant, shortfall_us: Option<i64>) -> Duration {
        if self.next_at.is_some_and(|t| now < t) {
            return self.extra();
        }
        self.next_at = Some(now + EVERY);
        let step = MAX_STEP.as_micros() as i64;
        let change = match shortfall_us {
            Some(s) if s.unsigned_abs() > DEADBAND.as_micros() as u64 => (s / 2).clamp(-step, step),
            Some(_) => 0,
            None => -step,
        };
        self.extra_us =
            (self.extra_us as i64 + change).clamp(0, MAX_EXTRA.as_micros() as i64) as u64;
        self.extra()
    }

    /// The wait as last set.
    pub fn extra(&self) -> Duration {
        Duration::from_micros(self.extra_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1000;

    #[test]
    fn late_pictures_make_the_sound_wait_in_half_steps_up_to_the_cap() {
        let t0 = Instant::now();
        let mut w = SoundWait::default();
        // pictures 12 ms later than the sound may be: half of it now
        assert_eq!(w.update(t0, Some(12 * MS)), Duration::from_millis(6));
        // until the next step is due, nothing moves
        assert_eq!(
            w.update(t0 + EVERY / 2, Some(6 * MS)),
            Duration::from_millis(6)
        );
        // the rest, a step later (the sound's delay grew by 6: 6 left)
        assert_eq!(w.update(t0 + EVERY, Some(6 * MS)), Duration::from_millis(9));
        // close enough: stays
        assert_eq!(
            w.update(t0 + EVERY * 2, Some(3 * MS)),
            Duration::from_millis(9)
        );
        // far behind: at most a step at a time, and never over the cap
        let mut t = t0 + EVERY * 3;
        let mut last = w.extra();
        for _ in 0..20 {
            let now = w.update(t, Some(500 * MS));
            assert!(now - last <= MAX_STEP);
            last = now;
            t += EVERY;
        }
        assert_eq!(last, MAX_EXTRA);
    }

    #[test]
    fn the_wait_winds_down_when_pictures_catch_up_or_stop() {
        let t0 = Instant::now();
        let mut w = SoundWait::default();
        for i in 0..4 {
            w.update(t0 + EVERY * i, Some(40 * MS));
        }
        assert_eq!(w.extra(), Duration::from_millis(40));
        // the pictures come sooner now: the sound could come 16 ms sooner
        assert_eq!(
            w.update(t0 + EVERY * 4, Some(-16 * MS)),
            Duration::from_millis(32)
        );
        // pictures stopped (or lip sync went off): a step down a second, to nothing
        let mut t = t0 + EVERY * 5;
        while w.extra() > Duration::ZERO {
            let before = w.extra();
            assert_eq!(before - w.update(t, None), MAX_STEP.min(before));
            t += EVERY;
        }
        // early pictures never make the sound come sooner than its jitter needs
        assert_eq!(w.update(t, Some(-50 * MS)), Duration::ZERO);
    }
}
