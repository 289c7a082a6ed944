//! Structural invariants after random operations (the model tests against `BTreeMap` are in
//! `tests/btree.rs`; these look inside the nodes).

use alloc::vec::Vec;
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::node::{MIN_INTERNAL, MIN_LEAF, NIL};
use super::{BTreeKey, CacheBTree, INTERNAL_CAPACITY, KeySearch, LEAF_CAPACITY, SearchVariant};

impl<K: BTreeKey + core::fmt::Debug, V> CacheBTree<K, V> {
    /// Panics unless every B+ tree invariant holds.
    fn validate(&self) {
        if self.root == NIL {
            assert_eq!(self.len, 0);
            assert_eq!(self.height, 0);
            return;
        }
        let mut leaves = Vec::new();
        self.validate_node(self.root, self.height, None, None, true, &mut leaves);
        // The leaf chain visits exactly the leaves, in order, and then ends.
        let mut chain = Vec::new();
        let mut l = leaves[0];
        while l != NIL {
            chain.push(l);
            l = self.arena.leaves[l as usize].next;
        }
        assert_eq!(chain, leaves, "leaf chain out of order");
        let total: usize = leaves
            .iter()
            .map(|&l| self.arena.leaves[l as usize].len())
            .sum();
        assert_eq!(total, self.len);
    }

    fn validate_node(
        &self,
        node: u32,
        level: usize,
        lower: Option<K>,
        upper: Option<K>,
        // The last node of its level (the root is): the root, and the last nodes that ascending
        // inserts leave (append splits), may be below the minimum, never empty.
        last: bool,
        leaves: &mut Vec<u32>,
    ) {
        let in_bounds = |k: &K| lower.is_none_or(|lo| *k > lo) && upper.is_none_or(|hi| *k <= hi);
        if level == 0 {
            let leaf = &self.arena.leaves[node as usize];
            let len = leaf.len();
            assert!(len <= LEAF_CAPACITY);
            assert!(last && len >= 1 || len >= MIN_LEAF, "leaf underfull: {len}");
            assert!(leaf.keys[..len].windows(2).all(|w| w[0] < w[1]));
            assert!(
                leaf.keys[..len].iter().all(in_bounds),
                "leaf key out of bounds"
            );
            leaves.push(node);
            return;
        }
        let n = &self.arena.internals[node as usize];
        let len = n.len as usize;
        assert!(len <= INTERNAL_CAPACITY);
        assert!(
            last && len >= 1 || len >= MIN_INTERNAL,
            "internal underfull: {len}"
        );
        assert!(n.keys[..len].windows(2).all(|w| w[0] < w[1]));
        assert!(
            n.keys[..len].iter().all(in_bounds),
            "separator out of bounds"
        );
        for i in 0..=len {
            let lo = if i == 0 { lower } else { Some(n.keys[i - 1]) };
            let hi = if i == len { upper } else { Some(n.keys[i]) };
            self.validate_node(n.children[i], level - 1, lo, hi, last && i == len, leaves);
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u16),
    Remove(u16),
    PopFirst,
    PopLast,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => any::<u16>().prop_map(|k| Op::Insert(k % 3000)),
        4 => any::<u16>().prop_map(|k| Op::Remove(k % 3000)),
        1 => Just(Op::PopFirst),
        1 => Just(Op::PopLast),
    ]
}

fn run(ops: &[Op], search: KeySearch) {
    run_from(CacheBTree::with_search(search), BTreeMap::new(), ops);
}

/// Applies `ops` to `t` and its model `m` (equal on entry), comparing every result and
/// validating as it goes, then compares the contents.
fn run_from(mut t: CacheBTree<u64, u64>, mut m: BTreeMap<u64, u64>, ops: &[Op]) {
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Insert(k) => assert_eq!(t.insert(k.into(), i as u64), m.insert(k.into(), i as u64)),
            Op::Remove(k) => assert_eq!(t.remove(&k.into()), m.remove(&u64::from(k))),
            Op::PopFirst => assert_eq!(t.pop_first(), m.pop_first()),
            Op::PopLast => assert_eq!(t.pop_last(), m.pop_last()),
        }
        if i % 64 == 0 {
            t.validate();
        }
    }
    t.validate();
    assert!(t.iter().map(|(k, v)| (*k, *v)).eq(m.into_iter()));
}

proptest! {
    // Miri-sized under Miri: two short sequences still split, merge and pop nodes.
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 2 } else if cfg!(debug_assertions) { 64 } else { 256 }))]
    #[test]
    fn invariants_hold_after_random_operations(ops in prop::collection::vec(op(), 0..if cfg!(miri) { 150 } else { 3000 })) {
        run(&ops, KeySearch::detected());
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "180k inserts and removals with validation take hours under Miri; the proptest covers the same paths at Miri size"
)]
fn grow_then_shrink_every_variant_keeps_invariants() {
    for variant in SearchVariant::ALL {
        let Ok(search) = KeySearch::new(variant) else {
            std::println!("SKIP {}: this CPU lacks it", variant.name());
            continue;
        };
        let mut t: CacheBTree<u64, u64> = CacheBTree::with_search(search);
        let n = 60_000u64;
        // A permutation of 0..n (multiplier coprime with n).
        let perm = |i: u64| (i * 7919) % n;
        for i in 0..n {
            t.insert(perm(i), i);
        }
        t.validate();
        assert!(t.height >= 3, "tall enough to exercise internal merges");
        for i in 0..n {
            assert_eq!(t.remove(&perm(n - 1 - i)), Some(n - 1 - i));
            if i % 997 == 0 {
                t.validate();
            }
        }
        t.validate();
        assert!(t.is_empty());
        assert_eq!(t.root, NIL);
        // Freed nodes are reused: the same insertions need no new node.
        let (leaves, internals) = (t.arena.leaves.len(), t.arena.internals.len());
        for i in 0..n {
            t.insert(perm(i), i);
        }
        t.validate();
        assert_eq!(t.arena.leaves.len(), leaves);
        assert_eq!(t.arena.internals.len(), internals);
    }
}

#[test]
fn ascending_inserts_fill_the_nodes() {
    let n = if cfg!(miri) { 600u64 } else { 20_000 };
    let mut t: CacheBTree<u64, u64> = CacheBTree::new();
    for k in 0..n {
        t.insert(k, k);
    }
    t.validate();
    // Every leaf but the last full: ceil(n / LEAF_CAPACITY) leaves (halves would make about twice
    // as many).
    let leaves = t.arena.leaves.len() as u64;
    assert_eq!(leaves, n.div_ceil(LEAF_CAPACITY as u64));
    // Removing from the front and inserting past the end keeps the invariants too.
    for k in 0..n / 2 {
        assert_eq!(t.remove(&k), Some(k));
        t.insert(n + k, k);
    }
    t.validate();
    assert_eq!(t.len() as u64, n);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 64 }))]
    /// Ascending runs (the append splits) mixed with random operations.
    #[test]
    fn ascending_runs_with_random_operations(
        start in 0u64..1000,
        run_len in 1u64..if cfg!(miri) { 80 } else { 600 },
        ops in prop::collection::vec(op(), 0..if cfg!(miri) { 60 } else { 600 }),
    ) {
        let mut t: CacheBTree<u64, u64> = CacheBTree::new();
        let mut model = BTreeMap::new();
        for k in start..start + run_len {
            t.insert(k, k);
            model.insert(k, k);
        }
        t.validate();
        run_from(t, model, &ops);
    }
}
