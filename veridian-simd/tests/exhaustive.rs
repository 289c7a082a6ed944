//! Exhaustive checks of every variant the CPU supports (and a printed skip for the others):
//! lengths 0..=1024 × source and destination misalignments 0..=63, guard bytes around the
//! destination, overlapping moves in both directions, memset and memcmp, plus the dispatched
//! entry points. With the default thresholds, lengths up to 1024 cover every size class up to
//! and including the aligned vector loops; `thresholds.rs` lowers the thresholds to reach the
//! `rep movsb`/`rep stosb` and non-temporal paths too.

mod common;

use common::*;
use veridian_simd::Variant;

macro_rules! variant_tests {
    ($($variant:ident => $module:ident),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn memcpy_all_lengths_and_misalignments() {
                let Some(r) = routines_or_skip(Variant::$variant) else { return };
                sweep_copy(r.memcpy_fn(), MAX_LEN, &all_offsets(), concat!(stringify!($module), " memcpy"));
            }

            #[test]
            fn memmove_all_lengths_and_misalignments_disjoint() {
                let Some(r) = routines_or_skip(Variant::$variant) else { return };
                sweep_copy(r.memmove_fn(), MAX_LEN, &all_offsets(), concat!(stringify!($module), " memmove"));
            }

            #[test]
            fn memmove_overlap_both_directions_near() {
                let Some(r) = routines_or_skip(Variant::$variant) else { return };
                sweep_move_near(r.memmove_fn(), MAX_LEN, &all_offsets(), concat!(stringify!($module), " memmove"));
            }

            #[test]
            fn memmove_overlap_both_directions_far() {
                let Some(r) = routines_or_skip(Variant::$variant) else { return };
                sweep_move_far(r.memmove_fn(), MAX_LEN, concat!(stringify!($module), " memmove"));
            }

            #[test]
            fn memset_all_lengths_and_misalignments() {
                let Some(r) = routines_or_skip(Variant::$variant) else { return };
                sweep_set(r.memset_fn(), MAX_LEN, concat!(stringify!($module), " memset"));
            }

            #[test]
            fn memcmp_all_lengths_and_misalignments() {
                let Some(r) = routines_or_skip(Variant::$variant) else { return };
                sweep_compare(r.memcmp_fn(), MAX_LEN, &all_offsets(), concat!(stringify!($module), " memcmp"));
            }
        }
    )*};
}

variant_tests! {
    Avx512 => avx512,
    Avx2 => avx2,
    Erms => erms,
    Generic => generic,
}

/// The dispatched raw-pointer functions, which resolve on first use.
mod dispatched {
    use super::*;

    #[test]
    fn memcpy_memmove_memset_memcmp() {
        let offsets = [0, 1, 7, 31, 32, 33, 63];
        sweep_copy(
            veridian_simd::memcpy,
            MAX_LEN,
            &offsets,
            "dispatched memcpy",
        );
        sweep_move_near(
            veridian_simd::memmove,
            MAX_LEN,
            &offsets,
            "dispatched memmove",
        );
        sweep_set(veridian_simd::memset, MAX_LEN, "dispatched memset");
        sweep_compare(
            veridian_simd::memcmp,
            MAX_LEN,
            &offsets,
            "dispatched memcmp",
        );
        let chosen = veridian_simd::selected_variant();
        assert_eq!(chosen, Variant::best_for(veridian_simd::cpu::features()));
        println!("dispatch chose {}", chosen.name());
    }
}
