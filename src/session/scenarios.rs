//! Session scenarios on virtual time through the in-memory link.
//!
//! Test code only: its module is declared under `#[cfg(test)]`.

use std::time::Duration;

use super::link::{Impairment, Pair};
use super::{CallState, MediaState, Session, SessionConfig, SessionEvent};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lossy() -> Impairment {
    Impairment {
        loss_pct: 20,
        dup_pct: 10,
        delay: ms(30),
        jitter: ms(40),
        down: false,
    }
}

fn count(events: &[SessionEvent], pred: impl Fn(&SessionEvent) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

#[test]
fn connect_on_a_clean_link_within_a_round_trip() {
    let mut p = Pair::new(false, true, 1, Impairment::default());
    p.run(ms(20));
    assert_eq!(p.a.state(), CallState::Connected);
    assert_eq!(p.b.state(), CallState::Connected);
    assert_eq!(p.a.peer_addr(), Some(p.addr_b));
    assert_eq!(p.b.peer_addr(), Some(p.addr_a));
}

#[test]
fn waiting_side_stays_waiting_without_a_caller() {
    let mut p = Pair::new(false, false, 1, Impairment::default());
    p.run(ms(5000));
    assert_eq!(p.a.state(), CallState::Waiting);
    assert!(p.a.poll_transmit().is_none());
}

#[test]
fn connect_through_loss_jitter_and_duplicates() {
    for seed in 1..40 {
        let mut p = Pair::new(false, true, seed, lossy());
        p.run(ms(3000));
        assert_eq!(p.a.state(), CallState::Connected, "seed {seed}");
        assert_eq!(p.b.state(), CallState::Connected, "seed {seed}");
        assert_eq!(
            count(&p.events_a, |e| matches!(e, SessionEvent::Connected(_))),
            1,
            "seed {seed}: one call, not several"
        );
    }
}

#[test]
fn simultaneous_dial_ends_in_one_call() {
    for seed in 1..40 {
        let mut p = Pair::new(true, true, seed, lossy());
        p.run(ms(3000));
        assert_eq!(p.a.state(), CallState::Connected, "seed {seed}");
        assert_eq!(p.b.state(), CallState::Connected, "seed {seed}");
        assert!(count(&p.events_a, |e| matches!(e, SessionEvent::Connected(_))) >= 1);
        assert_eq!(p.a.peer_addr(), Some(p.addr_b));
        assert_eq!(p.b.peer_addr(), Some(p.addr_a));
    }
}

#[test]
fn keep_alive_holds_a_quiet_call_for_a_minute() {
    let mut p = Pair::new(false, true, 3, lossy());
    p.run(Duration::from_secs(60));
    assert_eq!(p.a.state(), CallState::Connected);
    assert_eq!(count(&p.events_a, |e| *e == SessionEvent::Lost), 0);
    assert_eq!(count(&p.events_b, |e| *e == SessionEvent::Lost), 0);
}

#[test]
fn silence_times_out_then_the_call_resumes_by_itself() {
    let mut p = Pair::new(false, true, 4, Impairment::default());
    p.run(ms(100));
    assert_eq!(p.a.state(), CallState::Connected);
    p.ab.imp.down = true;
    p.ba.imp.down = true;
    p.run(ms(2500));
    assert_eq!(p.a.state(), CallState::Connected, "not before the timeout");
    p.run(ms(1000));
    assert_eq!(p.a.state(), CallState::Lost);
    assert_eq!(p.b.state(), CallState::Lost);
    p.ab.imp.down = false;
    p.ba.imp.down = false;
    p.run(ms(1100));
    assert_eq!(p.a.state(), CallState::Connected);
    assert_eq!(p.b.state(), CallState::Connected);
    assert!(p.events_a.contains(&SessionEvent::Resumed));
}

#[test]
fn waiting_side_resumes_even_when_only_it_timed_out() {
    let mut p = Pair::new(false, true, 5, Impairment::default());
    p.run(ms(100));
    p.ba.imp.down = true; // A hears nothing from B; B still hears A
    p.run(ms(3500));
    assert_eq!(p.a.state(), CallState::Lost);
    p.ba.imp.down = false;
    p.run(ms(1100));
    assert_eq!(p.a.state(), CallState::Connected);
}

#[test]
fn bye_reaches_the_peer_through_loss() {
    for seed in 1..30 {
        let mut p = Pair::new(false, true, seed, lossy());
        p.run(ms(3000));
        let now = p.now;
        p.b.hang_up(now);
        p.flush();
        p.run(ms(500));
        assert_eq!(p.b.state(), CallState::Ended);
        // three copies at 20 % loss: A hears one, or times out and is never stuck in a call
        p.run(ms(3500));
        assert!(
            matches!(p.a.state(), CallState::PeerLeft | CallState::Lost),
            "seed {seed}: {:?}",
            p.a.state()
        );
    }
}

#[test]
fn bye_on_a_clean_link_means_peer_left_and_a_new_caller_is_accepted() {
    let mut p = Pair::new(false, true, 6, Impairment::default());
    p.run(ms(100));
    let now = p.now;
    p.b.hang_up(now);
    p.flush();
    p.run(ms(100));
    assert_eq!(p.a.state(), CallState::PeerLeft);
    assert!(p.events_a.contains(&SessionEvent::PeerLeft));
    // the same person calls again from a new process at the same address
    let now = p.now;
    p.b = Session::new(0xB2, Some(p.addr_a), SessionConfig::default(), now);
    p.run(ms(100));
    assert_eq!(p.a.state(), CallState::Connected);
    assert_eq!(p.b.state(), CallState::Connected);
}

#[test]
fn peer_restart_without_bye_starts_a_fresh_call() {
    let mut p = Pair::new(false, true, 7, Impairment::default());
    p.run(ms(100));
    let now = p.now;
    p.b = Session::new(0xB3, Some(p.addr_a), SessionConfig::default(), now);
    p.run(ms(100));
    assert_eq!(p.a.state(), CallState::Connected);
    assert_eq!(p.b.state(), CallState::Connected);
    assert_eq!(
        count(&p.events_a, |e| matches!(e, SessionEvent::Connected(_))),
        2
    );
}

#[test]
fn media_state_reaches_the_peer_and_stays_current_under_loss() {
    let mut p = Pair::new(false, true, 8, lossy());
    p.run(ms(2000));
    let now = p.now;
    p.b.set_local_media(
        MediaState {
            camera_on: false,
            muted: true,
        },
        now,
    );
    p.flush();
    p.run(ms(1500));
    assert_eq!(
        p.a.remote_media(),
        MediaState {
            camera_on: false,
            muted: true
        }
    );
    let now = p.now;
    p.b.set_local_media(MediaState::default(), now);
    p.flush();
    p.run(ms(1500));
    assert_eq!(p.a.remote_media(), MediaState::default());
}

#[test]
fn keyframe_requests_are_rate_limited_and_delivered() {
    let mut p = Pair::new(false, true, 9, Impairment::default());
    p.run(ms(100));
    let now = p.now;
    for _ in 0..10 {
        p.a.request_keyframe(1, now);
    }
    p.flush();
    p.run(ms(50));
    assert_eq!(
        count(&p.events_b, |e| *e == SessionEvent::KeyframeRequested),
        1
    );
}

#[test]
fn strangers_cannot_end_or_hijack_a_call() {
    let mut p = Pair::new(false, true, 10, Impairment::default());
    p.run(ms(100));
    let stranger: std::net::SocketAddr = "10.0.0.66:1".parse().expect("literal");
    let now = p.now;
    p.a.handle(stranger, &crate::proto::Message::Hello { from: 66 }, now);
    p.a.handle(stranger, &crate::proto::Message::Bye { from: 0xB }, now);
    p.a.handle(p.addr_b, &crate::proto::Message::Bye { from: 66 }, now);
    assert_eq!(p.a.state(), CallState::Connected);
    assert_eq!(p.a.peer_addr(), Some(p.addr_b));
}
