//! In-node key search: the [`BTreeKey`] trait, its scalar default and the SIMD compares for
//! integer keys.
//!
//! **What it does.** A node holds its keys sorted in a fixed array ([`LEAF_CAPACITY`] or
//! [`INTERNAL_CAPACITY`] keys; a leaf's search also compares the slot after its keys, see
//! [`BTreeKey::rank_leaf`]); only the first `len` are meaningful. [`BTreeKey::rank`] returns how many of those are smaller than
//! the probe: in a leaf that is where the probe is or would be inserted, in an internal node it
//! is the child to descend into (separator `i` is `>=` every key of child `i`). For `u64`,
//! `i64`, `u32`, `i32`, `usize` and `isize` the SIMD variants compare the *whole* array against
//! the broadcast probe in 16-key blocks (AVX2: `vpcmpgtq`/`vpcmpgtd` + `vmovmskpd`/`vmovmskps`,
//! unsigned keys with their sign bits flipped first; AVX-512: `vpcmpuq`/`vpcmpq`/`vpcmpud`/
//! `vpcmpd` into a mask register) and take the run of set bits from the first key (one `bsf`),
//! clamped to `len`: no branch depends on the data, so there is no misprediction, unlike a
//! linear or binary search. The blocks inline into the tree's descent (no call per level). Every
//! other key type uses [`BTreeKey::rank`]'s default, a binary search with `Ord`.
//!
//! **Dispatch.** [`KeySearch::detected`] picks the variant once through the crate's
//! [`Dispatcher`] (an atomic index in a `static`); a tree reads it once per operation and passes
//! the token down; the compiler hoists the `match` on it out of the descent loop (one loop per
//! variant).
//!
//! **What it relies on.** A [`KeySearch`] naming a SIMD variant exists only when the CPU has its
//! features (CPUID + XCR0, [`crate::cpu::features`]): that is the invariant that makes the
//! `unsafe` calls below sound. As in `mem`, the SIMD code is inline assembly whose vector values
//! never leave the block (the soft-float kernel target has no vector registers in Rust code; see
//! `mem::x86::vasm`); a kernel must have enabled and must save the vector state, or give its
//! trees [`KeySearch::scalar`].
//!
//! **What it guarantees.** Every variant returns the same rank for the same input (tested on
//! random nodes for each variant the CPU has); reads stay inside the key array.

use core::fmt;

use crate::cpu::{self, Features};
use crate::optimizer::{Candidate, CpuOptimizer, Dispatcher};

/// Keys per leaf: one less than a SIMD block, so that the leaf's `len` and `next` (8 bytes)
/// take the 16th key slot: 15 `u64` keys and those two fields are exactly two cache lines,
/// the 15 `u64` values two more (a `<u64, u64>` leaf is 256 bytes, 4 lines). The search
/// compares all 16 slots and clamps the rank to `len` ([`BTreeKey::rank_leaf`]). A leaf
/// splits when a 16th key arrives.
pub const LEAF_CAPACITY: usize = 15;

/// Separators per internal node (17 children). The search code takes any multiple of 16, but
/// 64 measured slower than 16 on `btree_get` (278 ns vs 141 ns at 1M keys: the SIMD search
/// then reads 8 key lines per level, half of them unused slots), so 16 it is. A two-step
/// search (the last key of each 16-key block first, then one block) with 32 or 64 keys per
/// node did not pay either (docs/benchmarks/simd.md, 2026-12-07 second update): about as many
/// cache misses per lookup, more instructions.
pub const INTERNAL_CAPACITY: usize = 16;

/// Keys per SIMD block.
const BLOCK: usize = 16;

/// An in-node search implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchVariant {
    /// AVX-512F compares into mask registers (16 keys per `u32` compare, 8 per `u64`).
    Avx512,
    /// AVX2 compares and move-masks (8 `u32` or 4 `u64` keys per compare).
    Avx2,
    /// Binary search with `Ord`; every key type, every CPU.
    Scalar,
}

impl SearchVariant {
    /// Every variant, best first.
    pub const ALL: [SearchVariant; 3] = [
        SearchVariant::Avx512,
        SearchVariant::Avx2,
        SearchVariant::Scalar,
    ];

    /// The CPU features the variant needs.
    pub const fn required_features(self) -> Features {
        match self {
            SearchVariant::Avx512 => Features::AVX512F,
            SearchVariant::Avx2 => Features::AVX2,
            SearchVariant::Scalar => Features::NONE,
        }
    }

    /// Lower-case name (`"avx512"`, `"avx2"`, `"scalar"`).
    pub const fn name(self) -> &'static str {
        match self {
            SearchVariant::Avx512 => "avx512",
            SearchVariant::Avx2 => "avx2",
            SearchVariant::Scalar => "scalar",
        }
    }

    /// Whether the SIMD variants exist on this architecture at all.
    const fn exists(self) -> bool {
        matches!(self, SearchVariant::Scalar) || cfg!(target_arch = "x86_64")
    }
}

/// The running CPU lacks what a [`SearchVariant`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchUnsupported {
    /// The variant asked for.
    pub variant: SearchVariant,
    /// The features it needs that the CPU lacks (empty when the architecture has no such
    /// variant at all).
    pub missing: Features,
}

impl fmt::Display for SearchUnsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key search variant {} needs CPU features {:?} on x86_64",
            self.variant.name(),
            self.missing
        )
    }
}

impl core::error::Error for SearchUnsupported {}

/// A proof that a [`SearchVariant`] runs on this CPU: the only way to ask
/// [`BTreeKey::rank`] for a SIMD variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeySearch(SearchVariant);

static DETECTED: Dispatcher<SearchVariant, 3> = Dispatcher::new(CpuOptimizer::from_array([
    Candidate {
        name: "avx512",
        required: SearchVariant::Avx512.required_features(),
        priority: 2,
        implementation: SearchVariant::Avx512,
    },
    Candidate {
        name: "avx2",
        required: SearchVariant::Avx2.required_features(),
        priority: 1,
        implementation: SearchVariant::Avx2,
    },
    Candidate {
        name: "scalar",
        required: Features::NONE,
        priority: 0,
        implementation: SearchVariant::Scalar,
    },
]));

impl KeySearch {
    /// The best variant for the running CPU, chosen once (then one relaxed atomic load).
    #[inline]
    pub fn detected() -> KeySearch {
        let v = match DETECTED.get() {
            Some(v) if v.exists() => v,
            _ => SearchVariant::Scalar,
        };
        KeySearch(v)
    }

    /// The scalar search (no vector register touched), for contexts where the vector state
    /// must not be used.
    pub const fn scalar() -> KeySearch {
        KeySearch(SearchVariant::Scalar)
    }

    /// `variant`, if the running CPU supports it.
    pub fn new(variant: SearchVariant) -> Result<KeySearch, SearchUnsupported> {
        let need = variant.required_features();
        let have = cpu::features();
        if variant.exists() && have.contains(need) {
            Ok(KeySearch(variant))
        } else {
            Err(SearchUnsupported {
                variant,
                missing: Features::from_bits_truncate(need.bits() & !have.bits()),
            })
        }
    }

    /// The variant this token stands for.
    pub const fn variant(self) -> SearchVariant {
        self.0
    }
}

/// A key a [`super::CacheBTree`] can hold: totally ordered and copyable (keys are copied into
/// separators). Integer keys get SIMD search; for any other type write `impl BTreeKey for
/// MyKey {}` and the binary-search default is used.
pub trait BTreeKey: Ord + Copy {
    /// How many of `keys[..len]` (sorted ascending) are smaller than `key`. `keys[len..]` may
    /// hold anything and must be ignored; a `len` above `N` counts as `N`.
    ///
    /// The default is a binary search and ignores `search`; integer keys use the variant the
    /// token names (in blocks of 16 keys when `N` is a multiple of 16, else the binary search).
    #[inline]
    fn rank<const N: usize>(keys: &[Self; N], len: usize, key: &Self, search: KeySearch) -> usize {
        let _ = search;
        scalar_rank(keys, len, key)
    }

    /// The search a tree uses for this type unless told otherwise: [`KeySearch::detected`] for
    /// the SIMD-capable integers, [`KeySearch::scalar`] by default.
    #[inline]
    fn preferred_search() -> KeySearch {
        KeySearch::scalar()
    }

    /// [`BTreeKey::rank`] over a leaf's `len` keys (`len <= LEAF_CAPACITY`). The SIMD keys
    /// compare [`LEAF_CAPACITY`]` + 1` slots in one block: the slot past the keys holds the
    /// leaf's other fields, which, past `len`, cannot change the rank. Called by the tree only.
    ///
    /// # Safety
    /// `keys` points to [`LEAF_CAPACITY`] initialised keys; when `Self` is 4 or 8 bytes, the
    /// next `size_of::<Self>()` bytes are initialised and readable through `keys` too.
    #[doc(hidden)]
    #[inline]
    unsafe fn rank_leaf(keys: *const Self, len: usize, key: &Self, search: KeySearch) -> usize {
        let _ = search;
        // SAFETY: `keys` points to `LEAF_CAPACITY` initialised keys (the contract).
        let keys = unsafe { &*keys.cast::<[Self; LEAF_CAPACITY]>() };
        scalar_rank(keys, len, key)
    }
}

/// Binary search over `keys[..len]` (clamped to the array).
#[inline]
pub fn scalar_rank<K: Ord>(keys: &[K], len: usize, key: &K) -> usize {
    let live = keys.get(..len).unwrap_or(keys);
    live.partition_point(|k| k < key)
}

/// The rank from 16-key block masks (bit `i` set when `keys[i] < key`): the run of set bits
/// from bit 0 of each block, blocks taken while full, clamped to `len`. The live keys are sorted,
/// so their set bits are exactly a prefix of the live slots; whatever the stale slots past `len`
/// hold can only lengthen a run that already covers all `len` live keys, which the clamp undoes.
/// No population count (not in the x86_64 baseline) and no mask of `len` are needed.
#[inline(always)]
#[cfg(target_arch = "x86_64")]
fn rank_from_blocks<const N: usize>(len: usize, mut mask_of: impl FnMut(usize) -> u32) -> usize {
    let mut count = 0;
    for b in 0..N / BLOCK {
        // Bit 16 set: never zero, so this is one `bsf`.
        let run = (!mask_of(b) | (1 << BLOCK)).trailing_zeros() as usize;
        count += run;
        if run < BLOCK {
            break;
        }
    }
    if count < len { count } else { len }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! 16-key blocks: each returns a 16-bit mask, bit `i` set when `keys[i] < key`.
    //!
    //! The blocks are `#[inline(always)]` functions without `#[target_feature]`, so they inline
    //! into the tree's descent loop (a `#[target_feature]` function cannot be inlined into code
    //! compiled without the feature, and the call cost about half of each level's
    //! instructions). That is possible because they are inline assembly, which the assembler
    //! takes whatever features the surrounding function was compiled for; the caller's
    //! [`super::KeySearch`] token is what proves the CPU runs them.
    //!
    //! **Clobbers.** Each AVX2 block ends with `vzeroupper`, which zeroes the upper halves of
    //! *all* of `ymm0..=15`. Compiled with AVX (where the compiler may keep 256-bit values in
    //! any of them), the AVX2 blocks therefore declare all sixteen `ymm` registers. Compiled
    //! with SSE but without AVX (the hosted default), `ymm` names cannot be declared, so the
    //! blocks declare the `xmm` registers they write: the compiler then keeps nothing in them,
    //! and, not using AVX, never holds anything in any upper half. The AVX-512 blocks use only `zmm16` and `k1`/`k2`, which code
    //! compiled without AVX-512 never uses; with AVX-512 they are declared. Without SSE
    //! (soft-float kernel targets) nothing can be declared and nothing needs to be: see
    //! `mem::x86::vasm`.

    /// `asm!` with vector clobbers as the module docs describe: `[template]`, `[registers
    /// written when compiled with AVX]`, `[the same registers named for SSE-only code]`,
    /// operands.
    macro_rules! rank_asm {
        ([$($t:expr),* $(,)?], [$($wide:tt),* $(,)?], [$($narrow:tt),* $(,)?], $($op:tt)*) => {{
            #[cfg(target_feature = "avx")]
            core::arch::asm!($($t),*, $($op)* $(out($wide) _,)* options(nostack, pure, readonly));
            #[cfg(all(target_feature = "sse", not(target_feature = "avx")))]
            core::arch::asm!($($t),*, $($op)* $(out($narrow) _,)* options(nostack, pure, readonly));
            #[cfg(not(target_feature = "sse"))]
            core::arch::asm!($($t),*, $($op)* options(nostack, pure, readonly));
        }};
    }

    /// Sign bit of a 64-bit lane; flipping it maps unsigned order onto signed order.
    pub(super) const SIGN64: u64 = 1 << 63;
    /// Sign bit of a 32-bit lane.
    pub(super) const SIGN32: u32 = 1 << 31;

    /// AVX2, 16 64-bit keys at `p` (128 bytes): `keys[i] ^ flip < key ^ flip`, signed.
    ///
    /// # Safety
    /// `p..p + 128` readable; AVX2 usable (CPUID + XCR0).
    #[inline(always)]
    pub(super) unsafe fn lt16_q_avx2(p: *const u8, key: u64, flip: u64) -> u32 {
        let m: u32;
        let k = key ^ flip;
        // SAFETY: reads 4 × 32 bytes inside `p..p + 128`; AVX2 usable per the contract; the
        // registers written are declared (module docs).
        unsafe {
            rank_asm!([
                "vmovq xmm0, {k}",
                "vpbroadcastq ymm0, xmm0",
                "vmovq xmm1, {f}",
                "vpbroadcastq ymm1, xmm1",
                "vpxor ymm2, ymm1, [{p}]",
                "vpcmpgtq ymm2, ymm0, ymm2",
                "vpxor ymm3, ymm1, [{p} + 32]",
                "vpcmpgtq ymm3, ymm0, ymm3",
                "vmovmskpd {m:e}, ymm2",
                "vmovmskpd {t:e}, ymm3",
                "shl {t:e}, 4",
                "or {m:e}, {t:e}",
                "vpxor ymm2, ymm1, [{p} + 64]",
                "vpcmpgtq ymm2, ymm0, ymm2",
                "vpxor ymm3, ymm1, [{p} + 96]",
                "vpcmpgtq ymm3, ymm0, ymm3",
                "vmovmskpd {t:e}, ymm2",
                "shl {t:e}, 8",
                "or {m:e}, {t:e}",
                "vmovmskpd {t:e}, ymm3",
                "shl {t:e}, 12",
                "or {m:e}, {t:e}",
                "vzeroupper",
            ], ["ymm0", "ymm1", "ymm2", "ymm3", "ymm4", "ymm5", "ymm6", "ymm7", "ymm8", "ymm9", "ymm10",
                "ymm11", "ymm12", "ymm13", "ymm14", "ymm15"],
               ["xmm0", "xmm1", "xmm2", "xmm3"],
               p = in(reg) p, k = in(reg) k, f = in(reg) flip,
               m = out(reg) m, t = out(reg) _,);
        }
        m
    }

    /// AVX2, 16 32-bit keys at `p` (64 bytes): `keys[i] ^ flip < key ^ flip`, signed.
    ///
    /// # Safety
    /// `p..p + 64` readable; AVX2 usable.
    #[inline(always)]
    pub(super) unsafe fn lt16_d_avx2(p: *const u8, key: u32, flip: u32) -> u32 {
        let m: u32;
        let k = key ^ flip;
        // SAFETY: reads 2 × 32 bytes inside `p..p + 64`; AVX2 usable per the contract; the
        // registers written are declared (module docs).
        unsafe {
            rank_asm!([
                "vmovd xmm0, {k:e}",
                "vpbroadcastd ymm0, xmm0",
                "vmovd xmm1, {f:e}",
                "vpbroadcastd ymm1, xmm1",
                "vpxor ymm2, ymm1, [{p}]",
                "vpcmpgtd ymm2, ymm0, ymm2",
                "vpxor ymm3, ymm1, [{p} + 32]",
                "vpcmpgtd ymm3, ymm0, ymm3",
                "vmovmskps {m:e}, ymm2",
                "vmovmskps {t:e}, ymm3",
                "shl {t:e}, 8",
                "or {m:e}, {t:e}",
                "vzeroupper",
            ], ["ymm0", "ymm1", "ymm2", "ymm3", "ymm4", "ymm5", "ymm6", "ymm7", "ymm8", "ymm9", "ymm10",
                "ymm11", "ymm12", "ymm13", "ymm14", "ymm15"],
               ["xmm0", "xmm1", "xmm2", "xmm3"],
               p = in(reg) p, k = in(reg) k, f = in(reg) flip,
               m = out(reg) m, t = out(reg) _,);
        }
        m
    }

    /// Stamps out an AVX-512 block for 64-bit keys with the given compare instruction
    /// (`vpcmpuq` unsigned, `vpcmpq` signed; predicate 6 = "not less or equal": `key > keys[i]`).
    macro_rules! lt16_q_avx512 {
        ($name:ident, $cmp:literal) => {
            /// AVX-512F, 16 64-bit keys at `p` (128 bytes).
            ///
            /// # Safety
            /// `p..p + 128` readable; AVX-512F usable (CPUID + XCR0 opmask/ZMM state).
            #[inline(always)]
            pub(super) unsafe fn $name(p: *const u8, key: u64) -> u32 {
                let m: u32;
                // SAFETY: reads 2 × 64 bytes inside `p..p + 128`; AVX-512F usable. zmm16 has
                // no legacy-SSE alias, so no `vzeroupper` is needed; registers per the module
                // docs.
                unsafe {
                    rank_asm!([
                        "vpbroadcastq zmm16, {k}",
                        concat!($cmp, " k1, zmm16, [{p}], 6"),
                        concat!($cmp, " k2, zmm16, [{p} + 64], 6"),
                        "kmovw {m:e}, k1",
                        "kmovw {t:e}, k2",
                        "shl {t:e}, 8",
                        "or {m:e}, {t:e}",
                    ], ["zmm16", "k1", "k2"], [],
                       p = in(reg) p, k = in(reg) key, m = out(reg) m, t = out(reg) _,);
                }
                m
            }
        };
    }
    lt16_q_avx512!(lt16_uq_avx512, "vpcmpuq");
    lt16_q_avx512!(lt16_sq_avx512, "vpcmpq");

    /// Stamps out an AVX-512 block for 32-bit keys (`vpcmpud` / `vpcmpd`).
    macro_rules! lt16_d_avx512 {
        ($name:ident, $cmp:literal) => {
            /// AVX-512F, 16 32-bit keys at `p` (64 bytes).
            ///
            /// # Safety
            /// `p..p + 64` readable; AVX-512F usable.
            #[inline(always)]
            pub(super) unsafe fn $name(p: *const u8, key: u32) -> u32 {
                let a: u32;
                // SAFETY: reads 64 bytes at `p`; AVX-512F usable; registers per the module
                // docs.
                unsafe {
                    rank_asm!([
                        "vpbroadcastd zmm16, {k:e}",
                        concat!($cmp, " k1, zmm16, [{p}], 6"),
                        "kmovw {a:e}, k1",
                    ], ["zmm16", "k1"], [],
                       p = in(reg) p, k = in(reg) key, a = out(reg) a,);
                }
                a
            }
        };
    }
    lt16_d_avx512!(lt16_ud_avx512, "vpcmpud");
    lt16_d_avx512!(lt16_sd_avx512, "vpcmpd");
}

/// `BTreeKey::rank_leaf` for a SIMD key type: one 16-slot block (the 15 keys and the slot
/// after them), `$wide` being the key's width (`u64` or `u32`).
macro_rules! simd_rank_leaf {
    ($t:ty, $wide:ty, $flip:expr, $avx512:ident) => {
        #[inline]
        unsafe fn rank_leaf(keys: *const $t, len: usize, key: &$t, search: KeySearch) -> usize {
            #[cfg(target_arch = "x86_64")]
            {
                // Bit-identical reinterpretation of the probe (same width).
                let k = *key as $wide;
                let p = keys.cast::<u8>();
                let mask = match search.variant() {
                    // SAFETY: the token proves AVX2; 16 keys' bytes at `p` are readable (the
                    // contract: `Self` is 4 or 8 bytes).
                    SearchVariant::Avx2 => Some(unsafe { <$wide as Avx2Block>::lt16(p, k, $flip) }),
                    // SAFETY: the token proves AVX-512F; readable as above.
                    SearchVariant::Avx512 => Some(unsafe { x86::$avx512(p, k) }),
                    SearchVariant::Scalar => None,
                };
                if let Some(m) = mask {
                    return rank_from_blocks::<BLOCK>(len, |_| m);
                }
            }
            let _ = search;
            // SAFETY: `LEAF_CAPACITY` initialised keys at `keys` (the contract).
            scalar_rank(unsafe { &*keys.cast::<[$t; LEAF_CAPACITY]>() }, len, key)
        }
    };
}

/// The AVX2 16-key block for a key width.
#[cfg(target_arch = "x86_64")]
trait Avx2Block: Sized {
    /// # Safety
    /// As `x86::lt16_q_avx2` / `x86::lt16_d_avx2`.
    unsafe fn lt16(p: *const u8, key: Self, flip: Self) -> u32;
}

#[cfg(target_arch = "x86_64")]
impl Avx2Block for u64 {
    #[inline(always)]
    unsafe fn lt16(p: *const u8, key: u64, flip: u64) -> u32 {
        // SAFETY: forwarded contract.
        unsafe { x86::lt16_q_avx2(p, key, flip) }
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx2Block for u32 {
    #[inline(always)]
    unsafe fn lt16(p: *const u8, key: u32, flip: u32) -> u32 {
        // SAFETY: forwarded contract.
        unsafe { x86::lt16_d_avx2(p, key, flip) }
    }
}

/// Implements [`BTreeKey`] with SIMD search for a 64-bit integer type.
macro_rules! simd_key_64 {
    ($t:ty, $flip:expr, $avx512:ident) => {
        impl BTreeKey for $t {
            #[inline]
            fn rank<const N: usize>(
                keys: &[$t; N],
                len: usize,
                key: &$t,
                search: KeySearch,
            ) -> usize {
                #[cfg(target_arch = "x86_64")]
                if N.is_multiple_of(BLOCK) {
                    // Bit-identical reinterpretation of the probe (same width).
                    let k = *key as u64;
                    let base = keys.as_ptr().cast::<u8>();
                    let step = BLOCK * size_of::<$t>();
                    match search.variant() {
                        SearchVariant::Avx2 => {
                            return rank_from_blocks::<N>(len, |b| {
                                // SAFETY: the token proves AVX2; block `b < N / 16` is the
                                // 16 × 8 = 128 bytes at `base + b * step`, inside `keys`.
                                unsafe { x86::lt16_q_avx2(base.add(b * step), k, $flip) }
                            });
                        }
                        SearchVariant::Avx512 => {
                            return rank_from_blocks::<N>(len, |b| {
                                // SAFETY: the token proves AVX-512F; block `b` is inside
                                // `keys` as above.
                                unsafe { x86::$avx512(base.add(b * step), k) }
                            });
                        }
                        SearchVariant::Scalar => {}
                    }
                }
                let _ = search;
                scalar_rank(keys, len, key)
            }

            #[inline]
            fn preferred_search() -> KeySearch {
                KeySearch::detected()
            }

            simd_rank_leaf!($t, u64, $flip, $avx512);
        }
    };
}

/// Implements [`BTreeKey`] with SIMD search for a 32-bit integer type.
macro_rules! simd_key_32 {
    ($t:ty, $flip:expr, $avx512:ident) => {
        impl BTreeKey for $t {
            #[inline]
            fn rank<const N: usize>(
                keys: &[$t; N],
                len: usize,
                key: &$t,
                search: KeySearch,
            ) -> usize {
                #[cfg(target_arch = "x86_64")]
                if N.is_multiple_of(BLOCK) {
                    // Bit-identical reinterpretation of the probe (same width).
                    let k = *key as u32;
                    let base = keys.as_ptr().cast::<u8>();
                    let step = BLOCK * size_of::<$t>();
                    match search.variant() {
                        SearchVariant::Avx2 => {
                            return rank_from_blocks::<N>(len, |b| {
                                // SAFETY: the token proves AVX2; block `b < N / 16` is the
                                // 16 × 4 = 64 bytes at `base + b * step`, inside `keys`.
                                unsafe { x86::lt16_d_avx2(base.add(b * step), k, $flip) }
                            });
                        }
                        SearchVariant::Avx512 => {
                            return rank_from_blocks::<N>(len, |b| {
                                // SAFETY: the token proves AVX-512F; block `b` is inside
                                // `keys` as above.
                                unsafe { x86::$avx512(base.add(b * step), k) }
                            });
                        }
                        SearchVariant::Scalar => {}
                    }
                }
                let _ = search;
                scalar_rank(keys, len, key)
            }

            #[inline]
            fn preferred_search() -> KeySearch {
                KeySearch::detected()
            }

            simd_rank_leaf!($t, u32, $flip, $avx512);
        }
    };
}

// An internal node is whole SIMD blocks; a leaf's keys and the 8 bytes after them one block.
const _: () = assert!(LEAF_CAPACITY + 1 == BLOCK && INTERNAL_CAPACITY.is_multiple_of(BLOCK));

simd_key_64!(u64, x86::SIGN64, lt16_uq_avx512);
simd_key_64!(i64, 0, lt16_sq_avx512);
simd_key_32!(u32, x86::SIGN32, lt16_ud_avx512);
simd_key_32!(i32, 0, lt16_sd_avx512);
#[cfg(target_pointer_width = "64")]
simd_key_64!(usize, x86::SIGN64, lt16_uq_avx512);
#[cfg(target_pointer_width = "64")]
simd_key_64!(isize, 0, lt16_sq_avx512);

/// Scalar-search keys.
macro_rules! scalar_key {
    ($($t:ty),*) => { $(impl BTreeKey for $t {})* };
}
scalar_key!(u8, u16, u128, i8, i16, i128, char, bool, ());
#[cfg(not(target_pointer_width = "64"))]
scalar_key!(usize, isize);

impl<A: BTreeKey, B: BTreeKey> BTreeKey for (A, B) {}
impl<A: BTreeKey, B: BTreeKey, C: BTreeKey> BTreeKey for (A, B, C) {}
impl<T: BTreeKey, const N: usize> BTreeKey for [T; N] {}
impl<T: BTreeKey> BTreeKey for Option<T> {}
impl<T: ?Sized + Ord> BTreeKey for &T {}
impl<T: BTreeKey> BTreeKey for core::cmp::Reverse<T> {}
