//! Choosing among a caller's own implementations by CPU feature (`CpuOptimizer`-style).
//!
//! **What it does.** A [`CpuOptimizer`] is a fixed-capacity table (no allocation) of
//! [`Candidate`]s: an implementation (usually a function pointer), the features it needs and a
//! priority. [`CpuOptimizer::select`] returns the highest-priority candidate whose features a
//! given feature set contains (ties: the one registered first); [`CpuOptimizer::best`] does
//! that for the running CPU. A [`Dispatcher`] wraps a table in a `static` and remembers the
//! choice in an atomic index, so after the first call `get` is one atomic load and an array
//! read: no lock and no feature test.
//!
//! **What the caller relies on.** An implementation compiled with `#[target_feature]` is an
//! `unsafe fn`; calling the one returned here is sound when the features registered with it are
//! the ones its `#[target_feature]` needs, because the returned candidate's features are all
//! present on the running CPU ([`crate::cpu::features`], CPUID and XCR0).
//!
//! ```
//! use veridian_simd::{Candidate, CpuOptimizer, Dispatcher, Features};
//!
//! fn sum_portable(xs: &[u32]) -> u64 { xs.iter().map(|&x| u64::from(x)).sum() }
//! fn sum_avx2(xs: &[u32]) -> u64 { sum_portable(xs) } // stands in for an AVX2 version
//!
//! static SUM: Dispatcher<fn(&[u32]) -> u64, 2> = Dispatcher::new(CpuOptimizer::from_array([
//!     Candidate { name: "avx2", required: Features::AVX2, priority: 10, implementation: sum_avx2 },
//!     Candidate { name: "portable", required: Features::NONE, priority: 0, implementation: sum_portable },
//! ]));
//!
//! let f = SUM.get().expect("the portable candidate always qualifies");
//! assert_eq!(f(&[1, 2, 3]), 6);
//! ```

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::cpu::{self, Features};

/// One implementation and what it needs.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<F> {
    /// A name for diagnostics (`"avx512"`, `"portable"`, ...).
    pub name: &'static str,
    /// Features the implementation needs (all of them).
    pub required: Features,
    /// Higher wins among the supported candidates.
    pub priority: u32,
    /// The implementation.
    pub implementation: F,
}

/// The table is full: `register` could not add another candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryFull {
    /// The table's capacity.
    pub capacity: usize,
}

impl core::fmt::Display for RegistryFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CpuOptimizer is full ({} candidates)", self.capacity)
    }
}

impl core::error::Error for RegistryFull {}

/// Up to `N` candidate implementations of one function.
#[derive(Clone, Copy, Debug)]
pub struct CpuOptimizer<F: Copy, const N: usize> {
    slots: [Option<Candidate<F>>; N],
    len: usize,
}

impl<F: Copy, const N: usize> Default for CpuOptimizer<F, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Copy, const N: usize> CpuOptimizer<F, N> {
    /// An empty table.
    pub const fn new() -> Self {
        CpuOptimizer {
            slots: [const { None }; N],
            len: 0,
        }
    }

    /// A full table from `N` candidates (usable in a `static`).
    pub const fn from_array(candidates: [Candidate<F>; N]) -> Self {
        let mut slots = [const { None }; N];
        let mut i = 0;
        while i < N {
            slots[i] = Some(candidates[i]);
            i += 1;
        }
        CpuOptimizer { slots, len: N }
    }

    /// Adds a candidate; `Err` when all `N` slots are taken.
    pub fn register(
        &mut self,
        name: &'static str,
        required: Features,
        priority: u32,
        implementation: F,
    ) -> Result<(), RegistryFull> {
        let slot = self
            .slots
            .get_mut(self.len)
            .ok_or(RegistryFull { capacity: N })?;
        *slot = Some(Candidate {
            name,
            required,
            priority,
            implementation,
        });
        self.len += 1;
        Ok(())
    }

    /// The registered candidates, in registration order.
    pub fn candidates(&self) -> impl Iterator<Item = &Candidate<F>> {
        self.slots[..self.len].iter().flatten()
    }

    fn select_index(&self, available: Features) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for (i, c) in self.slots[..self.len].iter().enumerate() {
            let Some(c) = c else { continue };
            if available.contains(c.required) && best.is_none_or(|(_, p)| c.priority > p) {
                best = Some((i, c.priority));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The best candidate a CPU with `available` features can run, if any.
    pub fn select(&self, available: Features) -> Option<&Candidate<F>> {
        self.select_index(available)
            .and_then(|i| self.slots[i].as_ref())
    }

    /// The best implementation for the running CPU, if any (detects the CPU on first use).
    pub fn best(&self) -> Option<F> {
        self.select(cpu::features()).map(|c| c.implementation)
    }
}

/// A [`CpuOptimizer`] in a `static`, resolved once.
#[derive(Debug)]
pub struct Dispatcher<F: Copy, const N: usize> {
    table: CpuOptimizer<F, N>,
    /// Index of the chosen candidate; `NONE` when none qualifies; `UNRESOLVED` before the
    /// first call. Relaxed is enough: the table is immutable and the index is computed from it
    /// and the CPU alone, so racing first calls store the same value.
    chosen: AtomicUsize,
}

const UNRESOLVED: usize = usize::MAX;
const NONE: usize = usize::MAX - 1;

impl<F: Copy, const N: usize> Dispatcher<F, N> {
    /// Wraps a table; nothing is detected until the first [`Dispatcher::get`].
    pub const fn new(table: CpuOptimizer<F, N>) -> Self {
        Dispatcher {
            table,
            chosen: AtomicUsize::new(UNRESOLVED),
        }
    }

    /// The best implementation for the running CPU (`None` if no candidate qualifies).
    #[inline]
    pub fn get(&self) -> Option<F> {
        let mut i = self.chosen.load(Ordering::Relaxed);
        if i == UNRESOLVED {
            i = self.table.select_index(cpu::features()).unwrap_or(NONE);
            self.chosen.store(i, Ordering::Relaxed);
        }
        self.table
            .slots
            .get(i)
            .and_then(|c| c.as_ref())
            .map(|c| c.implementation)
    }

    /// The name of the chosen candidate.
    pub fn chosen_name(&self) -> Option<&'static str> {
        self.get()?;
        let i = self.chosen.load(Ordering::Relaxed);
        self.table.slots.get(i)?.as_ref().map(|c| c.name)
    }

    /// The table.
    pub fn table(&self) -> &CpuOptimizer<F, N> {
        &self.table
    }
}
