//! The kernel's locks (see `arch::x86_64::lock` and docs/architecture.md, "Locking"):
//! [`IrqLock`] for state interrupt handlers or a scheduler context also touch, [`PreemptLock`]
//! for state only threads touch.

pub use crate::arch::x86_64::lock::{IrqLock, PreemptLock};
