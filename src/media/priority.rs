//! Thread priorities: the heavy video threads (codecs, camera, window) yield to the call loop,
//! which keeps the speaker fed. Lowering a thread's priority needs no privilege, so every user
//! gets it. Where the system allows (root, or an `rtprio` limit as audio users often have),
//! the loop also runs in the real-time round-robin class: on a busy machine an ordinary thread
//! asking for a 1 ms sleep was woken 3–9 ms late about six times a second, and each wake-up
//! over 5 ms left the speaker without samples. The video threads then leave that class again
//! (`lower_current_thread`), so nothing heavy runs in it.

/// How much lower than the call loop the video threads run (a nice level; CFS gives a
/// thread at +5 about a third of the CPU share of one at 0 when both want it).
pub const VIDEO_NICE: i32 = 5;

/// Lowers the calling thread's priority by `nice` levels; returns whether it took effect.
pub fn lower_current_thread(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        leave_realtime();
        // SAFETY: a plain system call on the calling thread, no pointers involved.
        let target = current_nice().saturating_add(nice).min(19);
        unsafe { libc::setpriority(libc::PRIO_PROCESS, gettid(), target) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// Puts the calling thread in the real-time round-robin class at `prio` (1–99), where the
/// system allows it; returns whether it did. Threads it spawns afterwards inherit the class.
pub fn realtime_current_thread(prio: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param {
            sched_priority: prio,
        };
        // SAFETY: a plain system call on the calling thread (0), with a valid parameter.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = prio;
        false
    }
}

/// Watches how busy a real-time loop is: a loop that stays busy (a flood of datagrams, a
/// slow machine) would starve every ordinary thread on its core, the window and the codecs
/// included, so past [`RealtimeGuard::MAX_BUSY`] of a second it should leave the class.
#[derive(Debug, Clone)]
pub struct RealtimeGuard {
    since: Option<std::time::Instant>,
    busy: std::time::Duration,
}

impl RealtimeGuard {
    /// The share of a second the loop may be busy and stay real-time.
    pub const MAX_BUSY: f64 = 0.5;
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

    /// A guard whose first window starts at the first tick.
    pub fn new() -> Self {
        Self {
            since: None,
            busy: std::time::Duration::ZERO,
        }
    }

    /// Counts a tick that started at `start` and ran for `ran`; returns true once a whole
    /// window was busier than [`Self::MAX_BUSY`].
    pub fn overloaded(&mut self, start: std::time::Instant, ran: std::time::Duration) -> bool {
        let since = *self.since.get_or_insert(start);
        self.busy += ran;
        let span = (start + ran).saturating_duration_since(since);
        if span < Self::WINDOW {
            return false;
        }
        let share = self.busy.as_secs_f64() / span.as_secs_f64();
        self.since = Some(start + ran);
        self.busy = std::time::Duration::ZERO;
        share > Self::MAX_BUSY
    }
}

impl Default for RealtimeGuard {
    fn default() -> Self {
        Self::new()
    }
}

/// Puts the calling thread back in the ordinary time-sharing class (a loop found too busy, or
/// a thread spawned by a real-time one).
pub fn leave_realtime() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a plain system call on the calling thread (0), with a valid parameter.
        unsafe {
            if libc::sched_getscheduler(0) != libc::SCHED_OTHER {
                libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
            }
        }
    }
}

/// The calling thread's nice level (Linux; 0 elsewhere).
pub fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain system call on the calling thread, no pointers involved.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, gettid()) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// The calling thread's id: on Linux a nice level belongs to a thread, named by it.
#[cfg(target_os = "linux")]
fn gettid() -> libc::id_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_affects_only_the_calling_thread() {
        let before = current_nice();
        let lowered = std::thread::spawn(|| {
            let start = current_nice();
            assert!(lower_current_thread(VIDEO_NICE));
            current_nice() - start
        })
        .join()
        .expect("thread");
        assert_eq!(lowered, VIDEO_NICE.min(19 - before));
        assert_eq!(
            current_nice(),
            before,
            "the spawning thread keeps its priority"
        );
    }

    #[cfg(target_os = "linux")]
    fn policy() -> i32 {
        // SAFETY: a plain system call on the calling thread
        unsafe { libc::sched_getscheduler(0) }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_lowered_thread_leaves_the_real_time_class_it_inherited() {
        let (got, inherited, lowered) = std::thread::spawn(|| {
            let before = policy();
            let got = realtime_current_thread(1);
            assert_eq!(
                policy() == libc::SCHED_RR,
                got,
                "the class is real-time exactly when the call says so"
            );
            if !got {
                assert_eq!(policy(), before, "a refused request changes nothing");
            }
            std::thread::spawn(|| {
                let inherited = policy();
                assert!(lower_current_thread(VIDEO_NICE));
                (inherited, policy())
            })
            .join()
            .map(|(i, l)| (got, i, l))
            .expect("child")
        })
        .join()
        .expect("thread");
        if got {
            assert_eq!(inherited, libc::SCHED_RR, "a new thread inherits the class");
        }
        assert_eq!(lowered, libc::SCHED_OTHER);
        assert_eq!(
            policy(),
            libc::SCHED_OTHER,
            "the test thread itself is untouched"
        );
    }

    #[test]
    fn a_loop_busy_over_half_of_a_second_is_overloaded_and_a_light_one_is_not() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut g = RealtimeGuard::new();
        // a light loop: 0.1 ms of work every millisecond, for three seconds
        let light = (0..3000)
            .any(|i| g.overloaded(t0 + Duration::from_millis(i), Duration::from_micros(100)));
        assert!(!light);
        // a flood: 0.9 ms of every millisecond, caught within about a second
        let t1 = t0 + Duration::from_secs(3);
        let caught = (0..3000u64)
            .find(|&i| g.overloaded(t1 + Duration::from_millis(i), Duration::from_micros(900)));
        assert!(caught.is_some_and(|i| i <= 1000), "{caught:?}");
    }
}
