//! Hosted extras (feature `std`): the standard library's view of the CPU, to cross-check
//! [`crate::cpu::features`] against.

/// The features `std::is_x86_feature_detected!` reports, as a [`Features`](crate::Features)
/// set. FSRM and OSXSAVE have no `std` name and are never set here.
#[cfg(target_arch = "x86_64")]
pub fn std_detected_features() -> crate::Features {
    use crate::Features;
    let mut f = Features::NONE;
    macro_rules! check {
        ($($name:tt => $feature:expr),* $(,)?) => {
            $(if std::is_x86_feature_detected!($name) { f = f | $feature; })*
        };
    }
    check! {
        "sse2" => Features::SSE2,
        "sse3" => Features::SSE3,
        "ssse3" => Features::SSSE3,
        "sse4.1" => Features::SSE4_1,
        "sse4.2" => Features::SSE4_2,
        "popcnt" => Features::POPCNT,
        "avx" => Features::AVX,
        "avx2" => Features::AVX2,
        "fma" => Features::FMA,
        "bmi1" => Features::BMI1,
        "bmi2" => Features::BMI2,
        "avx512f" => Features::AVX512F,
        "avx512bw" => Features::AVX512BW,
        "avx512vl" => Features::AVX512VL,
        "avx512dq" => Features::AVX512DQ,
        "avx512cd" => Features::AVX512CD,
        "ermsb" => Features::ERMS,
    }
    f
}
