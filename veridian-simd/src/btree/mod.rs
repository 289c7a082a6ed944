//! [`CacheBTree`]: an ordered map whose nodes are sized to cache lines and searched with SIMD.
//!
//! **What it does.** A B+ tree: values live only in the leaves, internal nodes hold separator
//! copies of keys, leaves are chained for range iteration. A leaf holds up to
//! [`LEAF_CAPACITY`] (15) keys, an internal node [`INTERNAL_CAPACITY`] (16), packed in their
//! own cache-line-aligned array (`node`; a leaf's `len` and `next` fill the 16th key slot, so
//! a `<u64, u64>` leaf is 4 lines); the search
//! inside a node is a branch-free SIMD compare for integer keys and a binary search for any
//! other [`BTreeKey`] (`search`). The variant is resolved once through the crate's
//! [`crate::Dispatcher`] and read once per operation; while descending, the leaf's lines (keys,
//! `len` and values, so the value read after the search does not wait for a second miss) are
//! prefetched ([`crate::hint::prefetch_read`]) as soon as its index is known. Internal nodes are
//! not prefetched: their lines are read right away by the search, so a prefetch there bought
//! nothing measurable.
//! Removal refills an underfull node from a sibling or merges it with one, and shrinks the
//! root; insertion splits full nodes on the way back up (in halves, except a key past the end
//! of the last leaf, which starts a new leaf and leaves the full ones full).
//!
//! **What it relies on.** `alloc` (two `Vec`s of nodes, grown with `try_reserve`); nothing of
//! the embedder. The SIMD search uses vector registers when the CPU reports them usable (CPUID +
//! XCR0); a kernel context that must not touch them builds its trees with
//! [`CacheBTree::with_search`]`(`[`KeySearch::scalar`]`())`.
//!
//! **What it guarantees.** The same results as `alloc::collections::BTreeMap` for every
//! operation sequence (proptested); every value is dropped exactly once (when removed,
//! replaced, or with the tree); `unsafe` only in the SIMD blocks of `search` and in the leaf's
//! value slots (`MaybeUninit`, behind `node::Leaf`'s methods, invariant in `node`); out of memory
//! is an error from [`CacheBTree::try_insert`] (and [`CacheBTree::insert`] panics with that
//! error, like `Vec::push`). Ranges with the start after the end yield nothing (no panic).

mod entry;
mod iter;
mod node;
mod search;
#[cfg(test)]
mod tests;

use core::fmt;
use core::ops::{Bound, RangeBounds};

pub use entry::{Entry, OccupiedEntry, VacantEntry};
pub use iter::{Iter, Keys, Range, Values};
pub use node::CapacityError;
pub use search::{
    BTreeKey, INTERNAL_CAPACITY, KeySearch, LEAF_CAPACITY, SearchUnsupported, SearchVariant,
    scalar_rank,
};

use crate::hint::{Locality, prefetch_read};
use node::{Arena, Internal, Leaf, MIN_INTERNAL, MIN_LEAF, NIL};

/// Deepest tree the fixed path buffers allow. Every non-root internal node but the last of its
/// level (which ascending inserts may leave with 2 children) has at least `MIN_INTERNAL + 1 =
/// 8` children, so 2^32 leaves need at most 13 levels; 24 leaves a margin.
const MAX_HEIGHT: usize = 24;

/// One step of a descent: the internal node and the child taken.
#[derive(Clone, Copy)]
struct Step {
    node: u32,
    child: u32,
}

/// A path from the root to a leaf's parent.
pub(crate) struct Path {
    steps: [Step; MAX_HEIGHT],
    len: usize,
}

impl Path {
    #[inline(always)]
    fn new() -> Self {
        Path {
            steps: [Step {
                node: NIL,
                child: 0,
            }; MAX_HEIGHT],
            len: 0,
        }
    }
}

/// Prefetches the first `bytes` of node `idx` of `base` (the whole leaf: keys, `len` and the
/// values, whose line is only known after the search), at most 16 lines.
#[inline(always)]
fn prefetch_node<T>(base: *const T, idx: u32, bytes: usize) {
    let p = base.wrapping_add(idx as usize).cast::<u8>();
    let lines = bytes.div_ceil(64);
    let lines = if lines > 16 { 16 } else { lines };
    for line in 0..lines {
        prefetch_read(p.wrapping_add(line * 64), Locality::T0);
    }
}

/// An ordered map from `K` to `V` with cache-line nodes and SIMD in-node search.
///
/// ```
/// use veridian_simd::btree::CacheBTree;
///
/// let mut regions: CacheBTree<u64, &str> = CacheBTree::new();
/// regions.insert(0x4000, "heap");
/// regions.insert(0x1000, "text");
/// *regions.entry(0x8000).or_insert("stack") = "stack0";
/// assert_eq!(regions.get(&0x1000), Some(&"text"));
/// let keys: Vec<u64> = regions.range(0x1000..0x8000).map(|(k, _)| *k).collect();
/// assert_eq!(keys, [0x1000, 0x4000]);
/// assert_eq!(regions.remove(&0x4000), Some("heap"));
/// assert_eq!(regions.len(), 2);
/// ```
#[derive(Clone)]
pub struct CacheBTree<K, V> {
    arena: Arena<K, V>,
    root: u32,
    /// Internal levels above the leaves (0: the root is a leaf).
    height: usize,
    len: usize,
    /// `None`: `K::preferred_search()` (detected once, process-wide).
    search: Option<KeySearch>,
}

impl<K: BTreeKey, V> Default for CacheBTree<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: BTreeKey, V> CacheBTree<K, V> {
    /// An empty tree (no allocation) using the key type's preferred search.
    pub const fn new() -> Self {
        CacheBTree {
            arena: Arena::new(),
            root: NIL,
            height: 0,
            len: 0,
            search: None,
        }
    }

    /// An empty tree that searches nodes with `search` (for example [`KeySearch::scalar`] in a
    /// context where the vector state must not be touched).
    pub const fn with_search(search: KeySearch) -> Self {
        CacheBTree {
            arena: Arena::new(),
            root: NIL,
            height: 0,
            len: 0,
            search: Some(search),
        }
    }

    /// The in-node search this tree uses.
    #[inline]
    pub fn key_search(&self) -> KeySearch {
        match self.search {
            Some(s) => s,
            None => K::preferred_search(),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every entry (dropping the values) and frees the nodes.
    pub fn clear(&mut self) {
        self.arena = Arena::new();
        self.root = NIL;
        self.height = 0;
        self.len = 0;
    }

    /// Walks from the root to the leaf that holds or would hold `key`, optionally recording
    /// the path.
    #[inline(always)]
    fn descend(&self, key: &K, s: KeySearch, mut path: Option<&mut Path>) -> u32 {
        let mut node = self.root;
        let leaves = self.arena.leaves.as_ptr();
        for level in (0..self.height).rev() {
            let n = &self.arena.internals[node as usize];
            let child = K::rank(&n.keys, n.len as usize, key, s);
            let next = n.children[child];
            if level == 0 {
                prefetch_node(leaves, next, size_of::<Leaf<K, V>>());
            }
            if let Some(p) = path.as_deref_mut() {
                p.steps[p.len] = Step {
                    node,
                    child: child as u32,
                };
                p.len += 1;
            }
            node = next;
        }
        node
    }

    /// The leaf and slot holding `key`.
    #[inline]
    fn locate(&self, key: &K) -> Option<(u32, usize)> {
        if self.root == NIL {
            return None;
        }
        let s = self.key_search();
        let leaf_idx = self.descend(key, s, None);
        let leaf = &self.arena.leaves[leaf_idx as usize];
        let slot = leaf.rank(key, s);
        (slot < leaf.len() && leaf.keys[slot] == *key).then_some((leaf_idx, slot))
    }

    /// The value for `key`.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let (leaf, slot) = self.locate(key)?;
        Some(self.arena.leaves[leaf as usize].val(slot))
    }

    /// The value for `key`, mutably.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let (leaf, slot) = self.locate(key)?;
        Some(self.arena.leaves[leaf as usize].val_mut(slot))
    }

    /// The stored key and value for `key`.
    pub fn get_key_value(&self, key: &K) -> Option<(&K, &V)> {
        let (leaf, slot) = self.locate(key)?;
        let l = &self.arena.leaves[leaf as usize];
        Some((&l.keys[slot], l.val(slot)))
    }

    /// Whether `key` is present.
    #[inline]
    pub fn contains_key(&self, key: &K) -> bool {
        self.locate(key).is_some()
    }

    /// Inserts `key → value`; returns the previous value for `key`, if any.
    ///
    /// # Panics
    /// When the node arrays cannot grow (out of memory), like `Vec::push`; use
    /// [`CacheBTree::try_insert`] to get the error instead.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.try_insert(key, value) {
            Ok(old) => old,
            Err(e) => panic!("{e}"),
        }
    }

    /// Inserts `key → value`; returns the previous value for `key`, or an error (with the tree
    /// unchanged and `value` dropped) when nodes cannot be allocated.
    pub fn try_insert(&mut self, key: K, value: V) -> Result<Option<V>, CapacityError> {
        // The path lives here and is passed by reference: returning it inside the lookup's
        // result cost two `memcpy` calls per insert.
        let mut path = Path::new();
        match self.insert_slot(key, &mut path) {
            Slot::Found(leaf, slot) => {
                let old = self.arena.leaves[leaf as usize].val_mut(slot);
                Ok(Some(core::mem::replace(old, value)))
            }
            Slot::Vacant(leaf, slot) => {
                self.insert_new(key, value, &path, leaf, slot)?;
                Ok(None)
            }
        }
    }

    /// Where `key` is, or (with the path to it recorded in `path`) the leaf and slot where it
    /// would go.
    #[inline]
    fn insert_slot(&self, key: K, path: &mut Path) -> Slot {
        if self.root == NIL {
            return Slot::Vacant(NIL, 0);
        }
        let s = self.key_search();
        let leaf_idx = self.descend(&key, s, Some(path));
        let leaf = &self.arena.leaves[leaf_idx as usize];
        let slot = leaf.rank(&key, s);
        if slot < leaf.len() && leaf.keys[slot] == key {
            return Slot::Found(leaf_idx, slot);
        }
        Slot::Vacant(leaf_idx, slot)
    }

    /// Inserts a key known to be absent at `slot` of `leaf` (`NIL`: the tree is empty), reached
    /// through `path`; returns where it went.
    pub(crate) fn insert_new(
        &mut self,
        key: K,
        value: V,
        path: &Path,
        leaf: u32,
        slot: usize,
    ) -> Result<(u32, usize), CapacityError> {
        if self.height + 1 >= MAX_HEIGHT {
            return Err(CapacityError::TooManyNodes);
        }
        // Enough for a split at every level and a new root: after this nothing allocates.
        self.arena.reserve(1, self.height + 1)?;
        self.len += 1;
        if leaf == NIL {
            let l = self.arena.alloc_leaf(key);
            self.arena.leaves[l as usize].insert(0, key, value);
            self.root = l;
            self.height = 0;
            return Ok((l, 0));
        }
        let len = self.arena.leaves[leaf as usize].len();
        if len < LEAF_CAPACITY {
            self.arena.leaves[leaf as usize].insert(slot, key, value);
            return Ok((leaf, slot));
        }
        // Split the full leaf, then insert into the side where the key belongs. Normally in
        // halves; a key past the end of the last leaf (ascending inserts) leaves the full leaf
        // as it is and starts a new one, so ascending inserts fill every leaf but the last
        // instead of leaving them half full.
        let right = self.arena.alloc_leaf(key);
        let append = slot == LEAF_CAPACITY && self.arena.leaves[leaf as usize].next == NIL;
        let half = if append {
            LEAF_CAPACITY
        } else {
            LEAF_CAPACITY / 2
        };
        let (l, r) = self.arena.two_leaves(leaf, right);
        l.move_tail(half, r);
        r.next = l.next;
        l.next = right;
        let at = if slot < half || slot == half && !append {
            l.insert(slot, key, value);
            (leaf, slot)
        } else {
            r.insert(slot - half, key, value);
            (right, slot - half)
        };
        // Separator: the largest key of the left half.
        let sep = l.keys[l.len() - 1];
        self.insert_separator(path, path.len, sep, right, append);
        Ok(at)
    }

    /// After node `path.steps[depth]`'s child (or the root, at depth 0) split, inserts the
    /// separator `sep` and the new right sibling `right` into the parent, splitting upwards.
    /// `append`: the split was at the end of the last leaf, so every node on the path is the
    /// last of its level and the separator goes to its end; a full node then keeps 15
    /// separators and gives the new node 1, instead of halves.
    fn insert_separator(
        &mut self,
        path: &Path,
        mut depth: usize,
        mut sep: K,
        mut right: u32,
        append: bool,
    ) {
        loop {
            if depth == 0 {
                // The root split: a new root above it.
                let old_root = self.root;
                let r = self.arena.alloc_internal(sep);
                let n = &mut self.arena.internals[r as usize];
                n.keys[0] = sep;
                n.children[0] = old_root;
                n.children[1] = right;
                n.len = 1;
                self.root = r;
                self.height += 1;
                return;
            }
            depth -= 1;
            let Step { node, child } = path.steps[depth];
            let pos = child as usize;
            let n = &mut self.arena.internals[node as usize];
            let len = n.len as usize;
            if len < INTERNAL_CAPACITY {
                n.keys.copy_within(pos..len, pos + 1);
                n.keys[pos] = sep;
                n.children.copy_within(pos + 1..len + 1, pos + 2);
                n.children[pos + 1] = right;
                n.len += 1;
                return;
            }
            // Full: lay out the 17 separators and 18 children, keep 8 | push 1 | move 8 (when
            // appending: keep 15 | push 1 | move 1).
            let mut keys = [sep; INTERNAL_CAPACITY + 1];
            let mut children = [right; INTERNAL_CAPACITY + 2];
            keys[..pos].copy_from_slice(&n.keys[..pos]);
            keys[pos + 1..].copy_from_slice(&n.keys[pos..]);
            children[..pos + 1].copy_from_slice(&n.children[..pos + 1]);
            children[pos + 2..].copy_from_slice(&n.children[pos + 1..]);
            debug_assert!(!append || pos == len);
            let half = if append {
                INTERNAL_CAPACITY - 1
            } else {
                INTERNAL_CAPACITY / 2
            };
            n.keys[..half].copy_from_slice(&keys[..half]);
            n.children[..half + 1].copy_from_slice(&children[..half + 1]);
            n.len = half as u32;
            let new = self.arena.alloc_internal(sep);
            let m = &mut self.arena.internals[new as usize];
            let rest = INTERNAL_CAPACITY - half;
            m.keys[..rest].copy_from_slice(&keys[half + 1..]);
            m.children[..rest + 1].copy_from_slice(&children[half + 1..]);
            m.len = rest as u32;
            sep = keys[half];
            right = new;
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`; returns the stored key and its value.
    pub fn remove_entry(&mut self, key: &K) -> Option<(K, V)> {
        if self.root == NIL {
            return None;
        }
        let s = self.key_search();
        let mut path = Path::new();
        let leaf_idx = self.descend(key, s, Some(&mut path));
        let leaf = &mut self.arena.leaves[leaf_idx as usize];
        let len = leaf.len();
        let slot = leaf.rank(key, s);
        if slot >= len || leaf.keys[slot] != *key {
            return None;
        }
        let (k, v) = leaf.remove(slot);
        self.len -= 1;
        let remaining = leaf.len();
        if path.len == 0 {
            if remaining == 0 {
                self.arena.free_leaf(leaf_idx);
                self.root = NIL;
            }
        } else if remaining < MIN_LEAF {
            self.rebalance_leaf(&path, leaf_idx);
        }
        Some((k, v))
    }

    /// Refills or merges the underfull leaf `leaf`, then walks up fixing internal nodes.
    fn rebalance_leaf(&mut self, path: &Path, leaf: u32) {
        let depth = path.len - 1;
        let Step {
            node: parent,
            child,
        } = path.steps[depth];
        let ci = child as usize;
        let (plen, left, right) = {
            let p = &self.arena.internals[parent as usize];
            let left = (ci > 0).then(|| p.children[ci - 1]);
            let right = (ci < p.len as usize).then(|| p.children[ci + 1]);
            (p.len as usize, left, right)
        };
        debug_assert!(plen >= 1);
        if let Some(l) = left
            && self.arena.leaves[l as usize].len() > MIN_LEAF
        {
            // Move the left sibling's last entry to our front.
            let (ln, n) = self.arena.two_leaves(l, leaf);
            let last = ln.len() - 1;
            let (k, v) = ln.remove(last);
            n.insert(0, k, v);
            let new_sep = ln.keys[last - 1];
            self.arena.internals[parent as usize].keys[ci - 1] = new_sep;
            return;
        }
        if let Some(r) = right
            && self.arena.leaves[r as usize].len() > MIN_LEAF
        {
            // Move the right sibling's first entry to our end.
            let (n, rn) = self.arena.two_leaves(leaf, r);
            let (k, v) = rn.remove(0);
            let end = n.len();
            n.insert(end, k, v);
            let new_sep = n.keys[end];
            self.arena.internals[parent as usize].keys[ci] = new_sep;
            return;
        }
        // Merge with a sibling (the left one if there is one); the right node of the pair goes.
        let (keep, gone, sep_idx) = match left {
            Some(l) => (l, leaf, ci - 1),
            None => (leaf, right.unwrap_or(NIL), ci),
        };
        if gone == NIL {
            // A parent with one child only exists transiently at the root; nothing to merge.
            return;
        }
        let (k, g) = self.arena.two_leaves(keep, gone);
        g.move_tail(0, k);
        k.next = g.next;
        self.arena.free_leaf(gone);
        internal_remove(&mut self.arena.internals[parent as usize], sep_idx);
        self.rebalance_internal(path, depth);
    }

    /// Internal node `path.steps[depth].node` lost a separator: shrink the root or refill /
    /// merge it, and continue upwards.
    fn rebalance_internal(&mut self, path: &Path, mut depth: usize) {
        loop {
            let node = path.steps[depth].node;
            let len = self.arena.internals[node as usize].len as usize;
            if depth == 0 {
                if len == 0 {
                    // The root has one child left: that child becomes the root.
                    self.root = self.arena.internals[node as usize].children[0];
                    self.arena.free_internal(node);
                    self.height -= 1;
                }
                return;
            }
            if len >= MIN_INTERNAL {
                return;
            }
            let Step {
                node: parent,
                child,
            } = path.steps[depth - 1];
            let ci = child as usize;
            let (left, right) = {
                let p = &self.arena.internals[parent as usize];
                (
                    (ci > 0).then(|| p.children[ci - 1]),
                    (ci < p.len as usize).then(|| p.children[ci + 1]),
                )
            };
            if let Some(l) = left
                && self.arena.internals[l as usize].len as usize > MIN_INTERNAL
            {
                // Rotate right through the parent.
                let psep = self.arena.internals[parent as usize].keys[ci - 1];
                let (ln, n) = self.arena.two_internals(l, node);
                let llen = ln.len as usize;
                let nlen = n.len as usize;
                n.keys.copy_within(0..nlen, 1);
                n.children.copy_within(0..nlen + 1, 1);
                n.keys[0] = psep;
                n.children[0] = ln.children[llen];
                n.len += 1;
                ln.len -= 1;
                let up = ln.keys[llen - 1];
                self.arena.internals[parent as usize].keys[ci - 1] = up;
                return;
            }
            if let Some(r) = right
                && self.arena.internals[r as usize].len as usize > MIN_INTERNAL
            {
                // Rotate left through the parent.
                let psep = self.arena.internals[parent as usize].keys[ci];
                let (n, rn) = self.arena.two_internals(node, r);
                let nlen = n.len as usize;
                let rlen = rn.len as usize;
                n.keys[nlen] = psep;
                n.children[nlen + 1] = rn.children[0];
                n.len += 1;
                let up = rn.keys[0];
                rn.keys.copy_within(1..rlen, 0);
                rn.children.copy_within(1..rlen + 1, 0);
                rn.len -= 1;
                self.arena.internals[parent as usize].keys[ci] = up;
                return;
            }
            let (keep, gone, sep_idx) = match (left, right) {
                (Some(l), _) => (l, node, ci - 1),
                (None, Some(r)) => (node, r, ci),
                (None, None) => return,
            };
            let psep = self.arena.internals[parent as usize].keys[sep_idx];
            let (k, g) = self.arena.two_internals(keep, gone);
            let (klen, glen) = (k.len as usize, g.len as usize);
            k.keys[klen] = psep;
            k.keys[klen + 1..klen + 1 + glen].copy_from_slice(&g.keys[..glen]);
            k.children[klen + 1..klen + 2 + glen].copy_from_slice(&g.children[..glen + 1]);
            k.len += 1 + glen as u32;
            self.arena.free_internal(gone);
            internal_remove(&mut self.arena.internals[parent as usize], sep_idx);
            depth -= 1;
        }
    }

    /// The entry for `key`, for in-place insertion or update.
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let mut path = Path::new();
        match self.insert_slot(key, &mut path) {
            Slot::Found(leaf, slot) => Entry::Occupied(OccupiedEntry::new(self, leaf, slot)),
            Slot::Vacant(leaf, slot) => {
                Entry::Vacant(VacantEntry::new(self, key, Vacancy { path, leaf, slot }))
            }
        }
    }

    /// The leftmost or rightmost leaf.
    fn edge_leaf(&self, rightmost: bool) -> Option<u32> {
        if self.root == NIL {
            return None;
        }
        let mut node = self.root;
        for _ in 0..self.height {
            let n = &self.arena.internals[node as usize];
            node = n.children[if rightmost { n.len as usize } else { 0 }];
        }
        Some(node)
    }

    /// The entry with the smallest key.
    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        let l = &self.arena.leaves[self.edge_leaf(false)? as usize];
        (l.len() > 0).then(|| (&l.keys[0], l.val(0)))
    }

    /// The entry with the largest key.
    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        let l = &self.arena.leaves[self.edge_leaf(true)? as usize];
        let i = l.len().checked_sub(1)?;
        Some((&l.keys[i], l.val(i)))
    }

    /// Removes and returns the entry with the smallest key.
    pub fn pop_first(&mut self) -> Option<(K, V)> {
        let k = *self.first_key_value()?.0;
        self.remove_entry(&k)
    }

    /// Removes and returns the entry with the largest key.
    pub fn pop_last(&mut self) -> Option<(K, V)> {
        let k = *self.last_key_value()?.0;
        self.remove_entry(&k)
    }

    /// The entries with keys in `range`, in ascending key order.
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Range<'_, K, V> {
        let end = range.end_bound().cloned();
        let (leaf, slot) = match range.start_bound() {
            Bound::Unbounded => (self.edge_leaf(false).unwrap_or(NIL), 0),
            Bound::Included(a) | Bound::Excluded(a) if self.root != NIL => {
                let s = self.key_search();
                let leaf = self.descend(a, s, None);
                let l = &self.arena.leaves[leaf as usize];
                let mut slot = l.rank(a, s);
                if matches!(range.start_bound(), Bound::Excluded(_))
                    && slot < l.len()
                    && l.keys[slot] == *a
                {
                    slot += 1;
                }
                (leaf, slot)
            }
            _ => (NIL, 0),
        };
        Range::new(&self.arena.leaves, leaf, slot, end)
    }

    /// All entries in ascending key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter::new(self.range(..), self.len)
    }

    /// All keys in ascending order.
    pub fn keys(&self) -> Keys<'_, K, V> {
        Keys(self.iter())
    }

    /// All values in ascending key order.
    pub fn values(&self) -> Values<'_, K, V> {
        Values(self.iter())
    }
}

/// The outcome of looking a key up for insertion.
enum Slot {
    /// The key is at `(leaf, slot)`.
    Found(u32, usize),
    /// The key is absent and would go to `(leaf, slot)` (`NIL`: the tree is empty).
    Vacant(u32, usize),
}

/// Where an absent key goes: the path to its leaf, the leaf (`NIL` for an empty tree) and the
/// slot.
pub(crate) struct Vacancy {
    pub(crate) path: Path,
    pub(crate) leaf: u32,
    pub(crate) slot: usize,
}

/// Removes separator `i` and child `i + 1` of an internal node.
fn internal_remove<K: Copy>(n: &mut Internal<K>, i: usize) {
    let len = n.len as usize;
    n.keys.copy_within(i + 1..len, i);
    n.children.copy_within(i + 2..len + 1, i + 1);
    n.len -= 1;
}

impl<K: BTreeKey + fmt::Debug, V: fmt::Debug> fmt::Debug for CacheBTree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: BTreeKey, V> FromIterator<(K, V)> for CacheBTree<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut t = CacheBTree::new();
        t.extend(iter);
        t
    }
}

impl<K: BTreeKey, V> Extend<(K, V)> for CacheBTree<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<'a, K: BTreeKey, V> IntoIterator for &'a CacheBTree<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;
    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}
