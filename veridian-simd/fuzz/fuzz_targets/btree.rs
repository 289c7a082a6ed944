//! `CacheBTree` against `BTreeMap`: inserts, removals, lookups, ranges, pops and the entry API
//! with small keys (many collisions, deep trees), and the whole contents compared in order after
//! every operation batch. Values own heap memory, so a lost or double-dropped value is an
//! AddressSanitizer report.
#![no_main]

use std::collections::BTreeMap;
use std::ops::Bound;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use veridian_simd::CacheBTree;

#[derive(Arbitrary, Debug)]
enum Op {
    Insert(u16),
    Remove(u16),
    Get(u16),
    GetMut(u16),
    Range(u16, u16, bool),
    PopFirst,
    PopLast,
    EntryOrInsert(u16),
    InsertMany(u16, u8),
    RemoveMany(u16, u8),
    Clear,
}

fuzz_target!(|ops: Vec<Op>| {
    let mut ours: CacheBTree<u16, Box<u32>> = CacheBTree::default();
    let mut model: BTreeMap<u16, Box<u32>> = BTreeMap::new();
    let mut next = 0u32;
    for (i, op) in ops.iter().take(4000).enumerate() {
        next += 1;
        match *op {
            Op::Insert(k) => assert_eq!(
                ours.insert(k, Box::new(next)),
                model.insert(k, Box::new(next))
            ),
            Op::Remove(k) => assert_eq!(ours.remove(&k), model.remove(&k)),
            Op::Get(k) => assert_eq!(ours.get(&k), model.get(&k)),
            Op::GetMut(k) => {
                if let Some(v) = ours.get_mut(&k) {
                    **v = next;
                }
                if let Some(v) = model.get_mut(&k) {
                    **v = next;
                }
            }
            Op::Range(a, b, inclusive) => {
                let (lo, hi) = (a.min(b), a.max(b));
                let hi = if inclusive {
                    Bound::Included(hi)
                } else {
                    Bound::Excluded(hi)
                };
                let range = (Bound::Included(lo), hi);
                assert!(ours.range(range).eq(model.range(range)), "range {range:?}");
            }
            Op::PopFirst => assert_eq!(ours.pop_first(), model.pop_first()),
            Op::PopLast => assert_eq!(ours.pop_last(), model.pop_last()),
            Op::EntryOrInsert(k) => {
                let v = ours.entry(k).or_insert_with(|| Box::new(next));
                **v += 1;
                let w = model.entry(k).or_insert_with(|| Box::new(next));
                **w += 1;
            }
            Op::InsertMany(k, n) => {
                for j in 0..u16::from(n) {
                    let key = k.wrapping_add(j.wrapping_mul(3));
                    assert_eq!(
                        ours.insert(key, Box::new(next)),
                        model.insert(key, Box::new(next))
                    );
                }
            }
            Op::RemoveMany(k, n) => {
                for j in 0..u16::from(n) {
                    let key = k.wrapping_add(j);
                    assert_eq!(ours.remove(&key), model.remove(&key));
                }
            }
            Op::Clear => {
                ours.clear();
                model.clear();
            }
        }
        assert_eq!(ours.len(), model.len());
        if i % 64 == 0 {
            assert!(ours.iter().eq(model.iter()));
            assert_eq!(ours.first_key_value(), model.first_key_value());
            assert_eq!(ours.last_key_value(), model.last_key_value());
        }
    }
    assert!(ours.iter().eq(model.iter()));
});
