//! Drawing through SDL's renderer: the peer's I420 pictures go up as they are to an IYUV
//! texture and the GPU converts them while drawing. Where OpenGL is a software rasteriser
//! (Mesa's llvmpipe under Xvfb) the framebuffer painter (`window_cpu.rs`) is faster.

use std::collections::HashMap;

use sdl2::pixels::{Color, PixelFormatEnum};
use sdl2::render::{BlendMode, Canvas, Texture, TextureCreator};
use sdl2::video::WindowContext;

use super::text;
use super::window::{
    sdl, sdl_rect, text_boxes, PaneShow, Scene, TextBox, WindowError, BACKGROUND, SIDE,
};
use crate::layout;
use crate::media::{PixelFormat, VideoFrame};

struct VideoTexture {
    texture: Texture,
    width: u32,
    height: u32,
}

/// The SDL renderer painter.
pub struct GpuPainter {
    canvas: Canvas<sdl2::video::Window>,
    creator: TextureCreator<WindowContext>,
    remote: Option<VideoTexture>,
    local: Option<VideoTexture>,
    placeholder: VideoTexture,
    texts: HashMap<String, VideoTexture>,
}

impl GpuPainter {
    /// Paints on `canvas`; `placeholder` is the camera-off picture (BGR).
    pub fn new(
        canvas: Canvas<sdl2::video::Window>,
        placeholder: &VideoFrame,
    ) -> Result<Self, WindowError> {
        // our pictures are BT.601 (as H.264's conversion and OpenCV's make them); left to
        // itself SDL converts pictures over 576 lines as BT.709
        // SAFETY: sets one global of SDL's, read when a YUV texture is drawn; no pointers
        unsafe {
            sdl2::sys::SDL_SetYUVConversionMode(
                sdl2::sys::SDL_YUV_CONVERSION_MODE::SDL_YUV_CONVERSION_BT601,
            );
        }
        let creator = canvas.texture_creator();
        let mut slot = None;
        upload(&creator, &mut slot, placeholder)?;
        let placeholder = slot.ok_or_else(|| WindowError::Sdl("placeholder texture".into()))?;
        Ok(Self {
            canvas,
            creator,
            remote: None,
            local: None,
            placeholder,
            texts: HashMap::new(),
        })
    }

    /// The window.
    pub fn window(&self) -> &sdl2::video::Window {
        self.canvas.window()
    }

    /// The window, to change.
    pub fn window_mut(&mut self) -> &mut sdl2::video::Window {
        self.canvas.window_mut()
    }

    /// Gives the window back, the renderer closed.
    pub fn into_window(self) -> sdl2::video::Window {
        self.canvas.into_window()
    }

    /// Drawing size in pixels.
    pub fn size(&self) -> Result<(u32, u32), WindowError> {
        self.canvas.output_size().map_err(sdl)
    }

    /// Uploads a new remote picture.
    pub fn set_remote(&mut self, f: &VideoFrame) -> Result<(), WindowError> {
        upload(&self.creator, &mut self.remote, f)
    }

    /// Uploads a new self-view picture.
    pub fn set_local(&mut self, f: &VideoFrame) -> Result<(), WindowError> {
        upload(&self.creator, &mut self.local, f)
    }

    /// Draws both panes and the overlay, and presents.
    pub fn draw(&mut self, scene: &Scene) -> Result<(), WindowError> {
        let (w, h) = self.size()?;
        let panes = layout::panes(w, h);
        self.canvas.set_blend_mode(BlendMode::None);
        let [r, g, b] = BACKGROUND;
        self.canvas.set_draw_color(Color::RGB(r, g, b));
        self.canvas.clear();
        let [r, g, b] = SIDE;
        self.canvas.set_draw_color(Color::RGB(r, g, b));
        self.canvas.fill_rect(sdl_rect(panes.local)).map_err(sdl)?;

        let remote_tex = match scene.remote {
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
        let local_tex = match scene.local {
            PaneShow::Video => self.local.as_ref(),
            PaneShow::Placeholder => Some(&self.placeholder),
            PaneShow::Blank => None,
        };
        let mut local_rect = layout::local_picture(w, h, 4, 3);
        if let Some(t) = local_tex {
            local_rect = layout::local_picture(w, h, t.width, t.height);
            let flip = scene.mirror && scene.local == PaneShow::Video;
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
        for b in text_boxes(w, h, &scene.overlay, local_rect) {
            self.text_box(&b)?;
        }
        self.canvas.present();
        Ok(())
    }

    /// A line of text on a dark translucent box.
    fn text_box(&mut self, b: &TextBox) -> Result<(), WindowError> {
        let key = b.key();
        if !self.texts.contains_key(&key) {
            if self.texts.len() > 64 {
                self.texts.clear();
            }
            let (tw, th, px) = text::render(&b.text, b.scale);
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
        self.canvas.set_blend_mode(BlendMode::Blend);
        self.canvas
            .set_draw_color(Color::RGBA(0, 0, 0, super::window::SHADE));
        self.canvas.fill_rect(sdl_rect(b.shade)).map_err(sdl)?;
        self.canvas
            .copy(&t.texture, None, sdl_rect(b.ink))
            .map_err(sdl)?;
        Ok(())
    }
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
