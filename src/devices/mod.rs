//! The only doors to the outside world: camera, sound devices and window.

pub mod audio;
pub mod camera;
pub mod text;
pub mod window;
pub mod window_thread;
