//! [`CpuSet`]: a fixed-capacity set of CPU indices, used as a thread's affinity mask and for the
//! topology's per-node CPU lists.
//!
//! # What it does
//! A bitmap of [`MAX_CPUS`] bits in `[u64; MAX_CPUS / 64]`, with the usual set algebra (union,
//! intersection, difference, also as `|`, `&`, `-` operators), membership, counting and
//! iteration in increasing CPU order. It is `Copy` and 32 bytes large: no allocation, usable in
//! interrupt context.
//!
//! # What it guarantees
//! Every operation that names a CPU index checks it: [`CpuSet::single`], [`CpuSet::insert`],
//! [`CpuSet::remove`], [`CpuSet::full`] and [`CpuSet::from_cpus`] return
//! [`CpuOutOfRange`] for an index `>= MAX_CPUS` instead of panicking. [`CpuSet::contains`]
//! answers `false` for such an index (no set can contain it). Bits at or above `MAX_CPUS` do
//! not exist, so the set algebra can never produce an out-of-range member.

use core::fmt;
use core::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Sub, SubAssign};

/// The number of CPU indices a [`CpuSet`] (and so the [`Topology`](crate::Topology) and the
/// scheduler) can describe: indices `0..MAX_CPUS`.
///
/// 256 covers today's two-socket servers (2 × 64 cores × 2 threads) while keeping a set at
/// 32 bytes. Raising it only costs memory (it must stay a multiple of 64).
pub const MAX_CPUS: usize = 256;

/// Words of the bitmap.
const WORDS: usize = MAX_CPUS / 64;

/// Word-wise combination of two sets in a `const fn` (function pointers cannot be called there).
macro_rules! combine {
    ($a:expr, $b:expr, |$x:ident, $y:ident| $op:expr) => {{
        let mut bits = [0u64; WORDS];
        let mut w = 0;
        while w < WORDS {
            let ($x, $y) = ($a.bits[w], $b.bits[w]);
            bits[w] = $op;
            w += 1;
        }
        CpuSet { bits }
    }};
}

/// A CPU index at or above [`MAX_CPUS`] was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuOutOfRange {
    /// The offending index.
    pub cpu: usize,
}

impl fmt::Display for CpuOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CPU index {} is out of range (at most {} CPUs)",
            self.cpu, MAX_CPUS
        )
    }
}

impl core::error::Error for CpuOutOfRange {}

/// A set of CPU indices `0..MAX_CPUS` (an affinity mask).
///
/// ```
/// use veridian_sched::CpuSet;
///
/// let a = CpuSet::from_cpus([0, 1, 2, 3]).unwrap();
/// let b = CpuSet::single(2).unwrap() | CpuSet::single(9).unwrap();
/// assert_eq!((a & b).iter().collect::<Vec<_>>(), [2]);
/// assert_eq!((a - b).count(), 3);
/// assert!(CpuSet::single(300).is_err()); // an error, not a panic
/// assert!(!a.contains(300));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuSet {
    bits: [u64; WORDS],
}

impl CpuSet {
    /// The empty set.
    pub const fn empty() -> Self {
        Self { bits: [0; WORDS] }
    }

    /// CPUs `0..n`; `n` may be `MAX_CPUS` itself.
    pub const fn full(n: usize) -> Result<Self, CpuOutOfRange> {
        if n > MAX_CPUS {
            return Err(CpuOutOfRange { cpu: n - 1 });
        }
        let mut bits = [0u64; WORDS];
        let mut w = 0;
        while w < WORDS {
            let lo = w * 64;
            bits[w] = if n >= lo + 64 {
                u64::MAX
            } else if n > lo {
                (1u64 << (n - lo)) - 1
            } else {
                0
            };
            w += 1;
        }
        Ok(Self { bits })
    }

    /// The set holding only `cpu`.
    pub const fn single(cpu: usize) -> Result<Self, CpuOutOfRange> {
        if cpu >= MAX_CPUS {
            return Err(CpuOutOfRange { cpu });
        }
        let mut bits = [0u64; WORDS];
        bits[cpu / 64] = 1 << (cpu % 64);
        Ok(Self { bits })
    }

    /// The set of the given CPUs (duplicates are fine).
    pub fn from_cpus(cpus: impl IntoIterator<Item = usize>) -> Result<Self, CpuOutOfRange> {
        let mut set = Self::empty();
        for cpu in cpus {
            set.insert(cpu)?;
        }
        Ok(set)
    }

    /// Adds `cpu`; returns whether it was newly added.
    pub fn insert(&mut self, cpu: usize) -> Result<bool, CpuOutOfRange> {
        if cpu >= MAX_CPUS {
            return Err(CpuOutOfRange { cpu });
        }
        let (w, bit) = (cpu / 64, 1u64 << (cpu % 64));
        let added = self.bits[w] & bit == 0;
        self.bits[w] |= bit;
        Ok(added)
    }

    /// Removes `cpu`; returns whether it was present.
    pub fn remove(&mut self, cpu: usize) -> Result<bool, CpuOutOfRange> {
        if cpu >= MAX_CPUS {
            return Err(CpuOutOfRange { cpu });
        }
        let (w, bit) = (cpu / 64, 1u64 << (cpu % 64));
        let present = self.bits[w] & bit != 0;
        self.bits[w] &= !bit;
        Ok(present)
    }

    /// Whether `cpu` is in the set (`false` for an index `>= MAX_CPUS`).
    #[inline]
    pub const fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.bits[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// Number of CPUs in the set.
    pub const fn count(&self) -> usize {
        let mut n = 0;
        let mut w = 0;
        while w < WORDS {
            n += self.bits[w].count_ones() as usize;
            w += 1;
        }
        n
    }

    /// Whether the set is empty.
    pub const fn is_empty(&self) -> bool {
        let mut w = 0;
        while w < WORDS {
            if self.bits[w] != 0 {
                return false;
            }
            w += 1;
        }
        true
    }

    /// CPUs in either set.
    #[must_use]
    pub const fn union(&self, other: &Self) -> Self {
        combine!(self, other, |a, b| a | b)
    }

    /// CPUs in both sets.
    #[must_use]
    pub const fn intersection(&self, other: &Self) -> Self {
        combine!(self, other, |a, b| a & b)
    }

    /// CPUs in `self` but not in `other`.
    #[must_use]
    pub const fn difference(&self, other: &Self) -> Self {
        combine!(self, other, |a, b| a & !b)
    }

    /// Whether the two sets share a CPU.
    pub const fn intersects(&self, other: &Self) -> bool {
        !self.intersection(other).is_empty()
    }

    /// Whether every CPU of `self` is in `other`.
    pub const fn is_subset(&self, other: &Self) -> bool {
        self.difference(other).is_empty()
    }

    /// Whether every CPU of `other` is in `self`.
    pub const fn is_superset(&self, other: &Self) -> bool {
        other.is_subset(self)
    }

    /// The lowest CPU in the set.
    pub const fn first(&self) -> Option<usize> {
        let mut w = 0;
        while w < WORDS {
            if self.bits[w] != 0 {
                return Some(w * 64 + self.bits[w].trailing_zeros() as usize);
            }
            w += 1;
        }
        None
    }

    /// The CPUs in increasing order.
    pub const fn iter(&self) -> CpuSetIter {
        CpuSetIter {
            bits: self.bits,
            word: 0,
        }
    }

    /// The raw bitmap, word `w` holding CPUs `64 * w .. 64 * w + 64` (bit `i` = CPU `64 * w + i`).
    pub const fn as_words(&self) -> &[u64; MAX_CPUS / 64] {
        &self.bits
    }

    /// A set from a raw bitmap in the layout of [`CpuSet::as_words`].
    pub const fn from_words(bits: [u64; MAX_CPUS / 64]) -> Self {
        Self { bits }
    }
}

/// Iterator over a [`CpuSet`]'s CPUs in increasing order (a copy of the set: later changes to
/// the set do not affect it).
#[derive(Clone, Debug)]
pub struct CpuSetIter {
    bits: [u64; WORDS],
    word: usize,
}

impl Iterator for CpuSetIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.word < WORDS {
            let w = &mut self.bits[self.word];
            if *w != 0 {
                let bit = w.trailing_zeros() as usize;
                *w &= *w - 1;
                return Some(self.word * 64 + bit);
            }
            self.word += 1;
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.bits[self.word.min(WORDS)..]
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum();
        (n, Some(n))
    }
}

impl ExactSizeIterator for CpuSetIter {}

impl IntoIterator for CpuSet {
    type Item = usize;
    type IntoIter = CpuSetIter;

    fn into_iter(self) -> CpuSetIter {
        self.iter()
    }
}

impl IntoIterator for &CpuSet {
    type Item = usize;
    type IntoIter = CpuSetIter;

    fn into_iter(self) -> CpuSetIter {
        self.iter()
    }
}

impl BitOr for CpuSet {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(&rhs)
    }
}

impl BitOrAssign for CpuSet {
    fn bitor_assign(&mut self, rhs: Self) {
        *self = self.union(&rhs);
    }
}

impl BitAnd for CpuSet {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        self.intersection(&rhs)
    }
}

impl BitAndAssign for CpuSet {
    fn bitand_assign(&mut self, rhs: Self) {
        *self = self.intersection(&rhs);
    }
}

impl Sub for CpuSet {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        self.difference(&rhs)
    }
}

impl SubAssign for CpuSet {
    fn sub_assign(&mut self, rhs: Self) {
        *self = self.difference(&rhs);
    }
}

/// Formats as a CPU list in Linux's `cpulist` style: `{0-3,8,10-11}`.
impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        let mut iter = self.iter().peekable();
        let mut first = true;
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        f.write_str("}")
    }
}
