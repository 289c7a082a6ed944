//! `badptr`: passes bad pointers to every pointer-taking system call (`write`'s buffer,
//! `spawn`'s name, `wait`'s status) and checks that each call fails with the right error instead of faulting
//! the process or the kernel. Prints one line per failed check and a summary; exits with the
//! number of failures.
//!
//! Expected errors:
//! - `-EFAULT` for every range that is not wholly readable user memory: null, below
//!   `USER_MIN`, unmapped user memory, the kernel half, non-canonical addresses, ranges that
//!   start in mapped memory and run into unmapped or non-canonical memory, and ranges whose end
//!   wraps past 2^64. Each of these uses a length the call accepts (1 to 16 bytes).
//! - `-EINVAL` where the length itself is out of range (`write` over `MAX_WRITE` bytes, a name
//!   over `MAX_NAME` bytes), given with a valid pointer: the length is wrong whatever memory is
//!   there, and a kernel must reject it rather than write part of it.
//! - `-EFAULT` for `wait` with a status pointer outside the user half, null, below
//!   `USER_MIN`, unmapped, or into the program's read-only code (a `hello` child is spawned
//!   for each: the child is reaped and its code lost).
//! - `-ENOENT` for a name in valid, never-touched `mmap` memory (zeros): the kernel's copy must
//!   page it in like any first touch, not report `-EFAULT`.

#![no_std]
#![no_main]

use veridian_user_rt::abi::{errno, layout, limits, nr, prot};
use veridian_user_rt::raw::raw_syscall;
use veridian_user_rt::{println, sys};

/// A page.
const PAGE: u64 = 4096;

/// One check: a call with its arguments and the result it must return.
struct Check {
    /// The call, for the failure message.
    call: &'static str,
    /// What the arguments are.
    what: &'static str,
    nr: u64,
    args: [u64; 6],
    expect: i64,
}

/// `write(1, addr, len)`.
fn write(what: &'static str, addr: u64, len: u64, expect: i64) -> Check {
    Check {
        call: "write",
        what,
        nr: nr::WRITE,
        args: [1, addr, len, 0, 0, 0],
        expect,
    }
}

/// `spawn(addr, len, 0)`.
fn spawn(what: &'static str, addr: u64, len: u64, expect: i64) -> Check {
    Check {
        call: "spawn",
        what,
        nr: nr::SPAWN,
        args: [addr, len, 0, 0, 0, 0],
        expect,
    }
}

/// Runs `check`; prints a line and returns false if the result is not the expected one.
fn run(check: &Check) -> bool {
    // SAFETY: WRITE and SPAWN only read the memory their arguments name, and the arguments are
    // the point: the kernel must validate them. A SPAWN that wrongly succeeded starts a child,
    // which is reported below and otherwise harmless.
    let got = unsafe { raw_syscall(check.nr, check.args) };
    if got == check.expect {
        return true;
    }
    println!(
        "badptr: FAIL {}({:#x}, {:#x}, {:#x}) [{}]: got {got}, expected {}",
        check.call, check.args[0], check.args[1], check.args[2], check.what, check.expect
    );
    false
}

fn main(_arg: u64) -> i64 {
    let efault = -errno::EFAULT;
    let einval = -errno::EINVAL;

    // Two fresh pages of valid memory, never touched by this program: the kernel pages them in
    // when it reads them. The page after them is unmapped (the only region this process has).
    let region = match sys::mmap(2 * PAGE, prot::READ | prot::WRITE) {
        Ok(addr) => addr,
        Err(e) => {
            println!("badptr: FAIL mmap of 2 pages: {e}");
            return 1;
        }
    };
    let region_end = region + 2 * PAGE;
    // The top of the stack is mapped (the entry path pushed a return address there); the
    // addresses above `STACK_TOP` are not.
    let stack_top = layout::STACK_TOP;

    // Bad ranges: (what, address, length), each wrong for every pointer-taking call.
    let bad: [(&str, u64, u64); 12] = [
        ("null", 0, 1),
        ("below USER_MIN", 0x1000, 1),
        ("unmapped user memory", 0x0000_1000_0000_0000, 1),
        ("kernel half (start)", 0xffff_8000_0000_0000, 1),
        ("kernel image", 0xffff_ffff_8000_0000, 1),
        ("non-canonical (USER_END)", layout::USER_END, 1),
        ("non-canonical (bit 63 only)", 0x8000_0000_0000_0000, 1),
        ("last user byte into non-canonical", layout::USER_END - 1, 2),
        ("stack top into unmapped", stack_top - 8, 16),
        ("mmap region into unmapped", region_end - 8, 16),
        ("wraps past 2^64", u64::MAX - 7, 16),
        ("non-canonical into kernel half", 0xffff_7fff_ffff_fff8, 16),
    ];

    let mut checks = 0i64;
    let mut failed = 0i64;
    let mut count = |ok: bool| {
        checks += 1;
        if !ok {
            failed += 1;
        }
    };

    // First, while no call has read the region: a name in valid, never-touched memory holding
    // zeros is no program's name, not a fault.
    count(run(&spawn(
        "name in untouched mmap memory",
        region,
        8,
        -errno::ENOENT,
    )));

    for (what, addr, len) in bad {
        count(run(&write(what, addr, len, efault)));
        count(run(&spawn(what, addr, len, efault)));
    }

    // Lengths out of range, with a valid pointer (the two fresh pages).
    count(run(&write(
        "len MAX_WRITE + 1",
        region,
        limits::MAX_WRITE + 1,
        einval,
    )));
    count(run(&write("len u64::MAX", region, u64::MAX, einval)));
    count(run(&spawn(
        "len MAX_NAME + 1",
        region,
        limits::MAX_NAME + 1,
        einval,
    )));
    count(run(&spawn("len u64::MAX", region, u64::MAX, einval)));

    // WAIT's status pointer: a bad one is -EFAULT (the child is reaped: its code is lost, so
    // each check spawns a child of its own).
    for (what, addr, _) in bad.iter().take(7) {
        let ok = match sys::spawn("hello", 0) {
            Ok(pid) => {
                // SAFETY: a bad pointer on purpose: the kernel checks it and refuses it.
                let r = unsafe { raw_syscall(nr::WAIT, [pid, *addr, 0, 0, 0, 0]) };
                if r != efault {
                    println!("badptr: FAIL wait with status {what}: {r}, expected {efault}");
                }
                r == efault
            }
            Err(e) => {
                println!("badptr: FAIL spawn hello: {e}");
                false
            }
        };
        count(ok);
    }
    // A read-only status pointer: the program's own code.
    let code_addr = main as *const () as u64;
    let ok = match sys::spawn("hello", 0) {
        // SAFETY: as above.
        Ok(pid) => unsafe { raw_syscall(nr::WAIT, [pid, code_addr, 0, 0, 0, 0]) == efault },
        Err(_) => false,
    };
    if !ok {
        println!("badptr: FAIL wait with a status pointer into read-only code");
    }
    count(ok);

    // SAFETY: nothing refers to the region any more (only its address was passed to calls).
    if let Err(e) = unsafe { sys::munmap(region, 2 * PAGE) } {
        println!("badptr: FAIL munmap: {e}");
        count(false);
    }

    println!("badptr: {checks} checks, {failed} failed");
    failed
}

veridian_user_rt::entry!(main);
