//! Memory footprint of veridian-alloc's `Heap` and its peers: peak RSS against peak live bytes.
//!
//! `cargo run --release -p veridian-alloc --features std --example footprint` runs every
//! (allocator, workload) pair in a fresh child process (this executable re-executed with the
//! arguments `<allocator> <workload>`), so allocators do not pollute each other's numbers, and
//! prints a markdown table. Each child prepares its bookkeeping (size sequence, free order,
//! pointer table) from the system allocator and touches it, resets the peak-RSS counter
//! (`/proc/self/clear_refs` = 5), reads `VmRSS` as the baseline, then runs the workload through
//! the allocator's `GlobalAlloc`, writing every byte of every block, and tracks the live bytes
//! and their peak itself. It reports the peak live bytes, `VmHWM` minus the baseline, and
//! `VmRSS` minus the baseline once everything is freed (what the allocator kept). A child that
//! runs past the timeout (the quadratic peers) is killed; for the batch workloads its peak is
//! still reported, taken when the allocation phase ends.
//!
//! `FOOTPRINT_VERIDIAN_STATS=1 footprint veridian <workload>` also prints the heap's statistics
//! at the peak, after the free-all and after `Heap::trim`, to stderr.
//! The arena-based peers (talc, linked_list, buddy_system) get an untouched `MAP_NORESERVE`
//! mapping created after the baseline, so their RSS is only what the allocator touched.
//!
//! Workloads: `batch_lifo` and `batch_random` (200k blocks of a seeded mix of 16..=512 B, then
//! all freed in LIFO order or a seeded random order), `larson` (single-threaded: 100k slots
//! filled with 16..=1024 B blocks, then 1M times free a random slot and allocate a random size
//! into it).
//!
//! Run one pair by hand: `footprint veridian batch_random`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use veridian_alloc::Heap;
use veridian_alloc::hosted::{MmapPages, ThreadSlots};

static VERIDIAN: Heap<MmapPages, ThreadSlots> = Heap::new(MmapPages, ThreadSlots);
static SYSTEM: System = System;
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "../benches/support/peers.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
// The arena and the peers' types; the rest serves the bench and `alloc_ab`.
mod peers;
use peers::{BuddySystem, LinkedList, Talc};

const ALLOCATORS: [&str; 7] = [
    "veridian",
    "system",
    "mimalloc",
    "jemalloc",
    "talc",
    "linked_list",
    "buddy_system",
];
const WORKLOADS: [&str; 3] = ["batch_lifo", "batch_random", "larson"];

/// Size of each arena handed to the arena-based peers.
const ARENA_BYTES: usize = 1 << 30;
/// Blocks of the batch workloads.
const BATCH: usize = 200_000;
/// Slots of the larson workload.
const LARSON_SLOTS: usize = 100_000;
/// Free+allocate operations of the larson workload.
const LARSON_OPS: usize = 1_000_000;
/// A child that runs longer than this is killed and reported as such.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % n
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// A `/proc/self/status` field in bytes (the file gives kB).
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Live-byte accounting of the workload.
#[derive(Default)]
struct Live {
    now: usize,
    peak: usize,
}

impl Live {
    fn alloc<A: GlobalAlloc>(&mut self, a: &A, size: usize, tag: u8) -> *mut u8 {
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(layout(size)) };
        assert!(!p.is_null(), "allocation of {size} bytes failed");
        // SAFETY: `p` points to `size` writable bytes we own.
        unsafe { p.write_bytes(tag, size) };
        self.now += size;
        self.peak = self.peak.max(self.now);
        p
    }

    /// # Safety
    /// `p` was returned by `self.alloc(a, size, _)` and is not freed yet.
    unsafe fn free<A: GlobalAlloc>(&mut self, a: &A, p: *mut u8, size: usize) {
        // SAFETY: by the caller's contract.
        unsafe { a.dealloc(p, layout(size)) };
        self.now -= size;
    }
}

/// Bookkeeping prepared (and touched) before the baseline.
struct Prepared {
    sizes: Vec<usize>,
    order: Vec<usize>,
    ptrs: Vec<*mut u8>,
    script: Vec<(usize, usize)>,
    /// RSS before the workload, in bytes.
    baseline: usize,
}

fn prepare(workload: &str) -> Prepared {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    match workload {
        "batch_lifo" | "batch_random" => {
            let sizes: Vec<usize> = (0..BATCH).map(|_| 16 + rng.below(497) as usize).collect();
            let mut order: Vec<usize> = (0..BATCH).collect();
            if workload == "batch_random" {
                for i in (1..BATCH).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
            } else {
                order.reverse();
            }
            Prepared {
                sizes,
                order,
                ptrs: vec![std::ptr::null_mut(); BATCH],
                script: Vec::new(),
                baseline: 0,
            }
        }
        "larson" => {
            let sizes: Vec<usize> = (0..LARSON_SLOTS)
                .map(|_| 16 + rng.below(1009) as usize)
                .collect();
            let script = (0..LARSON_OPS)
                .map(|_| {
                    (
                        rng.below(LARSON_SLOTS as u64) as usize,
                        16 + rng.below(1009) as usize,
                    )
                })
                .collect();
            Prepared {
                sizes,
                order: Vec::new(),
                ptrs: vec![std::ptr::null_mut(); LARSON_SLOTS],
                script,
                baseline: 0,
            }
        }
        other => panic!("unknown workload {other}"),
    }
}

/// Runs the workload; returns the peak live bytes.
fn run<A: GlobalAlloc>(a: &A, workload: &str, p: &mut Prepared) -> usize {
    let mut live = Live::default();
    if workload == "larson" {
        for (i, &size) in p.sizes.iter().enumerate() {
            p.ptrs[i] = live.alloc(a, size, i as u8);
        }
        for (op, &(slot, size)) in p.script.iter().enumerate() {
            // SAFETY: every slot holds a live block of the recorded size.
            unsafe { live.free(a, p.ptrs[slot], p.sizes[slot]) };
            p.ptrs[slot] = live.alloc(a, size, op as u8);
            p.sizes[slot] = size;
        }
        for (i, &size) in p.sizes.iter().enumerate() {
            // SAFETY: every slot holds a live block of the recorded size; freed once.
            unsafe { live.free(a, p.ptrs[i], size) };
        }
    } else {
        for (i, &size) in p.sizes.iter().enumerate() {
            p.ptrs[i] = live.alloc(a, size, i as u8);
        }
        // The batch peak is reached here; report it now, so a peer whose free phase is too slow
        // for the parent's timeout still has its footprint measured.
        println!(
            "PEAK {} {}",
            live.peak,
            status_bytes("VmHWM").saturating_sub(p.baseline)
        );
        let _ = std::io::stdout().flush();
        if std::env::var_os("FOOTPRINT_VERIDIAN_STATS").is_some() {
            veridian_stats("at peak");
        }
        for &i in &p.order {
            // SAFETY: allocated above with this size; `order` is a permutation.
            unsafe { live.free(a, p.ptrs[i], p.sizes[i]) };
        }
    }
    assert_eq!(live.now, 0);
    live.peak
}

/// Prints a summary of the veridian heap's statistics to stderr.
fn veridian_stats(when: &str) {
    let s = VERIDIAN.stats();
    let slab_bytes: u64 = s
        .classes
        .iter()
        .map(|c| c.slab_bytes as u64 * c.slabs)
        .sum();
    let slabs: u64 = s.classes.iter().map(|c| c.slabs).sum();
    let live: u64 = s.classes.iter().map(|c| c.live_objects).sum();
    eprintln!(
        "veridian {when}: live_objects={live} slabs={slabs} slab_bytes={slab_bytes} large_live_bytes={} chunks_held={} \
         chunks_from_source={} chunks_released={} buddy_total={} buddy_free={}",
        s.large_live_bytes,
        s.chunks_held,
        s.chunks_from_source,
        s.chunks_released,
        s.buddy.total_bytes,
        s.buddy.free_bytes
    );
}

fn child(allocator: &str, workload: &str) {
    let mut prepared = prepare(workload);
    // Reset VmHWM to the current RSS (Linux >= 4.0); without it the baseline is still subtracted.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let baseline = status_bytes("VmRSS");
    prepared.baseline = baseline;
    let start = Instant::now();
    let peak_live = match allocator {
        "veridian" => run(&VERIDIAN, workload, &mut prepared),
        "system" => run(&SYSTEM, workload, &mut prepared),
        "mimalloc" => run(&MIMALLOC, workload, &mut prepared),
        "jemalloc" => run(&JEMALLOC, workload, &mut prepared),
        "talc" => {
            // SAFETY: a fresh, leaked mapping that nothing else uses, as `Talc::claim` requires.
            let source =
                unsafe { talc::source::Claim::new(peers::arena(ARENA_BYTES), ARENA_BYTES) };
            let talc = Talc::new(source);
            run(&talc, workload, &mut prepared)
        }
        "linked_list" => {
            let heap = LinkedList::empty();
            // SAFETY: a fresh, leaked mapping that nothing else uses; init runs once.
            unsafe { heap.lock().init(peers::arena(ARENA_BYTES), ARENA_BYTES) };
            run(&heap, workload, &mut prepared)
        }
        "buddy_system" => {
            let heap = BuddySystem::new();
            // SAFETY: a fresh, leaked mapping that nothing else uses; init runs once.
            unsafe {
                heap.lock()
                    .init(peers::arena(ARENA_BYTES) as usize, ARENA_BYTES)
            };
            run(&heap, workload, &mut prepared)
        }
        other => panic!("unknown allocator {other}"),
    };
    let elapsed = start.elapsed().as_secs_f64();
    let hwm = status_bytes("VmHWM");
    let after = status_bytes("VmRSS");
    if allocator == "veridian" && std::env::var_os("FOOTPRINT_VERIDIAN_STATS").is_some() {
        veridian_stats("after free-all");
        VERIDIAN.trim();
        veridian_stats("after trim");
    }
    println!(
        "RESULT {peak_live} {} {elapsed:.3} {}",
        hwm.saturating_sub(baseline),
        after.saturating_sub(baseline)
    );
}

/// What one child reported.
struct Outcome {
    peak_live: usize,
    rss_delta: usize,
    /// RSS after everything was freed, minus the baseline (`None` when the child was killed).
    rss_after: Option<usize>,
    /// Workload time in seconds, or why there is none.
    time: Result<f64, String>,
}

/// Workload seconds and RSS after the free-all, as a finished child reports them.
type End = (f64, usize);

/// Parses `<tag> <peak_live> <rss_delta> [<seconds> <rss_after>]` from the child's output.
fn parse_line(text: &str, tag: &str) -> Option<(usize, usize, Option<End>)> {
    let line = text.lines().find_map(|l| l.strip_prefix(tag))?;
    let mut f = line.split_whitespace();
    let live = f.next()?.parse().ok()?;
    let rss = f.next()?.parse().ok()?;
    let end = (|| Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?)))();
    Some((live, rss, end))
}

/// Runs one child and collects what it reported.
fn spawn_child(allocator: &str, workload: &str) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args([allocator, workload])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut killed = false;
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if start.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some((peak_live, rss_delta, Some((secs, after)))) = parse_line(&text, "RESULT ") {
        return Ok(Outcome {
            peak_live,
            rss_delta,
            rss_after: Some(after),
            time: Ok(secs),
        });
    }
    let why = if killed {
        format!("killed after {} s", CHILD_TIMEOUT.as_secs())
    } else {
        format!("child failed: {}", out.status)
    };
    match parse_line(&text, "PEAK ") {
        Some((peak_live, rss_delta, _)) => Ok(Outcome {
            peak_live,
            rss_delta,
            rss_after: None,
            time: Err(format!(
                "{why} in the free phase; peak taken after the allocation phase"
            )),
        }),
        None => Err(why),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, allocator, workload] = args.as_slice() {
        child(allocator, workload);
        return;
    }
    const MIB: f64 = (1 << 20) as f64;
    println!(
        "| allocator | workload | peak live MiB | peak RSS delta MiB | ratio (RSS/live) \
         | RSS after free-all MiB | time s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for workload in WORKLOADS {
        for allocator in ALLOCATORS {
            match spawn_child(allocator, workload) {
                Ok(o) => println!(
                    "| {allocator} | {workload} | {:.1} | {:.1} | {:.2} | {} | {} |",
                    o.peak_live as f64 / MIB,
                    o.rss_delta as f64 / MIB,
                    o.rss_delta as f64 / o.peak_live as f64,
                    o.rss_after
                        .map_or("-".into(), |b| format!("{:.1}", b as f64 / MIB)),
                    o.time.map_or_else(|why| why, |secs| format!("{secs:.2}"))
                ),
                Err(why) => println!("| {allocator} | {workload} | - | - | - | - | {why} |"),
            }
            let _ = std::io::stdout().flush();
        }
    }
}
