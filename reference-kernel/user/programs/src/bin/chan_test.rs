//! `chan_test <messages>`: a shared-memory channel to a child process (`chan_test` in peer
//! mode), [`Channel`] on veridian-io rings.
//!
//! Sends `<messages>` (1 000 000 if 0) numbered messages in batches of 1 to 37, each with
//! words derived from its number; the peer checks that every message arrives once, in order
//! and intact, and answers with one message: `[count, errors, checksum, signals]`. Then the
//! peer ends, and a receive here fails with `EPIPE` rather than waiting forever. Prints the
//! counts and exits with the number of failed checks.
//!
//! Peer mode (`arg` with bit 63 set): handles 0..3 are the channel's (memory, own
//! notification, parent's notification); the low bits are the number of messages expected.
//! Echo mode (bits 63 and 62, for the `bench` program): sends every message back as it comes,
//! in the batches it received, until the parent is gone.

#![no_std]
#![no_main]

use veridian_user_rt::channel::{Channel, Item};
use veridian_user_rt::checks::Failures;
use veridian_user_rt::{Errno, println, sys};

/// Bit of the argument that selects peer mode.
const PEER: u64 = 1 << 63;
/// With [`PEER`]: echo mode.
const ECHO: u64 = 1 << 62;

fn echo() -> i64 {
    let Ok(mut ch) = Channel::open(0, 1, 2, 1) else {
        return 1;
    };
    let mut batch = [[0u64; 4]; 64];
    loop {
        let mut n = 0;
        match ch.recv(batch.len(), |m| {
            batch[n] = m;
            n += 1;
        }) {
            Ok(_) => {}
            // The parent is gone.
            Err(Errno::EPIPE) => return 0,
            Err(_) => return 2,
        }
        if ch.send(&batch[..n]).is_err() {
            return 0;
        }
    }
}

/// Message `i`.
fn message(i: u64) -> Item {
    [i, i.wrapping_mul(0x9e37_79b9_7f4a_7c15), !i, i ^ 0x5555]
}

fn peer(expected: u64) -> i64 {
    let mut ch = match Channel::open(0, 1, 2, 1) {
        Ok(c) => c,
        Err(e) => {
            println!("chan_test peer: open: {e}");
            return 1;
        }
    };
    let (mut next, mut errors, mut sum) = (0u64, 0u64, 0u64);
    while next < expected {
        let r = ch.recv(64, |m| {
            if m != message(next) {
                errors += 1;
            }
            sum = sum.wrapping_add(m[0] ^ m[1]);
            next += 1;
        });
        if r.is_err() {
            break;
        }
    }
    let reply = [next, errors, sum, ch.signals];
    if ch.send(&[reply]).is_err() {
        return 2;
    }
    0
}

fn main(arg: u64) -> i64 {
    if arg & (PEER | ECHO) == PEER | ECHO {
        return echo();
    }
    if arg & PEER != 0 {
        return peer(arg & !PEER);
    }
    let total = if arg == 0 { 1_000_000 } else { arg };
    let mut fail = Failures::new("chan_test");
    let (mut ch, handles) = match Channel::create() {
        Ok(c) => c,
        Err(e) => {
            println!("chan_test: FAIL create: {e}");
            return 1;
        }
    };
    let pid = match sys::spawn_with_handles("chan_test", PEER | total, &handles) {
        Ok(p) => p,
        Err(e) => {
            println!("chan_test: FAIL spawn the peer: {e}");
            return 1;
        }
    };
    let mut batch = [[0u64; 4]; 37];
    let (mut sent, mut expected_sum) = (0u64, 0u64);
    let mut size = 1;
    while sent < total {
        let n = size.min((total - sent) as usize);
        for (k, slot) in batch[..n].iter_mut().enumerate() {
            *slot = message(sent + k as u64);
            expected_sum = expected_sum.wrapping_add(slot[0] ^ slot[1]);
        }
        if let Err(e) = ch.send(&batch[..n]) {
            fail.check(false, format_args!("send at {sent}: {e}"));
            break;
        }
        sent += n as u64;
        size = size % 37 + 1;
    }
    let mut reply = [0u64; 4];
    let r = ch.recv(1, |m| reply = m);
    fail.check(r == Ok(1), format_args!("the peer's answer: {r:?}"));
    let [count, errors, sum, peer_signals] = reply;
    fail.check(
        count == total,
        format_args!("peer received {count} of {total}"),
    );
    fail.check(
        errors == 0,
        format_args!("{errors} messages out of order or corrupted"),
    );
    fail.check(
        sum == expected_sum,
        format_args!("checksum {sum:#x}, expected {expected_sum:#x}"),
    );
    let code = sys::wait(pid);
    fail.check(code == Ok(0), format_args!("peer ended with {code:?}"));
    let r = ch.recv(1, |_| {});
    fail.check(
        r == Err(Errno::EPIPE),
        format_args!("recv after the peer ended: {r:?}"),
    );
    println!(
        "chan_test: {total} messages, signals {} sent / {peer_signals} received side, sleeps {}, {} failed checks",
        ch.signals, ch.sleeps, fail.count
    );
    fail.count
}

veridian_user_rt::entry!(main);
