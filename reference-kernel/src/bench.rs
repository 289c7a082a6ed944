//! The kernel measuring itself (`mode=bench`): each benchmark runs many iterations, each timed
//! with serialised TSC reads (veridian-perf's `Tsc`), minus the measured cost of an empty timing
//! interval, into a veridian-perf [`Histogram`]; one machine-readable line per benchmark:
//!
//! `bench <name> unit=<tsc> count=N min=.. median=.. p99=.. max=.. overhead=..`
//!
//! and two single-value lines: `bench timing_overhead unit=tsc value=..` (the empty timing
//! interval) first and `bench suite_total unit=tsc value=..` (TSC from the start of the suite
//! to its end, on the CPU that runs it) last.
//!
//! Where CPU 0 has a PMU (veridian-perf's detection through fault-safe MSR accesses), each
//! kernel row also prints `pmu <row> cycles=.. instructions=.. cache_misses=.. iterations=..`
//! (totals over the row, warm-up included) and the user rows one `pmu user_rows ...` line;
//! without one (QEMU TCG), one line `pmu: no PMU: <why>; bench rows without PMU counts`.
//!
//! Under QEMU TCG with `-icount shift=0` (what `cargo xtask bench` uses) the TSC advances by
//! one per guest instruction, so the figures are deterministic instruction counts; without it
//! they are TSC cycles of the host (noisy under emulation). A `rep`-prefixed string instruction
//! counts once per iteration under icount (measured: filling 4096 bytes, which the kernel's
//! memset does with `rep stosb` on an ERMS CPU, reads 4132; 8192 bytes read 8228; 1024 bytes,
//! done with AVX2 stores, read 117), so a row that zeroes or copies kilobytes is dominated by
//! that count, which says little about time on hardware.
//!
//! No `unsafe` here: the heap and frame pairs go through the owning types of `mm`.

#![deny(unsafe_code)]

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::alloc::Layout;
use core::sync::atomic::{AtomicBool, Ordering};

use veridian_perf::clock::{CycleCounter, Tsc, measure_overhead};
use veridian_perf::histogram::Histogram;
use veridian_perf::pmu::{CounterGroup, Event, Pmu};
use veridian_sched::{CpuSet, Priority};

use crate::arch::x86_64::probe::FaultSafeMsr;
use crate::mm::frames::FrameBlock;

/// Cycles, instructions and cache misses of the CPU running the suite (CPU 0, the boot
/// context, where every row runs or is pinned), when it has a PMU.
struct Counters {
    pmu: Pmu<FaultSafeMsr>,
    group: CounterGroup,
}

const PMU_EVENTS: [Event; 3] = [Event::Cycles, Event::Instructions, Event::CacheMisses];

impl Counters {
    /// The counters, or a line saying why there are none.
    fn open() -> Option<Self> {
        let mut pmu = match crate::profile::detect_pmu() {
            Ok(pmu) => pmu,
            Err(e) => {
                crate::println!("pmu: {e}; bench rows without PMU counts");
                return None;
            }
        };
        match pmu.open_group(&PMU_EVENTS) {
            Ok(group) => Some(Self { pmu, group }),
            Err(e) => {
                crate::println!("pmu: {e}; bench rows without PMU counts");
                None
            }
        }
    }

    /// Runs `f` with the counters on; prints `pmu <row> cycles=.. instructions=..
    /// cache_misses=.. [iterations=..]` (totals over the row on this CPU, warm-up included).
    fn count<R>(
        counters: &mut Option<Self>,
        row: &str,
        iterations: Option<u32>,
        f: impl FnOnce() -> R,
    ) -> R {
        let Some(c) = counters.as_mut() else {
            return f();
        };
        let started = c.pmu.start(&c.group);
        let result = f();
        let reading = c
            .pmu
            .stop(&c.group)
            .and(started)
            .and_then(|()| c.pmu.read(&c.group));
        match reading {
            Ok(r) => {
                crate::print!(
                    "pmu {row} cycles={} instructions={} cache_misses={}",
                    r.get(Event::Cycles).unwrap_or(0),
                    r.get(Event::Instructions).unwrap_or(0),
                    r.get(Event::CacheMisses).unwrap_or(0)
                );
                match iterations {
                    Some(n) => crate::println!(" iterations={n}"),
                    None => crate::println!(),
                }
            }
            Err(e) => crate::println!("pmu {row} error=\"{e}\""),
        }
        result
    }
}

/// Iterations per benchmark.
pub const ITERATIONS: u32 = 10_000;
/// Iterations per benchmark with the 100 warm-up runs (what a PMU reading covers).
const WITH_WARM_UP: u32 = ITERATIONS + 100;

fn report(name: &str, what: &str, hist: &Histogram, overhead: u64) {
    match hist.summary() {
        Ok(s) => crate::println!(
            "bench {name} unit=tsc count={} min={} median={} p99={} max={} overhead={overhead} \
             what=\"{what}\"",
            s.count,
            s.min,
            s.median,
            s.p99,
            s.max
        ),
        Err(e) => crate::println!("bench {name} error=\"{e}\""),
    }
}

/// The boot rows, single values in TSC ticks from the trampoline's shared 32-bit entry
/// (`entry`): to just after the banner's first line was printed (`banner`), and to the moment
/// the last application processor was online (`online`, or why there is no such moment).
/// Under `-icount shift=0` the ticks count the instructions of every CPU (all run on one
/// emulator thread then), so `all_cpus_online` includes the APs' own start-up and the
/// bootstrap CPU's INIT/SIPI waits.
pub fn boot_rows(entry: u64, banner: u64, online: Result<u64, &str>) {
    const NOT_COUNTED: &str =
        "the firmware and the loader before the kernel's entry are not counted";
    crate::println!(
        "bench boot_to_banner unit=tsc value={} what=\"boot trampoline entry to the banner line \
         printed (after SMP start-up and the scheduler); {NOT_COUNTED}\"",
        banner.wrapping_sub(entry)
    );
    match online {
        Ok(online) => crate::println!(
            "bench all_cpus_online unit=tsc value={} what=\"boot trampoline entry to every CPU \
             online (INIT/SIPI waits included); {NOT_COUNTED}\"",
            online.wrapping_sub(entry)
        ),
        Err(why) => crate::println!("bench all_cpus_online error=\"{why}\""),
    }
}

/// Times `f` `ITERATIONS` times (after 100 warm-up runs).
fn time(f: impl FnMut(), overhead: u64) -> Box<Histogram> {
    time_split(f, overhead, 1).0
}

/// As [`time`], also recording each sample divided by `parts` into a second histogram (for a
/// sample that is `parts` equal operations, such as a round trip of two switches).
fn time_split(f: impl FnMut(), overhead: u64, parts: u64) -> (Box<Histogram>, Box<Histogram>) {
    time_split_n(f, overhead, parts, ITERATIONS)
}

/// As [`time_split`] with `iterations` samples (after 100 warm-up runs).
fn time_split_n(
    mut f: impl FnMut(),
    overhead: u64,
    parts: u64,
    iterations: u32,
) -> (Box<Histogram>, Box<Histogram>) {
    let mut whole = Histogram::boxed();
    let mut part = Histogram::boxed();
    for _ in 0..100 {
        f();
    }
    for _ in 0..iterations {
        let t0 = Tsc.start();
        f();
        let t1 = Tsc.stop();
        let sample = t1.wrapping_sub(t0).saturating_sub(overhead);
        whole.record(sample);
        part.record(sample / parts.max(1));
    }
    (whole, part)
}

/// Runs every benchmark and prints its line. Returns false if one could not run.
pub fn run_all() -> bool {
    let suite_start = Tsc.start();
    let overhead = measure_overhead(&Tsc, 1000);
    crate::println!("bench timing_overhead unit=tsc value={overhead}");
    let mut ok = true;
    let mut pmu = Counters::open();

    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    let hist = Counters::count(&mut pmu, "kalloc_free_64", Some(WITH_WARM_UP), || {
        time(
            || {
                core::hint::black_box(crate::mm::heap::alloc_free_pair(layout));
            },
            overhead,
        )
    });
    report(
        "kalloc_free_64",
        "kernel heap alloc+free pair, 64 B",
        &hist,
        overhead,
    );

    let hist = Counters::count(&mut pmu, "frame_alloc_free_4k", Some(WITH_WARM_UP), || {
        time(
            || {
                // Allocated and, on drop, freed.
                core::hint::black_box(FrameBlock::allocate(0).ok());
            },
            overhead,
        )
    });
    report(
        "frame_alloc_free_4k",
        "page frame alloc+free pair, 4 KiB",
        &hist,
        overhead,
    );

    ok &= Counters::count(
        &mut pmu,
        "sched_yield_round_trip",
        Some(WITH_WARM_UP),
        || yield_pair(overhead),
    );
    // The user rows run in one program on CPU 0: one reading for all of them.
    ok &= Counters::count(&mut pmu, "user_rows", None, user_benchmarks);
    ok &= Counters::count(&mut pmu, "ipc_call_reply_cross_cpu", None, user_cross_cpu);
    // Polled: a CPU halted until the completion interrupt would count host time under icount.
    crate::drivers::virtio_blk::poll_only(true);
    ok &= blk_read_4k_batch1(&mut pmu, overhead);
    ok &= blk_read_4k_batch32(&mut pmu, overhead);
    crate::drivers::virtio_blk::poll_only(false);
    ok &= net_udp_echo(&mut pmu, overhead);
    // The whole suite, interrupts and waits included (a profiler's overhead shows here).
    crate::println!(
        "bench suite_total unit=tsc value={}",
        Tsc.stop().wrapping_sub(suite_start)
    );
    ok
}

/// `blk_read_4k_batch1`: one sample is one 4 KiB read (8 sectors) from the virtio-blk test disk
/// into a frame (no bounce), submitted alone and polled to completion: the driver, the
/// notification's exit to QEMU and QEMU's device model while the CPU polls all count. Successive
/// samples read successive 4 KiB blocks. Skipped, with a line saying so, without a disk.
fn blk_read_4k_batch1(pmu: &mut Option<Counters>, overhead: u64) -> bool {
    const NAME: &str = "blk_read_4k_batch1";
    let Some(disk) = crate::drivers::virtio_blk::info() else {
        crate::println!("bench {NAME} skipped=\"no virtio-blk disk\"");
        return true;
    };
    let mut block = match FrameBlock::allocate(0) {
        Ok(b) => b,
        Err(e) => {
            crate::println!("bench: {NAME}: no frame for the buffer: {e}");
            return false;
        }
    };
    let Some(buf) = block.bytes_mut() else {
        return false;
    };
    let blocks = (disk.sectors / 8).max(1);
    let (mut next, mut errors) = (0u64, 0u32);
    let polls = crate::drivers::virtio_blk::empty_polls();
    let hist = Counters::count(pmu, NAME, Some(WITH_WARM_UP), || {
        time(
            || {
                let sector = (next % blocks) * 8;
                next += 1;
                if crate::drivers::virtio_blk::read(sector, buf).is_err() {
                    errors += 1;
                }
            },
            overhead,
        )
    });
    if errors > 0 {
        crate::println!("bench: {NAME}: {errors} reads failed");
        return false;
    }
    report(
        NAME,
        "one 4 KiB virtio-blk read, submitted alone and polled to completion",
        &hist,
        overhead,
    );
    empty_polls_note(NAME, polls, u64::from(WITH_WARM_UP));
    true
}

/// Round trips timed by `net_udp_echo`.
const NET_ECHOES: u32 = 1000;

/// `net_udp_echo`: one sample is one 64-byte UDP datagram from a client socket on NIC 1 to the
/// echo service on NIC 0 and back, both NICs on one QEMU hub and both `smoltcp` interfaces
/// polled by this CPU: both stacks, both drivers, four notifications and QEMU's device model
/// while the CPU polls all count (so the row varies from run to run, as the block rows).
/// Skipped, with a line saying so, without two NICs.
fn net_udp_echo(pmu: &mut Option<Counters>, overhead: u64) -> bool {
    const NAME: &str = "net_udp_echo";
    let Some(mut pair) = crate::net::EchoPair::new() else {
        crate::println!("bench {NAME} skipped=\"needs two virtio-net NICs on one link\"");
        return true;
    };
    // The first round trip resolves the addresses (ARP) and is not timed.
    if let Err(e) = pair.round_trip(5_000) {
        crate::println!("bench: {NAME}: {e}");
        return false;
    }
    let mut errors = 0u32;
    let (hist, _) = Counters::count(pmu, NAME, Some(NET_ECHOES + 100), || {
        time_split_n(
            || {
                if pair.round_trip(1_000).is_err() {
                    errors += 1;
                }
            },
            overhead,
            1,
            NET_ECHOES,
        )
    });
    drop(pair);
    if errors > 0 {
        crate::println!("bench: {NAME}: {errors} round trips failed");
        return false;
    }
    report(
        NAME,
        "a 64-byte UDP datagram from NIC 1 to the echo service on NIC 0 and back, both polled",
        &hist,
        overhead,
    );
    true
}

/// A note with the looks at the used ring that found nothing (waiting for QEMU's device model,
/// the part of a block row that varies from run to run) per request since `before`.
fn empty_polls_note(name: &str, before: u64, requests: u64) {
    let polls = crate::drivers::virtio_blk::empty_polls() - before;
    crate::println!(
        "note: {name}: {polls} empty polls of the used ring for {requests} requests ({}.{:02} per request)",
        polls / requests,
        polls * 100 / requests % 100
    );
}

/// Samples of `blk_read_4k_batch32` (each 32 reads).
const BATCH32_SAMPLES: u32 = 1_000;

/// `blk_read_4k_batch32`, per request: one sample is 32 reads of 4 KiB (successive 4 KiB blocks)
/// into 32 frames, submitted as one batch with one notification and polled until all completed;
/// the row is the sample divided by 32. As `blk_read_4k_batch1`, QEMU's device model works while
/// the CPU polls, so the count varies from run to run. Skipped without a disk.
fn blk_read_4k_batch32(pmu: &mut Option<Counters>, overhead: u64) -> bool {
    use crate::drivers::virtio_blk::{self, MAX_BATCH, Request};
    const NAME: &str = "blk_read_4k_batch32";
    let Some(disk) = virtio_blk::info() else {
        crate::println!("bench {NAME} skipped=\"no virtio-blk disk\"");
        return true;
    };
    // 32 frames, one per request.
    let mut block = match FrameBlock::allocate(5) {
        Ok(b) => b,
        Err(e) => {
            crate::println!("bench: {NAME}: no frames for the buffers: {e}");
            return false;
        }
    };
    let Some(bufs) = block.bytes_mut() else {
        return false;
    };
    let blocks = (disk.sectors / 8).max(MAX_BATCH as u64);
    let (mut next, mut errors) = (0u64, 0u32);
    let polls = virtio_blk::empty_polls();
    let mut results = [Ok(()); MAX_BATCH];
    // The PMU line's iterations are requests (warm-up included), as for `blk_read_4k_batch1`.
    let hist = Counters::count(
        pmu,
        NAME,
        Some((BATCH32_SAMPLES + 100) * MAX_BATCH as u32),
        || {
            time_split_n(
                || {
                    let mut chunks = bufs.chunks_mut(4096);
                    let mut requests: [Request<'_>; MAX_BATCH] = core::array::from_fn(|_| {
                        let sector = (next % blocks) * 8;
                        next += 1;
                        match chunks.next() {
                            Some(buf) => Request::Read { sector, buf },
                            // Not reached: 32 pages make 32 chunks.
                            None => Request::Flush,
                        }
                    });
                    if virtio_blk::batch(&mut requests, &mut results).is_err()
                        || results.iter().any(Result::is_err)
                    {
                        errors += 1;
                    }
                },
                overhead,
                MAX_BATCH as u64,
                BATCH32_SAMPLES,
            )
            .1
        },
    );
    if errors > 0 {
        crate::println!("bench: {NAME}: {errors} batches failed");
        return false;
    }
    report(
        NAME,
        "per request: 32 4 KiB virtio-blk reads submitted with one notification, polled to \
         completion, sample / 32",
        &hist,
        overhead,
    );
    empty_polls_note(
        NAME,
        polls,
        u64::from(BATCH32_SAMPLES + 100) * MAX_BATCH as u64,
    );
    true
}

/// `ipc_call_reply_cross_cpu`: the `bench` program on CPU 0 (`bench 2`) calls an `ipc_echo`
/// server pinned to CPU 1 through an endpoint the kernel gives both (handle 0). Skipped, with
/// a line saying so, on one CPU.
fn user_cross_cpu() -> bool {
    use crate::ipc::{Endpoint, KernelHold, Object};
    use crate::task::process;
    const NAME: &str = "ipc_call_reply_cross_cpu";
    if crate::arch::x86_64::percpu::ONLINE.load(Ordering::Acquire) < 2 {
        crate::println!("bench {NAME} skipped=\"one CPU online\"");
        return true;
    }
    let (Ok(cpu0), Ok(cpu1)) = (CpuSet::single(0), CpuSet::single(1)) else {
        return false;
    };
    // Held until both run, so that neither finds itself alone on the endpoint.
    let held = KernelHold::new(Object::Endpoint(Arc::new(Endpoint::new())));
    let ep = core::slice::from_ref(held.object());
    let server = process::spawn_on_with("ipc_echo", 0, 0, Some(cpu1), ep);
    let client = process::spawn_on_with("bench", 2, 0, Some(cpu0), ep);
    drop(held);
    match (server, client) {
        (Ok(server), Ok(client)) => {
            let (c, s) = (client.wait(), server.wait());
            if c != 0 || s != 0 {
                crate::println!("bench: {NAME}: the client ended with {c}, the server with {s}");
            }
            c == 0 && s == 0
        }
        (server, client) => {
            crate::println!(
                "bench: {NAME}: cannot start the programs: {:?} {:?}",
                server.err(),
                client.err()
            );
            false
        }
    }
}

/// The user-mode rows (`null_syscall`, `sched_yield_switch`, `page_fault_anon`): the `bench`
/// program measures them from ring 3 and prints its own `bench` lines.
fn user_benchmarks() -> bool {
    // On one CPU: the yield row needs the program and the child it spawns (which inherits the
    // affinity) to take turns on the same CPU.
    let cpu = CpuSet::single(0).expect("cpu 0");
    match crate::task::process::spawn_on("bench", 0, 0, Some(cpu)) {
        Ok(child) => {
            let code = child.wait();
            if code != 0 {
                crate::println!("bench: the user benchmark program ended with {code}");
            }
            code == 0
        }
        Err(e) => {
            crate::println!("bench: cannot start the user benchmark program: {e}");
            false
        }
    }
}

/// Two threads pinned to CPU 0 yield to each other; one sample is one `yield_now` call of the
/// first thread, which returns after the second thread has yielded back: two yields, each
/// a switch to the scheduler context, a pick and a switch to the other thread.
fn yield_pair(overhead: u64) -> bool {
    let cpu = match CpuSet::single(0) {
        Ok(c) => c,
        Err(_) => return false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let partner = {
        let stop = stop.clone();
        crate::task::spawn("yield-partner", cpu, Priority::Normal, move || {
            while !stop.load(Ordering::Relaxed) {
                crate::task::yield_now();
            }
        })
    };
    let measurer = {
        let stop = stop.clone();
        crate::task::spawn("yield-measurer", cpu, Priority::Normal, move || {
            let (round_trip, per_switch) = time_split(crate::task::yield_now, overhead, 2);
            stop.store(true, Ordering::Relaxed);
            report(
                "sched_yield_round_trip",
                "yield to another kernel thread on the same CPU and back (2 yields)",
                &round_trip,
                overhead,
            );
            report(
                "thread_yield_switch",
                "the same samples halved: one kernel-thread yield switch",
                &per_switch,
                overhead,
            );
        })
    };
    match (partner, measurer) {
        (Ok(p), Ok(m)) => m.join().is_ok() & p.join().is_ok(),
        _ => {
            stop.store(true, Ordering::Relaxed);
            false
        }
    }
}
