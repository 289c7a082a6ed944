//! The atomics the lock-free code in this crate uses: the shared facade of `veridian-embed`
//! (`core`'s normally, loom's under `cfg(loom)` so that the loom models check the real deque).
//!
//! Only [`crate::deque`] goes through this facade; it is the one structure whose correctness
//! rests on memory orderings alone. The scheduler's counters use `core` atomics directly (they
//! are statistics and load figures, not synchronisation) and the scheduler is absent under loom.

pub(crate) use veridian_embed::loom::{AtomicIsize, AtomicPtr, Ordering, fence};
