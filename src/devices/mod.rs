//! The only doors to the outside world: camera, sound devices and window.

pub mod audio;
pub mod camera;
pub mod compose;
pub mod text;
pub mod window;
pub mod window_cpu;
pub mod window_gpu;
pub mod window_thread;
