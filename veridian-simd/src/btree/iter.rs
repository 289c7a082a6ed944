//! Iteration in key order along the leaf chain.
//!
//! **What it does.** A [`Range`] starts at a leaf slot found by one descent and then follows the
//! leaves' `next` links, checking each key against the end bound; it never goes back up the
//! tree. [`Iter`] is the unbounded range with an exact length.

use core::ops::Bound;

use super::BTreeKey;
use super::node::{Leaf, NIL};

/// Entries with keys in a range, ascending ([`super::CacheBTree::range`]).
pub struct Range<'a, K, V> {
    leaves: &'a [Leaf<K, V>],
    leaf: u32,
    slot: usize,
    end: Bound<K>,
}

impl<'a, K: BTreeKey, V> Range<'a, K, V> {
    pub(super) fn new(leaves: &'a [Leaf<K, V>], leaf: u32, slot: usize, end: Bound<K>) -> Self {
        Range {
            leaves,
            leaf,
            slot,
            end,
        }
    }
}

impl<'a, K: BTreeKey, V> Iterator for Range<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<(&'a K, &'a V)> {
        loop {
            let leaf = self.leaves.get(self.leaf as usize)?;
            if self.slot >= leaf.len() {
                self.leaf = leaf.next;
                self.slot = 0;
                continue;
            }
            let k = &leaf.keys[self.slot];
            let past = match &self.end {
                Bound::Included(e) => k > e,
                Bound::Excluded(e) => k >= e,
                Bound::Unbounded => false,
            };
            if past {
                self.leaf = NIL;
                return None;
            }
            let v = leaf.val(self.slot);
            self.slot += 1;
            return Some((k, v));
        }
    }
}

/// Every entry, ascending ([`super::CacheBTree::iter`]).
pub struct Iter<'a, K, V> {
    range: Range<'a, K, V>,
    remaining: usize,
}

impl<'a, K: BTreeKey, V> Iter<'a, K, V> {
    pub(super) fn new(range: Range<'a, K, V>, len: usize) -> Self {
        Iter {
            range,
            remaining: len,
        }
    }
}

impl<'a, K: BTreeKey, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<(&'a K, &'a V)> {
        let item = self.range.next()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K: BTreeKey, V> ExactSizeIterator for Iter<'_, K, V> {}

/// Every key, ascending ([`super::CacheBTree::keys`]).
pub struct Keys<'a, K, V>(pub(super) Iter<'a, K, V>);

impl<'a, K: BTreeKey, V> Iterator for Keys<'a, K, V> {
    type Item = &'a K;
    fn next(&mut self) -> Option<&'a K> {
        self.0.next().map(|(k, _)| k)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// Every value, in key order ([`super::CacheBTree::values`]).
pub struct Values<'a, K, V>(pub(super) Iter<'a, K, V>);

impl<'a, K: BTreeKey, V> Iterator for Values<'a, K, V> {
    type Item = &'a V;
    fn next(&mut self) -> Option<&'a V> {
        self.0.next().map(|(_, v)| v)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}
