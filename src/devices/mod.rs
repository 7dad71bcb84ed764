//! The only doors to the outside world: camera and window (audio comes next).

pub mod audio;
pub mod camera;
pub mod text;
pub mod window;
