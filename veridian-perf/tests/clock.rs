//! TSC clock: detection, mult/shift conversion, calibration against fake and real reference
//! clocks, loop overhead.

mod common;

use std::cell::Cell;

use common::FakeCpuid;
use proptest::prelude::*;
use veridian_perf::arch::NativeCpuid;
use veridian_perf::clock::{
    CalibrationConfig, Clock, ClockError, CycleCounter, CyclesToNs, TscClock, calibrate,
    invariant_tsc, measure_overhead,
};
use veridian_perf::hosted::MonotonicClock;

/// A simulated machine: time advances by `step_ns` on every reference read; the cycle counter
/// is `time * hz / 1e9`; the reference reports time rounded down to `tick_ns`.
struct Sim {
    now: Cell<u64>,
    step_ns: u64,
    tick_ns: u64,
    hz: u64,
}

impl Clock for Sim {
    fn now_ns(&self) -> u64 {
        self.now.set(self.now.get() + self.step_ns);
        self.now.get() / self.tick_ns * self.tick_ns
    }
}

impl CycleCounter for Sim {
    fn start(&self) -> u64 {
        (u128::from(self.now.get()) * u128::from(self.hz) / 1_000_000_000) as u64
    }
    fn stop(&self) -> u64 {
        self.start()
    }
}

#[test]
fn conversion_is_exact_where_it_can_be() {
    let c = CyclesToNs::from_hz(1_000_000_000).unwrap();
    for x in [0, 1, 999, 1 << 40, u64::MAX] {
        assert_eq!(c.to_ns(x), x);
    }
    let c = CyclesToNs::from_hz(2_000_000_000).unwrap();
    assert_eq!(c.to_ns(2_000_000_000), 1_000_000_000);
    assert_eq!(c.to_ns(u64::MAX), u64::MAX / 2);
    // Below 1 GHz a huge count saturates instead of wrapping.
    assert_eq!(
        CyclesToNs::from_hz(1_000).unwrap().to_ns(u64::MAX),
        u64::MAX
    );
    assert_eq!(CyclesToNs::from_hz(0), Err(ClockError::Zero));
}

proptest! {
    #[test]
    fn conversion_error_is_tiny(hz in 1_000u64..=10_000_000_000, cycles in any::<u64>()) {
        let c = CyclesToNs::from_hz(hz).unwrap();
        let exact = u128::from(cycles) * 1_000_000_000 / u128::from(hz);
        let got = u128::from(c.to_ns(cycles));
        if exact <= u128::from(u64::MAX) {
            // mult is rounded to nearest with >= 2^31 of precision; the shift floors.
            let err = got.abs_diff(exact);
            prop_assert!(err <= exact / (1 << 30) + 1, "hz={hz} cycles={cycles} exact={exact} got={got}");
        } else {
            prop_assert!(got >= u128::from(u64::MAX) - u128::from(u64::MAX) / (1 << 30));
        }
    }
}

#[test]
fn calibration_finds_the_simulated_frequency() {
    for (hz, tick_ns) in [
        (2_400_000_000u64, 1u64),
        (3_000_000_000, 838),
        (1_000_000, 1_000_000),
    ] {
        let sim = Sim {
            now: Cell::new(0),
            step_ns: 50,
            tick_ns,
            hz,
        };
        let cfg = CalibrationConfig {
            window_ns: 20_000_000,
            rounds: 3,
            max_spins: 1 << 24,
        };
        let got = calibrate(&sim, &sim, cfg).unwrap();
        let err = got.abs_diff(hz) as f64 / hz as f64;
        // Edge alignment: at most one step of the simulated clock per end of the window.
        assert!(err < 1e-4, "hz={hz} tick={tick_ns} got={got}");
        let clock = TscClock::calibrated(&sim, &sim, cfg).unwrap();
        assert!(clock.hz().abs_diff(hz) as f64 / (hz as f64) < 1e-4);
        assert_eq!(
            clock.overhead_cycles(),
            0,
            "the simulated counter costs nothing"
        );
    }
}

#[test]
fn calibration_reports_stalls() {
    let stalled_ref = Sim {
        now: Cell::new(0),
        step_ns: 0,
        tick_ns: 1,
        hz: 1_000_000_000,
    };
    let cfg = CalibrationConfig {
        window_ns: 1_000,
        rounds: 1,
        max_spins: 10_000,
    };
    assert_eq!(
        calibrate(&stalled_ref, &stalled_ref, cfg),
        Err(ClockError::ReferenceStalled)
    );
    // The reference moves, the counter does not (hz 0).
    let stalled_ctr = Sim {
        now: Cell::new(0),
        step_ns: 10,
        tick_ns: 1,
        hz: 0,
    };
    assert_eq!(
        calibrate(&stalled_ctr, &stalled_ctr, cfg),
        Err(ClockError::CounterStalled)
    );
    let zero = CalibrationConfig {
        window_ns: 0,
        ..cfg
    };
    assert_eq!(
        calibrate(&stalled_ctr, &stalled_ctr, zero),
        Err(ClockError::Zero)
    );
}

/// Returns scripted `(start, stop)` pairs.
struct Scripted {
    values: Vec<u64>,
    i: Cell<usize>,
}

impl CycleCounter for Scripted {
    fn start(&self) -> u64 {
        let i = self.i.get();
        self.i.set(i + 1);
        self.values[i]
    }
    fn stop(&self) -> u64 {
        self.start()
    }
}

#[test]
fn overhead_is_the_minimum_empty_interval_and_is_subtracted() {
    let s = Scripted {
        values: vec![100, 130, 200, 222, 300, 340, 400, 425],
        i: Cell::new(0),
    };
    assert_eq!(measure_overhead(&s, 4), 22);
    assert_eq!(measure_overhead(&s, 0), 0);
    let clock = TscClock::from_parts(1_000_000_000, 22).unwrap();
    assert_eq!(clock.elapsed_cycles(1000, 1100), 78);
    assert_eq!(clock.elapsed_cycles(1000, 1010), 0, "never below zero");
    assert_eq!(clock.elapsed_ns(1000, 1100), 78);
}

#[test]
fn invariant_tsc_and_rdtscp_are_required() {
    let good = FakeCpuid::intel_version(2, 4);
    assert!(invariant_tsc(&good));
    let mut not_inv = good.clone();
    not_inv.leaves.get_mut(&0x8000_0007).unwrap().edx = 0;
    assert!(!invariant_tsc(&not_inv));
    let sim = Sim {
        now: Cell::new(0),
        step_ns: 1,
        tick_ns: 1,
        hz: 1,
    };
    let cfg = CalibrationConfig::default();
    assert_eq!(
        TscClock::native(&not_inv, &sim, cfg),
        Err(ClockError::NotInvariant)
    );
    let mut no_rdtscp = good.clone();
    no_rdtscp.leaves.get_mut(&0x8000_0001).unwrap().edx = 0;
    assert_eq!(
        TscClock::native(&no_rdtscp, &sim, cfg),
        Err(ClockError::NoTsc)
    );
    // Extended leaf 0x8000_0007 above the maximum: not trusted.
    let mut low_max = good;
    low_max.leaves.get_mut(&0x8000_0000).unwrap().eax = 0x8000_0001;
    assert!(!invariant_tsc(&low_max));
}

#[test]
fn native_tsc_agrees_with_clock_monotonic() {
    let cfg = CalibrationConfig {
        window_ns: 5_000_000,
        rounds: 3,
        max_spins: 1 << 30,
    };
    let clock = match TscClock::native(&NativeCpuid, &MonotonicClock, cfg) {
        Ok(c) => c,
        Err(e) => {
            // Only a TSC that is not invariant may be refused on x86_64 Linux.
            assert_eq!(e, ClockError::NotInvariant);
            return;
        }
    };
    assert!(clock.hz() > 0);
    // The same interval measured by both clocks: they must agree (this is about the two
    // clocks being consistent, not about how long anything takes).
    let tsc = veridian_perf::clock::Tsc;
    // A preemption between the paired reads of the two clocks skews one attempt; a wrong
    // calibration skews all of them. So: up to five attempts, one must agree within 5 %.
    let mut attempts = Vec::new();
    for _ in 0..5 {
        let t0 = MonotonicClock.now_ns();
        let c0 = tsc.start();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let c1 = tsc.stop();
        let t1 = MonotonicClock.now_ns();
        let by_tsc = clock.cycles_to_ns(c1 - c0) as f64;
        let by_ref = (t1 - t0) as f64;
        if (by_tsc - by_ref).abs() / by_ref < 0.05 {
            attempts.clear();
            break;
        }
        attempts.push((by_tsc, by_ref));
    }
    assert!(
        attempts.is_empty(),
        "tsc vs monotonic (ns) never within 5 %: {attempts:?}"
    );
    // Serialised reads are ordered.
    let a = tsc.start();
    let b = tsc.stop();
    assert!(b >= a);
}
