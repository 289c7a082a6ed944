//! `ipc_echo`: an IPC server on its handle 0 (given by its parent with `spawn_with`). It
//! answers each call with `[m0 + 1, m1, m2, m3 ^ ECHO_MARK]` and ends without replying when
//! `m0` is [`QUIT`] (its caller then gets `EPIPE`). Before serving it checks that a handle it
//! was not given is refused (`EBADF`). Exit code: 0, or 2 when that check failed, 3 when a
//! receive failed.

#![no_std]
#![no_main]

use veridian_user_rt::{Errno, println, sys};

/// Ends the server (no reply).
pub const QUIT: u64 = u64::MAX;
/// Mixed into the last word of every reply.
pub const ECHO_MARK: u64 = 0x5a5a_5a5a;

fn main(_arg: u64) -> i64 {
    // Handle 1 names nothing in this process (the parent's handles are its own).
    let refused = sys::recv(1);
    if refused != Err(Errno::EBADF) {
        println!("ipc_echo: FAIL recv on handle 1: {refused:?}, expected EBADF");
        return 2;
    }
    let mut msg = match sys::recv(0) {
        Ok(m) => m,
        Err(e) => {
            println!("ipc_echo: recv: {e}");
            return 3;
        }
    };
    loop {
        if msg[0] == QUIT {
            return 0;
        }
        let reply = [msg[0].wrapping_add(1), msg[1], msg[2], msg[3] ^ ECHO_MARK];
        msg = match sys::reply_recv(0, reply) {
            Ok(m) => m,
            Err(e) => {
                println!("ipc_echo: reply_recv: {e}");
                return 3;
            }
        };
    }
}

veridian_user_rt::entry!(main);
