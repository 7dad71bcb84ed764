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
}
