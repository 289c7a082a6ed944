//! `spin_cpus <n>`: yields `n` times (1000 if `arg` is 0), recording after each yield the CPU
//! it runs on in a bitmask; prints the mask and exits with 0 (1 if a call failed). Several
//! copies at once show whether processes run on every CPU.

#![no_std]
#![no_main]

use veridian_user_rt::{println, sys};

/// Yields when `arg` is 0.
const DEFAULT_YIELDS: u64 = 1000;

fn main(arg: u64) -> i64 {
    let n = if arg == 0 { DEFAULT_YIELDS } else { arg };
    let pid = sys::getpid().unwrap_or(0);
    let mut mask = 0u64;
    let mut above_63 = false;
    for _ in 0..n {
        if let Err(e) = sys::yield_now() {
            println!("spin_cpus: FAIL yield: {e}");
            return 1;
        }
        match sys::cpu() {
            Ok(cpu) if cpu < 64 => mask |= 1 << cpu,
            Ok(_) => above_63 = true,
            Err(e) => {
                println!("spin_cpus: FAIL cpu: {e}");
                return 1;
            }
        }
    }
    println!(
        "spin_cpus: pid {pid}, {n} yields, cpu mask {mask:#x} ({} CPUs){}",
        mask.count_ones(),
        if above_63 { ", and CPUs above 63" } else { "" }
    );
    0
}

veridian_user_rt::entry!(main);
