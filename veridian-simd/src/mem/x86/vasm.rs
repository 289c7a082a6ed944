//! `vasm!`: inline assembly that uses vector registers, with the clobbers declared where the
//! target lets us.
//!
//! **Why.** `x86_64-unknown-none` (the kernel target) is soft-float: LLVM gives it no vector
//! register classes at all, even inside a `#[target_feature(enable = "avx2")]` function. A
//! vector value in Rust code (an `__m256i` local, any `core::arch` load intrinsic) then fails
//! to compile ("Do not know how to soften this operator's operand"), and declaring a vector
//! register as an asm clobber fails too ("couldn't allocate output register"). So the SIMD
//! variants are written as self-contained asm blocks: every vector value lives and dies inside
//! one block, and Rust code only ever holds pointers, sizes and masks in general-purpose
//! registers.
//!
//! **Clobbers.** Where the crate is compiled with SSE (`cfg(target_feature = "sse")`, every
//! hosted x86_64 target) the block declares each vector and mask register it writes, so the
//! compiler keeps nothing there across it. Where it is not (soft-float kernel targets), the
//! compiler has no vector register to keep anything in (that is exactly why the declaration is
//! refused), so writing them cannot destroy a compiler value; preserving the *interrupted
//! context's* vector state is the kernel's job (the precondition in the crate docs).

/// `vasm!([template lines...], [clobbered registers...], operands...)`.
macro_rules! vasm {
    ([$($t:expr),* $(,)?], [$($c:tt),* $(,)?], $($op:tt)*) => {{
        #[cfg(target_feature = "sse")]
        core::arch::asm!($($t),*, $($op)* $(out($c) _,)* options(nostack));
        #[cfg(not(target_feature = "sse"))]
        core::arch::asm!($($t),*, $($op)* options(nostack));
    }};
}
pub(crate) use vasm;
