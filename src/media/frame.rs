//! A picture in memory with its capture time.

use std::time::{SystemTime, UNIX_EPOCH};

/// How a picture's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelFormat {
    /// Packed blue-green-red, `width * height * 3` bytes: cameras, MJPEG, the test pattern.
    #[default]
    Bgr,
    /// Planar 4:2:0 (BT.601 limited range): the Y plane, then U, then V, each packed —
    /// `width * height * 3 / 2` bytes. What H.264 decodes to, uploaded as it is.
    I420,
}

/// A picture, rows packed without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The pixels, laid out as `format` says.
    pub data: Vec<u8>,
    /// Capture time, microseconds since the UNIX epoch.
    pub capture_us: u64,
    /// The layout of `data`.
    pub format: PixelFormat,
}

impl VideoFrame {
    /// A black picture.
    pub fn black(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0; width as usize * height as usize * 3],
            capture_us: 0,
            format: PixelFormat::Bgr,
        }
    }

    /// Bytes per row (of the Y plane, for I420).
    pub fn stride(&self) -> usize {
        match self.format {
            PixelFormat::Bgr => self.width as usize * 3,
            PixelFormat::I420 => self.width as usize,
        }
    }

    /// The Y, U and V planes of an I420 picture; `None` for BGR or a short buffer.
    pub fn planes(&self) -> Option<(&[u8], &[u8], &[u8])> {
        if self.format != PixelFormat::I420 {
            return None;
        }
        let y_len = self.width as usize * self.height as usize;
        let c_len = (self.width as usize / 2) * (self.height as usize / 2);
        let (y, rest) = self.data.split_at_checked(y_len)?;
        let (u, rest) = rest.split_at_checked(c_len)?;
        let v = rest.get(..c_len)?;
        Some((y, u, v))
    }
}

/// Logs (target `frame_timing`, trace level) that the picture captured at `capture_us`
/// passed `stage` now. `scripts/frame-stages` lines a peer's log up per picture, to show
/// where the time between capture and screen goes.
pub fn trace_stage(stage: &str, capture_us: u64) {
    tracing::trace!(target: "frame_timing", "stage {stage} {capture_us} {}", unix_micros());
}

/// Microseconds since the UNIX epoch, the clock all capture times use.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
