//! The userspace network impairment used by `prattle-relay` (kernel netem is not available
//! everywhere): a sans-IO model of loss (random or Gilbert-Elliott bursts), delay, jitter,
//! reordering, duplication and a rate cap, and the relay's control-file syntax.

pub mod control;
pub mod model;

pub use control::{Control, ControlError};
pub use model::{Channel, ChannelStats, Impairment, Loss, ParseError};
