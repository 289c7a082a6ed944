//! The atomics the sample ring keeps besides its core (the drop count and the split flag): the
//! shared facade of `veridian-embed` (`core`'s normally, loom's under `cfg(loom)` so the loom
//! models check the real code). The ring core itself is veridian-sync's, on the same facade.

pub(crate) use veridian_embed::loom::{AtomicBool, AtomicU64, Ordering};
