//! Histogram: bucket layout, exact parts, quantile accuracy against sorted samples (proptest),
//! merge.

use proptest::prelude::*;
use veridian_perf::histogram::{
    BUCKETS, Histogram, HistogramError, RELATIVE_ERROR, bucket_bounds, bucket_index, nearest_rank,
};

fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    sorted[nearest_rank(q, sorted.len() as u64) as usize - 1]
}

#[test]
fn buckets_tile_u64_without_gaps() {
    let mut next = 0u64;
    for i in 0..BUCKETS {
        let (lo, hi) = bucket_bounds(i).unwrap();
        assert_eq!(lo, next, "bucket {i}");
        assert!(hi >= lo);
        assert_eq!(bucket_index(lo), i);
        assert_eq!(bucket_index(hi), i);
        // Width at most lo / 32 above the exact range.
        if lo >= 64 {
            assert!(hi - lo < lo / 32, "bucket {i} too wide");
        } else {
            assert_eq!(lo, hi);
        }
        next = hi.wrapping_add(1);
    }
    assert_eq!(next, 0, "the last bucket ends at u64::MAX");
    assert_eq!(bucket_bounds(BUCKETS), None);
    assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
}

#[test]
fn empty_and_invalid_queries_are_errors() {
    let mut h = Histogram::new();
    assert_eq!(h.quantile(0.5), Err(HistogramError::Empty));
    assert_eq!(h.min(), Err(HistogramError::Empty));
    assert_eq!(h.summary(), Err(HistogramError::Empty));
    h.record(5);
    for q in [f64::NAN, -0.01, 1.01, f64::INFINITY] {
        assert_eq!(h.quantile(q), Err(HistogramError::InvalidQuantile));
    }
}

#[test]
fn small_values_min_max_mean_are_exact() {
    let mut h = Histogram::new();
    for v in 0..64 {
        h.record(v);
    }
    h.record(1_000_003);
    let s = h.summary().unwrap();
    assert_eq!((s.count, s.min, s.max), (65, 0, 1_000_003));
    assert_eq!(s.median, 32);
    assert_eq!(s.mean, (63 * 64 / 2 + 1_000_003) / 65);
    assert_eq!(h.quantile(0.0).unwrap(), 0);
    assert_eq!(h.quantile(1.0).unwrap(), 1_000_003);
    assert_eq!(h.buckets().count(), 65);
}

#[test]
fn record_n_equals_repeated_record() {
    let mut a = Histogram::new();
    let mut b = Histogram::new();
    for _ in 0..1000 {
        a.record(777);
    }
    b.record_n(777, 1000);
    b.record_n(1, 0);
    assert_eq!(a.summary(), b.summary());
    assert_eq!(
        a.buckets().collect::<Vec<_>>(),
        b.buckets().collect::<Vec<_>>()
    );
}

fn values() -> impl Strategy<Value = Vec<u64>> {
    let one = prop_oneof![
        0u64..100,
        100u64..100_000,
        // log-uniform over all of u64
        (0u32..64, any::<u64>()).prop_map(|(bits, x)| if bits == 0 { 0 } else { x >> (64 - bits) }),
    ];
    prop::collection::vec(one, 1..2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(debug_assertions) { 64 } else { 256 }, ..ProptestConfig::default() })]

    #[test]
    fn quantiles_are_within_the_documented_error(vals in values(), extra_q in 0.0f64..=1.0) {
        let mut h = Histogram::new();
        for &v in &vals {
            h.record(v);
        }
        let mut sorted = vals.clone();
        sorted.sort_unstable();
        for q in [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0, extra_q] {
            let exact = exact_quantile(&sorted, q);
            let got = h.quantile(q).unwrap();
            let bound = (exact as f64 * RELATIVE_ERROR).floor() as u64;
            prop_assert!(got.abs_diff(exact) <= bound, "q={} exact={} got={} bound={}", q, exact, got, bound);
        }
        let s = h.summary().unwrap();
        prop_assert_eq!(s.min, sorted[0]);
        prop_assert_eq!(s.max, *sorted.last().unwrap());
        prop_assert_eq!(u128::from(s.mean), vals.iter().map(|&v| u128::from(v)).sum::<u128>() / vals.len() as u128);
    }

    #[test]
    fn merge_equals_recording_everything_in_one(a in values(), b in values()) {
        let (mut ha, mut hb, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for &v in &a { ha.record(v); all.record(v); }
        for &v in &b { hb.record(v); all.record(v); }
        ha.merge(&hb);
        prop_assert_eq!(ha.summary(), all.summary());
        prop_assert_eq!(ha.buckets().collect::<Vec<_>>(), all.buckets().collect::<Vec<_>>());
    }
}

#[test]
fn merging_an_empty_histogram_changes_nothing() {
    let mut h = Histogram::new();
    h.record(10);
    h.record(5000);
    let before = h.summary();
    h.merge(&Histogram::new());
    assert_eq!(h.summary(), before);
    let mut e = Histogram::new();
    e.merge(&h);
    assert_eq!(e.summary(), before);
    h.reset();
    assert!(h.is_empty());
}

#[test]
fn a_histogram_can_be_a_static() {
    static EMPTY: Histogram = Histogram::new();
    assert!(EMPTY.is_empty());
}

/// Records the same values into `h` and a fresh `new()` histogram and compares them.
fn same_as_new(h: &mut Histogram) {
    let mut fresh = Histogram::new();
    assert_eq!(h.count(), 0);
    for v in [1u64, 7, 1000, 123_456] {
        h.record(v);
        fresh.record(v);
    }
    assert_eq!(h.count(), fresh.count());
    assert_eq!(h.summary().ok(), fresh.summary().ok());
}

/// A histogram built in place over garbage is the same empty histogram as `new()`.
#[test]
fn in_place_matches_new() {
    let mut slot = core::mem::MaybeUninit::<Histogram>::uninit();
    // Garbage first: `init_in_place` must not rely on zeroed memory.
    // SAFETY: writing bytes into our own uninitialised slot.
    unsafe {
        slot.as_mut_ptr()
            .cast::<u8>()
            .write_bytes(0xa5, size_of::<Histogram>())
    };
    same_as_new(Histogram::init_in_place(&mut slot));
}

/// So is a boxed one.
#[cfg(feature = "alloc")]
#[test]
fn boxed_matches_new() {
    same_as_new(&mut Histogram::boxed());
}
