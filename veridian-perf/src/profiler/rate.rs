//! An adaptive sampling period that keeps the profiler within an overhead budget.
//!
//! **What it does.** The sampling interrupt reports what each sample cost (in the same unit as
//! the period, e.g. TSC cycles); [`AdaptiveRate`] keeps a moving average of that cost and sets
//! the next period so that `average cost / period` is at most the budget (in parts per
//! million of CPU time), within `[min_period, max_period]`.
//!
//! **Policy.** The average is an exponentially weighted moving average with weight 1/8 for the
//! newest sample (Jacobson's RTT estimator weight: one slow sample, say a cache-cold walk,
//! moves the period by an eighth, a sustained change converges in a few dozen samples). The
//! period is `ceil(average * 10⁶ / budget_ppm)`: the shortest period within the budget, i.e.
//! as many samples as the budget buys. `min_period` caps the sampling rate when samples are
//! cheap; `max_period` guarantees some samples even when they are expensive, at the price of
//! exceeding the budget, which [`AdaptiveRate::within_budget`] then reports.
//!
//! Integer arithmetic only (usable in an interrupt handler without touching FPU state); the
//! average keeps 4 fractional bits.

use core::fmt;

/// Rejected [`AdaptiveRate`] settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateError {
    /// The budget must be between 1 and 1 000 000 ppm.
    Budget(u32),
    /// The periods must satisfy `0 < min_period <= initial <= max_period`.
    Periods,
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateError::Budget(b) => write!(f, "overhead budget {b} ppm is not in 1..=1000000"),
            RateError::Periods => f.write_str("periods must satisfy 0 < min <= initial <= max"),
        }
    }
}

const PPM: u64 = 1_000_000;
/// Fractional bits of the cost average.
const FRAC: u32 = 4;
/// The newest cost weighs 1/2^WEIGHT_SHIFT in the average.
const WEIGHT_SHIFT: u32 = 3;

/// The sampling-period controller (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveRate {
    budget_ppm: u32,
    min_period: u64,
    max_period: u64,
    period: u64,
    /// Average cost << FRAC; `None` until the first sample.
    avg_cost: Option<u64>,
}

impl AdaptiveRate {
    /// A controller with a budget of `budget_ppm` parts per million and the period bounds.
    pub fn new(
        budget_ppm: u32,
        min_period: u64,
        initial_period: u64,
        max_period: u64,
    ) -> Result<Self, RateError> {
        if budget_ppm == 0 || u64::from(budget_ppm) > PPM {
            return Err(RateError::Budget(budget_ppm));
        }
        if min_period == 0 || min_period > initial_period || initial_period > max_period {
            return Err(RateError::Periods);
        }
        Ok(Self {
            budget_ppm,
            min_period,
            max_period,
            period: initial_period,
            avg_cost: None,
        })
    }

    /// The current period.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// The average cost of a sample (rounded down), once there is one.
    pub fn average_cost(&self) -> Option<u64> {
        self.avg_cost.map(|a| a >> FRAC)
    }

    /// Takes the cost of the sample just taken; returns the next period.
    pub fn record_cost(&mut self, cost: u64) -> u64 {
        let c = cost.saturating_mul(1 << FRAC);
        let avg = match self.avg_cost {
            None => c,
            // avg += (c - avg) / 8, in signed arithmetic without leaving u64.
            Some(a) if c >= a => a + ((c - a) >> WEIGHT_SHIFT),
            Some(a) => a - ((a - c) >> WEIGHT_SHIFT),
        };
        self.avg_cost = Some(avg);
        let wanted =
            (u128::from(avg) * u128::from(PPM)).div_ceil(u128::from(self.budget_ppm) << FRAC);
        self.period = u64::try_from(wanted)
            .unwrap_or(u64::MAX)
            .clamp(self.min_period, self.max_period);
        self.period
    }

    /// The estimated overhead at the current period, in ppm (0 before the first sample).
    pub fn overhead_ppm(&self) -> u64 {
        let avg = u128::from(self.avg_cost.unwrap_or(0));
        u64::try_from(avg * u128::from(PPM) / (u128::from(self.period) << FRAC)).unwrap_or(u64::MAX)
    }

    /// Whether the estimated overhead is within the budget (false only when `max_period`
    /// forced a shorter period than the budget asks for).
    pub fn within_budget(&self) -> bool {
        self.overhead_ppm() <= u64::from(self.budget_ppm)
    }
}
