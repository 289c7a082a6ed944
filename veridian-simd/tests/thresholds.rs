//! The large-size paths, reached at small sizes by lowering the thresholds (a process-wide
//! setting, so this file is its own test binary and runs its cases in one test, in sequence).
//! Every variant is swept over lengths up to 2 KiB with each of: the non-temporal path on,
//! the `rep movsb`/`rep stosb` path on, and both off (vector loops only).

mod common;

use common::*;
use veridian_simd::{Thresholds, Variant, set_thresholds, thresholds};

#[test]
fn every_large_path_of_every_variant() {
    let settings = [
        (
            "non-temporal",
            Thresholds {
                rep_movsb: usize::MAX,
                rep_stosb: usize::MAX,
                non_temporal: 0,
            },
        ),
        (
            "rep movsb/stosb",
            Thresholds {
                rep_movsb: 0,
                rep_stosb: 0,
                non_temporal: usize::MAX,
            },
        ),
        (
            "vector loops",
            Thresholds {
                rep_movsb: usize::MAX,
                rep_stosb: usize::MAX,
                non_temporal: usize::MAX,
            },
        ),
    ];
    // Lengths past 8 vectors of AVX-512 (512 B) plus a spread of misalignments.
    let offsets = [0, 1, 5, 17, 32, 33, 48, 63];
    for (what, t) in settings {
        set_thresholds(t);
        assert_eq!(thresholds(), t);
        for v in Variant::ALL {
            let Some(r) = routines_or_skip(v) else {
                continue;
            };
            let name = format!("{} with {what}", v.name());
            sweep_copy(r.memcpy_fn(), 2048, &offsets, &name);
            sweep_move_near(r.memmove_fn(), 1500, &offsets, &name);
            sweep_move_far(r.memmove_fn(), 1200, &name);
            sweep_set(r.memset_fn(), 2048, &name);
        }
    }
}
