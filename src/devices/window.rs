//! The window and the keyboard (SDL2): both video streams, overlays, and key commands.

use std::collections::HashMap;

use sdl2::event::{Event, WindowEvent};
use sdl2::keyboard::Keycode;
use sdl2::pixels::{Color, PixelFormatEnum};
use sdl2::rect::Rect as SdlRect;
use sdl2::render::{BlendMode, Canvas, Texture, TextureCreator};
use sdl2::video::WindowContext;

use super::text;
use crate::layout;
use crate::media::scale::shrink_bgr_by;
use crate::media::stamp::Rect;
use crate::media::{PixelFormat, VideoFrame};

/// The camera-off placeholder, from `assets/`.
pub const PLACEHOLDER_PNG: &[u8] = include_bytes!("../../assets/camera-off.png");

/// Why the window failed.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// SDL could not start or draw.
    #[error("window: {0}; run with --headless where there is no display")]
    Sdl(String),
    /// The placeholder picture is unreadable.
    #[error("placeholder picture: {0}")]
    Asset(#[from] image::ImageError),
}

/// What a key (or the window) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCommand {
    /// End the call and exit.
    Quit,
    /// Camera on/off.
    ToggleCamera,
    /// Microphone mute on/off.
    ToggleMute,
}

/// What to show in a pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaneShow {
    /// The last uploaded picture.
    Video,
    /// The camera-off placeholder.
    Placeholder,
    /// Nothing (dark background).
    Blank,
}

/// Texts drawn over the video.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    /// The call status across the remote pane (waiting, connecting, peer left…).
    pub banner: Option<String>,
    /// A small label in the remote pane (muted, camera off).
    pub remote_label: Option<String>,
    /// A small label in the self-view (muted, camera off).
    pub local_label: Option<String>,
    /// A line at the bottom of the remote pane (the words to compare aloud).
    pub footer: Option<String>,
}

struct VideoTexture {
    texture: Texture,
    width: u32,
    height: u32,
}

/// The call window.
pub struct Window {
    _sdl: sdl2::Sdl,
    canvas: Canvas<sdl2::video::Window>,
    creator: TextureCreator<WindowContext>,
    events: sdl2::EventPump,
    remote: Option<VideoTexture>,
    local: Option<VideoTexture>,
    placeholder: VideoTexture,
    texts: HashMap<String, VideoTexture>,
}

fn sdl(e: impl std::fmt::Display) -> WindowError {
    WindowError::Sdl(e.to_string())
}

fn sdl_rect(r: Rect) -> SdlRect {
    SdlRect::new(r.x, r.y, r.w.max(1), r.h.max(1))
}

impl Window {
    /// Opens a resizable window of `size`, or by default one that shows pictures of
    /// `video` unscaled and fits the screen (see [`layout::window_for`]).
    pub fn open(
        title: &str,
        size: Option<(u32, u32)>,
        video: (u32, u32),
    ) -> Result<Self, WindowError> {
        let sdl_ctx = sdl2::init().map_err(sdl)?;
        let video_sys = sdl_ctx.video().map_err(sdl)?;
        let (w, h) = size.unwrap_or_else(|| {
            let screen = video_sys
                .display_usable_bounds(0)
                .ok()
                .map(|r| (r.width(), r.height()));
            layout::window_for(video.0, video.1, screen)
        });
        let video = video_sys;
        let window = video
            .window(title, w, h)
            .position_centered()
            .resizable()
            .build()
            .map_err(sdl)?;
        // no vsync: a frame is shown the moment it is decoded
        let canvas = window.into_canvas().build().map_err(sdl)?;
        let creator = canvas.texture_creator();
        let events = sdl_ctx.event_pump().map_err(sdl)?;
        let img = image::load_from_memory(PLACEHOLDER_PNG)?.to_rgba8();
        let (pw, ph) = img.dimensions();
        let mut texture = creator
            .create_texture_static(PixelFormatEnum::RGBA32, pw, ph)
            .map_err(sdl)?;
        texture
            .update(None, img.as_raw(), pw as usize * 4)
            .map_err(sdl)?;
        Ok(Self {
            _sdl: sdl_ctx,
            canvas,
            creator,
            events,
            remote: None,
            local: None,
            placeholder: VideoTexture {
                texture,
                width: pw,
                height: ph,
            },
            texts: HashMap::new(),
        })
    }

    /// Sets the window title.
    pub fn set_title(&mut self, title: &str) {
        let _ = self.canvas.window_mut().set_title(title);
    }

    /// Key presses and window events since the last call.
    pub fn poll_commands(&mut self) -> Vec<KeyCommand> {
        let mut out = Vec::new();
        for event in self.events.poll_iter() {
            match event {
                Event::Quit { .. }
                | Event::Window {
                    win_event: WindowEvent::Close,
                    ..
                } => out.push(KeyCommand::Quit),
                Event::KeyDown {
                    keycode: Some(k),
                    repeat: false,
                    ..
                } => match k {
                    Keycode::Q | Keycode::ESCAPE => out.push(KeyCommand::Quit),
                    Keycode::C => out.push(KeyCommand::ToggleCamera),
                    Keycode::M => out.push(KeyCommand::ToggleMute),
                    _ => {}
                },
                _ => {}
            }
        }
        out
    }

    fn upload(
        creator: &TextureCreator<WindowContext>,
        slot: &mut Option<VideoTexture>,
        f: &VideoFrame,
    ) -> Result<(), WindowError> {
        let want = match f.format {
            PixelFormat::Bgr => PixelFormatEnum::BGR24,
            // planar YUV goes up as it is; SDL converts it while drawing
            PixelFormat::I420 => PixelFormatEnum::IYUV,
        };
        let fits = matches!(slot, Some(t) if t.width == f.width && t.height == f.height
            && t.texture.query().format == want);
        if !fits {
            let texture = creator
                .create_texture_streaming(want, f.width, f.height)
                .map_err(sdl)?;
            *slot = Some(VideoTexture {
                texture,
                width: f.width,
                height: f.height,
            });
        }
        let Some(t) = slot.as_mut() else {
            return Ok(());
        };
        match f.planes() {
            Some((y, u, v)) => {
                let cw = f.width as usize / 2;
                t.texture
                    .update_yuv(None, y, f.width as usize, u, cw, v, cw)
                    .map_err(sdl)?;
            }
            None => t.texture.update(None, &f.data, f.stride()).map_err(sdl)?,
        }
        Ok(())
    }

    /// Uploads a new remote picture.
    pub fn upload_remote(&mut self, f: &VideoFrame) -> Result<(), WindowError> {
        Self::upload(&self.creator, &mut self.remote, f)
    }

    /// Uploads a new self-view picture, shrunk first by a whole factor when it is drawn at
    /// half its size or less: SDL's conversion of a whole BGR picture took ~2 ms at 720p.
    pub fn upload_local(&mut self, f: &VideoFrame) -> Result<(), WindowError> {
        let (w, h) = self.canvas.output_size().map_err(sdl)?;
        let r = layout::local_picture(w, h, f.width, f.height);
        // by a whole factor, the rest is left to the draw
        let k = f.width / r.w.max(1);
        if f.format == PixelFormat::Bgr && k >= 2 {
            let small = shrink_bgr_by(f, k);
            return Self::upload(&self.creator, &mut self.local, &small);
        }
        Self::upload(&self.creator, &mut self.local, f)
    }

    /// Draws both panes and the overlay, and presents.
    pub fn draw(
        &mut self,
        remote: PaneShow,
        local: PaneShow,
        mirror_local: bool,
        overlay: &Overlay,
    ) -> Result<(), WindowError> {
        let (w, h) = self.canvas.output_size().map_err(sdl)?;
        let panes = layout::panes(w, h);
        self.canvas.set_blend_mode(BlendMode::None);
        self.canvas.set_draw_color(Color::RGB(12, 14, 18));
        self.canvas.clear();
        self.canvas.set_draw_color(Color::RGB(24, 28, 34));
        self.canvas.fill_rect(sdl_rect(panes.local)).map_err(sdl)?;

        let remote_tex = match remote {
            PaneShow::Video => self.remote.as_ref(),
            PaneShow::Placeholder => Some(&self.placeholder),
            PaneShow::Blank => None,
        };
        if let Some(t) = remote_tex {
            let dst = layout::remote_picture(w, h, t.width, t.height);
            self.canvas
                .copy(&t.texture, None, sdl_rect(dst))
                .map_err(sdl)?;
        }
        let local_tex = match local {
            PaneShow::Video => self.local.as_ref(),
            PaneShow::Placeholder => Some(&self.placeholder),
            PaneShow::Blank => None,
        };
        let mut local_rect = layout::local_picture(w, h, 4, 3);
        if let Some(t) = local_tex {
            local_rect = layout::local_picture(w, h, t.width, t.height);
            let flip = mirror_local && local == PaneShow::Video;
            self.canvas
                .copy_ex(
                    &t.texture,
                    None,
                    sdl_rect(local_rect),
                    0.0,
                    None,
                    flip,
                    false,
                )
                .map_err(sdl)?;
        }

        if let Some(b) = &overlay.banner {
            let area = panes.remote;
            let y = area.y + area.h as i32 / 2 - 24;
            self.text_box(b, 2, area.x + 16, y, Some(area.w.saturating_sub(32)))?;
        }
        if let Some(f) = &overlay.footer {
            let area = panes.remote;
            let y = area.y + area.h as i32 - 28;
            self.text_box(f, 1, area.x + 16, y, Some(area.w.saturating_sub(32)))?;
        }
        if let Some(l) = &overlay.remote_label {
            self.text_box(
                l,
                2,
                panes.remote.x + 12,
                panes.remote.y + panes.remote.h as i32 - 44,
                None,
            )?;
        }
        if let Some(l) = &overlay.local_label {
            self.text_box(
                l,
                1,
                local_rect.x + 4,
                local_rect.y + local_rect.h as i32 + 6,
                None,
            )?;
        }
        self.canvas.present();
        Ok(())
    }

    /// A line of text on a dark translucent box; centred in `centre_width` if given.
    fn text_box(
        &mut self,
        s: &str,
        scale: u32,
        x: i32,
        y: i32,
        centre_width: Option<u32>,
    ) -> Result<(), WindowError> {
        let key = format!("{scale}:{s}");
        if !self.texts.contains_key(&key) {
            if self.texts.len() > 64 {
                self.texts.clear();
            }
            let (tw, th, px) = text::render(s, scale);
            let mut texture = self
                .creator
                .create_texture_static(PixelFormatEnum::RGBA32, tw, th)
                .map_err(sdl)?;
            texture.set_blend_mode(BlendMode::Blend);
            texture.update(None, &px, tw as usize * 4).map_err(sdl)?;
            self.texts.insert(
                key.clone(),
                VideoTexture {
                    texture,
                    width: tw,
                    height: th,
                },
            );
        }
        let Some(t) = self.texts.get(&key) else {
            return Ok(());
        };
        let x = match centre_width {
            Some(cw) if cw > t.width => x + (cw - t.width) as i32 / 2,
            _ => x,
        };
        let pad = 4 * scale as i32;
        self.canvas.set_blend_mode(BlendMode::Blend);
        self.canvas.set_draw_color(Color::RGBA(0, 0, 0, 170));
        self.canvas
            .fill_rect(SdlRect::new(
                x - pad,
                y - pad,
                t.width + 2 * pad as u32,
                t.height + 2 * pad as u32,
            ))
            .map_err(sdl)?;
        self.canvas
            .copy(&t.texture, None, SdlRect::new(x, y, t.width, t.height))
            .map_err(sdl)?;
        Ok(())
    }
}
