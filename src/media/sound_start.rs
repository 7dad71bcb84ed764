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
//! its timed rate, has carried the video sent. Sans-IO.

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
    /// Video bytes sent that the path has not carried yet at its timed rate, as of `at`.
    unsent: f64,
    at: Option<Instant>,
    /// The path's timed rate, bytes/s, when video is paced to it.
    path: Option<f64>,
}

/// The sound may start while this much of the video sent is still on its way (2.4 ms at
/// 1 Mbit/s).
const LEFT_BYTES: f64 = 300.0;

impl SoundStart {
    /// A call starts, or resumes after an outage (the path is probed again, and a keyframe
    /// goes first): its sound waits.
    pub fn restart(&mut self, now: Instant) {
        *self = Self {
            since: Some(now),
            ..Self::default()
        };
    }

    /// What of the video sent the path has not carried by `now`.
    fn unsent(&mut self, now: Instant) -> f64 {
        let elapsed = self
            .at
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        // not paced to a path: what went out has gone at once
        self.unsent = self
            .path
            .map_or(0.0, |rate| (self.unsent - elapsed * rate).max(0.0));
        self.at = Some(now);
        self.unsent
    }

    /// A video datagram of `bytes` went out at `now`, paced to a path timed at `path_bps`
    /// (`None`: sent at once, on a path faster than the pace).
    pub fn on_video_sent(&mut self, bytes: usize, now: Instant, path_bps: Option<u32>) {
        if self.since.is_some() {
            self.unsent(now);
            self.path = path_bps.map(|b| f64::from(b) / 8.0);
            self.unsent += bytes as f64;
        }
    }

    /// A picture went to the pacer.
    pub fn on_picture(&mut self) {
        self.picture = true;
    }

    /// Whether the sound may go out now: `probing`, the path's probe still holds the media
    /// back; `camera_on`, a picture is coming; `paced_out`, the pacer holds no video (and a
    /// path it paces to has carried what it sent).
    pub fn may_send(
        &mut self,
        now: Instant,
        probing: bool,
        camera_on: bool,
        paced_out: bool,
    ) -> bool {
        let Some(since) = self.since else {
            return true;
        };
        let carried = self.unsent(now) <= LEFT_BYTES;
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
            s.may_send(t0, false, true, true),
            "no call started: nothing held"
        );
        s.restart(t0);
        assert!(!s.may_send(ms(50), true, true, true), "probing");
        assert!(!s.may_send(ms(110), false, true, true), "no picture yet");
        s.on_picture();
        assert!(
            !s.may_send(ms(120), false, true, false),
            "the keyframe is being paced out"
        );
        assert!(s.may_send(ms(160), false, true, true));
        // once started it is never held again in this call
        assert!(s.may_send(ms(170), true, true, false));
    }

    #[test]
    fn on_a_slow_path_the_sound_waits_until_the_video_sent_has_crossed_it() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let path = Some(1_000_000);
        let mut s = SoundStart::default();
        s.restart(t0);
        // a 4.5 kB keyframe and its parity, paced out from 150 ms on, 15 % over the path
        s.on_picture();
        for k in 0..5 {
            s.on_video_sent(1_120, ms(150 + 7 * k), path);
        }
        // the pacer is empty at 181 ms, but 1 Mbit/s carries 5.6 kB in 45 ms
        assert!(!s.may_send(ms(181), false, true, true));
        // the next picture (2.2 kB and its parity) goes from 183 ms on..
        for k in 0..3 {
            s.on_video_sent(1_120, ms(183 + 7 * k), path);
        }
        assert!(!s.may_send(ms(215), false, true, true));
        // ..and all of it has crossed by 150 ms + 8.96 kB at 125 kB/s = 222 ms
        assert!(s.may_send(ms(224), false, true, true));
        // sent at once on a fast path: carried at once
        let mut fast = SoundStart::default();
        fast.restart(t0);
        fast.on_picture();
        fast.on_video_sent(50_000, ms(150), None);
        assert!(fast.may_send(ms(151), false, true, true));
    }

    #[test]
    fn without_a_camera_only_the_probe_holds_the_sound_and_never_for_long() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = SoundStart::default();
        s.restart(t0);
        assert!(!s.may_send(ms(40), true, false, true));
        assert!(s.may_send(ms(60), false, false, true));
        // a picture that never leaves (an encoder stuck, a pacer that never drains) holds the
        // sound MAX_HOLD at most; a resumed call waits again
        s.restart(ms(1_000));
        s.on_picture();
        assert!(!s.may_send(ms(1_000) + MAX_HOLD / 2, false, true, false));
        assert!(s.may_send(ms(1_000) + MAX_HOLD, false, true, false));
    }
}
