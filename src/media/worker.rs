//! A codec on its own thread, so that a slow picture never holds up the tick — and with it
//! the audio, which is refilled every tick.
//!
//! Jobs go in and results come out in order; at most `capacity` jobs are in flight (handed in
//! and not yet collected), which bounds the memory and the queueing delay. A worker whose
//! thread died (a codec panicked) refuses jobs; its owner makes a new one.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};

use super::wake::Wake;

/// One thread running `work` on every job.
pub struct Worker<J, R> {
    jobs: Option<Sender<J>>,
    results: Receiver<R>,
    thread: Option<JoinHandle<()>>,
    in_flight: usize,
    capacity: usize,
    dead: bool,
}

impl<J: Send + 'static, R: Send + 'static> Worker<J, R> {
    /// Starts a thread named `name` that turns each job into one result with `work`; it runs
    /// at a lower priority than the call loop ([`super::priority::VIDEO_NICE`]).
    pub fn spawn(
        name: &str,
        capacity: usize,
        work: impl FnMut(J) -> R + Send + 'static,
    ) -> std::io::Result<Self> {
        Self::spawn_waking(name, capacity, None, work)
    }

    /// Like [`Worker::spawn`], signalling `wake` after every finished job.
    pub fn spawn_waking(
        name: &str,
        capacity: usize,
        wake: Option<Wake>,
        mut work: impl FnMut(J) -> R + Send + 'static,
    ) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        let (job_tx, job_rx) = bounded::<J>(capacity);
        let (res_tx, res_rx) = bounded::<R>(capacity);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // codec work is what can wait a little: the call loop (and the speaker it
                // feeds) goes first when the cores are busy
                super::priority::lower_current_thread(super::priority::VIDEO_NICE);
                for job in job_rx {
                    if res_tx.send(work(job)).is_err() {
                        break;
                    }
                    if let Some(w) = &wake {
                        w.signal();
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(job_tx),
            results: res_rx,
            thread: Some(thread),
            in_flight: 0,
            capacity,
            dead: false,
        })
    }

    /// Hands a job over; gives it back when `capacity` jobs are already in flight or the
    /// thread is gone.
    pub fn submit(&mut self, job: J) -> Result<(), J> {
        if self.in_flight >= self.capacity || self.dead {
            return Err(job);
        }
        let Some(tx) = &self.jobs else {
            return Err(job);
        };
        match tx.try_send(job) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(e) => {
                if e.is_disconnected() {
                    self.dead = true;
                }
                Err(e.into_inner())
            }
        }
    }

    /// The next finished result, if there is one.
    pub fn try_next(&mut self) -> Option<R> {
        match self.results.try_recv() {
            Ok(r) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                Some(r)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.dead = true;
                None
            }
        }
    }

    /// Jobs handed in whose results were not collected yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The thread ended (its work panicked): no job will be done.
    pub fn is_dead(&self) -> bool {
        self.dead || self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl<J, R> Drop for Worker<J, R> {
    fn drop(&mut self) {
        // closing the job channel ends the thread's loop once its current job is done; its
        // result always fits, as the result channel holds as many as may be in flight
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_next<J: Send + 'static, R: Send + 'static>(w: &mut Worker<J, R>) -> Option<R> {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Some(r) = w.try_next() {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    #[test]
    fn results_come_back_in_order() {
        let mut w = Worker::spawn("test", 4, |x: u32| x * 2).expect("spawn");
        for i in 0..4 {
            assert!(w.submit(i).is_ok());
        }
        let got: Vec<u32> = (0..4).filter_map(|_| wait_next(&mut w)).collect();
        assert_eq!(got, vec![0, 2, 4, 6]);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn a_finished_job_wakes_the_loop() {
        let (wake, woken) = Wake::new().expect("eventfd");
        let mut w = Worker::spawn_waking("test", 2, Some(wake), |x: u32| x + 1).expect("spawn");
        assert!(!woken.take());
        assert!(w.submit(1).is_ok());
        assert!(woken.wait(Duration::from_secs(5)));
        assert_eq!(w.try_next(), Some(2));
    }

    #[test]
    fn refuses_more_than_capacity_in_flight() {
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let mut w = Worker::spawn("test", 2, move |x: u32| {
            let _ = gate_rx.recv();
            x
        })
        .expect("spawn");
        assert!(w.submit(1).is_ok());
        assert!(w.submit(2).is_ok());
        assert_eq!(w.submit(3), Err(3));
        gate_tx.send(()).expect("gate");
        assert_eq!(wait_next(&mut w), Some(1));
        assert!(w.submit(3).is_ok());
        gate_tx.send(()).expect("gate");
        gate_tx.send(()).expect("gate");
        assert_eq!(wait_next(&mut w), Some(2));
        assert_eq!(wait_next(&mut w), Some(3));
    }

    #[test]
    fn a_panicking_job_leaves_a_dead_worker_not_a_hang() {
        let mut w = Worker::spawn("test", 2, |x: u32| {
            assert!(x != 7, "boom");
            x
        })
        .expect("spawn");
        assert!(w.submit(7).is_ok());
        let end = Instant::now() + Duration::from_secs(5);
        while !w.is_dead() && Instant::now() < end {
            let _ = w.try_next();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(w.is_dead());
        assert_eq!(w.try_next(), None);
        assert_eq!(w.submit(1), Err(1));
    }
}
