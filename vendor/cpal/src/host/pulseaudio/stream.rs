use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex, TryLockError,
    },
    time::{Duration, Instant},
};

#[cfg(not(target_has_atomic = "64"))]
use portable_atomic::AtomicU64;
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::AtomicU64;

use futures::executor::block_on;
use futures::FutureExt as _;
use pulseaudio::{protocol, AsPlaybackSource};

use crate::{
    host::{emit_error, latch::Latch, ErrorCallbackArc},
    traits::StreamTrait,
    Data, Error, ErrorKind, FrameCount, InputCallbackInfo, InputStreamTimestamp,
    OutputCallbackInfo, OutputStreamTimestamp, SampleFormat, StreamInstant,
};

const LATENCY_MAX_INTERVAL: Duration = Duration::from_millis(100);

// Prattle patch: how often the latency thread asks the server for the stream's timing. It
// used to ask after every callback: a round trip to the server (and four thread wakeups)
// every 2.5-5 ms per stream. Between polls a playback callback counts the bytes it wrote and
// interpolates from the last answer; a record callback dates its bytes by when they arrive
// (see `CaptureClock`) and takes only the source's own latency from the server.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long a record stream's earliest arrival is remembered (Prattle patch): between one
/// and two of these, so that a device clock a little slower than ours does not make the
/// bytes look ever older.
const CAPTURE_WINDOW_USEC: u64 = 1_000_000;

/// Dates a record stream's bytes by when they arrive (Prattle patch). A byte cannot arrive
/// before it is captured, and the earliest arrival of a recent byte, measured against the
/// stream position, marks the source delivering with no delay; a chunk that arrives later
/// than that waited somewhere (in the server's queue, behind a busy machine) for that much.
/// Unlike an interpolation from the server's offsets, this does not depend on when the
/// server was last asked, nor on the source reporting its latency.
#[derive(Clone, Copy, Debug, Default)]
struct CaptureClock {
    /// The earliest (arrival - position) in the current window, µs; and when it began.
    current: Option<(i64, u64)>,
    /// The earliest in the window before.
    previous: Option<i64>,
}

impl CaptureClock {
    /// A chunk ending at stream position `end_usec` arrived at `now_usec`: how much later
    /// than the earliest recent arrival, µs.
    fn lateness_usec(&mut self, end_usec: u64, now_usec: u64) -> u64 {
        let v = now_usec as i64 - end_usec as i64;
        self.current = match self.current {
            Some((m, began)) if now_usec.saturating_sub(began) < CAPTURE_WINDOW_USEC => {
                Some((m.min(v), began))
            }
            Some((m, _)) => {
                self.previous = Some(m);
                Some((v, now_usec))
            }
            None => Some((v, now_usec)),
        };
        let earliest = self
            .current
            .map_or(v, |(m, _)| m)
            .min(self.previous.unwrap_or(i64::MAX));
        (v - earliest).max(0) as u64
    }
}

/// A playback stream's last timing answer from the server (Prattle patch).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct PlaybackTiming {
    /// Microseconds since stream creation when the answer came.
    poll_usec: u64,
    /// The sink's own latency.
    sink_usec: u64,
    write_offset: i64,
    read_offset: i64,
}

impl PlaybackTiming {
    /// Microseconds until the first byte a callback writes at `now_usec` (since stream
    /// creation) is heard, `written` bytes having been written before it. The server's
    /// write offset counts what it had of those when it answered; what was written since
    /// adds to the queue, and the sink drains it in real time.
    fn latency_usec(&self, bytes_per_sec: u64, written: u64, now_usec: u64) -> u64 {
        let since = now_usec
            .saturating_sub(self.poll_usec)
            .min(LATENCY_MAX_INTERVAL.as_micros() as u64);
        let written = i64::try_from(written).unwrap_or(i64::MAX);
        // A count that strays from the server's by more than a second (a stream the
        // server moved or flushed) is not believed.
        let ahead = written.saturating_sub(self.write_offset);
        let queued = if (0..=bytes_per_sec as i64).contains(&ahead) {
            written.saturating_sub(self.read_offset)
        } else {
            self.write_offset.saturating_sub(self.read_offset)
        };
        let queued_usec = bytes_to_usec(bytes_per_sec, queued.max(0) as u64);
        (self.sink_usec + queued_usec).saturating_sub(since)
    }
}

/// Bytes a second of `spec`'s sound takes (Prattle patch).
fn bytes_per_sec(spec: protocol::SampleSpec) -> u64 {
    u64::from(spec.sample_rate) * u64::from(spec.channels) * spec.format.bytes_per_sample() as u64
}

/// Microseconds `bytes` of sound last at `bytes_per_sec` (Prattle patch; unlike
/// `SampleSpec::bytes_to_duration`, right for a stream's whole count, past 2^32 frames).
fn bytes_to_usec(bytes_per_sec: u64, bytes: u64) -> u64 {
    match bytes_per_sec {
        0 => 0,
        b => (u128::from(bytes) * 1_000_000 / u128::from(b)) as u64,
    }
}

// Coordinates the latency polling thread
struct LatencyHandle {
    // Cancellation on drop
    cancel: Arc<AtomicBool>,
    // Event-driven early wakeup from play/pause
    update: Arc<(Mutex<bool>, Condvar)>,
    // A record stream was resumed: its arrivals start afresh (Prattle patch)
    resumed: Arc<AtomicBool>,
}

impl LatencyHandle {
    fn new() -> Self {
        Self {
            cancel: Arc::new(AtomicBool::new(false)),
            update: Arc::new((Mutex::new(false), Condvar::new())),
            resumed: Arc::new(AtomicBool::new(false)),
        }
    }

    // Trigger an early poll
    fn notify(&self) {
        let (lock, cvar) = &*self.update;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_one();
    }

    // Signal cancellation and wake the thread immediately
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.notify();
    }
}

enum StreamInner {
    Playback(pulseaudio::PlaybackStream, Instant, LatencyHandle),
    Record(pulseaudio::RecordStream, Instant, LatencyHandle),
}

pub struct Stream {
    inner: StreamInner,
    workers: Vec<std::thread::JoinHandle<()>>,
    latch: Latch,
}

impl Drop for Stream {
    fn drop(&mut self) {
        match &mut self.inner {
            StreamInner::Playback(stream, _, handle) => {
                handle.cancel();
                // Help the play_all driver thread terminate by
                // queueing a delete, which causes the reactor to drop
                // the source's eof_tx. We need to do this because
                // poll_read always reports a non-empty buffer.
                let _ = stream.clone().delete().now_or_never();
            }
            StreamInner::Record(_, _, handle) => {
                handle.cancel();
            }
        }

        // Unpark the threads in case they're sleeping.
        self.signal_ready();

        for handle in self.workers.drain(..) {
            // Prevent self-join: a worker thread may surface an error
            // through the user's error_callback, and that callback may
            // drop the Stream — in which case we'd be joining ourselves.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl StreamTrait for Stream {
    fn play(&self) -> Result<(), Error> {
        match &self.inner {
            StreamInner::Playback(stream, _, handle) => {
                block_on(stream.uncork()).map_err(Error::from)?;
                handle.notify();
            }
            StreamInner::Record(stream, _, handle) => {
                block_on(stream.uncork()).map_err(Error::from)?;
                block_on(stream.started()).map_err(Error::from)?;
                handle.resumed.store(true, Ordering::Relaxed);
                handle.notify();
            }
        }
        Ok(())
    }

    fn pause(&self) -> Result<(), Error> {
        let res = match &self.inner {
            StreamInner::Playback(stream, _, _) => block_on(stream.cork()),
            StreamInner::Record(stream, _, _) => block_on(stream.cork()),
        };
        res.map_err(Error::from)?;
        match &self.inner {
            StreamInner::Playback(_, _, handle) | StreamInner::Record(_, _, handle) => {
                handle.notify()
            }
        }
        Ok(())
    }

    fn now(&self) -> StreamInstant {
        let start = match &self.inner {
            StreamInner::Playback(_, start, _) | StreamInner::Record(_, start, _) => *start,
        };
        let elapsed = start.elapsed();
        StreamInstant::new(elapsed.as_secs(), elapsed.subsec_nanos())
    }

    fn buffer_size(&self) -> Result<FrameCount, Error> {
        let (spec, bytes) = match &self.inner {
            StreamInner::Playback(s, _, _) => (
                s.sample_spec(),
                s.buffer_attr().minimum_request_length as usize,
            ),
            StreamInner::Record(s, _, _) => {
                (s.sample_spec(), s.buffer_attr().fragment_size as usize)
            }
        };
        let frame_size = spec.channels as usize * spec.format.bytes_per_sample();
        Ok((bytes / frame_size) as _)
    }
}

impl Stream {
    pub fn new_playback<D, E>(
        client: pulseaudio::Client,
        params: protocol::PlaybackStreamParams,
        mut data_callback: D,
        error_callback: E,
    ) -> Result<Self, Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        let start = Instant::now();

        let timing = Arc::new(Mutex::new(PlaybackTiming::default()));
        // Bytes the callback has written.
        let written = Arc::new(AtomicU64::new(0));
        let timing_clone = timing.clone();
        let written_clone = written.clone();
        let sample_spec = params.sample_spec;
        let bytes_per_sec = bytes_per_sec(sample_spec);
        let pa_format = sample_spec.format;

        let format: SampleFormat = pa_format.try_into().map_err(|_| {
            Error::with_message(
                ErrorKind::UnsupportedConfig,
                "Sample format is not supported",
            )
        })?;

        // Silence for unsigned formats is the midpoint, not zero. Among
        // PulseAudio's supported formats, only U8 is unsigned and has a
        // single-byte repeatable silence representation (0x80). Multi-byte
        // unsigned formats (U16, U32, ...) are not currently supported.
        let silence_byte = if format == SampleFormat::U8 {
            0x80u8
        } else {
            0u8
        };

        let handle = LatencyHandle::new();
        // The last answer the callback saw: it never waits for the latency thread's lock.
        let mut seen = PlaybackTiming::default();

        // Wrap the write callback to match the pulseaudio signature.
        let callback = move |buf: &mut [u8]| {
            let elapsed = Instant::now().saturating_duration_since(start);
            let elapsed_usec = elapsed.as_micros() as u64;

            // Interpolate from the last poll (see `PlaybackTiming::latency_usec`).
            match timing_clone.try_lock() {
                Ok(t) => seen = *t,
                Err(TryLockError::Poisoned(e)) => seen = *e.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
            let so_far = written_clone.load(Ordering::Relaxed);
            let latency = seen.latency_usec(bytes_per_sec, so_far, elapsed_usec);

            let playback_time = elapsed + Duration::from_micros(latency);

            let timestamp = OutputStreamTimestamp {
                callback: StreamInstant::new(elapsed.as_secs(), elapsed.subsec_nanos()),
                playback: StreamInstant::new(playback_time.as_secs(), playback_time.subsec_nanos()),
            };

            // Preemptively fill the buffer with silence in case the user
            // callback doesn't fill it completely (cpal's API doesn't allow
            // short writes).
            buf.fill(silence_byte);

            let bps = sample_spec.format.bytes_per_sample();
            let n_samples = buf.len() / bps;

            // SAFETY: we calculated the number of samples based on
            // `sample_spec.format`, and `format` is directly derived from (and
            // equivalent to) `sample_spec.format`.
            let mut data = unsafe { Data::from_parts(buf.as_mut_ptr().cast(), n_samples, format) };

            data_callback(&mut data, &OutputCallbackInfo { timestamp });
            written_clone.fetch_add(buf.len() as u64, Ordering::Relaxed);

            // We always consider the full buffer filled, because cpal's
            // user-facing API doesn't allow short writes.
            buf.len()
        };

        let stream = block_on(client.create_playback_stream(params, callback.as_playback_source()))
            .map_err(Error::from)?;

        // Share the error callback between the worker and latency threads so
        // both can surface errors to the user.
        let error_callback: ErrorCallbackArc = Arc::new(Mutex::new(error_callback));

        // Spawn a thread to drive the stream future. It will exit automatically
        // when the stream is stopped by the user.
        let stream_clone = stream.clone();
        let error_callback_clone = error_callback.clone();
        let cancel_driver = handle.cancel.clone();

        // The latch is released just before the `Stream` is returned so the driver and latency
        // threads cannot fire any callbacks before the caller has the handle.
        let mut latch = Latch::new();
        let waiter_driver = latch.waiter();

        let driver_handle = std::thread::spawn(move || {
            waiter_driver.wait();
            if let Err(e) = block_on(stream_clone.play_all()) {
                // A server playback error is expected when the client
                // closes their stream. No need to report it back to
                // the client.
                if !cancel_driver.load(Ordering::Relaxed) {
                    emit_error(&error_callback_clone, Error::from(e));
                }
            }
        });

        let cancel_thread = handle.cancel.clone();
        let update_thread = handle.update.clone();
        let stream_clone = stream.clone();

        let waiter_latency = latch.waiter();
        let latency_handle = std::thread::spawn(move || {
            waiter_latency.wait();
            loop {
                if cancel_thread.load(Ordering::Relaxed) {
                    break;
                }

                let timing_info = match block_on(stream_clone.timing_info()) {
                    Ok(timing_info) => timing_info,
                    Err(e) => {
                        emit_error(&error_callback, Error::from(e));
                        break;
                    }
                };

                *timing.lock().unwrap_or_else(|e| e.into_inner()) = PlaybackTiming {
                    poll_usec: Instant::now().saturating_duration_since(start).as_micros() as u64,
                    sink_usec: timing_info.sink_usec,
                    write_offset: timing_info.write_offset,
                    read_offset: timing_info.read_offset,
                };

                // Wait until woken by a play/pause/drop event or until POLL_INTERVAL.
                let (lock, cvar) = &*update_thread;
                let Ok(guard) = lock.lock() else { break };
                let (mut guard, _) = cvar
                    .wait_timeout_while(guard, POLL_INTERVAL, |notified| !*notified)
                    .unwrap_or_else(|e| e.into_inner());
                *guard = false;
            }
        });

        latch.add_thread(driver_handle.thread().clone());
        latch.add_thread(latency_handle.thread().clone());
        Ok(Self {
            inner: StreamInner::Playback(stream, start, handle),
            workers: vec![driver_handle, latency_handle],
            latch,
        })
    }

    pub fn new_record<D, E>(
        client: pulseaudio::Client,
        params: protocol::RecordStreamParams,
        mut data_callback: D,
        mut error_callback: E,
    ) -> Result<Self, Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        let start = Instant::now();

        // The source's own latency, µs, as the server last reported it.
        let source_latency = Arc::new(AtomicU64::new(0));
        let source_latency_clone = source_latency.clone();
        let sample_spec = params.sample_spec;
        let bytes_per_sec = bytes_per_sec(sample_spec);
        let pa_format = sample_spec.format;

        let format: SampleFormat = pa_format.try_into().map_err(|_| {
            Error::with_message(
                ErrorKind::UnsupportedConfig,
                "Sample format is not supported",
            )
        })?;

        let handle = LatencyHandle::new();
        let resumed = handle.resumed.clone();
        let mut clock = CaptureClock::default();
        let mut read: u64 = 0;

        let callback = move |buf: &[u8]| {
            let elapsed = Instant::now().saturating_duration_since(start);
            let elapsed_usec = elapsed.as_micros() as u64;

            // The first byte's age: the source's latency, plus the chunk's length, plus how
            // much later than the earliest recent arrival the chunk came.
            if resumed.swap(false, Ordering::Relaxed) {
                clock = CaptureClock::default();
            }
            read = read.saturating_add(buf.len() as u64);
            let late = clock.lateness_usec(bytes_to_usec(bytes_per_sec, read), elapsed_usec);
            let latency = source_latency_clone
                .load(Ordering::Relaxed)
                .saturating_add(bytes_to_usec(bytes_per_sec, buf.len() as u64))
                .saturating_add(late);

            let capture_time = elapsed
                .checked_sub(Duration::from_micros(latency))
                .unwrap_or_default();

            let timestamp = InputStreamTimestamp {
                callback: StreamInstant::new(elapsed.as_secs(), elapsed.subsec_nanos()),
                capture: StreamInstant::new(capture_time.as_secs(), capture_time.subsec_nanos()),
            };

            let bps = sample_spec.format.bytes_per_sample();
            let n_samples = buf.len() / bps;

            // SAFETY: we calculated the number of samples based on
            // `sample_spec.format`, and `format` is directly derived from (and
            // equivalent to) `sample_spec.format`. The pointer is cast from
            // *const to *mut, but cpal's Data type for input streams only
            // exposes shared references (&[T]), so no mutation occurs.
            let data = unsafe { Data::from_parts(buf.as_ptr() as *mut _, n_samples, format) };

            data_callback(&data, &InputCallbackInfo { timestamp });
        };

        let stream =
            block_on(client.create_record_stream(params, callback)).map_err(Error::from)?;

        // Spawn a thread to monitor the stream's latency in a loop.
        let cancel_thread = handle.cancel.clone();
        let update_thread = handle.update.clone();
        let stream_clone = stream.clone();

        // The latch is released just before the `Stream` is returned so the latency thread cannot
        // fire any callbacks before the caller has the handle.
        let mut latch = Latch::new();
        let waiter_latency = latch.waiter();

        let latency_handle = std::thread::spawn(move || {
            waiter_latency.wait();
            loop {
                if cancel_thread.load(Ordering::Relaxed) {
                    break;
                }

                let timing_info = match block_on(stream_clone.timing_info()) {
                    Ok(timing_info) => timing_info,
                    Err(e) => {
                        error_callback(Error::from(e));
                        break;
                    }
                };

                source_latency.store(timing_info.source_usec, Ordering::Relaxed);

                // Wait until woken by a play/pause/drop event or until POLL_INTERVAL.
                let (lock, cvar) = &*update_thread;
                let Ok(guard) = lock.lock() else { break };
                let (mut guard, _) = cvar
                    .wait_timeout_while(guard, POLL_INTERVAL, |notified| !*notified)
                    .unwrap_or_else(|e| e.into_inner());
                *guard = false;
            }
        });

        latch.add_thread(latency_handle.thread().clone());
        Ok(Self {
            inner: StreamInner::Record(stream, start, handle),
            workers: vec![latency_handle],
            latch,
        })
    }

    /// Releases the latch so the worker thread can begin processing audio callbacks.
    pub(crate) fn signal_ready(&self) {
        self.latch.release();
    }
}
