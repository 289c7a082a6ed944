//! Hosted green threads on the x86_64 context switch: ping-pong, values preserved across
//! switches (including callee-saved registers and FP control words), guard page present,
//! panics carried back, and the kernel variant `switch_stacks` driven directly.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::hint::black_box;

use veridian_sched::arch::x86_64::{prepare_stack, switch_stacks};
use veridian_sched::hosted::green::{GreenThread, Resumed, Stack};

/// Two sides pass a counter back and forth; each side keeps many live locals (more than the
/// callee-saved registers can hold, so some live in rbx/rbp/r12–r15 and some on the stack)
/// and checks them after every switch.
#[test]
fn ping_pong_preserves_values() {
    const ROUNDS: usize = 10_000;
    let mut t = GreenThread::new(64 * 1024, |y, mut v| {
        let locals: [u64; 12] = std::array::from_fn(|i| black_box(0xA5A5_0000 + i as u64));
        let (a, b, c, d, e, f) = (
            black_box(11u64),
            black_box(22u64),
            black_box(33u64),
            black_box(44u64),
            black_box(55u64),
            black_box(66u64),
        );
        for round in 0..ROUNDS {
            assert_eq!(v, 2 * round, "green side got a wrong value");
            v = y.suspend(v + 1);
            assert_eq!((a, b, c, d, e, f), (11, 22, 33, 44, 55, 66));
            for (i, l) in locals.iter().enumerate() {
                assert_eq!(*l, 0xA5A5_0000 + i as u64);
            }
        }
        v + 1000
    })
    .unwrap();
    let (p, q, r, s) = (
        black_box(0x1111u64),
        black_box(0x2222u64),
        black_box(0x3333u64),
        black_box(0x4444u64),
    );
    let mut v = 0;
    for round in 0..ROUNDS {
        match t.resume(v).unwrap() {
            Resumed::Yielded(x) => {
                assert_eq!(x, 2 * round + 1);
                v = x + 1;
            }
            Resumed::Finished(_) => panic!("finished early"),
        }
        assert_eq!((p, q, r, s), (0x1111, 0x2222, 0x3333, 0x4444));
    }
    assert_eq!(t.resume(v).unwrap(), Resumed::Finished(2 * ROUNDS + 1000));
    assert!(t.is_finished());
    assert!(t.resume(0).is_err());
}

/// Floats in flight across switches, and each side's rounding mode (an MXCSR control field)
/// kept apart: the green side switches to round-toward-zero, the caller must not see it.
#[test]
fn fp_values_and_mxcsr_control_preserved() {
    use std::arch::x86_64::{_MM_ROUND_MASK, _MM_ROUND_TOWARD_ZERO};
    fn mxcsr() -> u32 {
        let mut m = 0u32;
        // SAFETY: `stmxcsr` writes 4 bytes to our local.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &raw mut m, options(nostack)) };
        m
    }
    fn set_mxcsr(m: u32) {
        // SAFETY: loading a valid MXCSR value (reserved bits from a value we read).
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &raw const m, options(nostack)) };
    }
    let before = mxcsr();
    let mut t = GreenThread::new_preserving_fp_control(64 * 1024, move |y, _| {
        let x = black_box(1.5f64);
        set_mxcsr((mxcsr() & !_MM_ROUND_MASK) | _MM_ROUND_TOWARD_ZERO);
        y.suspend(0);
        // Our own rounding mode came back with us.
        assert_eq!(mxcsr() & _MM_ROUND_MASK, _MM_ROUND_TOWARD_ZERO);
        assert_eq!(x * 2.0, 3.0);
        set_mxcsr(before);
        1
    })
    .unwrap();
    let z = black_box(2.25f64);
    assert_eq!(t.resume(0).unwrap(), Resumed::Yielded(0));
    assert_eq!(mxcsr(), before, "the green thread's rounding mode leaked");
    assert_eq!(z * 2.0, 4.5);
    assert_eq!(t.resume(0).unwrap(), Resumed::Finished(1));
}

/// The x87 control word travels with each green thread as MXCSR does (the `fldcw` path of
/// `switch_stacks_fp`), and a new thread starts with its first resumer's.
#[test]
fn x87_control_word_preserved() {
    fn fcw() -> u16 {
        let mut w = 0u16;
        // SAFETY: `fnstcw` writes 2 bytes to our local.
        unsafe { std::arch::asm!("fnstcw [{}]", in(reg) &raw mut w, options(nostack)) };
        w
    }
    fn set_fcw(w: u16) {
        // SAFETY: loading a valid control word (one we read, precision bits changed).
        unsafe { std::arch::asm!("fldcw [{}]", in(reg) &raw const w, options(nostack)) };
    }
    let before = fcw();
    let single = before & !0x0300; // precision control = 24-bit
    let mut t = GreenThread::new_preserving_fp_control(64 * 1024, move |y, _| {
        assert_eq!(
            fcw(),
            before,
            "a new thread inherits its resumer's control word"
        );
        set_fcw(single);
        y.suspend(0);
        assert_eq!(fcw(), single, "our own control word came back with us");
        set_fcw(before);
        1
    })
    .unwrap();
    assert_eq!(t.resume(0).unwrap(), Resumed::Yielded(0));
    assert_eq!(fcw(), before, "the green thread's control word leaked");
    assert_eq!(t.resume(0).unwrap(), Resumed::Finished(1));
}

/// The page below every stack is mapped with no access (checked in /proc/self/maps).
#[test]
fn guard_page_present() {
    let stack = Stack::new(16 * 1024).unwrap();
    let guard = stack.guard();
    let usable = stack.usable();
    assert_eq!(guard.end, usable.start);
    assert!(usable.end - usable.start >= 16 * 1024);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let perms_at = |addr: usize| {
        maps.lines()
            .find_map(|line| {
                let mut parts = line.split_whitespace();
                let range = parts.next()?;
                let perms = parts.next()?;
                let (lo, hi) = range.split_once('-')?;
                let lo = usize::from_str_radix(lo, 16).ok()?;
                let hi = usize::from_str_radix(hi, 16).ok()?;
                (lo <= addr && addr < hi).then(|| perms.to_string())
            })
            .unwrap_or_default()
    };
    assert_eq!(
        &perms_at(guard.start)[..3],
        "---",
        "guard page is accessible"
    );
    assert_eq!(&perms_at(usable.start)[..2], "rw");
    assert_eq!(&perms_at(usable.end - 1)[..2], "rw");
}

#[test]
fn panic_is_carried_to_the_resumer() {
    let mut t = GreenThread::new(64 * 1024, |y, _| {
        y.suspend(1);
        panic!("boom in green thread");
    })
    .unwrap();
    assert_eq!(t.resume(0).unwrap(), Resumed::Yielded(1));
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.resume(0))).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"boom in green thread"));
    assert!(t.is_finished());
}

#[test]
fn dropping_suspended_and_unstarted_threads() {
    let mut t = GreenThread::new(16 * 1024, |y, _| {
        let v = std::hint::black_box(Box::new([1, 2, 3]));
        y.suspend(v.len());
        0
    })
    .unwrap();
    assert_eq!(t.resume(0).unwrap(), Resumed::Yielded(3));
    drop(t); // leaks its stack (documented), must not crash
    let unstarted = GreenThread::new(16 * 1024, |_, _| 0).unwrap();
    drop(unstarted);
}

/// Nested: a green thread resumes another green thread.
#[test]
fn nested_green_threads() {
    let mut outer = GreenThread::new(64 * 1024, |y, _| {
        let mut inner = GreenThread::new(64 * 1024, |y2, v| y2.suspend(v * 2) + 1).unwrap();
        let a = match inner.resume(21).unwrap() {
            Resumed::Yielded(a) => a,
            Resumed::Finished(_) => unreachable!(),
        };
        let b = y.suspend(a);
        match inner.resume(b).unwrap() {
            Resumed::Finished(c) => c,
            Resumed::Yielded(_) => unreachable!(),
        }
    })
    .unwrap();
    assert_eq!(outer.resume(0).unwrap(), Resumed::Yielded(42));
    assert_eq!(outer.resume(99).unwrap(), Resumed::Finished(100));
}

static mut MAIN_SP: usize = 0;
static mut THREAD_SP: usize = 0;
static mut TRACE: [usize; 3] = [0; 3];

extern "C" fn kernel_style_thread(arg: usize) -> ! {
    // SAFETY: single-threaded test; the statics are only touched by this test's two contexts,
    // one at a time.
    unsafe {
        TRACE[0] = arg;
        switch_stacks(&raw mut THREAD_SP, MAIN_SP);
        TRACE[1] = arg + 1;
        switch_stacks(&raw mut THREAD_SP, MAIN_SP);
    }
    unreachable!("resumed after the last switch")
}

/// The kernel variant (no FP state) with a hand-prepared stack, as a kernel uses it.
#[test]
fn kernel_switch_routine_directly() {
    let stack = Stack::new(32 * 1024).unwrap();
    let usable = stack.usable();
    // SAFETY: the usable range of a fresh mapping that lives until the end of the test.
    let sp = unsafe {
        prepare_stack(
            usable.start as *mut u8,
            usable.end as *mut u8,
            kernel_style_thread,
            40,
        )
    }
    .unwrap();
    assert_eq!(sp % 16, 0);
    assert!(usable.contains(&sp));
    // Too small a stack is refused.
    // SAFETY: nothing is written when refused (the range is too small to hold the frame).
    let small = unsafe {
        prepare_stack(
            usable.start as *mut u8,
            (usable.start + 16) as *mut u8,
            kernel_style_thread,
            0,
        )
    };
    assert!(small.is_none());
    let keep = black_box(0xDEADu64);
    // SAFETY: `sp` is a fresh prepared stack; the thread switches back to `MAIN_SP`, which the
    // routine stores before switching. Single-threaded use of the statics.
    unsafe {
        THREAD_SP = sp;
        switch_stacks(&raw mut MAIN_SP, THREAD_SP);
        assert_eq!(TRACE[0], 40);
        switch_stacks(&raw mut MAIN_SP, THREAD_SP);
        assert_eq!(TRACE[1], 41);
    }
    assert_eq!(keep, 0xDEAD);
}
