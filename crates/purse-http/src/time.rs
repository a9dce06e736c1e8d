//! RFC 3339 timestamps at the edge: the core's `time`, so every crate spells time alike.

pub use purse_core::time::*;
