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
    long_messages(&mut fail);
    println!("ipc_test: {calls} calls, {} failed checks", fail.count);
    fail.count
}

/// A `call` on `h` with the long-message descriptor `desc` as given (for the refusals); the
/// raw result.
fn call_desc(h: u64, mut desc: [u64; 5]) -> i64 {
    // SAFETY: the kernel reads the descriptor (ours, alive for the call) and the bytes it
    // names, which it refuses to read here (too long, or at an address not mapped); the
    // receive part is empty and the length word is the descriptor's own.
    unsafe {
        veridian_user_rt::raw::raw_syscall(
            veridian_user_rt::abi::nr::CALL,
            [h, 0, 0, 0, 0, desc.as_mut_ptr() as u64],
        )
    }
}

/// The long-message buffers (in `.bss`).
static mut LONG: [[u8; 64 << 10]; 2] = [[0; 64 << 10]; 2];

/// Long messages against `ipc_echo 2` (bytes come back reversed): sizes from 0 to the 64 KiB
/// limit, a receive buffer too small (the full length is reported, the prefix copied), a
/// length above the limit (`EINVAL`), a bad buffer pointer (`EFAULT`), and a register-only
/// call to the same server afterwards (no bytes).
fn long_messages(fail: &mut Failures) {
    // SAFETY: the process has one thread and this is the only reference to LONG.
    let [out, back] = unsafe { (&raw mut LONG).as_mut_unchecked() };
    let Ok(h) = sys::endpoint() else {
        fail.check(false, format_args!("endpoint for long messages"));
        return;
    };
    let server = match sys::spawn_with("ipc_echo", 2, h) {
        Ok(pid) => pid,
        Err(e) => {
            fail.check(false, format_args!("spawn ipc_echo 2: {e}"));
            return;
        }
    };
    for (i, b) in out.iter_mut().enumerate() {
        *b = (i * 7 + i / 256) as u8;
    }
    for len in [0usize, 1, 100, 4096, 4097, 65536] {
        back.fill(0);
        let r = sys::call_with(h, [len as u64, 0, 0, 0], &out[..len], back);
        let ok = matches!(r, Ok((reply, n)) if reply[0] == len as u64 + 1 && n == len)
            && back[..len].iter().eq(out[..len].iter().rev());
        fail.check(ok, format_args!("long call of {len} bytes: {r:?}"));
    }
    // A receive buffer too small: the full length, the first 10 bytes.
    let mut small = [0u8; 10];
    let r = sys::call_with(h, [7, 0, 0, 0], &out[..300], &mut small);
    let ok = matches!(r, Ok((_, 300))) && small.iter().eq(out[..300].iter().rev().take(10));
    fail.check(ok, format_args!("long call into a 10-byte buffer: {r:?}"));
    // Too long: one byte over the limit; bytes at an address that is not the program's.
    let big = [0u8; 1];
    let r = call_desc(h, [big.as_ptr() as u64, (64 << 10) + 1, 0, 0, 0]);
    fail.check(
        r == -22,
        format_args!("a long message above the limit: {r}, expected -EINVAL"),
    );
    let r = call_desc(h, [0x10, 8, 0, 0, 0]);
    fail.check(
        r == -14,
        format_args!("bytes at address 0x10: {r}, expected -EFAULT"),
    );
    let r = sys::call(h, [41, 0, 0, 0]);
    fail.check(
        r == Ok([42, 0, 0, ECHO_MARK]),
        format_args!("register-only call: {r:?}"),
    );
    let _ = sys::call(h, [QUIT, 0, 0, 0]);
    let code = sys::wait(server);
    fail.check(
        code == Ok(0),
        format_args!("ipc_echo 2 ended with {code:?}"),
    );
}

veridian_user_rt::entry!(main);
