//! `CpuSet` against a `BTreeSet` model, and range errors.

use std::collections::BTreeSet;

use proptest::prelude::*;
use veridian_sched::{CpuOutOfRange, CpuSet, MAX_CPUS};

fn set_of(cpus: &BTreeSet<usize>) -> CpuSet {
    CpuSet::from_cpus(cpus.iter().copied()).unwrap()
}

proptest! {
    #[test]
    fn algebra_matches_btreeset(
        a in proptest::collection::btree_set(0..MAX_CPUS, 0..40),
        b in proptest::collection::btree_set(0..MAX_CPUS, 0..40),
        probe in 0..MAX_CPUS + 10,
    ) {
        let (sa, sb) = (set_of(&a), set_of(&b));
        let list = |s: CpuSet| s.iter().collect::<Vec<_>>();
        prop_assert_eq!(list(sa | sb), a.union(&b).copied().collect::<Vec<_>>());
        prop_assert_eq!(list(sa & sb), a.intersection(&b).copied().collect::<Vec<_>>());
        prop_assert_eq!(list(sa - sb), a.difference(&b).copied().collect::<Vec<_>>());
        prop_assert_eq!(sa.count(), a.len());
        prop_assert_eq!(sa.iter().len(), a.len());
        prop_assert_eq!(sa.is_empty(), a.is_empty());
        prop_assert_eq!(sa.first(), a.first().copied());
        prop_assert_eq!(sa.contains(probe), a.contains(&probe));
        prop_assert_eq!(sa.intersects(&sb), !a.is_disjoint(&b));
        prop_assert_eq!(sa.is_subset(&sb), a.is_subset(&b));
        prop_assert_eq!(sa.is_superset(&sb), a.is_superset(&b));
        let mut m = sa;
        let inserted = m.insert(probe);
        if probe < MAX_CPUS {
            prop_assert_eq!(inserted, Ok(!a.contains(&probe)));
            prop_assert_eq!(m.remove(probe), Ok(true));
            prop_assert_eq!(m.remove(probe), Ok(false));
        } else {
            prop_assert_eq!(inserted, Err(CpuOutOfRange { cpu: probe }));
        }
        prop_assert_eq!(CpuSet::from_words(*sa.as_words()), sa);
    }
}

#[test]
fn constructors_and_ranges() {
    assert_eq!(CpuSet::full(0).unwrap(), CpuSet::empty());
    assert_eq!(
        CpuSet::full(3).unwrap().iter().collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(CpuSet::full(64).unwrap().count(), 64);
    assert_eq!(CpuSet::full(65).unwrap().count(), 65);
    assert_eq!(CpuSet::full(MAX_CPUS).unwrap().count(), MAX_CPUS);
    assert!(CpuSet::full(MAX_CPUS + 1).is_err());
    assert_eq!(CpuSet::single(255).unwrap().first(), Some(255));
    assert_eq!(CpuSet::single(256), Err(CpuOutOfRange { cpu: 256 }));
    assert!(CpuSet::from_cpus([1, 999]).is_err());
    assert!(!CpuSet::full(MAX_CPUS).unwrap().contains(usize::MAX));
    let mut s = CpuSet::empty();
    assert!(s.remove(1000).is_err());
    s |= CpuSet::single(3).unwrap();
    s &= CpuSet::full(4).unwrap();
    s -= CpuSet::single(0).unwrap();
    assert_eq!(format!("{s:?}"), "{3}");
    let t = CpuSet::from_cpus([0, 1, 2, 5, 7, 8]).unwrap();
    assert_eq!(format!("{t:?}"), "{0-2,5,7-8}");
    assert!(CpuOutOfRange { cpu: 300 }.to_string().contains("300"));
}
