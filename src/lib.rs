//! Prattle: peer-to-peer video calls.
//!
//! The pure core (`proto`, `session`, `media`) has no IO; `net` and `devices` are the only
//! doors to the outside; `systems` moves data between them once per tick.

pub mod app;
pub mod cli;
pub mod components;
pub mod devices;
pub mod impair;
pub mod keys;
pub mod layout;
pub mod media;
pub mod net;
pub mod proto;
pub mod session;
pub mod stats;
#[path = "../systems/mod.rs"]
pub mod systems;
