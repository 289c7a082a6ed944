//! `spawner <n>`: spawns `hello` with arguments 0..n (4 if `arg` is 0, at most 64), all at
//! once, then waits for each and checks it exited with 0; spawns `fault 0` and checks that
//! `wait` returns `KILLED`; checks that `wait` on a process that is not a child (itself, an
//! unused pid, a child already waited for) returns `-ESRCH` and that spawning an unknown name
//! returns `-ENOENT`. Prints one line per failed check and exits with the number of failures.

#![no_std]
#![no_main]

use veridian_user_rt::abi::KILLED;
use veridian_user_rt::checks::Failures;
use veridian_user_rt::{Errno, println, sys};

/// Children of the first check when `arg` is 0.
const DEFAULT_CHILDREN: u64 = 4;
/// Most children at once (the size of the pid table).
const MAX_CHILDREN: usize = 64;

fn main(arg: u64) -> i64 {
    let n = if arg == 0 { DEFAULT_CHILDREN } else { arg };
    let n = n.min(MAX_CHILDREN as u64) as usize;
    let mut fail = Failures::new("spawner");

    let mut pids = [0u64; MAX_CHILDREN];
    let mut started = 0;
    for (i, pid) in pids.iter_mut().enumerate().take(n) {
        match sys::spawn("hello", i as u64) {
            Ok(p) => {
                *pid = p;
                started += 1;
            }
            Err(e) => {
                fail.check(false, format_args!("spawn hello {i}: {e}"));
                break;
            }
        }
    }
    for (i, &pid) in pids[..started].iter().enumerate() {
        let code = sys::wait(pid);
        fail.check(
            code == Ok(0),
            format_args!("hello {i} (pid {pid}) ended with {code:?}, expected Ok(0)"),
        );
    }
    if let Some(&reaped) = pids[..started].first() {
        let code = sys::wait(reaped);
        fail.check(
            code == Err(Errno::ESRCH),
            format_args!("second wait for pid {reaped}: {code:?}, expected ESRCH"),
        );
    }

    match sys::spawn("fault", 0) {
        Ok(pid) => {
            let code = sys::wait(pid);
            fail.check(
                code == Ok(KILLED),
                format_args!("fault 0 (pid {pid}) ended with {code:?}, expected Ok({KILLED})"),
            );
        }
        Err(e) => fail.check(false, format_args!("spawn fault 0: {e}")),
    }

    match sys::getpid() {
        Ok(me) => {
            let code = sys::wait(me);
            fail.check(
                code == Err(Errno::ESRCH),
                format_args!("wait for itself: {code:?}, expected ESRCH"),
            );
        }
        Err(e) => fail.check(false, format_args!("getpid: {e}")),
    }
    let code = sys::wait(u64::MAX);
    fail.check(
        code == Err(Errno::ESRCH),
        format_args!("wait for pid u64::MAX: {code:?}, expected ESRCH"),
    );

    let pid = sys::spawn("no-such-program", 0);
    fail.check(
        pid == Err(Errno::ENOENT),
        format_args!("spawn no-such-program: {pid:?}, expected ENOENT"),
    );

    println!("spawner: {started} children, {} failed checks", fail.count);
    fail.count
}

veridian_user_rt::entry!(main);
