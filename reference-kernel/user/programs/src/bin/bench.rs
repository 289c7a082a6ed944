//! `bench`: user-side microbenchmarks, timed with `rdtsc` from ring 3, printed in the format of
//! the kernel's own `mode=bench` lines (reference-kernel/src/bench.rs):
//!
//! `bench <name> unit=tsc count=<n> min=.. median=.. p99=.. max=.. overhead=.. what="<text>"`
//!
//! Each sample is one timed interval (`lfence; rdtsc` .. `rdtscp; lfence`) minus `overhead`,
//! the smallest empty interval; quantiles are nearest-rank over the sorted samples (as
//! veridian-perf's histogram defines them). Under QEMU `-icount shift=0` a unit is one guest
//! instruction.
//!
//! - `null_syscall`: one `getpid` round trip.
//! - `sched_yield_switch`: one `yield` that switches to another process on the same CPU and
//!   back, halved: per switch. The partner is a copy of this program (`bench 1`) that yields a
//!   fixed number of times and exits with the mask of CPUs it saw; if the two did not stay on
//!   one CPU, the line is an `error=` line instead.
//! - `ipc_call_reply`: one IPC `call` to an `ipc_echo` server process on the same CPU and its
//!   reply (four message words each way).
//! - `channel_msg_b1`, `channel_msg_b32`: messages (four words) through a shared-memory
//!   channel (veridian-io rings, `veridian_user_rt::channel`) to an echo process on the same
//!   CPU and back: one sample is a batch of 1 or 32 messages sent and the 1 or 32 echoes
//!   received, divided by the batch size (per message, round trip). The two processes sleep
//!   on notifications when their ring is empty, so each batch also pays the wake-ups.
//! - `ipc_call_reply_cross_cpu` (`bench 2`, started by the kernel with an `ipc_echo` server on
//!   another CPU at handle 0): one IPC call and its reply across CPUs (the wake-ups go by IPI).
//! - `page_fault_anon`: the first write to each 4 KiB page of a fresh anonymous region
//!   (allocation, zeroing and mapping of one frame; the touch that fills a 2 MiB-aligned
//!   region also pays for its promotion to a huge page).
//!
//! 100 warm-up runs, then [`SAMPLES`] samples (page faults: one per page of an 8 MiB region).

#![no_std]
#![no_main]

use core::hint::black_box;

use veridian_user_rt::abi::prot;
use veridian_user_rt::{println, sys, tsc};

/// Warm-up runs before the samples.
const WARMUP: usize = 100;
/// Samples per benchmark.
const SAMPLES: usize = 10_000;
/// A page.
const PAGE: u64 = 4096;
/// Pages timed by `page_fault_anon` (8 MiB).
const FAULT_PAGES: usize = 2048;
/// The argument that makes this program the yield partner.
const PARTNER: u64 = 1;
/// The argument that makes it measure `ipc_call_reply_cross_cpu` only.
const CROSS_CPU: u64 = 2;
/// Yields of the partner: one per yield of the measurer, with room for its start-up and the
/// measurer's other calls; the partner's surplus runs alone after the measurement.
const PARTNER_YIELDS: usize = 2 * (WARMUP + SAMPLES);

/// The sample buffer (80 KB: in `.bss`, not on the 256 KiB stack).
static mut BUFFER: [u64; SAMPLES] = [0; SAMPLES];

/// Sorts `samples` and prints the benchmark line.
fn report(name: &str, what: &str, samples: &mut [u64], overhead: u64) {
    let n = samples.len();
    if n == 0 {
        println!("bench {name} error=\"no samples\"");
        return;
    }
    samples.sort_unstable();
    // Nearest rank: the value of rank max(1, ceil(q * n)).
    let rank = |num: usize, den: usize| (num * n).div_ceil(den).max(1) - 1;
    println!(
        "bench {name} unit=tsc count={n} min={} median={} p99={} max={} overhead={overhead} \
         what=\"{what}\"",
        samples[0],
        samples[rank(1, 2)],
        samples[rank(99, 100)],
        samples[n - 1]
    );
}

/// Times `f` once per sample after `WARMUP` untimed runs; each sample is divided by `per`
/// (operations per run).
fn time(samples: &mut [u64], overhead: u64, per: u64, mut f: impl FnMut()) {
    for _ in 0..WARMUP {
        f();
    }
    for s in samples.iter_mut() {
        let t0 = tsc::start();
        f();
        let t1 = tsc::stop();
        *s = t1.wrapping_sub(t0).saturating_sub(overhead) / per;
    }
}

/// The CPU the caller runs on, as a mask bit (0 if unknown or above 62).
fn cpu_bit() -> u64 {
    match sys::cpu() {
        Ok(c) if c < 63 => 1 << c,
        _ => 0,
    }
}

fn null_syscall(buffer: &mut [u64; SAMPLES], overhead: u64) {
    time(buffer, overhead, 1, || {
        black_box(sys::getpid().ok());
    });
    report(
        "null_syscall",
        "getpid round trip from ring 3",
        buffer,
        overhead,
    );
}

fn sched_yield_switch(buffer: &mut [u64; SAMPLES], overhead: u64) {
    const NAME: &str = "sched_yield_switch";
    let partner = match sys::spawn("bench", PARTNER) {
        Ok(pid) => pid,
        Err(e) => {
            println!("bench {NAME} error=\"spawn of the partner: {e}\"");
            return;
        }
    };
    let mut mine = cpu_bit();
    time(buffer, overhead, 2, || {
        black_box(sys::yield_now().ok());
    });
    mine |= cpu_bit();
    let theirs = match sys::wait(partner) {
        Ok(mask) if mask > 0 => mask as u64,
        other => {
            println!("bench {NAME} error=\"the partner ended with {other:?}\"");
            return;
        }
    };
    if mine != theirs || mine.count_ones() != 1 {
        println!(
            "bench {NAME} error=\"not one CPU: measurer on CPU mask {mine:#x}, partner on \
             {theirs:#x}\""
        );
        return;
    }
    report(
        NAME,
        "yield to another process on the same CPU and back (2 yields, 2 switches), halved: per switch",
        buffer,
        overhead,
    );
}

fn page_fault_anon(buffer: &mut [u64; SAMPLES], overhead: u64) {
    const NAME: &str = "page_fault_anon";
    let pages = WARMUP + FAULT_PAGES;
    let len = pages as u64 * PAGE;
    let base = match sys::mmap(len, prot::READ | prot::WRITE) {
        Ok(addr) => addr,
        Err(e) => {
            println!("bench {NAME} error=\"mmap: {e}\"");
            return;
        }
    };
    let mut next = base;
    let mut touch = || {
        let p = next as *mut u8;
        next += PAGE;
        // SAFETY: `p` is the first byte of a page of the region just mapped (readable and
        // writable, `pages` pages: `time` calls this WARMUP + FAULT_PAGES times), used by
        // nothing else. Volatile: the write is the measured first touch.
        unsafe { p.write_volatile(1) };
    };
    let samples = &mut buffer[..FAULT_PAGES];
    time(samples, overhead, 1, &mut touch);
    // SAFETY: `touch` is not called again; nothing else refers to the region.
    if let Err(e) = unsafe { sys::munmap(base, len) } {
        println!("bench {NAME} error=\"munmap: {e}\"");
        return;
    }
    report(
        NAME,
        "first write to a 4 KiB page of fresh anonymous memory, zeroing included",
        samples,
        overhead,
    );
}

fn ipc_call_reply(buffer: &mut [u64; SAMPLES], overhead: u64) {
    const NAME: &str = "ipc_call_reply";
    let started = sys::endpoint().and_then(|h| sys::spawn_with("ipc_echo", 0, h).map(|s| (h, s)));
    let (h, server) = match started {
        Ok(x) => x,
        Err(e) => {
            println!("bench {NAME} error=\"endpoint or server: {e}\"");
            return;
        }
    };
    ipc_calls(
        NAME,
        "IPC call to a server process on the same CPU and its reply (4 words each way)",
        buffer,
        overhead,
        h,
        Some(server),
    );
}

/// Times calls to the `ipc_echo` server at endpoint `h`, then ends it (and waits for it if it
/// is `server`, a child).
fn ipc_calls(
    name: &str,
    what: &str,
    buffer: &mut [u64; SAMPLES],
    overhead: u64,
    h: u64,
    server: Option<u64>,
) {
    /// `ipc_echo` ends on this word without replying.
    const QUIT: u64 = u64::MAX;
    let mut i = 0u64;
    let mut failed = 0u64;
    time(buffer, overhead, 1, || {
        if sys::call(h, [i, 0, 0, 0]) != Ok([i + 1, 0, 0, 0x5a5a_5a5a]) {
            failed += 1;
        }
        i += 1;
    });
    let _ = sys::call(h, [QUIT, 0, 0, 0]);
    let code = server.map_or(Ok(0), sys::wait);
    if failed != 0 || code != Ok(0) {
        println!("bench {name} error=\"{failed} wrong replies, server ended with {code:?}\"");
        return;
    }
    report(name, what, buffer, overhead);
}

/// `channel_msg_b<batch>`: see the module documentation.
fn channel_msg(buffer: &mut [u64; SAMPLES], overhead: u64, batch: usize) {
    use veridian_user_rt::channel::Channel;
    /// `chan_test`'s peer and echo bits.
    const ECHO_PEER: u64 = 3 << 62;
    let name: &str = if batch == 1 {
        "channel_msg_b1"
    } else {
        "channel_msg_b32"
    };
    let started = Channel::create().and_then(|(ch, handles)| {
        sys::spawn_with_handles("chan_test", ECHO_PEER, &handles).map(|pid| (ch, pid))
    });
    let (mut ch, peer) = match started {
        Ok(x) => x,
        Err(e) => {
            println!("bench {name} error=\"channel or echo process: {e}\"");
            return;
        }
    };
    let mut out = [[0u64; 4]; 32];
    let mut i = 0u64;
    let mut failed = 0u64;
    let f = || {
        for m in &mut out[..batch] {
            *m = [i, !i, i << 3, 7];
            i += 1;
        }
        if ch.send(&out[..batch]).is_err() {
            failed += 1;
            return;
        }
        let mut got = 0;
        let mut k = 0;
        while got < batch {
            match ch.recv(batch - got, |m| {
                if m != out[got + k] {
                    failed += 1;
                }
                k += 1;
            }) {
                Ok(n) => {
                    got += n;
                    k = 0;
                }
                Err(_) => {
                    failed += 1;
                    return;
                }
            }
        }
    };
    time(buffer, overhead, batch as u64, f);
    let (signals, sleeps) = (ch.signals, ch.sleeps);
    // Ending the channel's holder ends the echo process (its wait fails with EPIPE): kill it
    // instead, which needs nothing from it.
    let _ = sys::kill(peer);
    let code = sys::wait(peer);
    if failed != 0 {
        println!("bench {name} error=\"{failed} wrong echoes, echo process ended with {code:?}\"");
        return;
    }
    let what = if batch == 1 {
        "one message through a shared-memory channel to a process on the same CPU and back"
    } else {
        "32 messages through a shared-memory channel and back, per message"
    };
    report(name, what, buffer, overhead);
    println!("note: {name}: {signals} signals, {sleeps} sleeps on this side");
}

/// The yield partner: yields `PARTNER_YIELDS` times, exits with the CPUs it saw.
fn partner() -> i64 {
    let mut seen = cpu_bit();
    for _ in 0..PARTNER_YIELDS {
        black_box(sys::yield_now().ok());
    }
    seen |= cpu_bit();
    seen as i64
}

fn main(arg: u64) -> i64 {
    if arg == PARTNER {
        return partner();
    }
    // SAFETY: the process has one thread and this is the only reference to BUFFER ever made.
    let buffer = unsafe { (&raw mut BUFFER).as_mut_unchecked() };
    let overhead = tsc::overhead(1000);
    if arg == CROSS_CPU {
        ipc_calls(
            "ipc_call_reply_cross_cpu",
            "IPC call to a server process on another CPU and its reply (wake-ups by IPI)",
            buffer,
            overhead,
            0,
            None,
        );
        return 0;
    }
    null_syscall(buffer, overhead);
    sched_yield_switch(buffer, overhead);
    ipc_call_reply(buffer, overhead);
    channel_msg(buffer, overhead, 1);
    channel_msg(buffer, overhead, 32);
    page_fault_anon(buffer, overhead);
    0
}

veridian_user_rt::entry!(main);
