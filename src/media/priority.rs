//! Thread priorities: the heavy video threads (codecs, camera) yield to the call loop, which
//! keeps the speaker fed. Lowering a thread's priority needs no privilege, unlike raising the
//! audio's, so every user gets it.

/// How much lower than the call loop the video threads run (a nice level; CFS gives a
/// thread at +5 about a third of the CPU share of one at 0 when both want it).
pub const VIDEO_NICE: i32 = 5;

/// Lowers the calling thread's priority by `nice` levels; returns whether it took effect.
pub fn lower_current_thread(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread, no pointers involved. On Linux a
        // nice level belongs to a thread, named by its thread id.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, now.saturating_add(nice).min(19)) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// The calling thread's nice level (Linux; 0 elsewhere).
pub fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as above.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
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
}
