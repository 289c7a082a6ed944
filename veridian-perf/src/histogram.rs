//! A log-linear latency histogram in a fixed array: no allocation, `const` constructible (it
//! can live in a `static` or per-CPU area), recording in a handful of instructions.
//!
//! **Buckets.** Values below 2⁶ = 64 get a bucket each (exact). Above, every power-of-two range
//! `[2^m, 2^(m+1))` is split into 2⁵ = 32 equal sub-buckets, so a bucket is never wider than
//! 1/32 of its lower bound. The index of `v` is `(s << 5) + (v >> s)` with
//! `s = max(msb(v) - 5, 0)`: a `lzcnt`, a shift and an add, no branch, no table. All of `u64`
//! fits in [`BUCKETS`] = 1920 buckets (15 KiB of `u64` counts).
//!
//! **Error bound.** A quantile is reported as the midpoint of the bucket holding the exact
//! order statistic, clamped to the recorded `[min, max]`. The midpoint is at most half a bucket
//! width from any value in the bucket, and half a width is at most 1/64 of the bucket's lower
//! bound, so the reported value `r` and the exact value `x` (same rank definition) satisfy
//! `|r - x| <= x / 64` ([`RELATIVE_ERROR`] = 1.5625 %); values below 64 are exact, and so are
//! `min` and `max`. The tests check this with proptest against sorted samples.
//!
//! **Quantile definition.** For `q` in `[0, 1]` and `n` recorded values, the value of rank
//! `max(1, ceil(q * n))` in ascending order (the "nearest rank" definition): `q = 0` is the
//! minimum, `q = 1` the maximum, `q = 0.5` the lower median.
//!
//! **Concurrency.** `record` takes `&mut self`: one histogram per CPU or per thread, merged
//! afterwards with [`Histogram::merge`] (that is what the benchmark harnesses do). No atomics on
//! the recording path.

use core::fmt;

/// Bits of sub-bucket precision: 2⁵ sub-buckets per power of two.
pub const SUB_BUCKET_BITS: u32 = 5;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Number of buckets: `(65 - SUB_BUCKET_BITS) * 2^SUB_BUCKET_BITS` covers every `u64`.
pub const BUCKETS: usize = (65 - SUB_BUCKET_BITS as usize) * SUB_BUCKETS;
/// Upper bound of `|reported - exact| / exact` for every quantile (module docs).
pub const RELATIVE_ERROR: f64 = 1.0 / (2 * SUB_BUCKETS) as f64;

/// The bucket that holds `value`.
#[inline(always)]
pub const fn bucket_index(value: u64) -> usize {
    let msb = 63 - (value | 1).leading_zeros();
    let shift = msb.saturating_sub(SUB_BUCKET_BITS);
    ((shift as usize) << SUB_BUCKET_BITS) + (value >> shift) as usize
}

/// The smallest and largest value bucket `index` holds (`None` past the last bucket).
pub const fn bucket_bounds(index: usize) -> Option<(u64, u64)> {
    if index >= BUCKETS {
        return None;
    }
    if index < 2 * SUB_BUCKETS {
        return Some((index as u64, index as u64));
    }
    let shift = (index >> SUB_BUCKET_BITS) - 1;
    let mantissa = (index - (shift << SUB_BUCKET_BITS)) as u64;
    let lo = mantissa << shift;
    Some((lo, lo + ((1u64 << shift) - 1)))
}

/// What a query on a histogram can report instead of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistogramError {
    /// Nothing has been recorded.
    Empty,
    /// The quantile is NaN or outside `[0, 1]`.
    InvalidQuantile,
}

impl fmt::Display for HistogramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HistogramError::Empty => "the histogram is empty",
            HistogramError::InvalidQuantile => "a quantile must be a number in [0, 1]",
        })
    }
}

/// The figures every benchmark in the project reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of recorded values.
    pub count: u64,
    /// Exact minimum.
    pub min: u64,
    /// Median (quantile 0.5).
    pub median: u64,
    /// Quantile 0.99.
    pub p99: u64,
    /// Quantile 0.999.
    pub p999: u64,
    /// Exact maximum.
    pub max: u64,
    /// Exact mean, rounded down.
    pub mean: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "count={} min={} median={} p99={} p99.9={} max={} mean={}",
            self.count, self.min, self.median, self.p99, self.p999, self.max, self.mean
        )
    }
}

/// A log-linear histogram of `u64` values (module docs).
#[derive(Clone)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub const fn new() -> Self {
        Self {
            counts: [0; BUCKETS],
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    /// Makes `slot` an empty histogram in place and returns it: for a kernel that must not
    /// build the 15 KiB value on a small stack first (as `new()` followed by a move may).
    pub fn init_in_place(slot: &mut core::mem::MaybeUninit<Self>) -> &mut Self {
        let p = slot.as_mut_ptr();
        // SAFETY: `p` points at writable, properly aligned memory for a `Histogram` (the
        // `MaybeUninit`); every field is written before the reference is made: the counts
        // with zeros (an all-zero `[u64; BUCKETS]` is valid), the rest one by one.
        unsafe {
            core::ptr::addr_of_mut!((*p).counts).write_bytes(0, 1);
            core::ptr::addr_of_mut!((*p).count).write(0);
            core::ptr::addr_of_mut!((*p).min).write(u64::MAX);
            core::ptr::addr_of_mut!((*p).max).write(0);
            core::ptr::addr_of_mut!((*p).sum).write(0);
            slot.assume_init_mut()
        }
    }

    /// An empty histogram on the heap, built in place (no 15 KiB value on the stack).
    #[cfg(feature = "alloc")]
    pub fn boxed() -> alloc::boxed::Box<Self> {
        let mut b = alloc::boxed::Box::<Self>::new_uninit();
        Self::init_in_place(&mut b);
        // SAFETY: `init_in_place` wrote every field.
        unsafe { b.assume_init() }
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_index(value)] += 1;
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    /// Records `value` `n` times (counts saturate instead of overflowing).
    pub fn record_n(&mut self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        let c = &mut self.counts[bucket_index(value)];
        *c = c.saturating_add(n);
        self.count = self.count.saturating_add(n);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum = self.sum.saturating_add(u128::from(value) * u128::from(n));
    }

    /// Adds every value recorded in `other` to `self`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.count = self.count.saturating_add(other.count);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// Forgets everything recorded.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The exact minimum.
    pub fn min(&self) -> Result<u64, HistogramError> {
        if self.is_empty() {
            Err(HistogramError::Empty)
        } else {
            Ok(self.min)
        }
    }

    /// The exact maximum.
    pub fn max(&self) -> Result<u64, HistogramError> {
        if self.is_empty() {
            Err(HistogramError::Empty)
        } else {
            Ok(self.max)
        }
    }

    /// The exact mean, rounded down.
    pub fn mean(&self) -> Result<u64, HistogramError> {
        if self.is_empty() {
            Err(HistogramError::Empty)
        } else {
            Ok(u64::try_from(self.sum / u128::from(self.count)).unwrap_or(u64::MAX))
        }
    }

    /// The value at quantile `q` (module docs: nearest rank, within [`RELATIVE_ERROR`]).
    pub fn quantile(&self, q: f64) -> Result<u64, HistogramError> {
        if !(0.0..=1.0).contains(&q) {
            return Err(HistogramError::InvalidQuantile);
        }
        if self.is_empty() {
            return Err(HistogramError::Empty);
        }
        let rank = nearest_rank(q, self.count);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                // `i < BUCKETS`, so the bounds exist.
                let (lo, hi) = bucket_bounds(i).unwrap_or((self.max, self.max));
                let mid = lo + (hi - lo) / 2;
                return Ok(mid.clamp(self.min, self.max));
            }
        }
        // Counts saturated (more than u64::MAX values): the rank lies past every bucket.
        Ok(self.max)
    }

    /// min, median, p99, p99.9, max and mean.
    pub fn summary(&self) -> Result<Summary, HistogramError> {
        Ok(Summary {
            count: self.count,
            min: self.min()?,
            median: self.quantile(0.5)?,
            p99: self.quantile(0.99)?,
            p999: self.quantile(0.999)?,
            max: self.max()?,
            mean: self.mean()?,
        })
    }

    /// The non-empty buckets as `(lowest value, highest value, count)`, ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != 0)
            .filter_map(|(i, &c)| {
                let (lo, hi) = bucket_bounds(i)?;
                Some((lo, hi, c))
            })
    }
}

/// `max(1, ceil(q * n))`, capped at `n`, for `q` in `[0, 1]`: the rank of quantile `q` among
/// `n` sorted values (1-based). Public so that tests and callers compute exact quantiles the
/// same way.
pub fn nearest_rank(q: f64, n: u64) -> u64 {
    let x = q * n as f64;
    // Float-to-int casts saturate; `ceil` is not in `core`, so round up by hand.
    let mut r = x as u64;
    if (r as f64) < x {
        r += 1;
    }
    r.clamp(1, n.max(1))
}
