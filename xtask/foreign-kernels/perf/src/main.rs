//! A foreign kernel using veridian-perf alone: the TSC calibrated against the PIT into a
//! `TscClock`, and `Histogram`s initialised in place, recorded into and queried. The glue
//! (`glue.rs`) is the PIT as the reference clock.

#![no_std]
#![no_main]

#[macro_use]
#[path = "../../boot/boot.rs"]
mod boot;
mod glue;

use core::mem::MaybeUninit;

use veridian_perf::arch::NativeCpuid;
use veridian_perf::clock::{self, CalibrationConfig, ClockError, CycleCounter, Tsc};
use veridian_perf::histogram::RELATIVE_ERROR;
use veridian_perf::{Clock, Histogram, TscClock};

pub fn kmain(_start_info: u64) {
    // Histogram of known values: exact below 64, quantiles within RELATIVE_ERROR above.
    let mut slot = MaybeUninit::uninit();
    let histogram = Histogram::init_in_place(&mut slot);
    for value in 1..=10_000u64 {
        histogram.record(value);
    }
    histogram.record_n(7, 3);
    assert_eq!(histogram.count(), 10_003);
    assert_eq!((histogram.min(), histogram.max()), (Ok(1), Ok(10_000)));
    for (q, exact) in [(0.5, 4999u64), (0.9, 8999), (0.99, 9899), (0.999, 9992)] {
        let reported = histogram.quantile(q).unwrap();
        let bound = (exact as f64 * RELATIVE_ERROR) as u64;
        assert!(
            reported.abs_diff(exact) <= bound,
            "q={q}: {reported}, exact {exact}"
        );
    }
    assert_eq!(histogram.quantile(0.0), Ok(1));
    assert!(histogram.quantile(1.5).is_err());
    println!(
        "perf: Histogram (in place): {}",
        histogram.summary().unwrap()
    );

    // The TSC, calibrated against the PIT (TscClock::native insists on an invariant TSC, which
    // QEMU's TCG CPUs do not report; the calibration itself is the same).
    let pit = glue::Pit::start();
    let config = CalibrationConfig::default();
    let tsc = match TscClock::native(&NativeCpuid, &pit, config) {
        Ok(tsc) => tsc,
        Err(ClockError::NotInvariant) => {
            println!("perf: TSC not invariant here; calibrating it anyway");
            TscClock::calibrated(&pit, &Tsc, config).expect("calibration")
        }
        Err(e) => panic!("no TSC clock: {e}"),
    };
    assert!(clock::has_tsc_and_rdtscp(&NativeCpuid));
    assert!(
        (10_000_000..=100_000_000_000).contains(&tsc.hz()),
        "{} Hz",
        tsc.hz()
    );
    println!(
        "perf: TSC {} MHz, empty interval {} cycles",
        tsc.hz() / 1_000_000,
        tsc.overhead_cycles()
    );

    // Cross-check: 20 ms on the PIT is 20 ms on the TSC clock (within 25 %: both follow the
    // host's time under TCG, but a busy host delays reads).
    let t0 = pit.now_ns();
    let c0 = Tsc.start();
    let (t1, c1) = loop {
        // Each bound read right after the other clock's, so a host that deschedules QEMU
        // between iterations delays both alike.
        let t = pit.now_ns();
        if t - t0 >= 20_000_000 {
            break (t, Tsc.stop());
        }
        core::hint::spin_loop();
    };
    let pit_ns = t1 - t0;
    let tsc_ns = tsc.elapsed_ns(c0, c1);
    assert!(
        tsc_ns.abs_diff(pit_ns) <= pit_ns / 4,
        "PIT {pit_ns} ns, TSC {tsc_ns} ns"
    );
    println!(
        "perf: 20 ms busy wait: PIT {} us, TSC clock {} us",
        pit_ns / 1000,
        tsc_ns / 1000
    );

    // Latencies of a small loop, in nanoseconds.
    let mut slot = MaybeUninit::uninit();
    let latencies = Histogram::init_in_place(&mut slot);
    for _ in 0..1000 {
        let start = Tsc.start();
        core::hint::black_box((0..100u64).sum::<u64>());
        latencies.record(tsc.elapsed_ns(start, Tsc.stop()));
    }
    let summary = latencies.summary().unwrap();
    assert_eq!(summary.count, 1000);
    assert!(
        summary.min <= summary.median
            && summary.median <= summary.p99
            && summary.p99 <= summary.max
    );
    println!("perf: 1000 timed loops, ns: {summary}");
}
