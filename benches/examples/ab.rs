//! Single-thread A/B driver for the one-thread groups of `veridian-sync`'s and `veridian-sched`'s
//! criterion benches, for a loaded machine: every side runs `ITERS` operations per round, the
//! sides take turns within a round (the first side rotates from round to round), and the driver
//! prints each side's median time per operation and, per peer, the median over the rounds of our
//! time / the peer's time in that round (below 1: ours is faster) with its min and max. A round
//! that lost the CPU inflates one side of one ratio; the median over many short rounds ignores
//! it, where one long criterion sample cannot.
//!
//! ```sh
//! cargo run --release -p veridian-benches --example ab -- GROUP ITERS ROUNDS
//! # GROUP: stack     one push + one pop (as `stack_push_pop/*/1`): ours through a `StackHandle`
//! #                  (one pin per operation) against `SegQueue` and a `Mutex<Vec<u64>>` locked
//! #                  once per push and once per pop;
//! #        seqlock   one read of a 64-byte `Copy` struct, no writer (as `seqlock_read/*/0`),
//! #                  against the `seqlock` crate and `std::sync::RwLock`;
//! #        switch    one resume + suspend pair of a green thread (as `context_switch/*/1`)
//! #                  against corosensei;
//! #        push_pop  one push + one pop at the owner end over a backlog of 64 (as
//! #                  `deque_push_pop/*/1`) against st3 and crossbeam-deque;
//! #        steal     one push + one steal of one element (as `deque_steal/*/1`);
//! #        clock     one clock read (as veridian-perf's `clock_read/*/1`): our serialised
//! #                  `Tsc.start()` (`lfence; rdtsc`) against `Instant::now()`, and a bare
//! #                  `rdtsc` (the floor of any TSC read) against `Instant::now()`.
//! ```

use std::hint::black_box;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use corosensei::{Coroutine, CoroutineResult};
use crossbeam_queue::SegQueue;
use veridian_perf::clock::{CycleCounter, Tsc};
use veridian_sched::deque;
use veridian_sched::hosted::green::{GreenThread, Resumed};
use veridian_sync::CachePadded;
use veridian_sync::seqlock::{Plain, SeqLock};
use veridian_sync::stack::TreiberStack;

/// Elements kept in a deque while measuring (as `deque_*` in veridian-sched's bench).
const BACKLOG: usize = 64;
/// Deque capacity (as the bench).
const CAPACITY: usize = 1024;

/// The payload of the seqlock group: 64 bytes, `Copy`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Payload {
    words: [u64; 8],
}

// SAFETY: a `repr(C)` struct whose only field is a `[u64; 8]`: 64 initialised bytes, no padding,
// no pointers.
unsafe impl Plain for Payload {}

/// One side: its name and a closure running `n` operations.
type Side<'a> = (&'a str, &'a mut dyn FnMut(u64));

/// Runs `rounds` rounds of every side (`sides[0]` is ours) and prints the median ratios.
fn run(group: &str, iters: u64, rounds: usize, sides: &mut [Side<'_>]) {
    let n = sides.len();
    let mut ratios = vec![Vec::with_capacity(rounds); n];
    let mut per_side = vec![Vec::with_capacity(rounds); n];
    let mut times = vec![0f64; n];
    for round in 0..rounds {
        for k in 0..n {
            let side = (round + k) % n;
            let start = Instant::now();
            (sides[side].1)(iters);
            times[side] = start.elapsed().as_secs_f64() * 1e9 / iters as f64;
            per_side[side].push(times[side]);
        }
        for (peer, r) in ratios.iter_mut().enumerate().skip(1) {
            r.push(times[0] / times[peer]);
        }
    }
    for (side, t) in per_side.iter_mut().enumerate() {
        t.sort_by(f64::total_cmp);
        println!(
            "{group}: {}: median {:.2} ns per operation",
            sides[side].0,
            t[t.len() / 2]
        );
    }
    for (peer, r) in ratios.iter_mut().enumerate().skip(1) {
        r.sort_by(f64::total_cmp);
        println!(
            "{group}: {} / {}: median {:.3} over {rounds} rounds (min {:.3}, max {:.3})",
            sides[0].0,
            sides[peer].0,
            r[r.len() / 2],
            r[0],
            r[r.len() - 1]
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parse = |i: usize| -> u64 {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            eprintln!("usage: ab stack|seqlock|switch|push_pop|steal|clock ITERS ROUNDS");
            std::process::exit(2)
        })
    };
    let (iters, rounds) = (parse(2), parse(3) as usize);
    match args[1].as_str() {
        "stack" => {
            let stack = CachePadded::new(TreiberStack::<u64>::new());
            let mut handle = stack.handle();
            let queue = CachePadded::new(SegQueue::<u64>::new());
            let vec = CachePadded::new(Mutex::new(Vec::<u64>::new()));
            run(
                "stack_push_pop",
                iters,
                rounds,
                &mut [
                    ("veridian", &mut |n| {
                        for i in 0..n {
                            handle.push(i);
                            black_box(handle.pop());
                        }
                    }),
                    ("crossbeam_segqueue", &mut |n| {
                        for i in 0..n {
                            queue.push(i);
                            black_box(queue.pop());
                        }
                    }),
                    ("std_mutex_vec", &mut |n| {
                        for i in 0..n {
                            vec.lock().unwrap().push(i);
                            black_box(vec.lock().unwrap().pop());
                        }
                    }),
                ],
            );
        }
        "seqlock" => {
            let ours = CachePadded::new(SeqLock::new(Payload::default()));
            let crate_lock = CachePadded::new(seqlock::SeqLock::new(Payload::default()));
            let rw = CachePadded::new(RwLock::new(Payload::default()));
            run(
                "seqlock_read",
                iters,
                rounds,
                &mut [
                    ("veridian", &mut |n| {
                        for _ in 0..n {
                            black_box(black_box(&*ours).read());
                        }
                    }),
                    ("seqlock_crate", &mut |n| {
                        for _ in 0..n {
                            black_box(black_box(&*crate_lock).read());
                        }
                    }),
                    ("std_rwlock", &mut |n| {
                        for _ in 0..n {
                            black_box(*black_box(&*rw).read().unwrap());
                        }
                    }),
                ],
            );
        }
        "switch" => {
            let mut green = GreenThread::new(64 * 1024, |y, mut v| {
                loop {
                    v = y.suspend(v);
                }
            })
            .expect("green thread stack");
            let mut co = Coroutine::new(|y, mut v: usize| {
                loop {
                    v = y.suspend(v);
                }
            });
            run(
                "context_switch",
                iters,
                rounds,
                &mut [
                    ("veridian", &mut |n| {
                        for _ in 0..n {
                            match green.resume(black_box(1)) {
                                Ok(Resumed::Yielded(v)) => black_box(v),
                                other => panic!("unexpected {other:?}"),
                            };
                        }
                    }),
                    ("corosensei", &mut |n| {
                        for _ in 0..n {
                            match co.resume(black_box(1)) {
                                CoroutineResult::Yield(v) => black_box(v),
                                CoroutineResult::Return(()) => unreachable!(),
                            };
                        }
                    }),
                ],
            );
        }
        "push_pop" | "steal" => {
            let steal = args[1] == "steal";
            let (w, s) = deque::new::<usize>(CAPACITY);
            let st3_w = st3::lifo::Worker::<usize>::new(CAPACITY);
            let st3_s = st3_w.stealer();
            let thief = st3::lifo::Worker::<usize>::new(CAPACITY);
            let cb_w = crossbeam_deque::Worker::<usize>::new_lifo();
            let cb_s = cb_w.stealer();
            for i in 0..BACKLOG {
                w.push(i).expect("capacity");
                st3_w.push(i).expect("capacity");
                cb_w.push(i);
            }
            run(
                if steal {
                    "deque_steal"
                } else {
                    "deque_push_pop"
                },
                iters,
                rounds,
                &mut [
                    ("veridian", &mut |n| {
                        for _ in 0..n {
                            let _ = w.push(black_box(7));
                            if steal {
                                black_box(s.steal());
                            } else {
                                black_box(w.pop());
                            }
                        }
                    }),
                    ("st3_lifo", &mut |n| {
                        for _ in 0..n {
                            let _ = st3_w.push(black_box(7));
                            if steal {
                                black_box(st3_s.steal_and_pop(&thief, |_| 1).ok());
                            } else {
                                black_box(st3_w.pop());
                            }
                        }
                    }),
                    ("crossbeam_deque", &mut |n| {
                        for _ in 0..n {
                            cb_w.push(black_box(7));
                            if steal {
                                let _ = black_box(cb_s.steal());
                            } else {
                                black_box(cb_w.pop());
                            }
                        }
                    }),
                ],
            );
            // Every push and every pop or steal succeeded on every side: each operation took one
            // element out for the one it put in, so the backlog is what it was.
            let left = |mut pop: Box<dyn FnMut() -> bool + '_>| (0..).take_while(|_| pop()).count();
            assert_eq!(left(Box::new(|| w.pop().is_some())), BACKLOG, "veridian");
            assert_eq!(left(Box::new(|| st3_w.pop().is_some())), BACKLOG, "st3");
            assert_eq!(
                left(Box::new(|| cb_w.pop().is_some())),
                BACKLOG,
                "crossbeam"
            );
            assert!(
                thief.pop().is_none(),
                "st3: the thief kept a stolen element"
            );
        }
        "clock" => {
            for (name, ours) in [
                ("veridian_tsc", (|| Tsc.start()) as fn() -> u64),
                ("veridian_rdtsc_unordered", veridian_perf::arch::rdtsc),
            ] {
                run(
                    "clock_read",
                    iters,
                    rounds,
                    &mut [
                        (name, &mut |n| {
                            for _ in 0..n {
                                black_box(ours());
                            }
                        }),
                        ("std_instant", &mut |n| {
                            for _ in 0..n {
                                black_box(Instant::now());
                            }
                        }),
                    ],
                );
            }
        }
        other => {
            eprintln!(
                "ab: unknown group {other} (stack | seqlock | switch | push_pop | steal | clock)"
            );
            std::process::exit(2);
        }
    }
}
