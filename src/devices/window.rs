//! The window and the keyboard (SDL2): both video streams, overlays, and key commands.
//! Two painters share the layout: SDL's renderer with IYUV textures (`window_gpu.rs`) and
//! the window's own framebuffer painted by the CPU (`window_cpu.rs`), the faster one where
//! OpenGL is a software rasteriser.

use sdl2::event::{Event, WindowEvent};
use sdl2::keyboard::Keycode;

use super::text::GLYPH;
use super::window_cpu::{CpuPainter, NO_ACCELERATION_HINT};
use super::window_gpu::GpuPainter;
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
    /// A picture could not be painted into the framebuffer.
    #[error("drawing a picture: {0}")]
    Draw(#[from] super::compose::ComposeError),
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

/// The window's background (the remote pane around its picture).
pub const BACKGROUND: [u8; 3] = [12, 14, 18];
/// The self-view pane's background.
pub const SIDE: [u8; 3] = [24, 28, 34];
/// How dark the box behind a text is (alpha of black over the picture).
pub const SHADE: u8 = 170;

/// How the window draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renderer {
    /// `cpu` where OpenGL is a software rasteriser (or there is none), else `gpu`.
    Auto,
    /// SDL's renderer: pictures uploaded as IYUV textures, converted while drawing.
    Gpu,
    /// The window's framebuffer: pictures converted and scaled by the CPU.
    Cpu,
}

impl Renderer {
    /// Parses `auto`, `gpu` or `cpu`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "gpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            _ => Err(format!("'{s}' is not a renderer: give auto, gpu or cpu")),
        }
    }
}

/// What to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scene {
    /// The peer's pane.
    pub remote: PaneShow,
    /// The self-view.
    pub local: PaneShow,
    /// Self-view as a mirror.
    pub mirror: bool,
    /// Texts over the video.
    pub overlay: Overlay,
}

/// A line of text placed in the window: its box (`shade`) and the text's pixels (`ink`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextBox {
    /// The words.
    pub text: String,
    /// Glyph scale (8 × `scale` pixels).
    pub scale: u32,
    /// The dark box behind it.
    pub shade: Rect,
    /// Where the text goes.
    pub ink: Rect,
}

impl TextBox {
    /// The key of its rendered text in a painter's cache.
    pub fn key(&self) -> String {
        format!("{}:{}", self.scale, self.text)
    }
}

/// Where the overlay's texts go in a `w`×`h` window whose self-view is at `local`.
pub fn text_boxes(w: u32, h: u32, overlay: &Overlay, local: Rect) -> Vec<TextBox> {
    let panes = layout::panes(w, h);
    let area = panes.remote;
    let place = |s: &String, scale: u32, x: i32, y: i32, centre: Option<u32>| {
        let tw = (s.chars().count() as u32 * GLYPH * scale).max(1);
        let th = GLYPH * scale;
        let x = match centre {
            Some(cw) if cw > tw => x + (cw - tw) as i32 / 2,
            _ => x,
        };
        let pad = 4 * scale;
        TextBox {
            text: s.clone(),
            scale,
            shade: Rect {
                x: x - pad as i32,
                y: y - pad as i32,
                w: tw + 2 * pad,
                h: th + 2 * pad,
            },
            ink: Rect { x, y, w: tw, h: th },
        }
    };
    let mut out = Vec::new();
    let wide = Some(area.w.saturating_sub(32));
    if let Some(b) = &overlay.banner {
        let y = area.y + area.h as i32 / 2 - 24;
        out.push(place(b, 2, area.x + 16, y, wide));
    }
    if let Some(f) = &overlay.footer {
        let y = area.y + area.h as i32 - 28;
        out.push(place(f, 1, area.x + 16, y, wide));
    }
    if let Some(l) = &overlay.remote_label {
        let y = area.y + area.h as i32 - 44;
        out.push(place(l, 2, area.x + 12, y, None));
    }
    if let Some(l) = &overlay.local_label {
        let y = local.y + local.h as i32 + 6;
        out.push(place(l, 1, local.x + 4, y, None));
    }
    out
}

enum Painter {
    Gpu(Box<GpuPainter>),
    Cpu(Box<CpuPainter>),
}

/// The call window.
pub struct Window {
    _sdl: sdl2::Sdl,
    painter: Painter,
    /// The event pump when the GPU painter draws (the CPU painter holds its own).
    events: Option<sdl2::EventPump>,
}

pub(crate) fn sdl(e: impl std::fmt::Display) -> WindowError {
    WindowError::Sdl(e.to_string())
}

/// `r` as SDL's rectangle (SDL's cannot be empty).
pub(crate) fn sdl_rect(r: Rect) -> sdl2::rect::Rect {
    sdl2::rect::Rect::new(r.x, r.y, r.w.max(1), r.h.max(1))
}

/// OpenGL's renderer string (`GL_RENDERER`) for the context current on this thread.
fn gl_renderer(video: &sdl2::VideoSubsystem) -> Option<String> {
    const GL_RENDERER: u32 = 0x1F01;
    let f = video.gl_get_proc_address("glGetString");
    if f.is_null() {
        return None;
    }
    // SAFETY: glGetString has this signature; it is called on the thread whose context SDL's
    // renderer just made current, and returns a static NUL-terminated string or null.
    let get: extern "C" fn(u32) -> *const std::ffi::c_char = unsafe { std::mem::transmute(f) };
    let p = get(GL_RENDERER);
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated, owned by the GL implementation.
    Some(
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Whether SDL's renderer named `name` (with OpenGL's `gl` renderer string) draws in software.
pub fn is_software(name: &str, gl: Option<&str>) -> bool {
    name == "software"
        || gl.is_some_and(|g| {
            let g = g.to_ascii_lowercase();
            ["llvmpipe", "softpipe", "software rasterizer", "swr"]
                .iter()
                .any(|s| g.contains(s))
        })
}

impl Window {
    /// Opens a resizable window of `size`, or by default one that shows pictures of
    /// `video` unscaled and fits the screen (see [`layout::window_for`]), drawn as
    /// `renderer` says.
    pub fn open(
        title: &str,
        size: Option<(u32, u32)>,
        video: (u32, u32),
        renderer: Renderer,
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
        let window = video_sys
            .window(title, w, h)
            .position_centered()
            .resizable()
            .build()
            .map_err(sdl)?;
        let events = sdl_ctx.event_pump().map_err(sdl)?;
        let img = image::load_from_memory(PLACEHOLDER_PNG)?.to_rgb8();
        let (pw, ph) = img.dimensions();
        let mut data = img.into_raw();
        for p in data.chunks_exact_mut(3) {
            p.swap(0, 2);
        }
        let placeholder = VideoFrame {
            width: pw,
            height: ph,
            data,
            capture_us: 0,
            format: PixelFormat::Bgr,
        };
        // asked for the framebuffer: no renderer, nor OpenGL, at all
        let (window, gl_info) = if renderer == Renderer::Cpu {
            (window, "asked for".to_string())
        } else {
            // no vsync: a frame is shown the moment it is decoded
            let canvas = window.into_canvas().build().map_err(sdl)?;
            let name = canvas.info().name;
            let gl = gl_renderer(&video_sys);
            let info = format!("{name}, {}", gl.as_deref().unwrap_or("no OpenGL"));
            if renderer == Renderer::Gpu || !is_software(name, gl.as_deref()) {
                tracing::info!("window: gpu renderer ({info})");
                return Ok(Self {
                    _sdl: sdl_ctx,
                    painter: Painter::Gpu(Box::new(GpuPainter::new(canvas, &placeholder)?)),
                    events: Some(events),
                });
            }
            (canvas.into_window(), info)
        };
        sdl2::hint::set(NO_ACCELERATION_HINT, "0");
        let (painter, events) = match CpuPainter::new(window, events, placeholder.clone()) {
            Ok(p) => {
                tracing::info!("window: cpu framebuffer ({gl_info})");
                (Painter::Cpu(Box::new(p)), None)
            }
            Err((window, events, why)) => {
                tracing::info!("window framebuffer unusable ({why}): drawing with SDL's renderer");
                let canvas = window.into_canvas().build().map_err(sdl)?;
                let painter = GpuPainter::new(canvas, &placeholder)?;
                (Painter::Gpu(Box::new(painter)), Some(events))
            }
        };
        Ok(Self {
            _sdl: sdl_ctx,
            painter,
            events,
        })
    }

    fn window_mut(&mut self) -> &mut sdl2::video::Window {
        match &mut self.painter {
            Painter::Gpu(p) => p.window_mut(),
            Painter::Cpu(p) => p.window_mut(),
        }
    }

    fn window(&self) -> &sdl2::video::Window {
        match &self.painter {
            Painter::Gpu(p) => p.window(),
            Painter::Cpu(p) => p.window(),
        }
    }

    /// Sets the window title.
    pub fn set_title(&mut self, title: &str) {
        let _ = self.window_mut().set_title(title);
    }

    /// Whether the CPU painter draws.
    pub fn draws_on_cpu(&self) -> bool {
        matches!(self.painter, Painter::Cpu(_))
    }

    /// Key presses and window events since the last call.
    pub fn poll_commands(&mut self) -> Vec<KeyCommand> {
        let mut out = Vec::new();
        let mut redraw = false;
        let events = match (&mut self.painter, &mut self.events) {
            (Painter::Cpu(p), _) => p.events(),
            (Painter::Gpu(_), Some(e)) => e,
            (Painter::Gpu(_), None) => return out,
        };
        for event in events.poll_iter() {
            match event {
                Event::Quit { .. }
                | Event::Window {
                    win_event: WindowEvent::Close,
                    ..
                } => out.push(KeyCommand::Quit),
                Event::Window {
                    win_event: WindowEvent::Exposed | WindowEvent::SizeChanged(..),
                    ..
                } => redraw = true,
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
        if let (true, Painter::Cpu(p)) = (redraw, &mut self.painter) {
            p.invalidate();
        }
        out
    }

    /// Takes a new remote picture.
    pub fn upload_remote(&mut self, f: std::sync::Arc<VideoFrame>) -> Result<(), WindowError> {
        match &mut self.painter {
            Painter::Gpu(p) => p.set_remote(&f),
            Painter::Cpu(p) => {
                p.set_remote(f);
                Ok(())
            }
        }
    }

    /// Takes a new self-view picture, shrunk first by a whole factor when it is drawn at
    /// half its size or less: SDL's conversion of a whole BGR picture took ~2 ms at 720p.
    pub fn upload_local(&mut self, f: std::sync::Arc<VideoFrame>) -> Result<(), WindowError> {
        let (w, h) = self.window().drawable_size();
        let r = layout::local_picture(w, h, f.width, f.height);
        // by a whole factor, the rest is left to the draw
        let k = f.width / r.w.max(1);
        let small = if f.format == PixelFormat::Bgr && k >= 2 {
            std::sync::Arc::new(shrink_bgr_by(&f, k))
        } else {
            f
        };
        match &mut self.painter {
            Painter::Gpu(p) => p.set_local(&small),
            Painter::Cpu(p) => {
                p.set_local(small);
                Ok(())
            }
        }
    }

    /// Draws `scene` with the pictures taken so far. Returns when the peer's new picture
    /// reached the screen (else the whole draw), or `None` if the screen did not change (the
    /// GPU painter presents every time; the CPU painter only what is new, the peer first).
    pub fn draw(&mut self, scene: &Scene) -> Result<Option<std::time::Instant>, WindowError> {
        match &mut self.painter {
            Painter::Gpu(p) => p.draw(scene).map(|()| Some(std::time::Instant::now())),
            Painter::Cpu(p) => p.draw(scene),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_opengl_is_told_from_a_gpu() {
        assert!(is_software(
            "opengl",
            Some("llvmpipe (LLVM 15.0.6, 256 bits)")
        ));
        assert!(is_software("software", None));
        assert!(!is_software(
            "opengl",
            Some("NVIDIA GeForce RTX 3060/PCIe/SSE2")
        ));
        assert!(!is_software("opengles2", Some("Mali-G52")));
        assert!(!is_software("opengl", None));
    }

    #[test]
    fn renderer_names_parse_and_a_wrong_one_names_the_fix() {
        assert_eq!(Renderer::parse("CPU"), Ok(Renderer::Cpu));
        assert_eq!(Renderer::parse("auto"), Ok(Renderer::Auto));
        let e = Renderer::parse("metal").unwrap_err();
        assert!(e.contains("auto, gpu or cpu"), "{e}");
    }

    #[test]
    fn text_boxes_sit_in_their_panes_with_the_banner_centred() {
        let overlay = Overlay {
            banner: Some("Waiting".into()),
            remote_label: None,
            local_label: Some("muted".into()),
            footer: Some("compare aloud: a b c d".into()),
        };
        let (w, h) = (854, 480);
        let local = layout::local_picture(w, h, 4, 3);
        let boxes = text_boxes(w, h, &overlay, local);
        assert_eq!(boxes.len(), 3);
        let panes = layout::panes(w, h);
        let banner = &boxes[0];
        assert_eq!(banner.ink.w, 7 * 16);
        let left = banner.ink.x - panes.remote.x;
        let right = (panes.remote.x + panes.remote.w as i32) - (banner.ink.x + banner.ink.w as i32);
        assert!((left - right).abs() <= 1, "{left} {right}");
        assert!(banner.shade.w == banner.ink.w + 16 && banner.shade.x == banner.ink.x - 8);
        let label = &boxes[2];
        assert!(label.ink.x >= panes.local.x && label.ink.y > local.y + local.h as i32);
    }
}
