//! A bare-metal binary with no `#[global_allocator]` that uses the allocation-free parts of the
//! Veridian crates: veridian-sync's locks, `SeqLock` and `StaticArrayQueue` in `static`s,
//! veridian-sched's `Topology` and `CpuSet`, veridian-perf's histogram, veridian-simd's
//! memcpy and veridian-io's `StaticRing` of submission entries. If any of them pulled in the `alloc` crate, linking this binary for
//! `x86_64-unknown-none` would fail with "no global memory allocator found".
//!
//! Built (not run) by `cargo xtask test`; `_start` only has to exist for the link.

#![no_std]
#![no_main]

use core::hint::black_box;
use core::mem::MaybeUninit;
use core::panic::PanicInfo;

use veridian_io::Sqe;
use veridian_io::ring::StaticRing;
use veridian_perf::histogram::Histogram;
use veridian_sched::{CpuSet, Topology};
use veridian_sync::lock::TicketMutex;
use veridian_sync::mpmc::StaticArrayQueue;
use veridian_sync::seqlock::SeqLock;

static COUNTER: TicketMutex<u64> = TicketMutex::new(0);
static TIME: SeqLock<[u64; 2]> = SeqLock::new([0, 0]);
static EVENTS: StaticArrayQueue<u32, 16> = StaticArrayQueue::new();
static SUBMISSIONS: StaticRing<Sqe, 8> = StaticRing::new();

/// Exercises each crate once, so that the code is linked.
fn exercise() -> u64 {
    *COUNTER.lock() += 1;
    TIME.write([1, 2]);
    let _ = EVENTS.push(3);
    let mut sum = u64::from(EVENTS.pop().unwrap_or(0)) + TIME.read()[1] + *COUNTER.lock();

    // In place: no 8.5 KiB `Topology` by value on the (small) stack.
    let mut topology = MaybeUninit::uninit();
    let topology = Topology::uniform_in_place(4, &mut topology).map_or(0, |t| t.cpu_count());
    let allowed = CpuSet::single(1).map(|set| set.count()).unwrap_or(0);
    sum += (topology + allowed) as u64;

    let mut histogram = Histogram::new();
    histogram.record(black_box(sum));
    sum += histogram.count();

    let src = [1_u8; 64];
    let mut dst = [0_u8; 64];
    let copied = veridian_simd::copy(&mut dst, &src).is_ok();
    sum += u64::from(copied);
    sum += u64::from(dst[63]);

    if let Some((mut sq, mut device)) = SUBMISSIONS.split() {
        let _ = sq.push(Sqe::nop(7));
        sum += device.pop().map_or(0, |sqe| sqe.user_data);
    }
    sum
}

/// The entry point the linker looks for.
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    black_box(exercise());
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
