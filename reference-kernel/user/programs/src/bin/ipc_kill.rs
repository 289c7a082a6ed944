//! `ipc_kill`: killing processes blocked in IPC.
//!
//! 1. A client blocked in `call` waiting for this process's reply (this process took its
//!    message) is killed: it ends with `KILLED`, and the reply right it left is gone (the next
//!    `reply_recv` has nobody to answer and finds no message: `EPIPE`).
//! 2. A client blocked in `call` in the endpoint's queue (nobody receiving) is killed: its
//!    message is withdrawn, so a `recv` afterwards finds no sender and nobody else: `EPIPE`.
//! 3. A server that took a client's call and waits on a notification (never replying) is
//!    killed: the client's call fails with `EPIPE` and the server ends with `KILLED`.
//! 4. `kill` of a pid that is not a child: `ESRCH`.
//! 5. A child that spins in ring 3 without a system call (`spin`) ends at a timer interrupt.
//!
//! Free memory is the same before and after (every frame of the killed processes back).
//! Prints one line per failed check and exits with the number of failures.

#![no_std]
#![no_main]

use veridian_user_rt::abi::KILLED;
use veridian_user_rt::checks::Failures;
use veridian_user_rt::{Errno, println, sys};

fn main(_arg: u64) -> i64 {
    let mut fail = Failures::new("ipc_kill");
    let free_before = sys::free_memory().unwrap_or(0);
    let run = |fail: &mut Failures| -> Result<(), Errno> {
        // 1. Blocked waiting for our reply.
        let ep = sys::endpoint()?;
        let client = sys::spawn_with("ipc_client", 1, ep)?;
        let msg = sys::recv(ep)?;
        fail.check(
            msg[1] == client,
            format_args!("message from {}, expected {client}", msg[1]),
        );
        sys::kill(client)?;
        let code = sys::wait(client);
        fail.check(
            code == Ok(KILLED),
            format_args!("killed caller ended with {code:?}"),
        );
        let r = sys::reply_recv(ep, [0; 4]);
        fail.check(
            r == Err(Errno::EPIPE),
            format_args!("reply_recv after the caller was killed: {r:?}, expected EPIPE"),
        );

        // 2. Blocked in the queue.
        let client = sys::spawn_with("ipc_client", 1, ep)?;
        // Let it reach its call and block (it runs on this CPU or another; 20 ms is plenty).
        sys::sleep_ms(20)?;
        sys::kill(client)?;
        let code = sys::wait(client);
        fail.check(
            code == Ok(KILLED),
            format_args!("queued caller ended with {code:?}"),
        );
        let r = sys::recv(ep);
        fail.check(
            r == Err(Errno::EPIPE),
            format_args!("recv after the queued caller was killed: {r:?}, expected EPIPE"),
        );

        // 3. The server is killed while the client waits for its reply.
        let server_ep = sys::endpoint()?;
        let never = sys::notification()?;
        let server = sys::spawn_with_handles("ipc_echo", 1, &[server_ep, never])?;
        let client = sys::spawn_with("ipc_client", 1, server_ep)?;
        sys::sleep_ms(20)?;
        sys::kill(server)?;
        let code = sys::wait(server);
        fail.check(
            code == Ok(KILLED),
            format_args!("killed server ended with {code:?}"),
        );
        let code = sys::wait(client);
        fail.check(
            code == Ok(100 + Errno::EPIPE.0),
            format_args!("client of the killed server ended with {code:?}, expected 132 (EPIPE)"),
        );

        // 4. Not a child.
        let r = sys::kill(1);
        fail.check(
            r == Err(Errno::ESRCH),
            format_args!("kill(1): {r:?}, expected ESRCH"),
        );
        Ok(())
    };
    if let Err(e) = run(&mut fail) {
        println!("ipc_kill: FAIL a set-up call failed: {e}");
        fail.count += 1;
    }
    // The handles and the memory of this process stay until it ends; the children's are back.
    let free_after = sys::free_memory().unwrap_or(0);
    fail.check(
        free_after + 64 * 1024 >= free_before,
        format_args!("free memory {free_before} before, {free_after} after"),
    );
    println!("ipc_kill: {} failed checks", fail.count);
    fail.count
}

veridian_user_rt::entry!(main);
