//! The ECS systems, one file per stage, in tick order.

pub mod audio;
pub mod capture;
pub mod decode;
pub mod encode;
pub mod input;
pub mod network;
pub mod render;
