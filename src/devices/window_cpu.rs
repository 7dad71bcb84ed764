//! Drawing into the window's own framebuffer (on X11 a shared-memory image): pictures are
//! converted and scaled by the CPU (`compose.rs`) and only the rectangles that changed are
//! sent to the screen. Where OpenGL is a software rasteriser this is the fast way: under
//! Xvfb with Mesa's llvmpipe a draw with a new picture of the peer and of the self-view took
//! 6.7 ms through SDL's renderer at 720p and 1.8 ms here, 2.4 and 0.7 ms at 480p
//! (`benches/window_draw.rs`).

use std::time::Instant;

use sdl2::pixels::PixelFormatEnum;

use super::compose::{Pixels, Scratch};
use super::text;
use super::window::{
    sdl, sdl_rect, text_boxes, PaneShow, Scene, WindowError, BACKGROUND, SHADE, SIDE,
};
use crate::layout;
use crate::media::stamp::Rect;
use crate::media::VideoFrame;

/// SDL hint that keeps the window surface off the GPU renderer (on X11, MIT-SHM instead).
pub const NO_ACCELERATION_HINT: &str = "SDL_FRAMEBUFFER_ACCELERATION";

/// What was last drawn, to tell what changed.
#[derive(Clone, PartialEq, Eq)]
struct Drawn {
    size: (u32, u32),
    scene: Scene,
    remote_size: Option<(u32, u32)>,
    local_size: Option<(u32, u32)>,
}

/// The framebuffer painter.
pub struct CpuPainter {
    window: sdl2::video::Window,
    events: sdl2::EventPump,
    remote: Option<std::sync::Arc<VideoFrame>>,
    local: Option<std::sync::Arc<VideoFrame>>,
    remote_new: bool,
    local_new: bool,
    placeholder: VideoFrame,
    scratch: Scratch,
    drawn: Option<Drawn>,
    texts: std::collections::HashMap<String, (u32, u32, Vec<u8>)>,
}

impl CpuPainter {
    /// Paints into `window`'s framebuffer, if it is 32-bit BGRx (else gives the window
    /// back with the reason, for the renderer to take it).
    pub fn new(
        window: sdl2::video::Window,
        events: sdl2::EventPump,
        placeholder: VideoFrame,
    ) -> Result<Self, (sdl2::video::Window, sdl2::EventPump, String)> {
        let format = match window.surface(&events) {
            Ok(s) => Ok((s.pixel_format_enum(), s.pitch())),
            Err(e) => Err(e),
        };
        match format {
            Ok((PixelFormatEnum::RGB888 | PixelFormatEnum::ARGB8888, pitch)) if pitch % 4 == 0 => {}
            Ok((f, pitch)) => {
                return Err((window, events, format!("framebuffer {f:?} pitch {pitch}")))
            }
            Err(e) => return Err((window, events, e)),
        }
        Ok(Self {
            window,
            events,
            remote: None,
            local: None,
            remote_new: false,
            local_new: false,
            placeholder,
            scratch: Scratch::default(),
            drawn: None,
            texts: std::collections::HashMap::new(),
        })
    }

    /// The window.
    pub fn window(&self) -> &sdl2::video::Window {
        &self.window
    }

    /// The window, to change.
    pub fn window_mut(&mut self) -> &mut sdl2::video::Window {
        &mut self.window
    }

    /// The event pump (the window surface is tied to it).
    pub fn events(&mut self) -> &mut sdl2::EventPump {
        &mut self.events
    }

    /// Drawing size in pixels.
    pub fn size(&self) -> (u32, u32) {
        self.window.size()
    }

    /// Draws everything again at the next draw (the window was exposed or resized).
    pub fn invalidate(&mut self) {
        self.drawn = None;
    }

    /// Keeps a new remote picture for the next draw.
    pub fn set_remote(&mut self, f: std::sync::Arc<VideoFrame>) {
        self.remote = Some(f);
        self.remote_new = true;
    }

    /// Keeps a new self-view picture for the next draw.
    pub fn set_local(&mut self, f: std::sync::Arc<VideoFrame>) {
        self.local = Some(f);
        self.local_new = true;
    }

    /// Draws what changed since the last draw and sends those rectangles to the screen: a
    /// new picture of the peer first, then the self-view, so the peer is seen without waiting
    /// for the self-view's shrink. Returns when the peer's new picture (else everything drawn)
    /// reached the screen, or `None` if nothing was sent.
    pub fn draw(&mut self, scene: &Scene) -> Result<Option<Instant>, WindowError> {
        let mut surface = self.window.surface(&self.events).map_err(sdl)?;
        let pitch = surface.pitch() as usize;
        let (w, h) = (surface.width(), surface.height());
        let remote_pic = match scene.remote {
            PaneShow::Video => self.remote.as_deref(),
            PaneShow::Placeholder => Some(&self.placeholder),
            PaneShow::Blank => None,
        };
        let local_pic = match scene.local {
            PaneShow::Video => self.local.as_deref(),
            PaneShow::Placeholder => Some(&self.placeholder),
            PaneShow::Blank => None,
        };
        let now = Drawn {
            size: (w, h),
            scene: scene.clone(),
            remote_size: remote_pic.map(|f| (f.width, f.height)),
            local_size: local_pic.map(|f| (f.width, f.height)),
        };
        let full = self.drawn.as_ref() != Some(&now);
        let remote_new = std::mem::take(&mut self.remote_new) && scene.remote == PaneShow::Video;
        let local_new = std::mem::take(&mut self.local_new) && scene.local == PaneShow::Video;
        if !full && !remote_new && !local_new {
            return Ok(None);
        }
        let remote_rect = remote_pic.map(|f| layout::remote_picture(w, h, f.width, f.height));
        let local_rect = match local_pic {
            Some(f) => layout::local_picture(w, h, f.width, f.height),
            None => layout::local_picture(w, h, 4, 3),
        };
        let boxes = text_boxes(w, h, &scene.overlay, local_rect);
        for b in &boxes {
            let key = b.key();
            if !self.texts.contains_key(&key) && self.texts.len() > 64 {
                self.texts.clear();
            }
            self.texts
                .entry(key)
                .or_insert_with(|| text::render(&b.text, b.scale));
        }
        // what to repaint, in turns sent one after the other: everything, or the peer's new
        // picture and then the self-view, each with the text over it
        let mut turns: Vec<Turn> = Vec::new();
        if full {
            turns.push(Turn {
                rect: Rect::full(w, h),
                remote: remote_rect.is_some(),
                local: local_pic.is_some(),
                full: true,
            });
        } else {
            if let (true, Some(r)) = (remote_new, remote_rect) {
                turns.push(Turn {
                    rect: r,
                    remote: true,
                    local: false,
                    full: false,
                });
            }
            if local_new {
                turns.push(Turn {
                    rect: local_rect,
                    remote: false,
                    local: true,
                    full: false,
                });
            }
        }
        let mirror = scene.mirror && scene.local == PaneShow::Video;
        let mut peer_at = None;
        for turn in &turns {
            let texts = &self.texts;
            let scratch = &mut self.scratch;
            let drawn: Result<(), WindowError> = surface.with_lock_mut(|data| {
                let mut px = Pixels::new(data, w, h, pitch)?;
                if turn.full {
                    px.fill(Rect::full(w, h), BACKGROUND);
                    px.fill(layout::panes(w, h).local, SIDE);
                }
                if let (true, Some(f), Some(r)) = (turn.remote, remote_pic, remote_rect) {
                    px.picture(f, r, false, scratch)?;
                }
                if let (true, Some(f)) = (turn.local, local_pic) {
                    px.picture(f, local_rect, mirror, scratch)?;
                }
                for b in &boxes {
                    let Some((tw, th, mask)) = texts.get(&b.key()) else {
                        continue;
                    };
                    if let Some(r) = b.shade.intersect(turn.rect) {
                        px.shade(r, SHADE);
                        px.ink(mask, *tw, *th, b.ink.x, b.ink.y, r);
                    }
                }
                Ok(())
            });
            drawn?;
            if let Some(r) = turn.rect.intersect(Rect::full(w, h)) {
                surface.update_window_rects(&[sdl_rect(r)]).map_err(sdl)?;
            }
            if turn.remote && remote_new {
                peer_at = Some(Instant::now());
            }
        }
        self.drawn = Some(now);
        Ok(Some(peer_at.unwrap_or_else(Instant::now)))
    }
}

/// One rectangle of the window repainted and sent to the screen.
struct Turn {
    rect: Rect,
    /// Whether the peer's picture is painted in it.
    remote: bool,
    /// Whether the self-view is painted in it.
    local: bool,
    /// Whether the background is painted first (the whole window).
    full: bool,
}
