//! `ipc_echo [mode]`: an IPC server on its handle 0 (given by its parent with `spawn_with`).
//!
//! Mode 0: answers each call with `[m0 + 1, m1, m2, m3 ^ ECHO_MARK]` and ends without replying
//! when `m0` is [`QUIT`] (its caller then gets `EPIPE`), or when every client is gone (a
//! receive fails with `EPIPE`). Before serving it checks that a handle it was not given is
//! refused (`EBADF`; the parent gives one handle only). Exit code: 0, or 2 when that check
//! failed, 3 when a receive failed otherwise.
//!
//! Mode 2 (long messages): answers each call with the words echoed as in mode 0 and the bytes
//! that came with it reversed (up to 64 KiB); ends as mode 0.
//!
//! Mode 1 ("swallow", for the kill tests): receives one message and never replies: it waits on
//! the notification at its handle 1, which nobody signals, until it is killed. Exit code 4 if
//! that wait ever returns.

#![no_std]
#![no_main]

use veridian_user_rt::{Errno, println, sys};

/// Ends the server (no reply).
pub const QUIT: u64 = u64::MAX;
/// Mixed into the last word of every reply.
pub const ECHO_MARK: u64 = 0x5a5a_5a5a;

/// Mode 2's buffers (in `.bss`: 128 KiB would not fit the stack comfortably).
static mut BUFFERS: [[u8; 64 << 10]; 2] = [[0; 64 << 10]; 2];

fn long_echo() -> i64 {
    // SAFETY: the process has one thread and this is the only reference to BUFFERS.
    let [incoming, outgoing] = unsafe { (&raw mut BUFFERS).as_mut_unchecked() };
    let (mut msg, mut len) = match sys::recv_with(0, incoming) {
        Ok(m) => m,
        Err(e) => {
            println!("ipc_echo: recv_with: {e}");
            return 3;
        }
    };
    loop {
        if msg[0] == QUIT {
            return 0;
        }
        let len_in = len.min(incoming.len());
        for (o, i) in outgoing[..len_in]
            .iter_mut()
            .zip(incoming[..len_in].iter().rev())
        {
            *o = *i;
        }
        let reply = [msg[0].wrapping_add(1), msg[1], msg[2], msg[3] ^ ECHO_MARK];
        (msg, len) = match sys::reply_recv_with(0, reply, &outgoing[..len_in], incoming) {
            Ok(m) => m,
            Err(Errno::EPIPE) => return 0,
            Err(e) => {
                println!("ipc_echo: reply_recv_with: {e}");
                return 3;
            }
        };
    }
}

fn main(mode: u64) -> i64 {
    if mode == 2 {
        return long_echo();
    }
    if mode == 1 {
        let _ = sys::recv(0);
        let r = sys::wait_notify(1);
        println!("ipc_echo: the swallowing wait returned {r:?}");
        return 4;
    }
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
            // Every client is gone.
            Err(Errno::EPIPE) => return 0,
            Err(e) => {
                println!("ipc_echo: reply_recv: {e}");
                return 3;
            }
        };
    }
}

veridian_user_rt::entry!(main);
