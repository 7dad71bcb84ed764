//! Prattle: peer-to-peer video calls.
//!
//! The pure core (`proto`, `session`, `media`) has no IO; `net` and `devices` are the only
//! doors to the outside; `systems` moves data between them once per tick.

pub mod proto;
pub mod session;
pub mod media;
