//! Keeps the peer's picture in step with its sound. The sound goes through a jitter buffer
//! and two sound-device buffers, so it is heard later than an unheld picture is shown (here
//! 25–30 ms at 480p on a clean link, more on a jittery one). A picture is held until at
//! most `max_lag` before its sound is heard, and no longer than [`MAX_HOLD`]. With no sound
//! playing (the peer muted, no microphone) nothing is held.
//!
//! Both streams are stamped with their capture time on the sender's clock. The sound's
//! delay is measured on our clock from those stamps, so the offset between the two clocks is
//! in it, and it cancels out when the picture's due time is computed from its own stamp.
//!
//! Sans-IO: the caller passes the clocks in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A picture is never held longer than this, however late the sound is.
pub const MAX_HOLD: Duration = Duration::from_millis(150);
/// The sound's delay is trusted for this long after the last frame was played.
const AUDIO_FRESH: Duration = Duration::from_millis(500);
/// Weight of one new sound-delay sample: with a frame every 5 ms, about half a second.
const SMOOTHING: f64 = 0.01;
/// Pictures held at most; an older one beyond this is dropped as superseded.
const MAX_HELD: usize = 8;
/// Weight of one new picture-delay sample: at 30 pictures a second, about 0.7 s.
const VIDEO_SMOOTHING: f64 = 0.05;
/// The pictures' delay is trusted for this long after the last one.
const VIDEO_FRESH: Duration = Duration::from_secs(1);
/// How far the sound may come before its picture: the sound waits for pictures later than
/// this (see [`LipSync::sound_shortfall_us`]). None at all: the wait moves by half what is
/// missing and leaves a few milliseconds either way alone, the sound's delay as estimated is
/// 4–5 ms over what clicks measure and the pictures' leaves out the window's draw, so aimed at
/// nothing the sound still comes a little before its picture. The sound of 720p MJPEG under
/// a 1 Mbit/s cap in windows came 14–22 ms before its picture at 15, 16–21 ms at 10, 9–10 ms
/// before or 8 ms after at 5, and, with the wait moving twice a second, 18–21 ms before at 5
/// against 11–16 ms at 0 (three alternating runs each; 720p H.264 there 8 against 1–5 ms).
pub const MAX_LEAD: Duration = Duration::ZERO;

/// The sound's delay and the pictures waiting for it.
#[derive(Debug)]
pub struct LipSync<T> {
    max_lag_us: Option<u64>,
    /// Capture → heard of the sound, µs, smoothed; with the time of its last sample.
    audio: Option<(f64, Instant)>,
    /// Capture → ready (decoded, before any hold) of the pictures, µs, smoothed; with the
    /// time of its last sample.
    video: Option<(f64, Instant)>,
    held: VecDeque<(T, u64)>,
    /// Pictures dropped for lack of room since the last release.
    overflowed: u64,
    /// How long the last picture pushed was held, µs.
    last_hold_us: u64,
}

/// What [`LipSync::release`] hands back.
#[derive(Debug, PartialEq, Eq)]
pub struct Released<T> {
    /// The newest picture that is due, to be shown now.
    pub show: Option<T>,
    /// Due pictures older than `show`, never shown.
    pub superseded: u64,
}

impl<T> LipSync<T> {
    /// Holds pictures until at most `max_lag` before their sound; `None` never holds.
    pub fn new(max_lag: Option<Duration>) -> Self {
        Self {
            max_lag_us: max_lag.map(|d| d.as_micros() as u64),
            audio: None,
            video: None,
            held: VecDeque::new(),
            overflowed: 0,
            last_hold_us: 0,
        }
    }

    /// A frame of sound captured at `capture_us` (sender's clock) will be heard at
    /// `heard_us` (our clock).
    pub fn audio_played(&mut self, capture_us: u64, heard_us: u64, now: Instant) {
        let d = heard_us.saturating_sub(capture_us) as f64;
        self.audio = Some(smooth(self.audio, AUDIO_FRESH, SMOOTHING, d, now));
    }

    /// Capture → heard of the sound, µs, while sound plays.
    pub fn audio_delay_us(&self, now: Instant) -> Option<u64> {
        self.audio
            .filter(|(_, t)| now.saturating_duration_since(*t) < AUDIO_FRESH)
            .map(|(v, _)| v as u64)
    }

    /// How long a picture captured at `capture_us` (sender's clock) waits if it is ready at
    /// `now_us` (our clock).
    pub fn hold_us(&self, capture_us: u64, now_us: u64, now: Instant) -> u64 {
        let (Some(lag), Some(audio)) = (self.max_lag_us, self.audio_delay_us(now)) else {
            return 0;
        };
        let due = capture_us.saturating_add(audio.saturating_sub(lag));
        due.saturating_sub(now_us).min(MAX_HOLD.as_micros() as u64)
    }

    /// How much longer the sound should wait so that it comes at most [`MAX_LEAD`] before
    /// its picture, µs (negative: how much sooner it could come): the pictures' delay less
    /// the lead, less the sound's. `None` unless lip sync is on and both play.
    pub fn sound_shortfall_us(&self, now: Instant) -> Option<i64> {
        self.max_lag_us?;
        let audio = self.audio_delay_us(now)?;
        let (video, _) = self
            .video
            .filter(|(_, t)| now.saturating_duration_since(*t) < VIDEO_FRESH)?;
        Some(video as i64 - MAX_LEAD.as_micros() as i64 - audio as i64)
    }

    /// A decoded picture: handed back if it is due now, else held (see [`Self::release`]).
    pub fn push(&mut self, pic: T, capture_us: u64, now_us: u64, now: Instant) -> Option<T> {
        let d = now_us.saturating_sub(capture_us) as f64;
        self.video = Some(smooth(self.video, VIDEO_FRESH, VIDEO_SMOOTHING, d, now));
        let hold = self.hold_us(capture_us, now_us, now);
        self.last_hold_us = hold;
        if hold == 0 && self.held.is_empty() {
            return Some(pic);
        }
        // pictures leave in order: one is never due before the one held ahead of it
        let due = self
            .held
            .back()
            .map_or(0, |(_, d)| *d)
            .max(now_us.saturating_add(hold));
        if self.held.len() >= MAX_HELD && self.held.pop_front().is_some() {
            self.overflowed += 1;
        }
        self.held.push_back((pic, due));
        None
    }

    /// The newest held picture that is due at `now_us`, and how many older ones it replaces
    /// (with those dropped for lack of room).
    pub fn release(&mut self, now_us: u64) -> Released<T> {
        let mut r = Released {
            show: None,
            superseded: std::mem::take(&mut self.overflowed),
        };
        while self.held.front().is_some_and(|(_, due)| *due <= now_us) {
            if let Some((pic, _)) = self.held.pop_front() {
                if r.show.replace(pic).is_some() {
                    r.superseded += 1;
                }
            }
        }
        r
    }

    /// When the first held picture is due (our clock, µs), if one is held.
    pub fn next_due_us(&self) -> Option<u64> {
        self.held.front().map(|(_, due)| *due)
    }

    /// Forgets the held pictures (a new stream, or the call ended).
    pub fn clear(&mut self) {
        self.held.clear();
    }

    /// How long the last picture pushed was held, µs.
    pub fn last_hold_us(&self) -> u64 {
        self.last_hold_us
    }

    /// Pictures waiting.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// `prev` moved towards the sample `d` by `weight`, or `d` itself when `prev` is older than
/// `fresh`; with the time of the sample.
fn smooth(
    prev: Option<(f64, Instant)>,
    fresh: Duration,
    weight: f64,
    d: f64,
    now: Instant,
) -> (f64, Instant) {
    match prev.filter(|(_, t)| now.saturating_duration_since(*t) < fresh) {
        Some((v, _)) => (v + weight * (d - v), now),
        None => (d, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn with_sound(delay_ms: u64, now: Instant) -> LipSync<u32> {
        let mut s = LipSync::new(Some(Duration::from_millis(15)));
        s.audio_played(1_000 * MS, (1_000 + delay_ms) * MS, now);
        s
    }

    #[test]
    fn late_pictures_say_how_much_longer_the_sound_should_wait() {
        let now = Instant::now();
        // sound heard 30 ms after capture
        let mut s = with_sound(30, now);
        assert_eq!(s.sound_shortfall_us(now), None, "no pictures yet");
        // pictures ready 60 ms after capture: the sound should come no sooner than them
        // (less the lead it may have), so it should wait 60 - 30 = 30 ms longer
        for i in 0..40u64 {
            let cap = (2_000 + 33 * i) * MS;
            assert!(
                s.push(i as u32, cap, cap + 60 * MS, now).is_some(),
                "never held"
            );
        }
        let lead = MAX_LEAD.as_micros() as i64;
        assert_eq!(s.sound_shortfall_us(now), Some(30 * MS as i64 - lead));
        // early pictures: the sound could come sooner (and the pictures are held instead)
        let mut s = with_sound(30, now);
        s.push(1, 2_000 * MS, 2_005 * MS, now);
        assert_eq!(s.sound_shortfall_us(now), Some(-25 * MS as i64 - lead));
        // pictures stopped a while ago, or lip sync is off: nothing to say
        assert_eq!(s.sound_shortfall_us(now + VIDEO_FRESH), None);
        let mut off = LipSync::new(None);
        off.audio_played(0, 30 * MS, now);
        off.push(1, 0, 60 * MS, now);
        assert_eq!(off.sound_shortfall_us(now), None);
    }

    #[test]
    fn without_sound_nothing_waits() {
        let now = Instant::now();
        let mut s = LipSync::new(Some(Duration::from_millis(15)));
        assert_eq!(s.push(1, 0, 5 * MS, now), Some(1));
        // sound that stopped playing half a second ago no longer counts
        s.audio_played(0, 100 * MS, now);
        let later = now + AUDIO_FRESH;
        assert_eq!(s.audio_delay_us(later), None);
        assert_eq!(s.push(2, 0, 5 * MS, later), Some(2));
    }

    #[test]
    fn switched_off_nothing_waits() {
        let now = Instant::now();
        let mut s = LipSync::new(None);
        s.audio_played(0, 100 * MS, now);
        assert_eq!(s.push(1, 0, 5 * MS, now), Some(1));
    }

    #[test]
    fn a_picture_waits_until_its_sound_is_at_most_max_lag_behind() {
        let now = Instant::now();
        let mut s = with_sound(40, now);
        // captured at 2000 ms, decoded 5 ms later: heard at 2040, so shown at 2025
        assert_eq!(s.push(7, 2_000 * MS, 2_005 * MS, now), None);
        assert_eq!(s.last_hold_us(), 20 * MS);
        assert_eq!(
            s.next_due_us(),
            Some(2_025 * MS),
            "when to come back for it"
        );
        assert_eq!(
            s.release(2_024 * MS),
            Released {
                show: None,
                superseded: 0
            }
        );
        assert_eq!(
            s.release(2_025 * MS),
            Released {
                show: Some(7),
                superseded: 0
            }
        );
        assert_eq!(s.held(), 0);
        assert_eq!(s.next_due_us(), None);
        // a picture that is already later than that is not held at all
        assert_eq!(s.push(8, 3_000 * MS, 3_030 * MS, now), Some(8));
    }

    #[test]
    fn the_hold_is_capped() {
        let now = Instant::now();
        let mut s = with_sound(2_000, now);
        assert_eq!(s.hold_us(0, 0, now), MAX_HOLD.as_micros() as u64);
        assert_eq!(s.push(1, 0, 0, now), None);
        assert_eq!(s.release(MAX_HOLD.as_micros() as u64).show, Some(1));
    }

    #[test]
    fn pictures_leave_in_order_and_only_the_newest_due_is_shown() {
        let now = Instant::now();
        let mut s = with_sound(40, now);
        assert_eq!(s.push(1, 0, 0, now), None); // due at 25 ms
                                                // a later picture released early by a repaired hole still waits behind it
        assert_eq!(s.push(2, 33 * MS, 60 * MS, now), None);
        assert_eq!(s.push(3, 66 * MS, 70 * MS, now), None); // due at 91 ms
        assert_eq!(
            s.release(61 * MS),
            Released {
                show: Some(2),
                superseded: 1
            }
        );
        assert_eq!(s.release(90 * MS).show, None);
        assert_eq!(s.release(91 * MS).show, Some(3));
    }

    #[test]
    fn held_pictures_are_bounded_and_cleared() {
        let now = Instant::now();
        let mut s = with_sound(200, now);
        for i in 0..100 {
            assert_eq!(s.push(i, 0, 0, now), None);
        }
        assert_eq!(s.held(), MAX_HELD);
        // every picture is either shown or counted
        assert_eq!(
            s.release(u64::MAX),
            Released {
                show: Some(99),
                superseded: 99
            }
        );
        for i in 0..3 {
            assert_eq!(s.push(i, 0, 0, now), None);
        }
        s.clear();
        assert_eq!(
            s.release(u64::MAX),
            Released {
                show: None,
                superseded: 0
            }
        );
    }

    #[test]
    fn the_sound_delay_is_smoothed() {
        let now = Instant::now();
        let mut s = with_sound(30, now);
        // one late frame moves the estimate a little, not to 130 ms
        s.audio_played(0, 130 * MS, now);
        let d = s.audio_delay_us(now).unwrap_or(0);
        assert!((30 * MS..32 * MS).contains(&d), "{d}");
    }
}
