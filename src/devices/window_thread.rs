//! The window on a thread of its own. The tick hands pictures and a scene over and never
//! waits for a draw: a present costs 3–8 ms under Xvfb here, and the same tick feeds the
//! speaker and sends the microphone (with the draw on the tick, 480p windows took the
//! mic→speaker p50 from 50 to 74 ms and the speaker underran 6 times a second).
//!
//! SDL is initialised, drawn and polled on this one thread, as SDL wants on X11 and Wayland.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy_ecs::prelude::Resource;
use crossbeam_channel::{Receiver, Sender};

pub use super::window::Scene;
use super::window::{KeyCommand, PaneShow, Renderer, Window, WindowError};
use crate::media::frame::{trace_stage, unix_micros};
use crate::media::VideoFrame;

/// How long the window thread sleeps without a picture before it polls keys again.
const POLL: Duration = Duration::from_millis(10);
/// Shown pictures waiting for the tick to collect them, at most.
const SHOWN_QUEUE: usize = 16;

/// A remote picture that reached the screen.
#[derive(Debug)]
pub struct Shown {
    /// The picture, handed back for the numbers (stamp, PSNR).
    pub frame: Arc<VideoFrame>,
    /// When it reached the screen (its rectangle's present returned).
    pub at: Instant,
    /// Capture → on the screen, microseconds.
    pub latency_us: u64,
}

/// Handed over by the tick, taken by the window thread: newer replaces older.
#[derive(Default)]
struct Pending {
    title: Option<String>,
    remote: Option<Arc<VideoFrame>>,
    local: Option<Arc<VideoFrame>>,
    scene: Option<Scene>,
}

/// The window, drawn and polled on its own thread.
#[derive(Resource)]
pub struct WindowThread {
    pending: Arc<Mutex<Pending>>,
    wake: Sender<()>,
    commands: Receiver<KeyCommand>,
    shown: Receiver<Shown>,
    /// Remote pictures replaced by a newer one before the thread got to them.
    replaced: Arc<AtomicU64>,
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WindowThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowThread").finish_non_exhaustive()
    }
}

impl WindowThread {
    /// Opens the window (see [`Window::open`]) on a new thread; its errors come back here.
    pub fn open(
        title: &str,
        size: Option<(u32, u32)>,
        video: (u32, u32),
        renderer: Renderer,
    ) -> Result<Self, WindowError> {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (wake, woken) = crossbeam_channel::bounded(1);
        let (command_tx, commands) = crossbeam_channel::bounded(64);
        let (shown_tx, shown) = crossbeam_channel::bounded(SHOWN_QUEUE);
        let (opened_tx, opened) = crossbeam_channel::bounded(1);
        let quit = Arc::new(AtomicBool::new(false));
        let replaced = Arc::new(AtomicU64::new(0));
        let title = title.to_string();
        let job = Job {
            pending: Arc::clone(&pending),
            woken,
            commands: command_tx,
            shown: shown_tx,
            replaced: Arc::clone(&replaced),
            quit: Arc::clone(&quit),
        };
        let thread = std::thread::Builder::new()
            .name("window".into())
            .spawn(move || match Window::open(&title, size, video, renderer) {
                Ok(w) => {
                    let _ = opened_tx.send(Ok(()));
                    // pictures yield to the call loop, as the codecs do
                    crate::media::priority::lower_current_thread(
                        crate::media::priority::VIDEO_NICE,
                    );
                    job.run(w);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(|e| WindowError::Sdl(format!("window thread: {e}")))?;
        match opened.recv() {
            Ok(Ok(())) => Ok(Self {
                pending,
                wake,
                commands,
                shown,
                replaced,
                quit,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(WindowError::Sdl(
                "the window thread ended while opening".into(),
            )),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the title.
    pub fn set_title(&self, title: &str) {
        self.pending().title = Some(title.to_string());
    }

    /// A new self-view picture. The window thread takes it at once (it shrinks it): the peer's
    /// next picture, which is drawn with it, does not wait for that.
    pub fn put_local(&self, frame: Arc<VideoFrame>) {
        self.pending().local = Some(frame);
        let _ = self.wake.try_send(());
    }

    /// A new picture of the peer, uploaded by the next draw.
    pub fn put_remote(&self, frame: Arc<VideoFrame>) {
        if self.pending().remote.replace(frame).is_some() {
            self.replaced.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks for a draw of `scene` with the pictures handed over so far.
    pub fn draw(&self, scene: Scene) {
        self.pending().scene = Some(scene);
        let _ = self.wake.try_send(());
    }

    /// Key presses and window events since the last call.
    pub fn commands(&self) -> Vec<KeyCommand> {
        let mut out: Vec<KeyCommand> = self.commands.try_iter().collect();
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            // the window is gone: as if it were closed
            out.push(KeyCommand::Quit);
        }
        out
    }

    /// Remote pictures presented since the last call.
    pub fn shown(&self) -> Vec<Shown> {
        self.shown.try_iter().collect()
    }

    /// Remote pictures replaced by a newer one before they were drawn, since the last call.
    pub fn take_replaced(&self) -> u64 {
        self.replaced.swap(0, Ordering::Relaxed)
    }
}

impl Drop for WindowThread {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        let _ = self.wake.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The window thread's side.
struct Job {
    pending: Arc<Mutex<Pending>>,
    woken: Receiver<()>,
    commands: Sender<KeyCommand>,
    shown: Sender<Shown>,
    replaced: Arc<AtomicU64>,
    quit: Arc<AtomicBool>,
}

impl Job {
    fn run(self, mut w: Window) {
        // the remote picture uploaded and not yet drawn
        let mut undrawn: Option<Arc<VideoFrame>> = None;
        loop {
            let _ = self.woken.recv_timeout(POLL);
            if self.quit.load(Ordering::Relaxed) {
                return;
            }
            for cmd in w.poll_commands() {
                let _ = self.commands.try_send(cmd);
            }
            let p =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
            if let Some(t) = &p.title {
                w.set_title(t);
            }
            let t0 = Instant::now();
            if let Some(f) = p.remote {
                trace_stage("upload", f.capture_us);
                if let Err(e) = w.upload_remote(Arc::clone(&f)) {
                    tracing::warn!("{e}");
                }
                if undrawn.replace(f).is_some() {
                    self.replaced.fetch_add(1, Ordering::Relaxed);
                }
            }
            let local_new = p.local.is_some();
            if let Some(f) = p.local {
                if let Err(e) = w.upload_local(f) {
                    tracing::warn!("{e}");
                }
            }
            let Some(scene) = p.scene else {
                // pictures wait in their textures for the next draw
                continue;
            };
            let t1 = Instant::now();
            let sent = match w.draw(&scene) {
                Ok(sent) => sent,
                Err(e) => {
                    tracing::warn!("{e}");
                    None
                }
            };
            let Some(at) = sent else {
                // nothing new reached the screen
                undrawn = None;
                continue;
            };
            tracing::trace!(
                target: "render_timing",
                "upload {} draw {} remote {} local {}",
                (t1 - t0).as_micros(),
                (at - t1).as_micros(),
                undrawn.is_some(),
                local_new
            );
            if let (Some(frame), PaneShow::Video) = (undrawn.take(), scene.remote) {
                // the peer's picture may have reached the screen before the self-view did
                let since_us = at.elapsed().as_micros() as u64;
                let latency_us = unix_micros()
                    .saturating_sub(since_us)
                    .saturating_sub(frame.capture_us);
                let _ = self.shown.try_send(Shown {
                    frame,
                    at,
                    latency_us,
                });
            }
        }
    }
}
