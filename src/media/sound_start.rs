//! When a call's sound starts going out: once the probing of the path at the call's start is
//! over and the call's first picture has left the pacer, not before. On a slow path both
//! queue at the bottleneck, and the sound sent behind them comes late: under a 1 Mbit/s cap
//! the sound's first 100 ms came up to 21 ms late behind the probe's bursts and, with those
//! waited out, up to 19 ms late behind the first keyframe. The peer's jitter buffer, sized by
//! the lateness of the last second's packets, then held 19-25 ms for over a second instead
//! of 8-10, and lip sync held the pictures back with it (480p under the cap: pictures at
//! 15-17 ms for the call's first two seconds, at 7-8 ms after). The sound held back is
//! not sent at all: sent late, it would only come late. On a path paced to its timed rate,
//! the pacer being empty is not enough: the pictures right after the keyframe (2.2 kB, then
//! 0.9 kB, with their parity) still crossed the cap when the sound started, and its first
//! 50 ms came 18-25 ms late (in windows with sound). There the sound waits until the path, at
//! its timed rate, has carried the video sent (the pacer knows what it has not:
//! `Pacer::path_backlog`). Sans-IO.

use std::time::{Duration, Instant};

/// The sound waits this long at most (the probing holds the media 150 ms at most, and a
/// 480p keyframe takes 45 ms to cross a 1 Mbit/s path).
pub const MAX_HOLD: Duration = Duration::from_millis(300);

/// Whether the sound of a call that just started may go out yet.
#[derive(Debug, Default, Clone)]
pub struct SoundStart {
    /// When the call started or resumed, while its sound waits.
    since: Option<Instant>,
    /// A picture went to the pacer since then.
    picture: bool,
}

/// The sound may start while this much of the video sent is still on its way (2.4 ms at
/// 1 Mbit/s).
pub const LEFT_BYTES: f64 = 300.0;

impl SoundStart {
    /// A call starts, or resumes after an outage (the path is probed again, and a keyframe
    /// goes first): its sound waits.
    pub fn restart(&mut self, now: Instant) {
        *self = Self {
            since: Some(now),
            ..Self::default()
        };
    }

    /// A picture went to the pacer.
    pub fn on_picture(&mut self) {
        self.picture = true;
    }

    /// Whether the sound may go out now: `probing`, the path's probe still holds the media
    /// back; `camera_on`, a picture is coming; `paced_out`, the pacer holds no video;
    /// `path_backlog`, bytes of the video sent that a path it paces to has not carried yet.
    pub fn may_send(
        &mut self,
        now: Instant,
        probing: bool,
        camera_on: bool,
        paced_out: bool,
        path_backlog: f64,
    ) -> bool {
        let Some(since) = self.since else {
            return true;
        };
        let carried = path_backlog <= LEFT_BYTES;
        let picture_out = !camera_on || (self.picture && paced_out && carried);
        if (!probing && picture_out) || now.saturating_duration_since(since) >= MAX_HOLD {
            self.since = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sound_waits_for_the_probe_and_the_first_picture_to_go_out() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = SoundStart::default();
        assert!(
            s.may_send(t0, false, true, true, 0.0),
            "no call started: nothing held"
        );
        s.restart(t0);
        assert!(!s.may_send(ms(50), true, true, true, 0.0), "probing");
        assert!(
            !s.may_send(ms(110), false, true, true, 0.0),
            "no picture yet"
        );
        s.on_picture();
        assert!(
            !s.may_send(ms(120), false, true, false, 0.0),
            "the keyframe is being paced out"
        );
        assert!(s.may_send(ms(160), false, true, true, 0.0));
        // once started it is never held again in this call
        assert!(s.may_send(ms(170), true, true, false, 0.0));
    }

    #[test]
    fn on_a_slow_path_the_sound_waits_until_the_video_sent_has_crossed_it() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = SoundStart::default();
        s.restart(t0);
        s.on_picture();
        // the pacer is empty, but the path has yet to carry 600 B of what it sent
        assert!(!s.may_send(ms(181), false, true, true, 600.0));
        assert!(s.may_send(ms(185), false, true, true, LEFT_BYTES));
    }

    #[test]
    fn without_a_camera_only_the_probe_holds_the_sound_and_never_for_long() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = SoundStart::default();
        s.restart(t0);
        assert!(!s.may_send(ms(40), true, false, true, 0.0));
        assert!(s.may_send(ms(60), false, false, true, 0.0));
        // a picture that never leaves (an encoder stuck, a pacer that never drains) holds the
        // sound MAX_HOLD at most; a resumed call waits again
        s.restart(ms(1_000));
        s.on_picture();
        assert!(!s.may_send(ms(1_000) + MAX_HOLD / 2, false, true, false, 0.0));
        assert!(s.may_send(ms(1_000) + MAX_HOLD, false, true, false, 0.0));
    }
}
