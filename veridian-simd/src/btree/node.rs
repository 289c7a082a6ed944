//! Node layout and the node arena.
//!
//! **What it does.** Leaves and internal nodes live in two `Vec`s and refer to each other by
//! `u32` index (half the size of a pointer: an internal node's 17 child links take 68 bytes). Each node is `#[repr(C, align(64))]` with its keys first: the keys start on a cache
//! line and are packed together (16 `u64` keys are exactly 2 lines; a leaf's 15 keys with its `len`
//! and `next` are too), so the in-node search touches only the key lines (in an internal node
//! plus the one holding `len`); values sit after them in the leaf and are
//! read only at the slot that matched. Leaves are chained through `next` for range iteration.
//! Freed nodes are chained into a free list through that same link (leaves: `next`, internal
//! nodes: `children[0]`), so freeing never allocates.
//!
//! **What it guarantees.** Values are `MaybeUninit<V>` (an `Option<V>` doubled the value
//! array for `u64` values: 7 lines per 16-key leaf instead of 5; a 15-key leaf is 4). The invariant that makes the few
//! `unsafe` reads sound: in every leaf of the arena, live or free, exactly `vals[..len]` are
//! initialised (free leaves have `len == 0`). Only the [`Leaf`] methods below change `len` or
//! the values, each keeping the invariant; the arena's `Drop` drops exactly `vals[..len]` of
//! every leaf and its `Clone` clones exactly those, so every value is dropped once. A panic in
//! a value's `Clone` or `Drop` can leak values, never drop one twice.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

use super::search::{BTreeKey, INTERNAL_CAPACITY, KeySearch, LEAF_CAPACITY};

/// Below this many keys a non-root leaf is refilled from a sibling or merged with one. A split
/// of a full leaf (15 keys and the new one) leaves at least 7 keys on each side, except an
/// append split at the end of the last leaf (15 | 1), so the last leaf of the tree may hold
/// fewer; a merge joins a leaf of `MIN_LEAF - 1` keys with one of `MIN_LEAF`:
/// `5 + 6 = 11 <= 15`.
pub(crate) const MIN_LEAF: usize = LEAF_CAPACITY / 2 - 1;

/// The same for internal nodes: a split leaves 8 separators on each side (an append split:
/// 15 | 1, only in the last node of a level); a merge joins
/// `MIN_INTERNAL - 1` and `MIN_INTERNAL` separators plus the parent's: `6 + 7 + 1 = 14 <= 16`.
pub(crate) const MIN_INTERNAL: usize = INTERNAL_CAPACITY / 2 - 1;

/// "No node" (end of the leaf chain, end of a free list, empty tree).
pub(crate) const NIL: u32 = u32::MAX;

/// Keys and values; `keys[..len]` sorted ascending, `vals[..len]` initialised, the rest not.
/// `len` and `vals` are private: the methods keep that invariant.
#[repr(C, align(64))]
pub(crate) struct Leaf<K, V> {
    pub keys: [K; LEAF_CAPACITY],
    len: u32,
    /// The next leaf in key order (or, for a freed leaf, the next free one).
    pub next: u32,
    vals: [MaybeUninit<V>; LEAF_CAPACITY],
}

/// `len` separators and `len + 1` children; every key under `children[i]` is `<= keys[i]`
/// and `> keys[i - 1]`.
#[derive(Clone)]
#[repr(C, align(64))]
pub(crate) struct Internal<K> {
    pub keys: [K; INTERNAL_CAPACITY],
    pub len: u32,
    pub children: [u32; INTERNAL_CAPACITY + 1],
}

impl<K: Copy, V> Leaf<K, V> {
    fn new(fill: K) -> Self {
        Leaf {
            keys: [fill; LEAF_CAPACITY],
            len: 0,
            next: NIL,
            vals: [const { MaybeUninit::uninit() }; LEAF_CAPACITY],
        }
    }

    /// Inserts `key → value` at `slot` (`slot <= len < LEAF_CAPACITY`), moving the entries from
    /// `slot` up by one.
    #[inline]
    pub fn insert(&mut self, slot: usize, key: K, value: V) {
        let len = self.len();
        assert!(
            slot <= len && len < LEAF_CAPACITY,
            "leaf insert out of range"
        );
        self.keys.copy_within(slot..len, slot + 1);
        self.keys[slot] = key;
        // Moving `MaybeUninit`s keeps each value's bits; `vals[..=len]` are initialised after.
        self.vals.copy_within_uninit(slot..len, slot + 1);
        self.vals[slot] = MaybeUninit::new(value);
        self.len += 1;
    }

    /// Removes and returns the entry at `slot` (`slot < len`), moving the later ones down.
    #[inline]
    pub fn remove(&mut self, slot: usize) -> (K, V) {
        let len = self.len();
        assert!(slot < len, "leaf remove out of range");
        let key = self.keys[slot];
        // SAFETY: `slot < len`, so the value is initialised; it is moved out here and its slot
        // is overwritten (or left past the new `len`) below, so it is never read again.
        let value = unsafe { self.vals[slot].assume_init_read() };
        self.keys.copy_within(slot + 1..len, slot);
        self.vals.copy_within_uninit(slot + 1..len, slot);
        self.len -= 1;
        (key, value)
    }

    /// Moves the entries `at..len` to the end of `dst` (which must have room), in
    /// order; `self` keeps `..at`.
    pub fn move_tail(&mut self, at: usize, dst: &mut Leaf<K, V>) {
        let (len, dlen) = (self.len(), dst.len());
        assert!(
            at <= len && dlen + (len - at) <= LEAF_CAPACITY,
            "leaf move out of range"
        );
        let n = len - at;
        dst.keys[dlen..dlen + n].copy_from_slice(&self.keys[at..len]);
        // Bitwise moves of `MaybeUninit`s: the values now live in `dst.vals[dlen..dlen + n]`
        // and `self.len` drops to `at`, so each is owned by exactly one leaf.
        for i in 0..n {
            dst.vals[dlen + i] = core::mem::replace(&mut self.vals[at + i], MaybeUninit::uninit());
        }
        dst.len += n as u32;
        self.len = at as u32;
    }
}

/// `copy_within` for `[MaybeUninit<V>]`, which is not `Copy` (`V` may not be): a bitwise move
/// of the elements, as `copy_within` would do.
trait CopyWithinUninit {
    fn copy_within_uninit(&mut self, src: core::ops::Range<usize>, dest: usize);
}

impl<V> CopyWithinUninit for [MaybeUninit<V>] {
    #[inline(always)]
    fn copy_within_uninit(&mut self, src: core::ops::Range<usize>, dest: usize) {
        let (start, end) = (src.start, src.end);
        assert!(start <= end && end <= self.len() && dest <= self.len() - (end - start));
        let p = self.as_mut_ptr();
        // SAFETY: both ranges are inside the slice (checked above); `ptr::copy` allows them to
        // overlap; `MaybeUninit<V>` has no validity requirement, so any bits may be copied.
        unsafe { core::ptr::copy(p.add(start), p.add(dest), end - start) };
    }
}

// The 8 bytes after a leaf's keys are `len` and `next` when the keys are 4 or 8 bytes (the
// SIMD keys): what `Leaf::rank` promises `BTreeKey::rank_leaf`.
const _: () = assert!(
    core::mem::offset_of!(Leaf<u64, u64>, len) == LEAF_CAPACITY * 8
        && core::mem::offset_of!(Leaf<u64, u64>, next) == LEAF_CAPACITY * 8 + 4
        && core::mem::offset_of!(Leaf<u32, u64>, len) == LEAF_CAPACITY * 4
);

impl<K: BTreeKey, V> Leaf<K, V> {
    /// How many of `keys[..len]` are smaller than `key` (where it is or would go).
    #[inline(always)]
    pub fn rank(&self, key: &K, s: KeySearch) -> usize {
        // SAFETY: `keys` is the first field (`repr(C)`), all initialised; for 4- and 8-byte
        // keys the next 8 bytes are `len` and `next` (asserted above for `u64` and `u32`;
        // the same offsets for any key of that size and alignment), initialised; the pointer
        // is derived from the whole leaf, so reading them through it is in bounds.
        unsafe { K::rank_leaf(core::ptr::from_ref(self).cast::<K>(), self.len(), key, s) }
    }
}

impl<K, V> Leaf<K, V> {
    /// Number of entries.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// The value in `slot` (panics unless `slot < len`).
    #[inline(always)]
    pub fn val(&self, slot: usize) -> &V {
        assert!(slot < self.len(), "leaf slot out of range");
        // SAFETY: `vals[..len]` are initialised (module invariant) and `slot < len`.
        unsafe { self.vals[slot].assume_init_ref() }
    }

    /// The value in `slot`, mutably (panics unless `slot < len`).
    #[inline(always)]
    pub fn val_mut(&mut self, slot: usize) -> &mut V {
        assert!(slot < self.len(), "leaf slot out of range");
        // SAFETY: as in `val`.
        unsafe { self.vals[slot].assume_init_mut() }
    }
}

impl<K: Clone, V: Clone> Clone for Leaf<K, V> {
    fn clone(&self) -> Self {
        let mut out = Leaf {
            keys: self.keys.clone(),
            len: 0,
            next: self.next,
            vals: [const { MaybeUninit::uninit() }; LEAF_CAPACITY],
        };
        for i in 0..self.len() {
            out.vals[i] = MaybeUninit::new(self.val(i).clone());
            // Counted as each is written: a panicking `clone` leaves `out` consistent.
            out.len += 1;
        }
        out
    }
}

impl<K, V> Drop for Leaf<K, V> {
    fn drop(&mut self) {
        let len = self.len as usize;
        for v in &mut self.vals[..len] {
            // SAFETY: `vals[..len]` are initialised (module invariant) and dropped only here.
            unsafe { v.assume_init_drop() };
        }
    }
}

impl<K: Copy> Internal<K> {
    fn new(fill: K) -> Self {
        Internal {
            keys: [fill; INTERNAL_CAPACITY],
            len: 0,
            children: [NIL; INTERNAL_CAPACITY + 1],
        }
    }
}

/// The nodes could not be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityError {
    /// The allocator refused to grow a node array.
    OutOfMemory,
    /// The tree would need more nodes than `u32` indices (or its fixed path depth) allow.
    TooManyNodes,
}

impl core::fmt::Display for CapacityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CapacityError::OutOfMemory => f.write_str("CacheBTree: out of memory for nodes"),
            CapacityError::TooManyNodes => {
                f.write_str("CacheBTree: more nodes than 32-bit node indices allow")
            }
        }
    }
}

impl core::error::Error for CapacityError {}

/// Both node arrays and their free lists.
#[derive(Clone)]
pub(crate) struct Arena<K, V> {
    pub leaves: Vec<Leaf<K, V>>,
    pub internals: Vec<Internal<K>>,
    free_leaf: u32,
    free_internal: u32,
    free_leaves: usize,
    free_internals: usize,
}

impl<K: Copy, V> Arena<K, V> {
    pub const fn new() -> Self {
        Arena {
            leaves: Vec::new(),
            internals: Vec::new(),
            free_leaf: NIL,
            free_internal: NIL,
            free_leaves: 0,
            free_internals: 0,
        }
    }

    /// Makes sure `leaves` new leaves and `internals` new internal nodes can be taken without
    /// allocating or running out of indices.
    #[inline]
    pub fn reserve(&mut self, leaves: usize, internals: usize) -> Result<(), CapacityError> {
        // The common case (room already there) without a call: this runs on every insert.
        let room = |spare: usize, free: usize, want: usize| spare.saturating_add(free) >= want;
        if room(
            self.leaves.capacity() - self.leaves.len(),
            self.free_leaves,
            leaves,
        ) && room(
            self.internals.capacity() - self.internals.len(),
            self.free_internals,
            internals,
        ) {
            return Ok(());
        }
        self.reserve_slow(leaves, internals)
    }

    #[cold]
    fn reserve_slow(&mut self, leaves: usize, internals: usize) -> Result<(), CapacityError> {
        fn grow<T>(v: &mut Vec<T>, free: usize, want: usize) -> Result<(), CapacityError> {
            let extra = want.saturating_sub(free);
            if extra == 0 {
                return Ok(());
            }
            if v.len().saturating_add(extra) >= NIL as usize {
                return Err(CapacityError::TooManyNodes);
            }
            v.try_reserve(extra).map_err(|_| CapacityError::OutOfMemory)
        }
        grow(&mut self.leaves, self.free_leaves, leaves)?;
        grow(&mut self.internals, self.free_internals, internals)
    }

    /// A fresh empty leaf (after [`Arena::reserve`], never allocates).
    pub fn alloc_leaf(&mut self, fill: K) -> u32 {
        if self.free_leaf != NIL {
            let i = self.free_leaf;
            let leaf = &mut self.leaves[i as usize];
            self.free_leaf = leaf.next;
            self.free_leaves -= 1;
            debug_assert_eq!(leaf.len, 0);
            leaf.next = NIL;
            i
        } else {
            self.leaves.push(Leaf::new(fill));
            (self.leaves.len() - 1) as u32
        }
    }

    /// A fresh empty internal node (after [`Arena::reserve`], never allocates).
    pub fn alloc_internal(&mut self, fill: K) -> u32 {
        if self.free_internal != NIL {
            let i = self.free_internal;
            let node = &mut self.internals[i as usize];
            self.free_internal = node.children[0];
            self.free_internals -= 1;
            node.len = 0;
            i
        } else {
            self.internals.push(Internal::new(fill));
            (self.internals.len() - 1) as u32
        }
    }

    /// Returns an empty leaf (all values already moved out) to the free list.
    pub fn free_leaf(&mut self, i: u32) {
        let leaf = &mut self.leaves[i as usize];
        assert_eq!(leaf.len, 0, "freeing a leaf that still holds values");
        leaf.next = self.free_leaf;
        self.free_leaf = i;
        self.free_leaves += 1;
    }

    /// Returns an internal node to the free list.
    pub fn free_internal(&mut self, i: u32) {
        let node = &mut self.internals[i as usize];
        node.len = 0;
        node.children[0] = self.free_internal;
        self.free_internal = i;
        self.free_internals += 1;
    }

    /// Two different leaves, mutably.
    pub fn two_leaves(&mut self, a: u32, b: u32) -> (&mut Leaf<K, V>, &mut Leaf<K, V>) {
        pair_mut(&mut self.leaves, a as usize, b as usize)
    }

    /// Two different internal nodes, mutably.
    pub fn two_internals(&mut self, a: u32, b: u32) -> (&mut Internal<K>, &mut Internal<K>) {
        pair_mut(&mut self.internals, a as usize, b as usize)
    }
}

/// `(&mut v[a], &mut v[b])` for `a != b`.
fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    debug_assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}
