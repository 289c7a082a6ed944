//! Kernel tests of user mode: processes built from the programs in `reference-kernel/user/`,
//! their system calls, faults and memory.

use alloc::vec::Vec;

use crate::mm::frames;
use crate::task::process::{self, Child, KILLED, ProcessError};

/// Spawns `name` with `arg` from the kernel.
fn start(name: &str, arg: u64) -> Child {
    process::spawn(name, arg, 0).unwrap_or_else(|e| panic!("spawn {name}: {e}"))
}

/// Runs `name` with `arg` to its end; its exit code and the frames its space gave back.
fn run(name: &str, arg: u64) -> (i64, u64) {
    let child = start(name, arg);
    let code = child.wait();
    (code, child.process.frames_returned())
}

/// Free frame bytes before and after `f` (after one warm-up run of `f`, so that caches that
/// grow once — kernel stacks, heap chunks — are already grown).
fn frames_back_after(f: impl Fn()) -> (usize, usize) {
    f();
    let before = frames::free_bytes();
    f();
    (before, frames::free_bytes())
}

pub fn user_hello_exits_cleanly() {
    let (code, frames) = run("hello", 7);
    assert_eq!(code, 0, "hello's exit code");
    assert!(frames > 0, "the address space gave back no frames");
}

pub fn user_processes_run_on_every_cpu() {
    let cpus = crate::arch::x86_64::percpu::online() as usize;
    let children: Vec<Child> = (0..cpus * 3).map(|_| start("spin_cpus", 200)).collect();
    let mut ran_on = 0u64;
    for c in &children {
        assert_eq!(c.wait(), 0, "spin_cpus failed");
        ran_on |= c.thread.thread().ran_on();
    }
    let all = if cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << cpus) - 1
    };
    assert_eq!(ran_on, all, "processes ran on CPUs {ran_on:#b} of {all:#b}");
}

pub fn user_faults_kill_only_the_process() {
    // 0 null read, 1 write to .rodata, 2 #GP, 3 ud2, 4 divide by zero, 5 stack overflow into
    // the guard page, 6 execute in a data page, 7 privileged instruction.
    for kind in 0..8 {
        let (before, after) = frames_back_after(|| {
            let (code, _) = run("fault", kind);
            assert_eq!(code, KILLED, "fault {kind}: exit code");
        });
        assert_eq!(before, after, "fault {kind}: frames not all returned");
    }
    // The kernel goes on: a normal process still runs.
    assert_eq!(run("hello", 0).0, 0);
}

pub fn user_bad_pointers_get_efault() {
    let (code, _) = run("badptr", 0);
    assert_eq!(code, 0, "badptr reported {code} failed checks");
}

pub fn user_demand_paging_and_munmap() {
    let promoted = crate::mm::aspace::promotions();
    let (before, after) = frames_back_after(|| {
        // 8 MiB, or an eighth of the free memory on a small machine (at least 1 MiB).
        let mib = ((frames::free_bytes() / 8) >> 20).clamp(1, 8) as u64;
        let child = start("mmap_touch", mib);
        assert_eq!(child.wait(), 0, "mmap_touch failed");
    });
    assert_eq!(before, after, "frames not all returned");
    // Two runs touched every page of at least one 2 MiB-aligned block each (the region starts
    // at MMAP_BASE, 2 MiB-aligned, and is at least 2 MiB on any machine that has 16 MiB free).
    if frames::free_bytes() >= 16 << 20 {
        assert!(
            crate::mm::aspace::promotions() >= promoted + 2,
            "no 2 MiB block was promoted to a huge page"
        );
    }
}

pub fn user_spawn_and_wait() {
    let (code, _) = run("spawner", 4);
    assert_eq!(code, 0, "spawner failed");
}

pub fn user_syscall_fuzzer_survives() {
    let (before, after) = frames_back_after(|| {
        let (code, _) = run("sysfuzz", 0x5eed);
        assert_eq!(code, 0, "sysfuzz saw an invalid result");
    });
    assert_eq!(before, after, "frames not all returned");
}

pub fn user_fuzzers_on_every_cpu() {
    let cpus = crate::arch::x86_64::percpu::online() as u64;
    let children: Vec<Child> = (0..cpus).map(|i| start("sysfuzz", 1000 + i)).collect();
    for c in &children {
        assert_eq!(c.wait(), 0, "sysfuzz saw an invalid result");
    }
}

pub fn user_bad_images_refused() {
    assert_eq!(
        process::spawn("no-such-program", 0, 0).err(),
        Some(ProcessError::NoSuchProgram)
    );
    let hello = process::image("hello").expect("hello is embedded");
    let mut bad = hello.to_vec();
    bad[4] = 1; // ELFCLASS32
    match process::spawn_image("bad", &bad, 0, 0) {
        Err(ProcessError::BadImage(m)) => assert!(!m.is_empty()),
        Err(e) => panic!("expected a bad-image error, got {e}"),
        Ok(_) => panic!("a 32-bit image was accepted"),
    }
    // Headers and program headers only: every segment's bytes are missing.
    let truncated = &hello[..0x200];
    assert!(
        matches!(
            process::spawn_image("bad", truncated, 0, 0),
            Err(ProcessError::BadImage(_))
        ),
        "a truncated image was accepted"
    );
}
