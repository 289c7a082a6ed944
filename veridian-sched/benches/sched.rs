//! Criterion benchmarks: veridian-sched's deque and context switch against their usual peers,
//! side by side in one run.
//!
//! Ids are `<group>/<implementation>/<threads>`:
//!
//! - `deque_push_pop/{veridian,st3_lifo,crossbeam_deque}/1`: one push and one pop at the owner
//!   end (LIFO) per iteration, on a deque holding [`BACKLOG`] elements (so pops never take the
//!   contended last-element path). `crossbeam_deque` is `Worker::new_lifo`; `st3_lifo` is
//!   `st3::lifo::Worker` with [`CAPACITY`] slots (its owner pop pays a compare-and-swap on the
//!   word it shares with thieves, which is what makes its steal cheap: the two belong together).
//! - `deque_steal/{veridian,st3_lifo,crossbeam_deque}/1`: one owner push and one steal of one
//!   element from the top per iteration, uncontended, same backlog: the cost of the thief's
//!   fences and CAS. The same capability is compared where a peer has it:
//!   - `veridian`: our fixed-capacity Chase-Lev deque ([`CAPACITY`] slots), `Stealer::steal`.
//!   - `st3_lifo`: `st3::lifo::Worker` (fixed capacity, [`CAPACITY`] slots, the other bounded
//!     work-stealing deque on crates.io, Tokio's design). It has no single-element steal: its
//!     thief steals into its own worker; `steal_and_pop(&thief, |_| 1)` takes exactly one
//!     element and returns it without touching the thief's queue, the closest it offers.
//!   - `crossbeam_deque`: `Worker::new_lifo` + `Stealer::steal`. It cannot be bounded: its
//!     buffer grows (it never has to here), so each steal loads the buffer pointer and pins the
//!     thread's epoch (crossbeam-epoch) to keep that buffer alive, which a fixed ring does not
//!     need; on x86_64 the pin's locked instruction also serves as the fence between the `top`
//!     and `bottom` loads, where ours issues an `mfence`. That is the difference measured
//!     against it, kept as the deque most users have.
//! - `context_switch/{veridian,corosensei}/1`: one resume of a green thread that immediately
//!   suspends again, i.e. two switches per iteration (`Throughput::Elements(2)`: criterion's
//!   elements/s is switches/s). `veridian` is `hosted::green::GreenThread::new` on the inline
//!   `switch_stacks` (rbx, rbp, resume address; the compiler saves what else is live), the same
//!   capability as `corosensei` (its default stack), which carries no floating-point control
//!   word either (Rust code never changes them, see `hosted::green`).
//!   `veridian_fp_control` is `GreenThread::new_preserving_fp_control` (`switch_stacks_fp`:
//!   also MXCSR and the x87 control word), a capability corosensei does not offer.
//!
//! The elements are `usize`s for both deques (ours stores words; crossbeam's stores `T` by
//! value), so neither side allocates per element.

use std::hint::black_box;

use criterion::{Bencher, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use veridian_sched::deque;

/// Elements kept in a deque while measuring.
const BACKLOG: usize = 64;
/// Deque capacity (ours is bounded; crossbeam's grows, and never needs to here).
const CAPACITY: usize = 1024;

fn deque_push_pop(c: &mut Criterion) {
    let mut g = c.benchmark_group("deque_push_pop");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("veridian", 1), |b| {
        let (w, _s) = deque::new::<usize>(CAPACITY);
        for i in 0..BACKLOG {
            w.push(i).unwrap();
        }
        b.iter(|| {
            let _ = w.push(black_box(7));
            black_box(w.pop())
        });
    });
    g.bench_function(BenchmarkId::new("st3_lifo", 1), |b| {
        let w = st3::lifo::Worker::<usize>::new(CAPACITY);
        for i in 0..BACKLOG {
            w.push(i).unwrap();
        }
        b.iter(|| {
            let _ = w.push(black_box(7));
            black_box(w.pop())
        });
    });
    g.bench_function(BenchmarkId::new("crossbeam_deque", 1), |b| {
        let w = crossbeam_deque::Worker::<usize>::new_lifo();
        for i in 0..BACKLOG {
            w.push(i);
        }
        b.iter(|| {
            w.push(black_box(7));
            black_box(w.pop())
        });
    });
    g.finish();
}

fn deque_steal(c: &mut Criterion) {
    let mut g = c.benchmark_group("deque_steal");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("veridian", 1), |b| {
        let (w, s) = deque::new::<usize>(CAPACITY);
        for i in 0..BACKLOG {
            w.push(i).unwrap();
        }
        b.iter(|| {
            let _ = w.push(black_box(7));
            black_box(s.steal())
        });
    });
    g.bench_function(BenchmarkId::new("st3_lifo", 1), |b| {
        let w = st3::lifo::Worker::<usize>::new(CAPACITY);
        let s = w.stealer();
        let thief = st3::lifo::Worker::<usize>::new(CAPACITY);
        for i in 0..BACKLOG {
            w.push(i).unwrap();
        }
        // Set-up check (untimed): a steal of one succeeds and leaves the thief's queue empty.
        assert!(matches!(s.steal_and_pop(&thief, |_| 1), Ok((_, 0))));
        w.push(BACKLOG).unwrap();
        b.iter(|| {
            let _ = w.push(black_box(7));
            black_box(s.steal_and_pop(&thief, |_| 1).ok())
        });
    });
    g.bench_function(BenchmarkId::new("crossbeam_deque", 1), |b| {
        let w = crossbeam_deque::Worker::<usize>::new_lifo();
        let s = w.stealer();
        for i in 0..BACKLOG {
            w.push(i);
        }
        b.iter(|| {
            w.push(black_box(7));
            black_box(s.steal())
        });
    });
    g.finish();
}

fn context_switch(c: &mut Criterion) {
    use corosensei::{Coroutine, CoroutineResult};
    use veridian_sched::hosted::green::{GreenThread, Resumed};

    let mut g = c.benchmark_group("context_switch");
    g.throughput(Throughput::Elements(2));
    fn bench_green<const FP: bool>(b: &mut Bencher<'_>, mut t: GreenThread<FP>) {
        b.iter(|| match t.resume(black_box(1)) {
            Ok(Resumed::Yielded(v)) => v,
            other => panic!("unexpected {other:?}"),
        });
    }
    g.bench_function(BenchmarkId::new("veridian", 1), |b| {
        let t = GreenThread::new(64 * 1024, |y, mut v| {
            loop {
                v = y.suspend(v);
            }
        });
        bench_green(b, t.unwrap());
    });
    g.bench_function(BenchmarkId::new("veridian_fp_control", 1), |b| {
        let t = GreenThread::new_preserving_fp_control(64 * 1024, |y, mut v| {
            loop {
                v = y.suspend(v);
            }
        });
        bench_green(b, t.unwrap());
    });
    g.bench_function(BenchmarkId::new("corosensei", 1), |b| {
        let mut co = Coroutine::new(|y, mut v: usize| {
            loop {
                v = y.suspend(v);
            }
        });
        b.iter(|| match co.resume(black_box(1)) {
            CoroutineResult::Yield(v) => v,
            CoroutineResult::Return(()) => unreachable!(),
        });
        // The coroutine is suspended forever; corosensei unwinds it on drop.
    });
    g.finish();
}

criterion_group!(benches, deque_push_pop, deque_steal, context_switch);
criterion_main!(benches);
