//! `notify_test [mode]`: notifications.
//!
//! Mode 0 (the checks): a signal before a wait is kept and taken whole (bits ORed); `poll`
//! takes the bits without blocking; a wait on a notification nobody else holds fails with
//! `EPIPE`; a signal of 0 bits, a wait on an endpoint handle, and lines out of range are
//! refused; a child (`notify_test 1`) signals after a while and the wait wakes with its bits;
//! its later signals accumulate until taken (the child may run on while this process wakes,
//! so they come with the wake-up or at the next poll, never lost); and a user interrupt line: it binds line
//! [`LINE`] (a second binding is `EBUSY`) and blocks in `wait_notify` until the interrupt the
//! kernel test raises (the kernel test kills it if it never gets there). Exits with the number
//! of failed checks.
//!
//! Mode 1 (the child): sleeps 10 ms, signals bit 0x40 on its handle 0, then signals bits 1, 2
//! and 4 at once and exits 0.

#![no_std]
#![no_main]

use veridian_user_rt::checks::Failures;
use veridian_user_rt::{Errno, println, sys};

/// The user interrupt line the test binds.
const LINE: u64 = 3;
/// The bits the interrupt signals.
const IRQ_BITS: u64 = 0x100;

fn child() -> i64 {
    let _ = sys::sleep_ms(10);
    let a = sys::signal(0, 0x40);
    let b = sys::signal(0, 1)
        .and(sys::signal(0, 2))
        .and(sys::signal(0, 4));
    if a.is_ok() && b.is_ok() { 0 } else { 1 }
}

fn main(mode: u64) -> i64 {
    if mode == 1 {
        return child();
    }
    let mut fail = Failures::new("notify_test");
    let n = match sys::notification() {
        Ok(n) => n,
        Err(e) => {
            println!("notify_test: FAIL notification: {e}");
            return 1;
        }
    };
    // Alone: no one could ever signal it.
    let r = sys::wait_notify(n);
    fail.check(
        r == Err(Errno::EPIPE),
        format_args!("wait alone: {r:?}, expected EPIPE"),
    );
    let r = sys::signal(n, 0);
    fail.check(
        r == Err(Errno::EINVAL),
        format_args!("signal of 0 bits: {r:?}"),
    );
    let ep = sys::endpoint().unwrap_or(u64::MAX);
    let r = sys::wait_notify(ep);
    fail.check(
        r == Err(Errno::EBADF),
        format_args!("wait on an endpoint: {r:?}, expected EBADF"),
    );
    let r = sys::signal(ep, 1);
    fail.check(
        r == Err(Errno::EBADF),
        format_args!("signal an endpoint: {r:?}, expected EBADF"),
    );
    // Signals before the wait are kept, ORed.
    let r = sys::signal(n, 0x3).and(sys::signal(n, 0x8));
    fail.check(r.is_ok(), format_args!("signal: {r:?}"));
    let r = sys::wait_notify(n);
    fail.check(
        r == Ok(0xb),
        format_args!("wait after signals: {r:?}, expected Ok(0xb)"),
    );
    let r = sys::poll(n);
    fail.check(
        r == Ok(0),
        format_args!("poll after the wait took the bits: {r:?}"),
    );
    let r = sys::signal(n, 0x10).and_then(|()| sys::poll(n));
    fail.check(
        r == Ok(0x10),
        format_args!("poll: {r:?}, expected Ok(0x10)"),
    );

    // A child signals later: the wait blocks, then wakes with its bits.
    match sys::spawn_with("notify_test", 1, n) {
        Ok(pid) => {
            let first = sys::wait_notify(n).unwrap_or(0);
            fail.check(
                first & 0x40 != 0,
                format_args!("wait for the child: {first:#x}"),
            );
            let code = sys::wait(pid);
            fail.check(code == Ok(0), format_args!("child ended with {code:?}"));
            let rest = sys::poll(n).unwrap_or(0);
            fail.check(
                first | rest == 0x47 && first & rest == 0,
                format_args!("the child's bits: {first:#x} then {rest:#x}, expected 0x47 in all"),
            );
        }
        Err(e) => fail.check(false, format_args!("spawn the child: {e}")),
    }
    // The child is gone: alone again.
    let r = sys::wait_notify(n);
    fail.check(
        r == Err(Errno::EPIPE),
        format_args!("wait after the child ended: {r:?}"),
    );

    // A user interrupt line.
    let r = sys::irq_bind(n, 99, 1);
    fail.check(
        r == Err(Errno::EINVAL),
        format_args!("bind line 99: {r:?}, expected EINVAL"),
    );
    let r = sys::irq_bind(n, LINE, 0);
    fail.check(
        r == Err(Errno::EINVAL),
        format_args!("bind 0 bits: {r:?}, expected EINVAL"),
    );
    let r = sys::irq_bind(n, LINE, IRQ_BITS);
    fail.check(r.is_ok(), format_args!("bind line {LINE}: {r:?}"));
    let other = sys::notification().unwrap_or(u64::MAX);
    let r = sys::irq_bind(other, LINE, 1);
    fail.check(
        r == Err(Errno::EBUSY),
        format_args!("second binding: {r:?}, expected EBUSY"),
    );
    // Bound to a line: never EPIPE, the wait blocks until the interrupt.
    let got = sys::wait_notify(n);
    fail.check(
        got == Ok(IRQ_BITS),
        format_args!("interrupt bits {got:x?}, expected Ok({IRQ_BITS:#x})"),
    );
    println!("notify_test: {} failed checks", fail.count);
    fail.count
}

veridian_user_rt::entry!(main);
