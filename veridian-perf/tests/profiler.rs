//! Profiler: ring buffer (model, overflow, threads), frame-pointer walker against bad
//! pointers, adaptive rate, symbolisation, folded output and inferno rendering it.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

use proptest::prelude::*;
use veridian_perf::clock::CycleCounter;
use veridian_perf::env::{AddressCheck, CpuIndex};
use veridian_perf::profiler::folded::{FoldedStacks, write_folded_line};
use veridian_perf::profiler::rate::{AdaptiveRate, RateError};
use veridian_perf::profiler::ring::SampleRing;
use veridian_perf::profiler::symbol::{HexSymbolizer, Symbol, SymbolTable, Symbolizer};
use veridian_perf::profiler::unwind::{walk_frame_pointers, walk_frame_pointers_with};
use veridian_perf::profiler::{MAX_DEPTH, Sample, Sampler};

// ---- ring ----

#[test]
fn ring_fifo_overflow_and_single_split() {
    let ring: SampleRing<u64, 4> = SampleRing::new();
    let (mut p, mut c) = ring.split().unwrap();
    assert!(ring.split().is_none(), "one producer, one consumer");
    assert_eq!(c.pop(), None);
    for i in 0..4 {
        assert!(p.push(&i));
    }
    assert!(!p.push(&99), "full");
    assert!(!p.push(&100));
    assert_eq!(ring.dropped(), 2);
    assert_eq!(ring.len(), 4);
    assert_eq!(c.pop(), Some(0));
    assert!(p.push(&4));
    let mut got = Vec::new();
    assert_eq!(c.drain(|v| got.push(v)), 4);
    assert_eq!(
        got,
        [1, 2, 3, 4],
        "the dropped records never appear, none is overwritten"
    );
    assert!(ring.is_empty());
}

proptest! {
    #[test]
    fn ring_matches_a_bounded_queue_model(ops in prop::collection::vec(any::<Option<u32>>(), 0..500)) {
        let ring: SampleRing<u32, 8> = SampleRing::new();
        let (mut p, mut c) = ring.split().unwrap();
        let mut model = VecDeque::new();
        let mut dropped = 0;
        for op in ops {
            match op {
                Some(v) => {
                    let ok = p.push(&v);
                    if model.len() < 8 { model.push_back(v); prop_assert!(ok); } else { dropped += 1; prop_assert!(!ok); }
                }
                None => prop_assert_eq!(c.pop(), model.pop_front()),
            }
            prop_assert_eq!(ring.len(), model.len());
        }
        prop_assert_eq!(ring.dropped(), dropped);
    }
}

/// A record that shows tearing: every word derives from the sequence number.
#[derive(Clone, Copy)]
struct Rec([u64; 8]);

impl Rec {
    fn new(seq: u64) -> Self {
        Rec(std::array::from_fn(|i| {
            seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(i as u32)
        }))
    }
    fn seq_if_whole(&self) -> Option<u64> {
        let seq = self.0[0].wrapping_mul(0xF1DE_83E1_9937_733D); // inverse of the odd multiplier
        (Rec::new(seq).0 == self.0).then_some(seq)
    }
}

#[test]
fn ring_threads_never_corrupt_and_count_every_drop() {
    // Miri interprets every instruction: a smaller run still wraps the 64-entry ring many times.
    const SENT: u64 = if cfg!(miri) { 2_000 } else { 200_000 };
    let ring: Arc<SampleRing<Rec, 64>> = Arc::new(SampleRing::new());
    let r2 = ring.clone();
    let producer = std::thread::spawn(move || {
        let mut accepted = 0u64;
        for seq in 0..SENT {
            // SAFETY: this thread is the ring's only producer.
            if unsafe { r2.push_unchecked(&Rec::new(seq)) } {
                accepted += 1;
            }
        }
        accepted
    });
    let mut received = 0u64;
    let mut last = None;
    loop {
        // SAFETY: this thread is the ring's only consumer.
        match unsafe { ring.pop_unchecked() } {
            Some(r) => {
                let seq = r.seq_if_whole().expect("torn record");
                assert!(last.is_none_or(|l| seq > l), "order");
                last = Some(seq);
                received += 1;
            }
            None if producer.is_finished() && ring.is_empty() => break,
            None => std::hint::spin_loop(),
        }
    }
    let accepted = producer.join().unwrap();
    assert_eq!(received, accepted);
    assert_eq!(accepted + ring.dropped(), SENT);
}

// ---- frame-pointer walker ----

/// A fake stack in a Vec; the check approves addresses inside it only, and counts reads.
struct FakeStack {
    words: Vec<usize>,
    checks: Cell<usize>,
}

impl FakeStack {
    fn new(n: usize) -> Self {
        Self {
            words: vec![0; n],
            checks: Cell::new(0),
        }
    }
    fn addr(&self, i: usize) -> usize {
        self.words.as_ptr() as usize + i * 8
    }
    /// Frame at word `i`: [next fp, return address].
    fn frame(&mut self, i: usize, next: usize, ret: usize) {
        self.words[i] = next;
        self.words[i + 1] = ret;
    }
}

// SAFETY: approves only ranges inside `words`, which lives (and is not mutated) while a walk
// borrows it.
unsafe impl AddressCheck for FakeStack {
    fn is_readable(&self, addr: usize, len: usize) -> bool {
        self.checks.set(self.checks.get() + 1);
        let start = self.words.as_ptr() as usize;
        addr >= start
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= start + self.words.len() * 8)
    }
}

#[test]
fn walker_follows_a_good_chain() {
    let mut s = FakeStack::new(64);
    let (a, b, c) = (s.addr(4), s.addr(10), s.addr(30));
    s.frame(4, b, 0x1111);
    s.frame(10, c, 0x2222);
    s.frame(30, 0, 0x3333);
    let mut out = [0u64; 8];
    assert_eq!(walk_frame_pointers(a, &s, &mut out), 3);
    assert_eq!(out[..3], [0x1111, 0x2222, 0x3333]);
    // Depth limit.
    let mut one = [0u64; 1];
    assert_eq!(walk_frame_pointers(a, &s, &mut one), 1);
}

#[test]
fn walker_survives_bad_pointers() {
    let mut s = FakeStack::new(64);
    let base = s.addr(0);
    let mut out = [0u64; MAX_DEPTH];
    // Null, misaligned, unmapped start.
    assert_eq!(walk_frame_pointers(0, &s, &mut out), 0);
    assert_eq!(walk_frame_pointers(base + 3, &s, &mut out), 0);
    assert_eq!(
        walk_frame_pointers(0x10, &s, &mut out),
        0,
        "unmapped: refused by the check, not read"
    );
    // A chain into unmapped memory stops there.
    s.frame(0, 0xdead_0000, 0x1);
    assert_eq!(walk_frame_pointers(base, &s, &mut out), 1);
    // A loop (frame points to itself) and a backwards pointer stop.
    let self_ptr = s.addr(2);
    s.frame(2, self_ptr, 0x2);
    assert_eq!(walk_frame_pointers(self_ptr, &s, &mut out), 1);
    let (lo, hi) = (s.addr(6), s.addr(20));
    s.frame(20, lo, 0x3);
    s.frame(6, hi, 0x4);
    assert_eq!(walk_frame_pointers(hi, &s, &mut out), 1);
    // A frame whose second word runs past the readable range.
    let last = s.addr(63);
    assert_eq!(walk_frame_pointers(last, &s, &mut out), 0);
    // A zero return address ends the stack.
    let z = s.addr(40);
    s.frame(40, s.addr(50), 0);
    assert_eq!(walk_frame_pointers(z, &s, &mut out), 0);
    // fp near usize::MAX (fp + 16 would overflow) is refused before the check.
    let before = s.checks.get();
    assert_eq!(walk_frame_pointers(usize::MAX - 7, &s, &mut out), 0);
    assert_eq!(s.checks.get(), before);
}

/// The walker with a reader instead of a check: a map of frames, a "fault" (None) elsewhere.
#[test]
fn walker_with_a_reader_stops_where_reads_fail() {
    let frames = [
        (0x1000usize, (0x1040usize, 0xa1usize)),
        (0x1040, (0x1100, 0xa2)),
        (0x1100, (0x9000, 0xa3)),
    ];
    let mut asked = Vec::new();
    let mut read = |fp: usize| {
        asked.push(fp);
        frames.iter().find(|f| f.0 == fp).map(|f| f.1)
    };
    let mut out = [0u64; 8];
    // 0x9000 is not readable: three frames, then the failed read ends the walk.
    assert_eq!(walk_frame_pointers_with(0x1000, &mut read, &mut out), 3);
    assert_eq!(out[..3], [0xa1, 0xa2, 0xa3]);
    assert_eq!(asked, [0x1000, 0x1040, 0x1100, 0x9000]);
    // Misaligned, null and overflowing pointers are refused before any read.
    asked.clear();
    let mut read = |fp: usize| {
        asked.push(fp);
        None
    };
    for fp in [0, 0x1001, usize::MAX - 7] {
        assert_eq!(walk_frame_pointers_with(fp, &mut read, &mut out), 0);
    }
    assert!(asked.is_empty());
    // The same chain through `Sample::walk_stack_with`.
    let mut s = Sample::new(0, 0, 0, 0x10);
    let n = s.walk_stack_with(0x1000, |fp| frames.iter().find(|f| f.0 == fp).map(|f| f.1));
    assert_eq!((n, s.stack()), (3, &[0xa1u64, 0xa2, 0xa3][..]));
}

// ---- adaptive rate ----

#[test]
fn rate_converges_to_the_budget_and_clamps() {
    assert_eq!(AdaptiveRate::new(0, 1, 1, 1), Err(RateError::Budget(0)));
    assert_eq!(
        AdaptiveRate::new(2_000_000, 1, 1, 1),
        Err(RateError::Budget(2_000_000))
    );
    assert_eq!(AdaptiveRate::new(100, 0, 1, 1), Err(RateError::Periods));
    assert_eq!(AdaptiveRate::new(100, 10, 5, 100), Err(RateError::Periods));
    // 1 % budget; a sample costs 2000 cycles -> period 200 000.
    let mut r = AdaptiveRate::new(10_000, 1_000, 50_000, 100_000_000).unwrap();
    for _ in 0..100 {
        r.record_cost(2000);
    }
    assert_eq!(r.period(), 200_000);
    assert_eq!(r.average_cost(), Some(2000));
    assert!(r.within_budget());
    assert_eq!(r.overhead_ppm(), 10_000);
    // Samples get 4x dearer: the period follows, overhead stays within budget.
    for _ in 0..200 {
        r.record_cost(8000);
    }
    assert!(
        r.period() >= 790_000 && r.period() <= 800_000,
        "{}",
        r.period()
    );
    assert!(r.within_budget());
    // One outlier moves the average by an eighth of the difference only (8000 + 72000 / 8).
    r.record_cost(80_000);
    assert!(
        r.average_cost().unwrap().abs_diff(17_000) <= 1,
        "{:?}",
        r.average_cost()
    );
    // Cheap samples: the period bottoms out at the minimum.
    for _ in 0..400 {
        r.record_cost(1);
    }
    assert_eq!(r.period(), 1_000);
    // Dear samples beyond the maximum period: clamped, and reported as over budget.
    let mut tight = AdaptiveRate::new(10_000, 1_000, 1_000, 10_000).unwrap();
    tight.record_cost(1_000);
    assert_eq!(tight.period(), 10_000);
    assert!(!tight.within_budget());
}

// ---- symbols and folded output ----

const SYMS: [Symbol<'static>; 3] = [
    Symbol {
        start: 0x1000,
        size: 0x100,
        name: "kmain",
    },
    Symbol {
        start: 0x2000,
        size: 0x100,
        name: "do_syscall",
    },
    Symbol {
        start: 0x3000,
        size: 0x100,
        name: "veridian_page_fault",
    },
];

#[test]
fn symbol_table_lookup_and_validation() {
    let t = SymbolTable::new(&SYMS).unwrap();
    assert_eq!(
        t.lookup(0x2010).map(|(s, off)| (s.name, off)),
        Some(("do_syscall", 0x10))
    );
    assert_eq!(t.lookup(0x2100), None, "one past the end");
    assert_eq!(t.lookup(0x10), None);
    let overlapping = [
        SYMS[0],
        Symbol {
            start: 0x10FF,
            size: 1,
            name: "x",
        },
    ];
    assert_eq!(SymbolTable::new(&overlapping).unwrap_err().index, 1);
    let unsorted = [SYMS[1], SYMS[0]];
    assert!(SymbolTable::new(&unsorted).is_err());
    assert!(
        SymbolTable::new(&[Symbol {
            start: 5,
            size: 0,
            name: "e"
        }])
        .is_err()
    );
    assert!(
        SymbolTable::new(&[Symbol {
            start: u64::MAX,
            size: 2,
            name: "o"
        }])
        .is_err()
    );
    let mut s = String::new();
    t.symbolize(0x9999, &mut s).unwrap();
    assert_eq!(s, "0x9999");
}

fn sample(ip: u64, stack: &[u64]) -> Sample {
    let mut s = Sample::new(0, 0, 1, ip);
    s.set_stack(stack);
    s
}

#[test]
fn folded_lines_are_root_first_and_sanitised() {
    let t = SymbolTable::new(&SYMS).unwrap();
    // Leaf in the page-fault handler, called from do_syscall, called from kmain. Return
    // addresses are symbolised at ret - 1: 0x2100 is one past do_syscall's end, still do_syscall.
    let s = sample(0x3004, &[0x2100, 0x1050]);
    let mut out = String::new();
    write_folded_line(&s, 3, &t, &mut out).unwrap();
    assert_eq!(out, "kmain;do_syscall;veridian_page_fault 3\n");
    let mut hex = String::new();
    write_folded_line(&sample(0xABC, &[]), 1, &HexSymbolizer, &mut hex).unwrap();
    assert_eq!(hex, "0xabc 1\n");
    let weird = [Symbol {
        start: 0,
        size: 10,
        name: "a;b\nc",
    }];
    let mut w = String::new();
    write_folded_line(
        &sample(1, &[]),
        1,
        &SymbolTable::new(&weird).unwrap(),
        &mut w,
    )
    .unwrap();
    assert_eq!(w, "a:b c 1\n");
    // Stacks deeper than MAX_DEPTH are cut.
    let deep = sample(1, &[7; 100]);
    assert_eq!(deep.stack().len(), MAX_DEPTH);
}

#[test]
fn folded_stacks_aggregate_and_inferno_renders_them() {
    let t = SymbolTable::new(&SYMS).unwrap();
    let mut f = FoldedStacks::new();
    for _ in 0..7 {
        f.add(&sample(0x3004, &[0x2050, 0x1050]));
    }
    for _ in 0..3 {
        f.add(&sample(0x2010, &[0x1050]));
    }
    assert_eq!((f.total(), f.distinct()), (10, 2));
    let mut folded = String::new();
    f.write(&t, &mut folded).unwrap();
    let mut lines: Vec<&str> = folded.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "kmain;do_syscall 3",
            "kmain;do_syscall;veridian_page_fault 7"
        ]
    );

    let mut opts = inferno::flamegraph::Options::default();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut svg)
        .expect("inferno accepts our output");
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "an SVG");
    for name in ["kmain", "do_syscall", "veridian_page_fault"] {
        assert!(svg.contains(name), "{name} missing from the flame graph");
    }
    // inferno read our counts: 10 samples in all, 7 in the page-fault frame.
    assert!(svg.contains("10 samples"), "total");
    assert!(svg.contains("veridian_page_fault (7 samples"), "leaf count");
}

// ---- the sampler ----

struct Ticks(Cell<u64>);
impl CycleCounter for Ticks {
    fn start(&self) -> u64 {
        self.0.set(self.0.get() + 100);
        self.0.get()
    }
    fn stop(&self) -> u64 {
        self.start()
    }
}
struct Cpu3;
impl CpuIndex for Cpu3 {
    fn max_cpus(&self) -> usize {
        4
    }

    fn current_cpu(&self) -> usize {
        3
    }
}

#[test]
fn sampler_records_context_and_adapts() {
    let mut stack = FakeStack::new(32);
    let (a, b) = (stack.addr(2), stack.addr(8));
    stack.frame(2, b, 0x2050);
    stack.frame(8, 0, 0x1050);
    let ring: SampleRing<Sample, 2> = SampleRing::new();
    let (p, mut c) = ring.split().unwrap();
    let rate = AdaptiveRate::new(10_000, 1_000, 5_000, 1_000_000).unwrap();
    let mut sampler = Sampler::new(p, &stack, Ticks(Cell::new(0)), Cpu3, rate);
    // Each call costs 100 ticks on the fake clock: 1 % budget -> period 10 000.
    assert_eq!(sampler.on_interrupt(0x3004, a, 42), 10_000);
    sampler.on_interrupt(0x3004, a, 42);
    sampler.on_interrupt(0x3004, a, 42);
    assert_eq!(
        sampler.dropped(),
        1,
        "ring of 2: the third sample is dropped and counted"
    );
    let s = c.pop().unwrap();
    assert_eq!((s.ip, s.cpu, s.thread, s.timestamp), (0x3004, 3, 42, 100));
    assert_eq!(s.stack(), [0x2050, 0x1050]);
    assert!(sampler.rate().within_budget());
}

// SAFETY: delegates to the FakeStack contract.
unsafe impl AddressCheck for &FakeStack {
    fn is_readable(&self, addr: usize, len: usize) -> bool {
        (**self).is_readable(addr, len)
    }
}
