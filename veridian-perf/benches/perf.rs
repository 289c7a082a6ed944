//! Side-by-side benchmarks against peers (ratios are the claim; see docs/benchmarks/perf.md).
//!
//! - `histogram_record/{veridian,hdrhistogram}/1`: one `record` of a value from a fixed
//!   pseudo-random log-uniform sequence (1 ns .. ~1 s), ours vs `hdrhistogram` with 2
//!   significant digits (1 % error, ours is 1.56 %), bounds 1..2^40, `saturating_record` (no
//!   `Result` on the path, like ours).
//! - `clock_read/{veridian_tsc,veridian_rdtsc_unordered,std_instant}/1`: our serialised start
//!   read (`lfence; rdtsc`), a bare `rdtsc` (the floor of any TSC read), and
//!   `std::time::Instant::now()` (vDSO `clock_gettime(CLOCK_MONOTONIC)`, an `rdtscp` inside).
//! - `counter_read/{veridian,perf_event2}/1`: one read of an enabled task-clock software
//!   counter, our `PerfGroup::read` vs `perf_event::Counter::read` from `perf-event2`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use veridian_perf::clock::{CycleCounter, Tsc};
use veridian_perf::histogram::Histogram;
use veridian_perf::linux::{LinuxEvent, PerfGroup, SoftwareEvent};

fn values() -> Vec<u64> {
    // xorshift64*, log-uniform over 2^0 .. 2^30.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..4096)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let bits = (r % 30) as u32 + 1;
            (r >> 34) & ((1u64 << bits) - 1) | 1
        })
        .collect()
}

fn histogram_record(c: &mut Criterion) {
    let vals = values();
    let mut g = c.benchmark_group("histogram_record");
    g.bench_function(BenchmarkId::new("veridian", 1), |b| {
        let mut h = Box::new(Histogram::new());
        let mut i = 0;
        b.iter(|| {
            h.record(black_box(vals[i & 4095]));
            i += 1;
        });
        black_box(h.count());
    });
    g.bench_function(BenchmarkId::new("hdrhistogram", 1), |b| {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1 << 40, 2).unwrap();
        let mut i = 0;
        b.iter(|| {
            h.saturating_record(black_box(vals[i & 4095]));
            i += 1;
        });
        black_box(h.len());
    });
    g.finish();
}

fn clock_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock_read");
    g.bench_function(BenchmarkId::new("veridian_tsc", 1), |b| {
        b.iter(|| black_box(Tsc.start()))
    });
    // The floor of any TSC-based clock: one bare `rdtsc` (no fence). `Instant::now` cannot be
    // beaten by more than this read allows (its vDSO path is one `rdtscp` plus ~85 ordinary
    // instructions, see docs/benchmarks/perf.md).
    g.bench_function(BenchmarkId::new("veridian_rdtsc_unordered", 1), |b| {
        b.iter(|| black_box(veridian_perf::arch::rdtsc()))
    });
    g.bench_function(BenchmarkId::new("std_instant", 1), |b| {
        b.iter(|| black_box(Instant::now()))
    });
    g.finish();
}

fn counter_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_read");
    // The counters are opened on the first call of their benchmark, not before: a filter that
    // skips this group then never calls `perf_event_open` (which a machine may refuse).
    let mut ours = None;
    g.bench_function(BenchmarkId::new("veridian", 1), |b| {
        let ours = ours.get_or_insert_with(|| {
            let group = PerfGroup::open(&[LinuxEvent::Software(SoftwareEvent::TaskClock)])
                .expect("task-clock");
            group.enable().unwrap();
            group
        });
        b.iter(|| black_box(ours.read().unwrap()))
    });
    let mut peer = None;
    g.bench_function(BenchmarkId::new("perf_event2", 1), |b| {
        let peer = peer.get_or_insert_with(|| {
            let mut counter = perf_event::Builder::new(perf_event::events::Software::TASK_CLOCK)
                .build()
                .expect("task-clock");
            counter.enable().unwrap();
            counter
        });
        b.iter(|| black_box(peer.read().unwrap()))
    });
    g.finish();
}

criterion_group!(benches, histogram_record, clock_read, counter_read);
criterion_main!(benches);
