//! The x86_64 variants: [`simd::avx512`] and [`simd::avx2`] (each with the ERMS middle range and
//! the non-temporal large range) and [`erms`] (general-purpose registers and string
//! instructions only).

pub(crate) mod erms;
pub(crate) mod simd;
pub(crate) mod vasm;
