//! A counter sharded over CPUs: increments from different CPUs touch different cache lines.
//!
//! What it does: [`ShardedCounter<C, N>`] keeps `N` slots, each an `AtomicU64` on its own cache
//! line ([`CachePadded`]). [`add`](ShardedCounter::add) does a `fetch_add` on the slot of the
//! current CPU (from the embedder's [`CpuIndex`], reduced modulo `N`); [`get`](ShardedCounter::get)
//! sums all slots. With one slot per CPU, increments never bounce a cache line between CPUs,
//! which is what makes a statistics counter on a hot path cheap.
//!
//! What it relies on: nothing about the CPU index for correctness. Every update is an atomic
//! read-modify-write, so a stale index (the caller migrated after asking), a colliding index
//! (two CPUs mapped to one slot) or an out-of-range one (reduced modulo `N`) only costs
//! contention, never a lost update. `N` should be at least the number of CPUs for the speed.
//!
//! What it guarantees:
//! - No update is lost or counted twice: the sum of all slots changes by exactly `n` for every
//!   `add(n)`, and [`take`](ShardedCounter::take) moves each update into exactly one result.
//! - Arithmetic is modulo 2^64 ([`sub`](ShardedCounter::sub) is `add` of the two's complement),
//!   so individual slots may wrap while the sum is still exact; a counter whose true value stays
//!   in `0..2^64` reads exactly.
//! - `get` is a snapshot, *not* linearizable with concurrent updates: it reads the slots one after
//!   the other, so it includes every update that happens-before the call and may include any
//!   subset of concurrent ones. For a counter that only grows, the result lies between the value
//!   before and the value after the call; with concurrent `sub`s it can be a value the counter
//!   never held. Once updates stop (and their completion happens-before the `get`), it is exact.
//!
//! All atomic operations are `Relaxed`: the counter publishes no other data, and the atomicity of
//! each RMW is all the exactness argument needs.

use crate::CachePadded;
use crate::env::CpuIndex;
use crate::primitives::{AtomicU64, Ordering};

/// A `u64` counter with one cache-line-padded slot per CPU (`N` slots).
///
/// ```
/// use veridian_sync::counter::ShardedCounter;
/// use veridian_sync::hosted::ThreadCpuIndex;
///
/// static PACKETS: ShardedCounter<ThreadCpuIndex, 64> = ShardedCounter::new(ThreadCpuIndex::new());
///
/// PACKETS.inc();
/// PACKETS.add(2);
/// assert_eq!(PACKETS.get(), 3);
/// ```
#[derive(Debug)]
pub struct ShardedCounter<C: CpuIndex, const N: usize> {
    slots: [CachePadded<AtomicU64>; N],
    cpu: C,
}

impl<C: CpuIndex, const N: usize> ShardedCounter<C, N> {
    /// A zero counter whose slot is chosen by `cpu`. `N` must be at least 1.
    #[cfg(not(loom))]
    pub const fn new(cpu: C) -> Self {
        const { assert!(N > 0, "a ShardedCounter needs at least one slot") };
        Self {
            slots: [const { CachePadded::new(AtomicU64::new(0)) }; N],
            cpu,
        }
    }

    /// A zero counter whose slot is chosen by `cpu` (loom's atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new(cpu: C) -> Self {
        const { assert!(N > 0, "a ShardedCounter needs at least one slot") };
        Self {
            slots: core::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
            cpu,
        }
    }

    /// The slot of the calling CPU.
    #[inline]
    fn own_slot(&self) -> &AtomicU64 {
        &self.slots[self.cpu.current_cpu() % N]
    }

    /// Adds `n` (modulo 2^64).
    #[inline]
    pub fn add(&self, n: u64) {
        // Relaxed: the RMW's atomicity is what makes the count exact; nothing else is published.
        self.own_slot().fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n` (modulo 2^64); only the sum of the slots is meaningful, not a single slot.
    #[inline]
    pub fn sub(&self, n: u64) {
        // Relaxed: as in `add`.
        self.own_slot().fetch_sub(n, Ordering::Relaxed);
    }

    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts 1.
    #[inline]
    pub fn dec(&self) {
        self.sub(1);
    }

    /// The sum of all slots (modulo 2^64): a snapshot, see the module documentation.
    pub fn get(&self) -> u64 {
        self.slots
            .iter()
            // Relaxed: each slot is read once; see the module documentation for what the sum
            // means under concurrent updates.
            .map(|slot| slot.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Empties every slot and returns the sum taken out. Every update is counted by exactly one
    /// `take` (or left for the next one), even with concurrent updates.
    pub fn take(&self) -> u64 {
        self.slots
            .iter()
            // Relaxed: the swap's atomicity alone guarantees that each update lands either
            // before it (and is returned) or after it (and stays).
            .map(|slot| slot.swap(0, Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Sets the counter to zero; updates concurrent with the reset either survive it or are
    /// discarded with it, each entirely.
    pub fn reset(&self) {
        self.take();
    }

    /// The CPU index this counter uses.
    pub fn cpu_index(&self) -> &C {
        &self.cpu
    }
}

impl<C: CpuIndex + Default, const N: usize> Default for ShardedCounter<C, N> {
    fn default() -> Self {
        Self::new(C::default())
    }
}
