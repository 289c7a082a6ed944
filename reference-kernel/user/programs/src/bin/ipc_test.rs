//! `ipc_test <calls>`: checks synchronous IPC against `ipc_echo`: bad handles are refused
//! (`EBADF`), a call nobody can answer fails at once (`EPIPE`), `<calls>` calls (1000 if 0)
//! come back echoed, a one-way `send` is taken, a server that ends without replying makes
//! the call fail with `EPIPE` and exits normally, and a handle given to `spawn_with` must be
//! the caller's. Prints one line per failed check and exits with the number of failures.

#![no_std]
#![no_main]

use veridian_user_rt::checks::Failures;
use veridian_user_rt::{Errno, println, sys};

/// `ipc_echo`'s protocol.
const QUIT: u64 = u64::MAX;
const ECHO_MARK: u64 = 0x5a5a_5a5a;

fn main(arg: u64) -> i64 {
    let calls = if arg == 0 { 1000 } else { arg };
    let mut fail = Failures::new("ipc_test");
    let h = match sys::endpoint() {
        Ok(h) => h,
        Err(e) => {
            println!("ipc_test: FAIL endpoint: {e}");
            return 1;
        }
    };
    for bad in [h + 1, 15, 16, u64::MAX] {
        let r = sys::call(bad, [1, 2, 3, 4]);
        fail.check(
            r == Err(Errno::EBADF),
            format_args!("call on handle {bad}: {r:?}, expected EBADF"),
        );
    }
    let r = sys::spawn_with("ipc_echo", 0, h + 1);
    fail.check(
        r == Err(Errno::EBADF),
        format_args!("spawn_with a handle not ours: {r:?}, expected EBADF"),
    );
    // Nobody else holds the endpoint: no one could ever answer.
    let r = sys::call(h, [1, 2, 3, 4]);
    fail.check(
        r == Err(Errno::EPIPE),
        format_args!("call with no server: {r:?}, expected EPIPE"),
    );

    let server = match sys::spawn_with("ipc_echo", 0, h) {
        Ok(pid) => pid,
        Err(e) => {
            println!("ipc_test: FAIL spawn_with ipc_echo: {e}");
            return fail.count + 1;
        }
    };
    let mut wrong = 0;
    for i in 0..calls {
        let msg = [i, i.wrapping_mul(3), !i, i << 7];
        let expected = [i + 1, msg[1], msg[2], msg[3] ^ ECHO_MARK];
        match sys::call(h, msg) {
            Ok(reply) if reply == expected => {}
            other => {
                if wrong < 4 {
                    println!("ipc_test: FAIL call {i}: {other:?}, expected Ok({expected:?})");
                }
                wrong += 1;
            }
        }
    }
    fail.check(wrong == 0, format_args!("{wrong} of {calls} calls wrong"));
    let r = sys::send(h, [10, 20, 30, 40]);
    fail.check(r == Ok(()), format_args!("send: {r:?}"));
    let r = sys::call(h, [41, 0, 0, 0]);
    fail.check(
        r == Ok([42, 0, 0, ECHO_MARK]),
        format_args!("call after send: {r:?}"),
    );
    let r = sys::call(h, [QUIT, 0, 0, 0]);
    fail.check(
        r == Err(Errno::EPIPE),
        format_args!("call the server leaves unanswered: {r:?}, expected EPIPE"),
    );
    let code = sys::wait(server);
    fail.check(code == Ok(0), format_args!("ipc_echo ended with {code:?}"));
    let r = sys::recv(h);
    fail.check(
        r == Err(Errno::EPIPE),
        format_args!("recv after the server ended: {r:?}, expected EPIPE"),
    );
    println!("ipc_test: {calls} calls, {} failed checks", fail.count);
    fail.count
}

veridian_user_rt::entry!(main);
