//! The atomics, cell and reference count the ring uses: `core`'s/`alloc`'s normally, loom's
//! under `cfg(loom)`, so the loom model in `tests/loom_ring.rs` checks the real ring code. The
//! atomics and the cell are the shared facade of `veridian-embed`; `Arc` is chosen here (the
//! shared facade allocates nothing).
//!
//! `UnsafeCell` has loom's closure-based interface in both builds (`with`, `with_mut`), which
//! lets loom see every access to a ring slot. Only the ring goes through this facade: the
//! buffer pool and the back-ends use `core` atomics directly (they are not what the loom model
//! checks, and loom atomics cannot live in `static`s).

#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(all(not(loom), feature = "alloc"))]
pub(crate) use alloc::sync::Arc;

pub(crate) use veridian_embed::loom::{AtomicUsize, Ordering, UnsafeCell};
