//! The atomics and cells the lock-free ring uses: the shared facade of `veridian-embed`
//! (`core`'s normally, loom's under `cfg(loom)` so the loom models check the real code;
//! `UnsafeCell` with loom's closure interface in both builds).

pub(crate) use veridian_embed::loom::{AtomicBool, AtomicU64, AtomicUsize, Ordering, UnsafeCell};
