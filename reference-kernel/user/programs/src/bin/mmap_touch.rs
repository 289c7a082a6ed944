//! `mmap_touch <MiB>`: maps `arg` MiB (8 if `arg` is 0) of anonymous memory, checks that every
//! page reads as zero, writes one byte per 4 KiB page, reads them all back, unmaps the region
//! and checks that the frames came back. Prints the free memory before, while mapped and
//! after; exits with 0 on success, 1 on a failed check (with a message), 2 for a bad `arg`.

#![no_std]
#![no_main]

use veridian_user_rt::abi::{layout, limits, prot};
use veridian_user_rt::{println, sys};

/// A page.
const PAGE: u64 = 4096;
/// A MiB.
const MIB: u64 = 1 << 20;
/// Size when `arg` is 0, in MiB: four 2 MiB huge-page candidates.
const DEFAULT_MIB: u64 = 8;

/// The byte written to page `i` (never 0, so a page that lost its write reads wrong).
fn pattern(i: u64) -> u8 {
    (i % 251) as u8 + 1
}

/// Free memory, or a message and `None`.
fn free(when: &str) -> Option<u64> {
    match sys::free_memory() {
        Ok(bytes) => {
            println!("mmap_touch: free memory {when}: {bytes} bytes");
            Some(bytes)
        }
        Err(e) => {
            println!("mmap_touch: FAIL free_memory {when}: {e}");
            None
        }
    }
}

fn main(arg: u64) -> i64 {
    let mib = if arg == 0 { DEFAULT_MIB } else { arg };
    let len = match mib.checked_mul(MIB) {
        Some(len) if len <= limits::MAX_MMAP => len,
        _ => {
            println!(
                "mmap_touch: {mib} MiB is over the limit of {} MiB",
                limits::MAX_MMAP / MIB
            );
            return 2;
        }
    };
    let pages = len / PAGE;

    let Some(before) = free("before") else {
        return 1;
    };
    let base = match sys::mmap(len, prot::READ | prot::WRITE) {
        Ok(addr) => addr,
        Err(e) => {
            println!("mmap_touch: FAIL mmap of {mib} MiB: {e}");
            return 1;
        }
    };
    println!("mmap_touch: {mib} MiB ({pages} pages) at {base:#x}");
    if base % PAGE != 0 || base < layout::USER_MIN || base.saturating_add(len) > layout::USER_END {
        println!("mmap_touch: FAIL region {base:#x}+{len:#x} is not page-aligned user memory");
        return 1;
    }
    let page = |i: u64| (base + i * PAGE) as *mut u8;

    // First touch is a read: every page must come up zeroed (first and last byte checked).
    for i in 0..pages {
        let p = page(i);
        // SAFETY: `p` and `p + PAGE - 1` lie in the region just mapped (readable, writable,
        // `pages` pages long), which nothing else uses; volatile keeps each access a real one.
        let (first, last) =
            unsafe { (p.read_volatile(), p.add(PAGE as usize - 1).read_volatile()) };
        if first != 0 || last != 0 {
            println!("mmap_touch: FAIL page {i} at {p:p} not zeroed: {first:#x} .. {last:#x}");
            return 1;
        }
    }
    for i in 0..pages {
        // SAFETY: as above.
        unsafe { page(i).write_volatile(pattern(i)) };
    }
    for i in 0..pages {
        // SAFETY: as above.
        let got = unsafe { page(i).read_volatile() };
        if got != pattern(i) {
            println!(
                "mmap_touch: FAIL page {i} reads {got:#x}, wrote {:#x}",
                pattern(i)
            );
            return 1;
        }
    }
    let Some(mapped) = free("while mapped") else {
        return 1;
    };
    println!(
        "mmap_touch: {} KiB in use while mapped",
        before.saturating_sub(mapped) / 1024
    );

    // SAFETY: the region is not used after this (the closure `page` is not called again).
    if let Err(e) = unsafe { sys::munmap(base, len) } {
        println!("mmap_touch: FAIL munmap: {e}");
        return 1;
    }
    let Some(after) = free("after munmap") else {
        return 1;
    };
    // The region's frames must come back. Some slack is allowed (page tables the kernel keeps,
    // other processes running at the same time), but less than half the region.
    if after.saturating_add(len / 2) < before {
        println!("mmap_touch: FAIL free memory {before} before, {after} after munmap: frames lost");
        return 1;
    }
    println!("mmap_touch: ok");
    0
}

veridian_user_rt::entry!(main);
