//! The size thresholds that switch between strategies, derived from the cache sizes.
//!
//! **What it does.** Three numbers, process- (or kernel-) wide, read by every routine on its
//! large path: where `rep movsb` starts, where `rep stosb` starts, and where non-temporal stores
//! start. [`Thresholds::for_cpu`] derives them like glibc (`sysdeps/x86/dl-cacheinfo.h`):
//!
//! - `rep_movsb`: 2112 bytes with FSRM (glibc's value for fast-short-rep-mov CPUs), otherwise
//!   `2048 * V / 16` (4 KiB for AVX2, 8 KiB for AVX-512): below that the vector loop wins
//!   because `rep movsb` pays a start-up cost.
//! - `rep_stosb`: 2048 bytes.
//! - `non_temporal`: three quarters of one CPU's share of the L3 (`l3 / sharing * 3 / 4`), at
//!   least 16 KiB + 64: a copy larger than that would evict most of what the CPU had cached, so it
//!   bypasses the caches (and, as in glibc, `rep movsb` stops there too).
//!
//! **Guarantees.** Every value of every threshold is *correct*: the thresholds only choose
//! between paths that each produce the right bytes, and they are consulted only on the large
//! path (above `8 * V`), where every strategy's minimum size is met. So [`set_thresholds`]
//! accepts any numbers (like glibc's tunables) and a racing reader sees either the old or the new
//! value of each field. Relaxed ordering is therefore enough for the fields.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::cpu::{CpuInfo, Features};

/// Size thresholds in bytes (see the module documentation for what each one switches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// ERMS variants use `rep movsb` for copies of at least this many bytes (below
    /// `non_temporal`).
    pub rep_movsb: usize,
    /// ERMS variants use `rep stosb` for fills of at least this many bytes (below
    /// `non_temporal`).
    pub rep_stosb: usize,
    /// SIMD variants use non-temporal stores for non-overlapping copies and fills of at least
    /// this many bytes.
    pub non_temporal: usize,
}

/// glibc's floor for the non-temporal threshold (`0x4040`).
const MIN_NON_TEMPORAL: usize = 0x4040;

impl Thresholds {
    /// The values used before detection has run (and where the CPU reports no cache): glibc's
    /// defaults for an unknown CPU with a 1 MiB cache share.
    pub const DEFAULT: Thresholds = Thresholds {
        rep_movsb: 2048,
        rep_stosb: 2048,
        non_temporal: 3 * 1024 * 1024 / 4,
    };

    /// Derives the thresholds for `info`, for routines whose vectors are `vector_bytes` wide.
    pub fn for_cpu(info: &CpuInfo, vector_bytes: usize) -> Thresholds {
        let rep_movsb = if info.features.contains(Features::FSRM) {
            2112
        } else {
            2048 * (vector_bytes.max(16) / 16)
        };
        let c = &info.caches;
        let share = if c.l3 != 0 {
            c.l3 / c.l3_sharing.max(1)
        } else if c.l2 != 0 {
            c.l2
        } else {
            1024 * 1024
        };
        Thresholds {
            rep_movsb,
            rep_stosb: 2048,
            non_temporal: (share / 4 * 3).max(MIN_NON_TEMPORAL),
        }
    }
}

static REP_MOVSB: AtomicUsize = AtomicUsize::new(Thresholds::DEFAULT.rep_movsb);
static REP_STOSB: AtomicUsize = AtomicUsize::new(Thresholds::DEFAULT.rep_stosb);
static NON_TEMPORAL: AtomicUsize = AtomicUsize::new(Thresholds::DEFAULT.non_temporal);

/// The thresholds the routines use now.
#[inline(always)]
pub fn thresholds() -> Thresholds {
    Thresholds {
        rep_movsb: REP_MOVSB.load(Ordering::Relaxed),
        rep_stosb: REP_STOSB.load(Ordering::Relaxed),
        non_temporal: NON_TEMPORAL.load(Ordering::Relaxed),
    }
}

/// The current `rep movsb` threshold alone (a routine that needs one value loads only it).
#[inline(always)]
pub(crate) fn rep_movsb() -> usize {
    REP_MOVSB.load(Ordering::Relaxed)
}

/// The current `rep stosb` threshold alone.
#[inline(always)]
pub(crate) fn rep_stosb() -> usize {
    REP_STOSB.load(Ordering::Relaxed)
}

/// The current non-temporal threshold alone.
#[inline(always)]
pub(crate) fn non_temporal() -> usize {
    NON_TEMPORAL.load(Ordering::Relaxed)
}

/// Replaces the thresholds every routine uses (a tuning knob, like glibc's
/// `glibc.cpu.x86_*_threshold` tunables). Any values are valid; see the module documentation.
/// The dispatch sets them once from the CPU on its first call, unless this was called before.
pub fn set_thresholds(t: Thresholds) {
    USER_SET.store(true, Ordering::Relaxed);
    store(t);
}

static USER_SET: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Stores `t` unless the user already chose thresholds.
pub(crate) fn init_from_cpu(t: Thresholds) {
    if !USER_SET.load(Ordering::Relaxed) {
        store(t);
    }
}

fn store(t: Thresholds) {
    REP_MOVSB.store(t.rep_movsb, Ordering::Relaxed);
    REP_STOSB.store(t.rep_stosb, Ordering::Relaxed);
    NON_TEMPORAL.store(t.non_temporal, Ordering::Relaxed);
}
