//! `CacheBTree` against `std::collections::BTreeMap` over random operation sequences (u64, u32,
//! i64 and two key types without SIMD search), the SIMD in-node search against the scalar one,
//! and value drop counting.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Bound;
use std::rc::Rc;

use proptest::prelude::*;
use veridian_simd::btree::{
    BTreeKey, CacheBTree, Entry, INTERNAL_CAPACITY, KeySearch, LEAF_CAPACITY, SearchVariant,
    scalar_rank,
};

/// A key type with no SIMD search (the trait's binary-search default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Id(u16, u8);
impl BTreeKey for Id {}

#[derive(Clone, Debug)]
enum Op {
    Insert(u32, u32),
    Remove(u32),
    Get(u32),
    GetMut(u32, u32),
    Range(Bound<u32>, Bound<u32>),
    OrInsert(u32, u32),
    AndModifyOrInsertWith(u32, u32),
    OccupiedRemove(u32),
    PopFirst,
    FirstLast,
}

fn bound() -> impl Strategy<Value = Bound<u32>> {
    prop_oneof![
        (0..KEYS).prop_map(Bound::Included),
        (0..KEYS).prop_map(Bound::Excluded),
        Just(Bound::Unbounded),
    ]
}

/// Keys come from `0..KEYS`: small enough that removals hit present keys and shrink the tree
/// through merges, large enough for a tree of height 2-3.
const KEYS: u32 = 2500;

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS;
    prop_oneof![
        8 => (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        6 => k.clone().prop_map(Op::Remove),
        2 => k.clone().prop_map(Op::Get),
        1 => (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::GetMut(k, v)),
        1 => (bound(), bound()).prop_map(|(a, b)| Op::Range(a, b)),
        2 => (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::OrInsert(k, v)),
        2 => (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::AndModifyOrInsertWith(k, v)),
        1 => k.prop_map(Op::OccupiedRemove),
        1 => Just(Op::PopFirst),
        1 => Just(Op::FirstLast),
    ]
}

/// Whether `BTreeMap::range` would panic on these bounds (start after end, or equal and both
/// excluded); `CacheBTree::range` yields nothing there instead.
fn std_range_panics<K: Ord>(a: &Bound<K>, b: &Bound<K>) -> bool {
    match (a, b) {
        (Bound::Excluded(x), Bound::Excluded(y)) => x >= y,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => x > y,
        _ => false,
    }
}

/// Runs `ops` on both maps with keys `mk(k)` (monotonic in `k`) and compares every result.
fn check_model<K: BTreeKey + Debug>(ops: &[Op], mk: impl Fn(u32) -> K, search: KeySearch) {
    let mut t: CacheBTree<K, u32> = CacheBTree::with_search(search);
    let mut m: BTreeMap<K, u32> = BTreeMap::new();
    let mb = |b: &Bound<u32>| b.map(&mk);
    for op in ops {
        match op {
            Op::Insert(k, v) => assert_eq!(t.insert(mk(*k), *v), m.insert(mk(*k), *v)),
            Op::Remove(k) => assert_eq!(t.remove(&mk(*k)), m.remove(&mk(*k))),
            Op::Get(k) => {
                assert_eq!(t.get(&mk(*k)), m.get(&mk(*k)));
                assert_eq!(t.contains_key(&mk(*k)), m.contains_key(&mk(*k)));
                assert_eq!(t.get_key_value(&mk(*k)), m.get_key_value(&mk(*k)));
            }
            Op::GetMut(k, v) => {
                let (a, b) = (t.get_mut(&mk(*k)), m.get_mut(&mk(*k)));
                assert_eq!(a.is_some(), b.is_some());
                if let (Some(a), Some(b)) = (a, b) {
                    *a = *v;
                    *b = *v;
                }
            }
            Op::Range(a, b) => {
                let (a, b) = (mb(a), mb(b));
                let ours: Vec<_> = t.range((a, b)).collect();
                if std_range_panics(&a, &b) {
                    assert!(ours.is_empty());
                } else {
                    assert_eq!(ours, m.range((a, b)).collect::<Vec<_>>());
                }
            }
            Op::OrInsert(k, v) => {
                let a = *t.entry(mk(*k)).or_insert(*v);
                assert_eq!(a, *m.entry(mk(*k)).or_insert(*v));
            }
            Op::AndModifyOrInsertWith(k, v) => {
                let a = *t
                    .entry(mk(*k))
                    .and_modify(|x| *x = x.wrapping_add(*v))
                    .or_insert_with(|| *v / 2);
                let b = *m
                    .entry(mk(*k))
                    .and_modify(|x| *x = x.wrapping_add(*v))
                    .or_insert_with(|| *v / 2);
                assert_eq!(a, b);
            }
            Op::OccupiedRemove(k) => {
                let a = match t.entry(mk(*k)) {
                    Entry::Occupied(o) => Some(o.remove_entry()),
                    Entry::Vacant(v) => {
                        assert_eq!(*v.key(), mk(*k));
                        None
                    }
                };
                assert_eq!(a, m.remove_entry(&mk(*k)));
            }
            Op::PopFirst => assert_eq!(t.pop_first(), m.pop_first()),
            Op::FirstLast => {
                assert_eq!(t.first_key_value(), m.first_key_value());
                assert_eq!(t.last_key_value(), m.last_key_value());
            }
        }
        assert_eq!(t.len(), m.len());
    }
    assert!(t.iter().eq(m.iter()));
    assert_eq!(t.iter().len(), m.len());
    assert!(t.keys().eq(m.keys()));
    assert!(t.values().eq(m.values()));
    assert_eq!(t.is_empty(), m.is_empty());
    // Empty the tree in key order: every remaining node merges away.
    for k in m.keys() {
        assert!(t.remove(k).is_some());
    }
    assert!(t.is_empty());
    assert_eq!(t.iter().next(), None);
}

fn cases() -> u32 {
    if cfg!(debug_assertions) { 48 } else { 256 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// u64 keys spread over the whole range (the sign bit matters for the SIMD compare).
    #[test]
    fn model_u64(ops in prop::collection::vec(op(), 0..2500)) {
        check_model(&ops, |k| u64::from(k) * 0x0006_8DB8_BAC7_10CB, KeySearch::detected());
    }

    #[test]
    fn model_u32(ops in prop::collection::vec(op(), 0..2500)) {
        check_model(&ops, |k| k * 1_717_000, KeySearch::detected());
    }

    /// Negative and positive keys.
    #[test]
    fn model_i64(ops in prop::collection::vec(op(), 0..2500)) {
        check_model(&ops, |k| (i64::from(k) - 1250) * 0x0003_46DC_5D63_8865, KeySearch::detected());
    }

    #[test]
    fn model_tuple(ops in prop::collection::vec(op(), 0..2500)) {
        check_model(&ops, |k| (k / 50, k % 50), KeySearch::detected());
    }

    #[test]
    fn model_newtype(ops in prop::collection::vec(op(), 0..2500)) {
        check_model(&ops, |k| Id((k / 7) as u16, (k % 7) as u8), KeySearch::detected());
    }

    /// The scalar search and every SIMD variant the CPU has drive the same tree.
    #[test]
    fn model_u64_every_variant(ops in prop::collection::vec(op(), 0..1500)) {
        for v in SearchVariant::ALL {
            if let Ok(s) = KeySearch::new(v) {
                check_model(&ops, |k| u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1 << 1 | u64::from(k & 1), s);
                check_model(&ops, |k| k.wrapping_sub(1000) as i32, s);
            }
        }
    }
}

/// Random node contents: `keys[..len]` sorted, the rest garbage.
fn node<K: Copy + Ord, const N: usize>(live: &[K], garbage: &[K]) -> ([K; N], usize) {
    let mut live = live[..live.len().min(N)].to_vec();
    live.sort();
    let len = live.len();
    let mut keys = [garbage[0]; N];
    keys[..len].copy_from_slice(&live);
    keys[len..].copy_from_slice(&garbage[..N - len]);
    (keys, len)
}

fn check_ranks<K: BTreeKey + Debug, const N: usize>(
    live: &[K],
    garbage: &[K],
    probes: &[K],
    s: KeySearch,
) {
    let (keys, len) = node::<K, N>(live, garbage);
    let mut all = probes.to_vec();
    all.extend_from_slice(&keys[..len]);
    for p in all {
        let simd = K::rank(&keys, len, &p, s);
        let scalar = scalar_rank(&keys, len, &p);
        assert_eq!(
            simd,
            scalar,
            "{:?}: keys {:?} len {len} probe {p:?}",
            s.variant(),
            keys
        );
    }
}

/// `BTreeKey::rank_leaf` (the leaf search: `LEAF_CAPACITY` keys and one more slot of whatever
/// follows them, here garbage) against the binary search.
fn check_leaf_ranks<K: BTreeKey + Debug>(live: &[K], garbage: &[K], probes: &[K], s: KeySearch) {
    let live = &live[..live.len().min(LEAF_CAPACITY)];
    let (keys, len) = node::<K, { LEAF_CAPACITY + 1 }>(live, garbage);
    let mut all = probes.to_vec();
    all.extend_from_slice(&keys[..len]);
    for p in all {
        // SAFETY: `keys` holds `LEAF_CAPACITY + 1` initialised keys.
        let leaf = unsafe { K::rank_leaf(keys.as_ptr(), len, &p, s) };
        assert_eq!(
            leaf,
            scalar_rank(&keys, len, &p),
            "{:?}: leaf keys {:?} len {len} probe {p:?}",
            s.variant(),
            keys
        );
    }
}

macro_rules! rank_test {
    ($name:ident, $t:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn $name(
                live in prop::collection::vec(any::<$t>(), 0..=INTERNAL_CAPACITY),
                garbage in prop::collection::vec(any::<$t>(), INTERNAL_CAPACITY),
                probes in prop::collection::vec(any::<$t>(), 4),
            ) {
                let mut probes = probes;
                probes.extend([<$t>::MIN, <$t>::MAX, 0 as $t, 1 as $t, <$t>::MAX / 2, <$t>::MAX / 2 + 1]);
                probes.extend(live.iter().map(|k| k.wrapping_add(1)));
                probes.extend(live.iter().map(|k| k.wrapping_sub(1)));
                for v in SearchVariant::ALL {
                    match KeySearch::new(v) {
                        Ok(s) => {
                            check_ranks::<$t, LEAF_CAPACITY>(&live, &garbage, &probes, s);
                            check_leaf_ranks::<$t>(&live, &garbage, &probes, s);
                            check_ranks::<$t, INTERNAL_CAPACITY>(&live, &garbage, &probes, s);
                        }
                        Err(e) => println!("SKIP {}: {e}", v.name()),
                    }
                }
            }
        }
    };
}

rank_test!(simd_rank_matches_scalar_u64, u64);
rank_test!(simd_rank_matches_scalar_i64, i64);
rank_test!(simd_rank_matches_scalar_u32, u32);
rank_test!(simd_rank_matches_scalar_i32, i32);
rank_test!(simd_rank_matches_scalar_usize, usize);
rank_test!(simd_rank_matches_scalar_isize, isize);

#[test]
fn search_variants_report_support() {
    let detected = KeySearch::detected().variant();
    assert!(KeySearch::new(detected).is_ok());
    assert_eq!(KeySearch::scalar().variant(), SearchVariant::Scalar);
    assert!(KeySearch::new(SearchVariant::Scalar).is_ok());
    for v in SearchVariant::ALL {
        match KeySearch::new(v) {
            Ok(_) => println!("{}: supported", v.name()),
            Err(e) => {
                assert!(!e.missing.is_empty() || !cfg!(target_arch = "x86_64"));
                println!("SKIP {}: {e}", v.name());
            }
        }
    }
    // The detected variant is the best supported one.
    let best = SearchVariant::ALL
        .into_iter()
        .find(|v| KeySearch::new(*v).is_ok());
    assert_eq!(Some(detected), best);
}

/// A value that records its drops by id.
struct Tracked {
    id: u64,
    log: Rc<RefCell<Vec<u64>>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.log.borrow_mut().push(self.id);
    }
}

#[test]
fn every_value_dropped_exactly_once() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let made = RefCell::new(Vec::new());
    let mk = |id: u64| {
        made.borrow_mut().push(id);
        Tracked {
            id,
            log: log.clone(),
        }
    };
    let mut next = 0u64;
    {
        let mut t: CacheBTree<u64, Tracked> = CacheBTree::new();
        for round in 0..3u64 {
            for i in 0..5000u64 {
                let k = (i * 7919 + round) % 6000;
                drop(t.insert(k, mk(next))); // a replaced value comes back and drops here
                next += 1;
            }
            // Every third key goes: many leaves and internal nodes merge.
            for i in (0..6000u64).step_by(3) {
                drop(t.remove(&i));
            }
            for i in 0..100u64 {
                let id = next;
                next += 1;
                t.entry(i * 11).or_insert_with(|| mk(id));
            }
        }
        assert!(t.len() > 1000);
        drop(t.pop_first());
        drop(t.pop_last());
        assert!(
            log.borrow().len() < made.borrow().len(),
            "the tree still holds values"
        );
        // The rest go with the tree.
    }
    let mut dropped = log.borrow().clone();
    let mut made = made.into_inner();
    dropped.sort_unstable();
    made.sort_unstable();
    assert!(made.len() >= 15_000);
    assert_eq!(dropped, made, "every value built is dropped exactly once");
}

#[test]
fn clear_drops_values_and_tree_is_reusable() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut t: CacheBTree<u32, Tracked> = CacheBTree::new();
    for i in 0..1000 {
        t.insert(
            i,
            Tracked {
                id: i.into(),
                log: log.clone(),
            },
        );
    }
    t.clear();
    assert_eq!(log.borrow().len(), 1000);
    assert!(t.is_empty());
    t.insert(
        5,
        Tracked {
            id: 5,
            log: log.clone(),
        },
    );
    assert_eq!(t.len(), 1);
    drop(t);
    assert_eq!(log.borrow().len(), 1001);
}

#[test]
fn debug_entry_and_edge_cases() {
    let mut t: CacheBTree<u32, &str> = CacheBTree::new();
    assert_eq!(format!("{t:?}"), "{}");
    assert_eq!(t.first_key_value(), None);
    assert_eq!(t.pop_last(), None);
    assert_eq!(t.remove(&1), None);
    assert_eq!(t.range(..).next(), None);
    t.insert(2, "b");
    t.insert(1, "a");
    assert_eq!(format!("{t:?}"), r#"{1: "a", 2: "b"}"#);
    assert_eq!(*t.entry(3).or_default(), "");
    assert_eq!(*t.entry(1).or_insert_with_key(|_| "x"), "a");
    match t.entry(2) {
        Entry::Occupied(mut o) => {
            assert_eq!(*o.key(), 2);
            assert_eq!(o.insert("B"), "b");
            assert_eq!(*o.get(), "B");
        }
        Entry::Vacant(_) => panic!("2 is present"),
    }
    // Reversed ranges are empty rather than a panic.
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = t.range(3..1).count();
    assert_eq!(reversed, 0);
    assert_eq!(t.range((Bound::Excluded(2), Bound::Excluded(2))).count(), 0);
    let t2: CacheBTree<u32, &str> = t.iter().map(|(k, v)| (*k, *v)).collect();
    assert!(t2.iter().eq(t.iter()));
    assert_eq!(t.try_insert(9, "z"), Ok(None));
}
