//! [`ObjectPool`]: a typed object cache with per-CPU free lists, in front of any allocator.
//!
//! # What it does
//!
//! A pool hands out objects of one type `T` that were built once by a constructor
//! (`Fn() -> T`) and are recycled instead of dropped: [`ObjectPool::acquire`] returns a
//! [`Pooled`] guard that derefs to `T`; dropping the guard calls the reset hook
//! (`Fn(&mut T)`) once and puts the object back. The object keeps whatever it owns (a buffer's
//! capacity, a pre-sized table) across uses, which is the point: no constructor, no allocation
//! on a hit. Objects live in nodes the pool allocates through the allocator `A` the user
//! chooses: `&Heap` (so nodes come from this crate's slab classes), `std::alloc::System`, or
//! `allocator_api2::alloc::Global` (the global allocator, feature `alloc`).
//!
//! # Structure (Bonwick's magazines, without the global `Mutex<Vec<T>>`)
//!
//! - Each CPU slot has two **magazines**, intrusive singly linked lists of cached objects:
//!   `loaded` (0..=M objects) and `previous` (either empty or exactly M objects), where M is
//!   [`PoolConfig::magazine`]. Acquire pops `loaded`; release pushes onto it. When `loaded` is
//!   empty and `previous` full (or `loaded` full and `previous` empty), the two swap. These
//!   paths run under the slot's [`CpuLocal`] guard and do no atomic read-modify-write and take
//!   no lock: a few loads and stores, plus one plain store to a statistics counter.
//! - Only when both magazines are empty (acquire) or both full (release) does the slot go to the
//!   shared **depot**, a stack of full magazines, and exchange a whole magazine in O(1): it
//!   takes one full magazine, or gives its full `previous` one. So the depot is visited at most
//!   once per M operations of a CPU, and a CPU that alternates acquire and release never visits
//!   it (the swap absorbs the oscillation at a magazine boundary).
//! - The depot is a `spin::Mutex` around the top-of-stack pointer and a count, held for a couple
//!   of pointer writes. We chose the lock over a lock-free (Treiber) stack because the stack
//!   would need ABA protection (a tag or epochs: the popped head's `next_magazine` can be stale)
//!   for an operation that is already amortised over M objects; the lock makes the exchange
//!   trivially correct and its cost is divided by M.
//! - A caller with no CPU slot (`CpuLocal::enter` returns `None` or a slot `>= CPUS`) uses one
//!   extra shared slot under a spin lock: same algorithm, slower.
//! - Both locks (the depot's and the shared slot's) are taken only while the caller holds the
//!   guard `CpuLocal::enter` returned (when it returned one), and released before it, so a
//!   kernel whose guard disables interrupts never holds them with interrupts on (see
//!   [`CpuLocal`]'s "Locks").
//!
//! # Capacity
//!
//! When a release finds both magazines full and the depot holding
//! [`PoolConfig::depot_magazines`] magazines, the object is dropped (its memory freed) instead
//! of cached. So the pool never caches more than
//! [`PoolConfig::max_cached`]`(CPUS + 1)` = `(CPUS + 1) × 2M + depot_magazines × M` objects,
//! and on one CPU it behaves exactly like a LIFO stack bounded by `2M + depot_magazines × M`.
//!
//! # What runs where
//!
//! The constructor, the reset hook, `T`'s destructor and the allocator are user code: the pool
//! never calls them while it holds a CPU guard or a lock. (They may use the pool, or a `Heap`
//! with the same `CpuLocal`, without entering a slot twice.) A [`Pooled`] guard does **not**
//! hold the CPU slot while the object is in use: it holds only a pointer to the object. On drop
//! it runs the reset hook, then enters whatever slot the dropping context has now and pushes the
//! object there (an object acquired on CPU 0 and dropped on CPU 3 goes to CPU 3's magazine).
//! So `Pooled<T>` is `Send` when `T` is, and may be kept across arbitrary code.
//!
//! # What it relies on
//!
//! - The [`CpuLocal`] contract: while a guard for slot `i` lives, no other context holds slot
//!   `i`, and successive holders of a slot are ordered (as they must be for the heap's per-CPU
//!   caches: a slot changes hands through a synchronising operation, such as `ThreadSlots`'
//!   release and acquire of its bitmap bit). The per-slot magazines are plain fields touched only
//!   by that holder. The hand-over of an object between threads is synchronised by the depot's
//!   lock (acquire/release), by the shared slot's lock, or by whatever the user used to send the
//!   `Pooled` guard; a context that migrates between CPUs is synchronised by the scheduler's
//!   context switch, as for any per-CPU data.
//! - `A` is a sound `allocator_api2` allocator: a node is allocated and freed with
//!   `Layout::new::<Node<T>>()`.
//!
//! # What it guarantees
//!
//! - An object is owned by exactly one of: one `Pooled` guard, one magazine, the depot. It is
//!   never handed out twice concurrently.
//! - The reset hook runs exactly once per return of a guard (also when the object is then
//!   dropped for lack of capacity), and never on [`Pooled::into_inner`].
//! - Every object is dropped exactly once: when discarded, when the pool is cleared
//!   ([`ObjectPool::clear`]) or dropped, or by its owner after `into_inner`.
//! - Out of memory is [`AllocError`] from `acquire`, never a panic. If the reset hook panics,
//!   the object is dropped (not cached: it may be half reset) and the panic propagates; if the
//!   constructor panics, nothing is allocated.
//! - Statistics ([`ObjectPool::stats`]) are counted with plain stores by the slot holder, so
//!   no count is lost; read while other CPUs work, the derived `live` and `cached` may be
//!   momentarily off (the counters are read one after another), and are exact when quiescent.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use allocator_api2::alloc::{AllocError, Allocator};
use crossbeam_utils::CachePadded;

use crate::env::CpuLocal;
use crate::heap::DEFAULT_CPUS;
use crate::pinned::{Pinned, PinnedMutex};

/// Where a cached or handed-out object lives. `next` links a magazine; `next_magazine` links
/// the heads of the magazines in the depot.
#[repr(C)]
struct Node<T> {
    next: *mut Node<T>,
    next_magazine: *mut Node<T>,
    value: T,
}

/// The sizes of an [`ObjectPool`]'s caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    magazine: usize,
    depot_magazines: usize,
}

/// Why a [`PoolConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolConfigError {
    /// A magazine must hold at least one object.
    ZeroMagazine,
}

impl fmt::Display for PoolConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroMagazine => f.write_str("pool magazine size must be at least 1"),
        }
    }
}

impl core::error::Error for PoolConfigError {}

impl PoolConfig {
    /// 32 objects per magazine (a CPU caches up to 64 before it visits the depot) and 16 full
    /// magazines (512 objects) in the depot: the depot is visited at most once per 32
    /// operations of a CPU, and an idle pool holds a bounded, modest number of objects.
    pub const DEFAULT: Self = Self {
        magazine: 32,
        depot_magazines: 16,
    };

    /// `magazine` objects per magazine (at least 1), at most `depot_magazines` full magazines
    /// in the depot (0 keeps objects in the CPU slots only).
    pub const fn new(magazine: usize, depot_magazines: usize) -> Result<Self, PoolConfigError> {
        if magazine == 0 {
            return Err(PoolConfigError::ZeroMagazine);
        }
        Ok(Self {
            magazine,
            depot_magazines,
        })
    }

    /// Objects per magazine.
    pub const fn magazine(&self) -> usize {
        self.magazine
    }

    /// Full magazines the depot keeps.
    pub const fn depot_magazines(&self) -> usize {
        self.depot_magazines
    }

    /// Most objects a pool with `slots` slots (its `CPUS` plus the shared one) ever caches:
    /// `slots × 2 × magazine + depot_magazines × magazine`, saturating.
    pub const fn max_cached(&self, slots: usize) -> usize {
        slots
            .saturating_mul(2)
            .saturating_mul(self.magazine)
            .saturating_add(self.depot_magazines.saturating_mul(self.magazine))
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Counters of a pool (see [`ObjectPool::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Acquisitions served from the cache.
    pub hits: u64,
    /// Acquisitions that had to construct an object (including those whose allocation failed).
    pub misses: u64,
    /// Misses that produced no object: the node allocation failed (`acquire` returned
    /// `AllocError`) or the constructor panicked.
    pub failed: u64,
    /// Guards dropped (objects returned to the pool, cached or not).
    pub releases: u64,
    /// Returned objects dropped instead of cached: the pool was full, or the reset hook panicked.
    pub discarded: u64,
    /// Objects taken out of the pool with [`Pooled::into_inner`].
    pub detached: u64,
    /// Objects handed out now: `hits + misses - failed - releases - detached`.
    pub live: u64,
    /// Cached objects dropped by [`ObjectPool::clear`].
    pub cleared: u64,
    /// Objects cached now: `releases - discarded - hits - cleared`.
    pub cached: u64,
}

impl PoolStats {
    /// Fraction of acquisitions served from the cache (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// The two magazines of a slot. Touched only by the slot's holder.
struct Magazines<T> {
    /// Top of the list acquisitions pop and releases push; `loaded_len` objects.
    loaded: *mut Node<T>,
    loaded_len: usize,
    /// Null, or a list of exactly `magazine` objects.
    previous: *mut Node<T>,
}

/// Counters of a slot: written only by the slot's holder, with a load and a store (no
/// read-modify-write); read by anyone for statistics, hence atomic and `Relaxed`.
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    releases: AtomicU64,
    discarded: AtomicU64,
}

/// One CPU's cache.
struct Slot<T> {
    magazines: UnsafeCell<Magazines<T>>,
    counters: Counters,
}

impl<T> Slot<T> {
    const fn new() -> Self {
        Self {
            magazines: UnsafeCell::new(Magazines {
                loaded: ptr::null_mut(),
                loaded_len: 0,
                previous: ptr::null_mut(),
            }),
            counters: Counters {
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                releases: AtomicU64::new(0),
                discarded: AtomicU64::new(0),
            },
        }
    }
}

/// The depot: a stack of full magazines linked through their heads' `next_magazine`.
struct Depot<T> {
    top: *mut Node<T>,
    magazines: usize,
}

#[inline]
fn bump(counter: &AtomicU64) {
    // Only the slot holder writes this counter, so a load and a store cannot lose an update;
    // `Relaxed` because readers only want the value, not ordering with other memory.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// A typed object cache with per-CPU magazines; see the module documentation.
///
/// - `T`: the object type; `N: Fn() -> T` builds one on a miss; `R: Fn(&mut T)` resets one
///   when it is returned.
/// - `C`: which CPU slot the caller may use (`hosted::ThreadSlots` hosted, the
///   kernel's per-CPU guard in a kernel); `CPUS`: the number of per-CPU slots (callers whose
///   slot is `>= CPUS` share one locked slot).
/// - `A`: the allocator of the nodes that hold the objects (`&Heap`, `System`, `Global`, ...).
///
/// ```
/// use veridian_alloc::hosted::ThreadSlots;
/// use veridian_alloc::pool::ObjectPool;
///
/// let pool: ObjectPool<Vec<u8>, _, _, _, _> = ObjectPool::new(
///     ThreadSlots,
///     std::alloc::System,
///     || Vec::with_capacity(4096),
///     |v: &mut Vec<u8>| v.clear(),
/// );
/// {
///     let mut buf = pool.acquire().expect("out of memory");
///     buf.extend_from_slice(b"hello");
/// } // reset (cleared) and cached here
/// let buf = pool.acquire().expect("out of memory");
/// assert!(buf.is_empty() && buf.capacity() >= 4096);
/// assert_eq!(pool.stats().hits, 1);
/// ```
pub struct ObjectPool<T, N, R, C: CpuLocal, A: Allocator, const CPUS: usize = DEFAULT_CPUS> {
    slots: [CachePadded<Slot<T>>; CPUS],
    shared: CachePadded<Slot<T>>,
    shared_lock: PinnedMutex<()>,
    depot: PinnedMutex<Depot<T>>,
    config: PoolConfig,
    create: N,
    reset: R,
    cpu: C,
    alloc: A,
    /// Rare events, counted with atomic read-modify-write (off the fast paths).
    failed: AtomicU64,
    reset_panics: AtomicU64,
    detached: AtomicU64,
    cleared: AtomicU64,
}

// SAFETY: per-slot magazines are touched only by the holder of that slot's `CpuLocal` guard
// (exclusive by the trait's contract), the shared slot only under `shared_lock`, the depot only
// under its lock, and everything through `&mut self` in `clear`. A shared pool calls `create`,
// `reset`, `cpu` and `alloc` through `&` from any thread (so they must be `Sync`), and moves
// objects between threads (so `T: Send`); it never hands out `&T` to two threads.
unsafe impl<T, N, R, C, A, const CPUS: usize> Sync for ObjectPool<T, N, R, C, A, CPUS>
where
    T: Send,
    N: Sync,
    R: Sync,
    C: CpuLocal + Sync,
    A: Allocator + Sync,
{
}

// SAFETY: moving the pool moves its cached objects (`T: Send`) and its parts with it; raw
// pointers inside point only to nodes the pool owns.
unsafe impl<T, N, R, C, A, const CPUS: usize> Send for ObjectPool<T, N, R, C, A, CPUS>
where
    T: Send,
    N: Send,
    R: Send,
    C: CpuLocal + Send,
    A: Allocator + Send,
{
}

impl<T, N, R, C, A, const CPUS: usize> ObjectPool<T, N, R, C, A, CPUS>
where
    N: Fn() -> T,
    R: Fn(&mut T),
    C: CpuLocal,
    A: Allocator,
{
    /// A pool with [`PoolConfig::DEFAULT`]. `const`, so it can be a `static` (with `fn`
    /// pointers for `N` and `R`).
    pub const fn new(cpu: C, alloc: A, create: N, reset: R) -> Self {
        Self::with_config(PoolConfig::DEFAULT, cpu, alloc, create, reset)
    }

    /// A pool with the given cache sizes.
    pub const fn with_config(config: PoolConfig, cpu: C, alloc: A, create: N, reset: R) -> Self {
        Self {
            slots: [const { CachePadded::new(Slot::new()) }; CPUS],
            shared: CachePadded::new(Slot::new()),
            shared_lock: PinnedMutex::new(()),
            depot: PinnedMutex::new(Depot {
                top: ptr::null_mut(),
                magazines: 0,
            }),
            config,
            create,
            reset,
            cpu,
            alloc,
            failed: AtomicU64::new(0),
            reset_panics: AtomicU64::new(0),
            detached: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
        }
    }

    /// Takes an object from the caller's CPU cache (or the depot), or builds a new one with the
    /// constructor. The constructor runs outside any lock or CPU guard. Out of memory (the node
    /// allocation failed) is `Err(AllocError)`.
    ///
    /// Needs the pool to be `Sync` (`T: Send`, and `N`, `R`, `C`, `A` all `Sync`), because the
    /// guard may be dropped, and the object returned, on another thread.
    #[inline]
    pub fn acquire(&self) -> Result<Pooled<'_, T>, AllocError>
    where
        Self: Sync,
    {
        let cached = self.with_slot(|m, counters, pinned| {
            let node = self.pop(m, pinned);
            bump(if node.is_some() {
                &counters.hits
            } else {
                &counters.misses
            });
            node
        });
        let node = match cached {
            Some(node) => node,
            None => self.create()?,
        };
        Ok(Pooled { node, pool: self })
    }

    /// Builds an object in a fresh node.
    #[cold]
    fn create(&self) -> Result<NonNull<Node<T>>, AllocError> {
        /// Counts a constructor that unwinds as a failed creation.
        struct CountUnwind<'a>(&'a AtomicU64);
        impl Drop for CountUnwind<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let on_unwind = CountUnwind(&self.failed);
        let value = (self.create)();
        core::mem::forget(on_unwind);
        let Ok(memory) = self.alloc.allocate(Layout::new::<Node<T>>()) else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Err(AllocError);
        };
        let node = memory.cast::<Node<T>>();
        // SAFETY: fresh memory with the layout of `Node<T>`, owned by us.
        unsafe {
            node.as_ptr().write(Node {
                next: ptr::null_mut(),
                next_magazine: ptr::null_mut(),
                value,
            })
        };
        Ok(node)
    }
}

impl<T, N, R, C: CpuLocal, A: Allocator, const CPUS: usize> ObjectPool<T, N, R, C, A, CPUS> {
    /// The pool's cache sizes.
    pub fn config(&self) -> PoolConfig {
        self.config
    }

    /// Most objects this pool ever caches: `(CPUS + 1) × 2 × magazine + depot_magazines ×
    /// magazine`.
    pub fn max_cached(&self) -> usize {
        self.config.max_cached(CPUS.saturating_add(1))
    }

    /// Runs `f` on the caller's slot, holding its guard (or the shared slot's lock, taken
    /// while still holding the guard `enter` returned, if it returned one); `f` gets the token
    /// that lets it take the depot's lock. `f` must not run user code.
    #[inline(always)]
    fn with_slot<Ret>(
        &self,
        f: impl FnOnce(&mut Magazines<T>, &Counters, Pinned<'_>) -> Ret,
    ) -> Ret {
        let entered = self.cpu.enter();
        let pinned = Pinned::new(&entered);
        if let Some((index, _)) = entered
            && let Some(slot) = self.slots.get(index)
        {
            // SAFETY: `entered` holds the guard for slot `index`; by the `CpuLocal` contract no
            // other context holds it while it lives, and only a holder of that guard touches
            // `slots[index].magazines`. The reference does not outlive `f`, which ends before
            // `entered` is dropped.
            let magazines = unsafe { &mut *slot.magazines.get() };
            return f(magazines, &slot.counters, pinned);
        }
        // Declared after `entered`, so dropped (unlocked) before the guard.
        let _lock = self.shared_lock.lock(pinned, self.cpu.lock_section());
        // SAFETY: the shared slot's magazines are touched only under `shared_lock`, held here
        // until after `f` returns.
        let magazines = unsafe { &mut *self.shared.magazines.get() };
        f(magazines, &self.shared.counters, pinned)
    }

    /// Pops a cached object from the slot, refilling `loaded` from `previous` or the depot.
    #[inline(always)]
    fn pop(&self, m: &mut Magazines<T>, pinned: Pinned<'_>) -> Option<NonNull<Node<T>>> {
        if m.loaded.is_null() {
            if !m.previous.is_null() {
                m.loaded = m.previous;
                m.loaded_len = self.config.magazine;
                m.previous = ptr::null_mut();
            } else {
                self.take_from_depot(m, pinned)?;
            }
        }
        let node = NonNull::new(m.loaded)?;
        // SAFETY: `loaded` is a list of nodes this slot owns (see `Magazines`); the node is
        // valid until destroyed, which only its owner does.
        m.loaded = unsafe { (*node.as_ptr()).next };
        m.loaded_len -= 1;
        Some(node)
    }

    /// Moves a full magazine from the depot into the (empty) `loaded` magazine.
    #[cold]
    fn take_from_depot(&self, m: &mut Magazines<T>, pinned: Pinned<'_>) -> Option<()> {
        let mut depot = self.depot.lock(pinned, self.cpu.lock_section());
        let top = NonNull::new(depot.top)?;
        // SAFETY: `top` heads a full magazine owned by the depot, which we hold locked.
        depot.top = unsafe { (*top.as_ptr()).next_magazine };
        depot.magazines -= 1;
        drop(depot);
        m.loaded = top.as_ptr();
        m.loaded_len = self.config.magazine;
        Some(())
    }

    /// Pushes a returned object onto the slot; gives it back when the pool is full.
    #[inline(always)]
    fn push(
        &self,
        m: &mut Magazines<T>,
        node: NonNull<Node<T>>,
        pinned: Pinned<'_>,
    ) -> Result<(), NonNull<Node<T>>> {
        if m.loaded_len == self.config.magazine {
            if !m.previous.is_null() && !self.give_to_depot(m, pinned) {
                return Err(node);
            }
            // `previous` is empty now: the full `loaded` becomes `previous`.
            m.previous = m.loaded;
            m.loaded = ptr::null_mut();
            m.loaded_len = 0;
        }
        // SAFETY: the node is exclusively ours (its guard was consumed) and valid.
        unsafe { (*node.as_ptr()).next = m.loaded };
        m.loaded = node.as_ptr();
        m.loaded_len += 1;
        Ok(())
    }

    /// Moves the full `previous` magazine to the depot; false when the depot is full.
    #[cold]
    fn give_to_depot(&self, m: &mut Magazines<T>, pinned: Pinned<'_>) -> bool {
        let mut depot = self.depot.lock(pinned, self.cpu.lock_section());
        if depot.magazines >= self.config.depot_magazines {
            return false;
        }
        // SAFETY: `previous` heads a full magazine this slot owns; it becomes the depot's.
        unsafe { (*m.previous).next_magazine = depot.top };
        depot.top = m.previous;
        depot.magazines += 1;
        drop(depot);
        m.previous = ptr::null_mut();
        true
    }

    /// Drops the object and frees its node.
    ///
    /// # Safety
    /// `node` came from `create` of this pool, holds a live value, is in no list, and is not
    /// used afterwards.
    unsafe fn destroy(&self, node: NonNull<Node<T>>) {
        /// Frees the node even if `T`'s destructor panics.
        struct Free<'a, T, A: Allocator> {
            alloc: &'a A,
            node: NonNull<Node<T>>,
        }
        impl<T, A: Allocator> Drop for Free<'_, T, A> {
            fn drop(&mut self) {
                // SAFETY: the node was allocated by this allocator with this layout, and its
                // value has been dropped (or is being unwound from) and is not used again.
                unsafe {
                    self.alloc
                        .deallocate(self.node.cast(), Layout::new::<Node<T>>())
                };
            }
        }
        let _free = Free {
            alloc: &self.alloc,
            node,
        };
        // SAFETY: by the caller's contract the value is live and not used afterwards.
        unsafe { ptr::drop_in_place(ptr::addr_of_mut!((*node.as_ptr()).value)) };
    }

    /// Drops every cached object and frees its node. With `&mut self` no guard is out, so
    /// nothing else touches the slots. (If a destructor panics, the objects not yet dropped
    /// are leaked, never dropped twice.)
    pub fn clear(&mut self) {
        let magazine = self.config.magazine;
        for index in 0..=CPUS {
            let slot = if index < CPUS {
                &mut self.slots[index]
            } else {
                &mut self.shared
            };
            let m = slot.magazines.get_mut();
            let lists = [m.loaded, m.previous];
            m.loaded = ptr::null_mut();
            m.loaded_len = 0;
            m.previous = ptr::null_mut();
            for head in lists {
                // SAFETY: the list was this slot's and is detached from it now.
                unsafe { self.destroy_list(head, usize::MAX) };
            }
        }
        let depot = self.depot.get_mut();
        let mut top = depot.top;
        depot.top = ptr::null_mut();
        depot.magazines = 0;
        while let Some(head) = NonNull::new(top) {
            // SAFETY: `head` heads a magazine the depot owned; read its link before destroying.
            top = unsafe { (*head.as_ptr()).next_magazine };
            // SAFETY: the magazine is detached from the depot and holds `magazine` nodes.
            unsafe { self.destroy_list(head.as_ptr(), magazine) };
        }
    }

    /// Destroys up to `count` nodes of the list at `head`.
    ///
    /// # Safety
    /// The list's nodes are owned by the caller and in no other list.
    unsafe fn destroy_list(&self, mut head: *mut Node<T>, count: usize) {
        let mut left = count;
        while let Some(node) = NonNull::new(head) {
            if left == 0 {
                break;
            }
            left -= 1;
            // SAFETY: `node` is a valid node of the caller's list; read its link first.
            head = unsafe { (*node.as_ptr()).next };
            // Counted before the destructor runs, so a panicking one cannot skew `cached`.
            // Only `clear` (with `&mut self`) gets here, so a load and a store suffice.
            bump(&self.cleared);
            // SAFETY: the node is the caller's, detached, and not used again.
            unsafe { self.destroy(node) };
        }
    }

    /// The pool's counters, summed over slots (see [`PoolStats`]).
    pub fn stats(&self) -> PoolStats {
        let mut s = PoolStats::default();
        for slot in self.slots.iter().chain(core::iter::once(&self.shared)) {
            let c = &slot.counters;
            s.hits += c.hits.load(Ordering::Relaxed);
            s.misses += c.misses.load(Ordering::Relaxed);
            s.releases += c.releases.load(Ordering::Relaxed);
            s.discarded += c.discarded.load(Ordering::Relaxed);
        }
        let panics = self.reset_panics.load(Ordering::Relaxed);
        s.releases += panics;
        s.discarded += panics;
        s.failed = self.failed.load(Ordering::Relaxed);
        s.detached = self.detached.load(Ordering::Relaxed);
        s.live = (s.hits + s.misses).saturating_sub(s.failed + s.releases + s.detached);
        s.cleared = self.cleared.load(Ordering::Relaxed);
        s.cached = s.releases.saturating_sub(s.discarded + s.hits + s.cleared);
        s
    }
}

/// What a [`Pooled`] guard needs from its pool, with the pool's other type parameters erased.
trait Recycle<T> {
    /// Resets the object and caches it (or drops it when the pool is full).
    ///
    /// # Safety
    /// `node` was handed out by this pool, is in no list, and is not used afterwards.
    unsafe fn recycle(&self, node: NonNull<Node<T>>);

    /// Frees a node whose value has been moved out.
    ///
    /// # Safety
    /// As `recycle`, and the value was moved out with `ptr::read`.
    unsafe fn detach(&self, node: NonNull<Node<T>>);
}

impl<T, N, R, C, A, const CPUS: usize> Recycle<T> for ObjectPool<T, N, R, C, A, CPUS>
where
    R: Fn(&mut T),
    C: CpuLocal,
    A: Allocator,
{
    unsafe fn recycle(&self, node: NonNull<Node<T>>) {
        /// Destroys the object if the reset hook unwinds (it may be half reset).
        struct DestroyOnUnwind<'a, T, N, R, C: CpuLocal, A: Allocator, const CPUS: usize> {
            pool: &'a ObjectPool<T, N, R, C, A, CPUS>,
            node: NonNull<Node<T>>,
        }
        impl<T, N, R, C: CpuLocal, A: Allocator, const CPUS: usize> Drop
            for DestroyOnUnwind<'_, T, N, R, C, A, CPUS>
        {
            fn drop(&mut self) {
                self.pool.reset_panics.fetch_add(1, Ordering::Relaxed);
                // SAFETY: the guard is only dropped while unwinding out of the reset hook, with
                // the node still exclusively ours and in no list.
                unsafe { self.pool.destroy(self.node) };
            }
        }

        let on_unwind = DestroyOnUnwind { pool: self, node };
        // SAFETY: the node is exclusively ours (caller's contract) and holds a live value. No
        // guard or lock is held while the hook runs.
        (self.reset)(unsafe { &mut (*node.as_ptr()).value });
        core::mem::forget(on_unwind);

        let rejected = self.with_slot(|m, counters, pinned| {
            bump(&counters.releases);
            let result = self.push(m, node, pinned);
            if result.is_err() {
                bump(&counters.discarded);
            }
            result
        });
        if let Err(node) = rejected {
            // SAFETY: the pool refused the node, so it is still exclusively ours; dropped
            // outside the CPU guard because `T`'s destructor is user code.
            unsafe { self.destroy(node) };
        }
    }

    unsafe fn detach(&self, node: NonNull<Node<T>>) {
        self.detached.fetch_add(1, Ordering::Relaxed);
        // SAFETY: by the caller's contract the node came from `create` with this layout, its
        // value was moved out, and it is not used again.
        unsafe { self.alloc.deallocate(node.cast(), Layout::new::<Node<T>>()) };
    }
}

impl<T, N, R, C: CpuLocal, A: Allocator, const CPUS: usize> Drop
    for ObjectPool<T, N, R, C, A, CPUS>
{
    fn drop(&mut self) {
        self.clear();
    }
}

impl<T, N, R, C: CpuLocal, A: Allocator, const CPUS: usize> fmt::Debug
    for ObjectPool<T, N, R, C, A, CPUS>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool")
            .field("config", &self.config)
            .field("cpus", &CPUS)
            .finish_non_exhaustive()
    }
}

/// An object from an [`ObjectPool`]: derefs to `T`; dropping it resets the object and returns
/// it to the pool (to the cache of the CPU that drops it).
///
/// The guard holds no CPU slot and no lock, so it can be kept across any code and sent to
/// another thread (`Send` when `T: Send`).
pub struct Pooled<'a, T> {
    node: NonNull<Node<T>>,
    pool: &'a (dyn Recycle<T> + Sync + 'a),
}

// SAFETY: the guard owns its object exclusively (moving it moves a `T`), and the pool it
// returns the object to is `Sync`, so dropping the guard on another thread is sound.
unsafe impl<T: Send> Send for Pooled<'_, T> {}
// SAFETY: `&Pooled` gives only `&T`.
unsafe impl<T: Sync> Sync for Pooled<'_, T> {}

impl<T> Pooled<'_, T> {
    /// Takes the object out of the pool: the node is freed, the reset hook is not called, and
    /// the object is the caller's to drop (counted as `detached`).
    pub fn into_inner(this: Self) -> T {
        let this = ManuallyDrop::new(this);
        // SAFETY: the guard owns a live value; it is read once and the guard is never dropped.
        let value = unsafe { ptr::read(ptr::addr_of!((*this.node.as_ptr()).value)) };
        // SAFETY: the node came from this pool, is in no list, and its value was moved out.
        unsafe { this.pool.detach(this.node) };
        value
    }
}

impl<T> Deref for Pooled<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard owns a live value until it is dropped.
        unsafe { &(*self.node.as_ptr()).value }
    }
}

impl<T> DerefMut for Pooled<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard owns its value exclusively; `&mut self` makes this borrow unique.
        unsafe { &mut (*self.node.as_ptr()).value }
    }
}

impl<T> Drop for Pooled<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the node came from this pool, is in no list, and the guard is gone after this.
        unsafe { self.pool.recycle(self.node) };
    }
}

impl<T: fmt::Debug> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&**self).finish()
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::testing::{FakeCpu, LockReport, interrupts_off};
    use std::alloc::System;
    use std::vec::Vec;

    /// The depot's and the shared slot's locks are taken only while the `CpuLocal` guard (a
    /// fake that "disables interrupts") is held, and no slot is entered twice.
    /// With `pin_only`, the guard only pins and each lock must be inside the lock section.
    fn check_locks_under_guard(slot: usize, pin_only: bool) {
        // One object per magazine and room for two magazines in the depot: acquiring and
        // releasing a handful of objects goes through the depot both ways.
        let config = PoolConfig::new(1, 2).unwrap();
        let pool: ObjectPool<u64, _, _, FakeCpu, System, 2> = ObjectPool::with_config(
            config,
            if pin_only {
                FakeCpu::pin_only(Some(slot))
            } else {
                FakeCpu::new(Some(slot))
            },
            System,
            || 7u64,
            |v: &mut u64| *v = 7,
        );
        let _ = LockReport::take();
        for round in 0..3 {
            let objects: Vec<_> = (0..6).map(|_| pool.acquire().unwrap()).collect();
            drop(objects);
            let report = LockReport::take();
            assert!(
                report.locks > 0,
                "round {round}: took no lock, so checked nothing"
            );
            assert_eq!(
                report.unguarded, 0,
                "round {round}: lock taken without the guard"
            );
            assert_eq!(report.nested_enters, 0, "round {round}: slot entered twice");
            assert!(!interrupts_off(), "round {round}: guard leaked");
        }
        assert!(pool.stats().hits > 0);
    }

    #[test]
    fn depot_lock_is_taken_under_the_cpu_guard() {
        check_locks_under_guard(0, false);
    }

    #[test]
    fn shared_slot_lock_is_taken_under_the_cpu_guard() {
        // Slot 5 of a 2-slot pool: everything goes through the shared, locked slot.
        check_locks_under_guard(5, false);
    }

    #[test]
    fn locks_are_taken_in_the_lock_section() {
        check_locks_under_guard(0, true);
        check_locks_under_guard(5, true);
    }
}
