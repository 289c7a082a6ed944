//! Architecture-specific code: the context-switch routine.
//!
//! Only x86_64 has one ([`x86_64`]); on other targets the module is empty and the rest of the
//! crate (topology, affinity, run queues, stealing, placement) works unchanged.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
