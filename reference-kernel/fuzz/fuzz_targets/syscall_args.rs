//! The system calls' register decoder (`reference_kernel::syscall_args`) against a plain model
//! written from the ABI (`reference-kernel/user/rt/src/abi.rs`): for any call number and six
//! argument words it never panics, each rejection is the error code the ABI gives for it, and
//! every accepted user range is the one asked for (rounded up to 4 KiB for `munmap`), lies
//! inside the user half and does not wrap. The first four words are also decoded as a
//! long-message descriptor.
//!
//! Input: one byte for the number (below 0x80: that number modulo 32, which covers every call
//! and some numbers past them; otherwise the next 8 bytes, any number), then six
//! little-endian words (missing bytes are 0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_kernel::process_abi::{errno, limits, nr};
use reference_kernel::syscall_args::{Call, DataDesc, UserRange, decode};

/// The end of the user half, in arithmetic that cannot wrap.
const USER_END: u128 = 1 << 47;

/// The calls the ABI defines without arguments.
const NO_ARGS: [u64; 7] = [
    nr::YIELD,
    nr::GETPID,
    nr::CLOCK,
    nr::CPU,
    nr::FREE_MEMORY,
    nr::ENDPOINT,
    nr::NOTIFICATION,
];

/// Whether `len` bytes at `addr` lie inside the user half.
fn inside(addr: u64, len: u64) -> bool {
    u128::from(addr) + u128::from(len) <= USER_END
}

/// `range` as (address, length), after checking that it lies inside the user half.
fn checked(range: UserRange) -> (u64, u64) {
    let (addr, len) = (range.addr(), range.len());
    assert!(inside(addr, len), "accepted range {range:?} leaves the user half");
    assert_eq!(u128::from(range.end()), u128::from(addr) + u128::from(len));
    (addr, len)
}

/// The model of a range argument: `(addr, len)` inside the user half, or `error`.
fn range(addr: u64, len: u64, error: i64) -> Result<(u64, u64), i64> {
    if inside(addr, len) {
        Ok((addr, len))
    } else {
        Err(error)
    }
}

/// The model of `spawn`'s name and argument: (name range, arg).
fn spawn(a: [u64; 6]) -> Result<((u64, u64), u64), i64> {
    if a[1] == 0 || a[1] > limits::MAX_NAME {
        return Err(errno::EINVAL);
    }
    Ok((range(a[0], a[1], errno::EFAULT)?, a[2]))
}

/// Words from `data` (little-endian, 0 past the end).
fn words<const N: usize>(data: &[u8]) -> ([u64; N], &[u8]) {
    let mut out = [0u64; N];
    let mut rest = data;
    for w in &mut out {
        let mut bytes = [0u8; 8];
        let n = rest.len().min(8);
        bytes[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        *w = u64::from_le_bytes(bytes);
    }
    (out, rest)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (number, rest) = if first < 0x80 {
        (u64::from(first % 32), rest)
    } else {
        let ([n], rest) = words::<1>(rest);
        (n, rest)
    };
    let (a, _) = words::<6>(rest);
    let got = decode(number, a);

    match number {
        nr::EXIT => assert_eq!(got, Ok(Call::Exit(a[0] as i64))),
        nr::WRITE => {
            let want = if a[0] != 1 {
                Err(errno::EBADF)
            } else if a[2] > limits::MAX_WRITE {
                Err(errno::EINVAL)
            } else {
                range(a[1], a[2], errno::EFAULT)
            };
            let got = got.map(|c| match c {
                Call::Write(r) => checked(r),
                other => panic!("write decoded as {other:?}"),
            });
            assert_eq!(got, want, "write {a:x?}");
        }
        n if NO_ARGS.contains(&n) => assert_eq!(got, Ok(Call::NoArgs)),
        nr::SLEEP => {
            let want = if a[0] > limits::MAX_SLEEP_MS {
                Err(errno::EINVAL)
            } else {
                Ok(Call::Sleep(a[0]))
            };
            assert_eq!(got, want);
        }
        nr::SPAWN => {
            let got = got.map(|c| match c {
                Call::Spawn(s) => (checked(s.name), s.arg),
                other => panic!("spawn decoded as {other:?}"),
            });
            assert_eq!(got, spawn(a), "spawn {a:x?}");
        }
        nr::SPAWN_WITH => {
            // The handle words first; the name's error comes after the handle lookup.
            let want = if a[4] > limits::MAX_HANDLES {
                Err(errno::EINVAL)
            } else {
                range(a[3], a[4] * 8, errno::EFAULT).map(|h| (h, spawn(a)))
            };
            let got = got.map(|c| match c {
                Call::SpawnWith(s) => {
                    assert_eq!(s.count as u64 * 8, s.handles.len());
                    (
                        checked(s.handles),
                        s.spawn.map(|s| (checked(s.name), s.arg)),
                    )
                }
                other => panic!("spawn_with decoded as {other:?}"),
            });
            assert_eq!(got, want, "spawn_with {a:x?}");
        }
        nr::WAIT => {
            let want = range(a[1], 8, errno::EFAULT).map(|s| (a[0], s));
            let got = got.map(|c| match c {
                Call::Wait(w) => (w.pid, checked(w.status)),
                other => panic!("wait decoded as {other:?}"),
            });
            assert_eq!(got, want, "wait {a:x?}");
        }
        nr::MMAP => {
            let want = if a[1] & !3 != 0 || a[0] == 0 || a[0] > limits::MAX_MMAP {
                Err(errno::EINVAL)
            } else {
                Ok((a[0], a[1] & 2 != 0))
            };
            let got = got.map(|c| match c {
                Call::Mmap(m) => (m.len, m.writable),
                other => panic!("mmap decoded as {other:?}"),
            });
            assert_eq!(got, want, "mmap {a:x?}");
        }
        nr::MUNMAP => {
            let pages = u128::from(a[1]).div_ceil(4096) * 4096;
            let want = if pages == 0 || u128::from(a[0]) + pages > USER_END {
                Err(errno::EINVAL)
            } else {
                Ok((a[0], pages as u64))
            };
            let got = got.map(|c| match c {
                Call::Munmap(r) => checked(r),
                other => panic!("munmap decoded as {other:?}"),
            });
            assert_eq!(got, want, "munmap {a:x?}");
        }
        nr::SEND | nr::RECV | nr::CALL | nr::REPLY_RECV => {
            // The descriptor's error comes after the endpoint lookup.
            let desc = match a[5] {
                0 => Ok(None),
                addr => range(addr, 40, errno::EFAULT).map(Some),
            };
            let want = Ok((a[0], [a[1], a[2], a[3], a[4]], desc));
            let got = got.map(|c| match c {
                Call::Ipc(i) => (i.handle, i.msg, i.desc().map(|d| d.map(checked))),
                other => panic!("IPC call decoded as {other:?}"),
            });
            assert_eq!(got, want, "ipc {number} {a:x?}");
        }
        nr::SIGNAL => {
            let want = if a[1] == 0 {
                Err(errno::EINVAL)
            } else {
                Ok((a[0], a[1]))
            };
            let got = got.map(|c| match c {
                Call::Signal(s) => (s.handle, s.bits),
                other => panic!("signal decoded as {other:?}"),
            });
            assert_eq!(got, want);
        }
        nr::IRQ_BIND => {
            // The line and bits are reported after the handle lookup.
            let binding = if a[1] < limits::USER_IRQ_LINES && a[2] != 0 {
                Ok((a[1], a[2]))
            } else {
                Err(errno::EINVAL)
            };
            let got = got.map(|c| match c {
                Call::IrqBind(b) => (b.handle, b.binding.map(|(l, bits)| (u64::from(l), bits))),
                other => panic!("irq_bind decoded as {other:?}"),
            });
            assert_eq!(got, Ok((a[0], binding)));
        }
        nr::SHM => {
            let want = if a[0] == 0 || a[0] > limits::MAX_SHARED {
                Err(errno::EINVAL)
            } else {
                Ok(Call::Shm(a[0]))
            };
            assert_eq!(got, want);
        }
        nr::WAIT_NOTIFY | nr::POLL | nr::MAP | nr::KILL => assert_eq!(got, Ok(Call::Id(a[0]))),
        _ => {
            assert!(number > nr::KILL, "call {number} has no model");
            assert_eq!(got, Err(errno::ENOSYS));
        }
    }

    // The first four words as a long-message descriptor.
    let [send_ptr, send_len, recv_ptr, recv_cap] = [a[0], a[1], a[2], a[3]];
    let want = if send_len > limits::MAX_IPC_DATA || recv_cap > limits::MAX_IPC_DATA {
        Err(errno::EINVAL)
    } else {
        Ok((send_ptr, send_len, recv_ptr, recv_cap))
    };
    let got = DataDesc::from_words([a[0], a[1], a[2], a[3]])
        .map(|d| (d.send_ptr, d.send_len, d.recv_ptr, d.recv_cap));
    assert_eq!(got, want);
});
