//! Sizes of the thread stress tests, shared by the test targets that include this module.
//!
//! A stress test runs `n` iterations natively. Under Miri it runs its Miri size (each test
//! picks one small enough for Miri to finish in about a minute). Under a sanitizer, which
//! slows every memory access, `cargo xtask check-extra` sets `VERIDIAN_STRESS_DIVISOR`, and the
//! tests run `n / divisor` iterations, never fewer than the Miri size.

/// The environment variable that divides the stress tests' iteration counts (a positive
/// integer; unset, unparsable or 0 means 1).
pub const DIVISOR_VAR: &str = "VERIDIAN_STRESS_DIVISOR";

/// `n` iterations natively, `miri` under Miri, `n / VERIDIAN_STRESS_DIVISOR` (at least `miri`)
/// when that variable is set.
pub fn stress(n: usize, miri: usize) -> usize {
    if cfg!(miri) {
        return miri;
    }
    let divisor = std::env::var(DIVISOR_VAR)
        .ok()
        .and_then(|d| d.trim().parse::<usize>().ok())
        .filter(|&d| d > 0)
        .unwrap_or(1);
    (n / divisor).max(miri.min(n))
}

/// `n`, or a small fraction of it under Miri (`n / 2000`, at least 8) and a sanitizer run.
#[allow(dead_code)] // Not every test target that includes this module uses it.
pub fn scaled(n: usize) -> usize {
    stress(n, (n / 2000).max(8))
}
