//! The sampling profiler's kernel tests (`crate::profile`).

#![deny(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use core::hint::black_box;

use crate::profile::{self, PROFILED_CPUS, Profile, RING_SAMPLES};

/// TSC ticks in `ms` milliseconds (1 GHz when the APIC did not calibrate).
fn tsc_ms(ms: u64) -> u64 {
    crate::arch::x86_64::apic::info().map_or(1_000_000_000, |i| i.tsc_hz) / 1000 * ms
}

fn now() -> u64 {
    veridian_perf::arch::rdtsc()
}

/// Busy-waits `ms` milliseconds (interrupts stay on: the sampler runs meanwhile).
fn spin_ms(ms: u64) {
    let end = now() + tsc_ms(ms);
    while now() < end {
        core::hint::spin_loop();
    }
}

#[inline(never)]
fn chain_outer(n: u64) -> u64 {
    black_box(chain_middle(black_box(n))).wrapping_add(1)
}

#[inline(never)]
fn chain_middle(n: u64) -> u64 {
    black_box(chain_inner(black_box(n))).wrapping_add(1)
}

#[inline(never)]
fn chain_inner(n: u64) -> u64 {
    let mut x = n;
    for _ in 0..n {
        x = black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    x
}

/// How far past a function's first byte an address of it may lie for the test to count it as
/// that function's (the three functions are a few dozen bytes in release, a few hundred in
/// debug builds); a frame must also sit between the right neighbours in the chain.
const SPAN: u64 = 1024;

/// Whether the folded `line` holds, consecutively, a frame in `chain_outer`, one in
/// `chain_middle` and one in `chain_inner` (root to leaf).
fn line_has_chain(line: &str) -> bool {
    let Some((stack, _count)) = line.rsplit_once(' ') else {
        return false;
    };
    let frames: Vec<u64> = stack
        .split(';')
        .filter_map(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .collect();
    let starts = [
        chain_outer as *const () as u64,
        chain_middle as *const () as u64,
        chain_inner as *const () as u64,
    ];
    frames.windows(3).any(|w| {
        w.iter()
            .zip(starts)
            .all(|(&addr, start)| addr >= start && addr - start < SPAN)
    })
}

/// A known call chain (`chain_outer` → `chain_middle` → `chain_inner`) runs in a loop for
/// 300 ms of TSC time under the sampler; some folded stack must hold its three frames in order.
pub fn profiler_sees_known_call_chain() {
    profile::drain_each(|_, _| {});
    let hz = profile::start();
    let mut collected = Profile::new();
    let end = now() + tsc_ms(300);
    while now() < end {
        black_box(chain_outer(black_box(20_000)));
        collected.drain();
    }
    profile::stop();
    spin_ms(5);
    collected.drain();
    let mut folded = String::new();
    collected
        .write_folded(&mut folded)
        .expect("writing to a String");
    let hits: u64 = folded
        .lines()
        .filter(|l| line_has_chain(l))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert!(
        hits > 0,
        "no sample of the chain at {:#x}/{:#x}/{:#x} among {} samples ({hz} Hz): {:?}",
        chain_outer as *const () as u64,
        chain_middle as *const () as u64,
        chain_inner as *const () as u64,
        collected.total(),
        folded.lines().take(5).collect::<Vec<_>>()
    );
    crate::println!(
        "profiler: {hits} of {} samples in the known chain ({hz} Hz)",
        collected.total()
    );
}

/// With nobody draining, the rings fill up: the samples past a ring's capacity are counted as
/// dropped, every ring gives back at most its capacity, each record whole (its CPU field names
/// its ring, timestamps in order), and every sample taken is either in a ring or counted.
pub fn profiler_ring_overflow_counted() {
    profile::drain_each(|_, _| {});
    let before = profile::stats();
    let hz = profile::start();
    // A ring holds RING_SAMPLES samples: wait for drops (at most 3 s).
    let end = now() + tsc_ms(3000);
    while profile::stats().dropped == before.dropped && now() < end {
        spin_ms(10);
    }
    profile::stop();
    // Let a sample in flight on another CPU finish before counting.
    spin_ms(20);
    let mut per_ring = [0usize; PROFILED_CPUS];
    let mut last = [0u64; PROFILED_CPUS];
    let mut whole = true;
    let drained = profile::drain_each(|ring, s| {
        per_ring[ring] += 1;
        whole &= s.cpu as usize == ring && s.timestamp >= last[ring] && s.ip != 0;
        last[ring] = s.timestamp;
    });
    let after = profile::stats();
    let dropped = after.dropped - before.dropped;
    assert!(dropped > 0, "no sample dropped in 3 s at {hz} Hz");
    assert!(whole, "a drained sample was not the one its CPU wrote");
    assert!(
        per_ring.iter().all(|&n| n <= RING_SAMPLES) && per_ring.contains(&RING_SAMPLES),
        "ring occupancy {per_ring:?}, capacity {RING_SAMPLES}"
    );
    assert_eq!(
        after.samples - before.samples,
        drained as u64 + dropped + (after.busy - before.busy),
        "samples taken = drained + dropped + busy"
    );
}

/// The profiler's user-stack reads fail cleanly instead of faulting or paging in: user
/// addresses below `USER_MIN` and above the stack (mapped in no process, whatever tables this
/// thread runs on), a kernel address and a misaligned one.
pub fn profiler_user_reads_are_fault_safe() {
    use crate::arch::x86_64::probe::read_user_u64;
    use crate::process_abi::layout::{STACK_TOP, USER_MIN};
    assert_eq!(read_user_u64(USER_MIN - 0x1000), None, "below USER_MIN");
    assert_eq!(
        read_user_u64(STACK_TOP + 0x1000),
        None,
        "above the user stack"
    );
    let kernel = profiler_user_reads_are_fault_safe as *const () as u64;
    assert_eq!(read_user_u64(kernel & !7), None, "kernel address refused");
    assert_eq!(read_user_u64(USER_MIN + 1), None, "misaligned");
}
