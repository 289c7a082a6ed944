//! `ipc_client <calls>`: makes `<calls>` echo calls to the `ipc_echo` server at its handle 0
//! (given by whoever spawned it), each with words unique to this process and call, and checks
//! every reply. Exit code: 0 when every reply was right; 1 when one was wrong; `100 + errno`
//! when a call failed (`132`: the server went away, `EPIPE`).

#![no_std]
#![no_main]

use veridian_user_rt::{println, sys};

/// `ipc_echo`'s reply mark.
const ECHO_MARK: u64 = 0x5a5a_5a5a;

fn main(calls: u64) -> i64 {
    let pid = sys::getpid().unwrap_or(0);
    for i in 0..calls {
        let msg = [pid << 32 | i, pid, !i, i.wrapping_mul(0x9e37_79b9)];
        let expected = [msg[0] + 1, msg[1], msg[2], msg[3] ^ ECHO_MARK];
        match sys::call(0, msg) {
            Ok(reply) if reply == expected => {}
            Ok(reply) => {
                println!("ipc_client {pid}: FAIL call {i}: {reply:?}, expected {expected:?}");
                return 1;
            }
            Err(e) => return 100 + e.0,
        }
    }
    0
}

veridian_user_rt::entry!(main);
