//! `sysfuzz <seed>`: a system-call fuzzer. Issues [`CALLS`] calls with a random number in
//! 0..64 (weighted towards the defined ones) and six random argument words from a mix of interesting values (0, small integers,
//! huge values, kernel-half and non-canonical addresses, unaligned pointers into its own stack,
//! unmapped user addresses, page-multiple lengths), from a xorshift generator seeded by `arg`.
//! Every result must be a value (non-negative) or `-errno` of an error the ABI defines.
//! Prints the totals per result and exits with 0 if every result was valid, 1 otherwise.
//!
//! What it leaves out, so that a run ends and stays quiet: `exit`; `wait` and `wait_notify`
//! (they could block: a notification bound to an interrupt line is never `EPIPE`);
//! `sleep` longer than 2 ms; `spawn` of a real program (name pointers are bad, or point at
//! bytes that are no program's name); `write` of readable memory to fds 1 and 2 (the console
//! would show the noise); shared-memory objects above 64 KiB (16 handles of 16 MiB each would
//! take a small machine's memory from the tests after it). `mmap` and `map` may succeed: those
//! regions are never touched and go with the process.

#![no_std]
#![no_main]

use core::hint::black_box;

use veridian_user_rt::abi::nr;
use veridian_user_rt::raw::raw_syscall;
use veridian_user_rt::{Errno, println};

/// Calls per run.
const CALLS: u32 = 10_000;
/// System-call numbers drawn: all defined ones and many undefined ones (`-ENOSYS`).
const NUMBERS: u64 = 64;
/// One past the highest defined number. Three draws in four pick from `0..=DEFINED` (the
/// defined calls and the first undefined number), the rest from all of `0..NUMBERS`: most calls
/// then reach argument validation instead of the unknown-number path.
const DEFINED: u64 = nr::KILL + 1;
/// Invalid results printed in full (the rest are only counted).
const SHOWN: u32 = 16;

/// xorshift64 (Marsaglia): small, fast and good enough to pick arguments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64's output function, so that nearby seeds start far apart; the state must
        // not be 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)).max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where the random argument words come from.
struct Mix {
    rng: Rng,
    /// A buffer on this process's stack (bytes that are no program's name).
    scratch: u64,
    scratch_len: u64,
}

impl Mix {
    /// An address that no call may read: null, kernel half, non-canonical, unmapped user
    /// memory or a range that wraps.
    fn bad_pointer(&mut self) -> u64 {
        let r = self.rng.next();
        match self.rng.below(5) {
            0 => r % 4096,                                            // null page
            1 => 0xffff_8000_0000_0000 | r,                           // kernel half
            2 => 0x0000_8000_0000_0000 | (r & 0x7fff_ffff_ffff_ffff), // non-canonical or kernel
            3 => 0x0000_1000_0000_0000 + (r % (1 << 40)),             // unmapped user memory
            _ => u64::MAX - r % 64,                                   // wraps past 2^64
        }
    }

    /// Any argument word.
    fn word(&mut self) -> u64 {
        let r = self.rng.next();
        match self.rng.below(8) {
            0 => 0,
            1 => r % 16,
            2 => r,
            3 => u64::MAX - r % 16,
            4 => 4096 * (r % 1024) + r % 2,
            5 => self.scratch + r % self.scratch_len,
            6 => 1 << (r % 64),
            _ => self.bad_pointer(),
        }
    }
}

/// Totals per kind of result.
#[derive(Default)]
struct Totals {
    ok: u32,
    /// Per error, in the order of [`Errno::ALL`].
    errors: [u32; Errno::ALL.len()],
    invalid: u32,
}

fn main(arg: u64) -> i64 {
    let scratch = [0xa5u8; 256];
    let mut mix = Mix {
        rng: Rng::new(arg),
        scratch: scratch.as_ptr() as u64,
        scratch_len: scratch.len() as u64,
    };
    let mut totals = Totals::default();

    for i in 0..CALLS {
        let number = loop {
            let n = if mix.rng.below(4) == 0 {
                mix.rng.below(NUMBERS)
            } else {
                mix.rng.below(DEFINED + 1)
            };
            if n != nr::EXIT && n != nr::WAIT && n != nr::WAIT_NOTIFY {
                break n;
            }
        };
        let mut args = [0; 6];
        for a in &mut args {
            *a = mix.word();
        }
        match number {
            nr::SLEEP => args[0] %= 3,
            nr::SHM => args[0] %= 64 << 10,
            // A name the kernel cannot read, or 0xa5 bytes: never a program's name.
            nr::SPAWN | nr::SPAWN_WITH if mix.rng.below(2) == 0 => args[0] = mix.bad_pointer(),
            nr::SPAWN | nr::SPAWN_WITH => args[0] = mix.scratch + mix.rng.below(mix.scratch_len),
            nr::WRITE if args[0] == 1 || args[0] == 2 => args[1] = mix.bad_pointer(),
            _ => {}
        }

        // SAFETY: the calls that could hurt this process are left out above (exit, wait, long
        // sleeps, spawns of real programs); MUNMAP can only remove regions this loop mapped and
        // never uses, and no call writes to memory the process uses. The IPC calls cannot
        // block: every endpoint the fuzzer can name is its own alone (`EPIPE`). It has no
        // children, so KILL finds nobody to kill.
        let ret = unsafe { raw_syscall(number, args) };
        if ret >= 0 {
            totals.ok += 1;
            continue;
        }
        let e = Errno(ret.wrapping_neg());
        match Errno::ALL.iter().position(|&d| d == e) {
            Some(k) => totals.errors[k] += 1,
            None => {
                if totals.invalid < SHOWN {
                    println!(
                        "sysfuzz: INVALID call {i}: nr {number} args {:#x} {:#x} {:#x} {:#x} {:#x} {:#x} -> {ret}",
                        args[0], args[1], args[2], args[3], args[4], args[5]
                    );
                }
                totals.invalid += 1;
            }
        }
    }
    black_box(&scratch);

    println!(
        "sysfuzz: seed {arg}, {CALLS} calls: ok {}, invalid {}",
        totals.ok, totals.invalid
    );
    for (e, count) in Errno::ALL.iter().zip(totals.errors) {
        println!("sysfuzz:   {e}: {count}");
    }
    if totals.invalid == 0 { 0 } else { 1 }
}

veridian_user_rt::entry!(main);
