//! A picture in memory with its capture time.

use std::time::{SystemTime, UNIX_EPOCH};

/// A BGR24 picture, rows packed without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, blue-green-red.
    pub data: Vec<u8>,
    /// Capture time, microseconds since the UNIX epoch.
    pub capture_us: u64,
}

impl VideoFrame {
    /// A black picture.
    pub fn black(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0; width as usize * height as usize * 3],
            capture_us: 0,
        }
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width as usize * 3
    }
}

/// Microseconds since the UNIX epoch, the clock all capture times use.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
