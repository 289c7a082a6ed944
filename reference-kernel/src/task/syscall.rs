//! The system calls (the ABI is `reference-kernel/user/rt/src/abi.rs`, shared with user
//! programs): every argument is checked, first by the library's `syscall_args` decoders
//! (what the registers alone decide, fuzzed on the host), then against kernel state; user
//! memory is only reached through `arch::x86_64::user`'s copies (a bad pointer is `-EFAULT`,
//! never a kernel fault), and every failure is a negative error code.

use crate::arch::x86_64::user::{self, SyscallFrame, SyscallHandler};
use crate::process_abi::{errno, limits, nr};
use reference_kernel::syscall_args::{self as args, DataDesc, UserRange};

use alloc::sync::Arc;

use super::process::{self, ProcessError};
use crate::ipc::{Endpoint, MSG_WORDS, Message, Notification, Object, notification};
use crate::mm::shared::{SharedError, SharedMemory};

/// Entries of the table: one past the highest number.
const CALLS: usize = args::CALLS as usize;

/// The system calls by number, for `syscall_entry` (a number past the end is `-ENOSYS`).
pub static TABLE: [SyscallHandler; CALLS] = {
    let mut t: [SyscallHandler; CALLS] = [sys_enosys; CALLS];
    t[nr::EXIT as usize] = sys_exit;
    t[nr::WRITE as usize] = sys_write;
    t[nr::YIELD as usize] = sys_yield;
    t[nr::GETPID as usize] = sys_getpid;
    t[nr::CLOCK as usize] = sys_clock;
    t[nr::SLEEP as usize] = sys_sleep;
    t[nr::SPAWN as usize] = sys_spawn;
    t[nr::WAIT as usize] = sys_wait;
    t[nr::MMAP as usize] = sys_mmap;
    t[nr::MUNMAP as usize] = sys_munmap;
    t[nr::CPU as usize] = sys_cpu;
    t[nr::FREE_MEMORY as usize] = sys_free_memory;
    t[nr::ENDPOINT as usize] = sys_endpoint;
    t[nr::SEND as usize] = sys_send;
    t[nr::RECV as usize] = sys_recv;
    t[nr::CALL as usize] = sys_call;
    t[nr::REPLY_RECV as usize] = sys_reply_recv;
    t[nr::SPAWN_WITH as usize] = sys_spawn_with;
    t[nr::NOTIFICATION as usize] = sys_notification;
    t[nr::SIGNAL as usize] = sys_signal;
    t[nr::WAIT_NOTIFY as usize] = sys_wait_notify;
    t[nr::POLL as usize] = sys_poll;
    t[nr::IRQ_BIND as usize] = sys_irq_bind;
    t[nr::SHM as usize] = sys_shm;
    t[nr::MAP as usize] = sys_map;
    t[nr::KILL as usize] = sys_kill;
    t
};

/// A result in the ABI's encoding: the value, or the negated error number.
fn encode(result: SysResult) -> u64 {
    match result {
        Ok(v) => v,
        Err(e) => (-e) as u64,
    }
}

/// One table entry per call: decodes the arguments, encodes the result into `rax`. The
/// `blocking` form is for calls that may wait: a process killed meanwhile ends there instead
/// of returning.
macro_rules! syscall {
    ($name:ident, |$a:ident| $body:expr) => {
        extern "C" fn $name(frame: &mut SyscallFrame) {
            fn body($a: [u64; 6]) -> SysResult {
                $body
            }
            frame.rax = encode(body(frame.args));
        }
    };
    (blocking $name:ident, |$a:ident| $body:expr) => {
        extern "C" fn $name(frame: &mut SyscallFrame) {
            fn body($a: [u64; 6]) -> SysResult {
                $body
            }
            frame.rax = encode(body(frame.args));
            process::exit_if_killed();
        }
    };
}

syscall!(sys_enosys, |_a| Err(errno::ENOSYS));
syscall!(sys_exit, |a| {
    process::exit(a[0] as i64);
    Err(errno::ESRCH)
});
syscall!(blocking sys_write, |a| write(args::write(a)?));
syscall!(blocking sys_yield, |_a| {
    super::yield_now();
    Ok(0)
});
syscall!(sys_getpid, |_a| process::current_pid().ok_or(errno::ESRCH));
syscall!(sys_clock, |_a| Ok(clock_ns()));
syscall!(blocking sys_sleep, |a| {
    super::sleep_ms(args::sleep(a)?);
    Ok(0)
});
syscall!(sys_spawn, |a| spawn(args::spawn(a)?, &[]));
syscall!(sys_spawn_with, |a| {
    let decoded = args::spawn_with(a)?;
    let objects = handles_from_user(decoded.handles, decoded.count)?;
    spawn(decoded.spawn?, &objects)
});
syscall!(sys_endpoint, |_a| new_object(Object::Endpoint(Arc::new(
    Endpoint::new()
))));
syscall!(blocking sys_send, |a| {
    let decoded = args::ipc(a);
    let p = process::current().ok_or(errno::ESRCH)?;
    let ep = p.handles().lock().endpoint(decoded.handle)?;
    let data = match decoded.desc()? {
        Some(desc) => outgoing(&read_desc(desc)?)?,
        None => None,
    };
    p.ipc().send(&ep, decoded.msg, data).map(|()| 0)
});
syscall!(sys_notification, |_a| new_object(Object::Notification(
    Arc::new(Notification::new())
)));
syscall!(sys_signal, |a| {
    let decoded = args::signal(a)?;
    notification_of(decoded.handle)?.signal(decoded.bits);
    Ok(0)
});
syscall!(sys_irq_bind, |a| {
    let decoded = args::irq_bind(a);
    let target = notification_of(decoded.handle)?;
    let (line, bits) = decoded.binding?;
    notification::bind(u64::from(line), &target, bits).map(|()| 0)
});
syscall!(sys_shm, |a| {
    let memory = SharedMemory::new(args::shm(a)?).map_err(|e| match e {
        SharedError::BadLength => errno::EINVAL,
        SharedError::OutOfMemory => errno::ENOMEM,
    })?;
    new_object(Object::Memory(Arc::new(memory)))
});
syscall!(sys_map, |a| {
    let p = process::current().ok_or(errno::ESRCH)?;
    let memory = p.handles().lock().memory(a[0])?;
    let space = p.space().ok_or(errno::ESRCH)?;
    space.map_shared(memory).map_err(|e| match e {
        crate::mm::aspace::AspaceError::OutOfMemory => errno::ENOMEM,
        _ => errno::EINVAL,
    })
});
syscall!(sys_kill, |a| process::kill_child(a[0]).map(|()| 0));

/// A call that returns a word in `rsi` besides `rax` (the notification waits).
macro_rules! bits_syscall {
    ($name:ident, |$p:ident, $n:ident| $body:expr) => {
        extern "C" fn $name(frame: &mut SyscallFrame) {
            let handle = frame.args[0];
            let result = process::current().ok_or(errno::ESRCH).and_then(|$p| {
                let $n = $p.handles().lock().notification(handle)?;
                $body
            });
            frame.rax = encode(result.map(|bits| {
                frame.args[1] = bits;
                0
            }));
            process::exit_if_killed();
        }
    };
}

bits_syscall!(sys_wait_notify, |p, n| p.ipc().wait_notification(&n));
bits_syscall!(sys_poll, |_p, n| Ok(n.poll()));

/// Adds `object` to the calling process's handle table; its handle.
fn new_object(object: Object) -> SysResult {
    let p = process::current().ok_or(errno::ESRCH)?;
    let mut handles = p.handles().lock();
    handles.insert(object)
}

/// The calling process's notification `handle`.
fn notification_of(handle: u64) -> Result<Arc<Notification>, i64> {
    let p = process::current().ok_or(errno::ESRCH)?;
    p.handles().lock().notification(handle)
}

/// The objects named by the `count` handles (at most [`limits::MAX_HANDLES`]) in `range`
/// (for `spawn_with`).
fn handles_from_user(range: UserRange, count: usize) -> Result<alloc::vec::Vec<Object>, i64> {
    let mut words = [0u64; limits::MAX_HANDLES as usize];
    let words = words.get_mut(..count).ok_or(errno::EINVAL)?;
    words_from_user(range.addr(), words)?;
    let p = process::current().ok_or(errno::ESRCH)?;
    let handles = p.handles().lock();
    words.iter().map(|&h| handles.get(h)).collect()
}

/// Fills `out` with the little-endian words at user address `addr` (at most 16 words);
/// `-EFAULT` for memory the process cannot read.
fn words_from_user(addr: u64, out: &mut [u64]) -> Result<(), i64> {
    let mut raw = [0u8; 16 * 8];
    let raw = raw.get_mut(..out.len() * 8).ok_or(errno::EINVAL)?;
    user::copy_from_user(raw, addr).map_err(|_| errno::EFAULT)?;
    for (w, b) in out.iter_mut().zip(raw.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(b);
        *w = u64::from_le_bytes(word);
    }
    Ok(())
}

/// An IPC call that returns a message: its words go back in `rsi rdx r10 r8`. With `r9` 0
/// the register-only form runs (`$fast`); otherwise `r9` points at a long-message descriptor
/// ([`DataDesc`]) and `$long` runs with the bytes to send.
macro_rules! ipc_syscall {
    ($name:ident, |$p:ident, $ep:ident, $msg:ident, $data:ident| $fast:expr, $long:expr) => {
        extern "C" fn $name(frame: &mut SyscallFrame) {
            let decoded = args::ipc(frame.args);
            let result = process::current().ok_or(errno::ESRCH).and_then(|$p| {
                let $ep = $p.handles().lock().endpoint(decoded.handle)?;
                let $msg: Message = decoded.msg;
                match decoded.desc()? {
                    None => $fast,
                    Some(desc) => long_ipc(desc, |$data| $long),
                }
            });
            frame.rax = encode(result.map(|reply| {
                frame.args[1..=MSG_WORDS].copy_from_slice(&reply);
                0
            }));
            process::exit_if_killed();
        }
    };
}

/// The long-message form of an IPC call with the descriptor in `desc`: reads it, copies the
/// bytes to send in, runs `op` with them, copies the bytes received out.
#[inline(never)]
fn long_ipc(
    desc: UserRange,
    op: impl FnOnce(Option<alloc::vec::Vec<u8>>) -> crate::ipc::Received,
) -> Result<Message, i64> {
    let d = read_desc(desc)?;
    let (reply, bytes) = op(outgoing(&d)?)?;
    deliver(&d, desc, bytes.as_deref())?;
    Ok(reply)
}

// A receive sends nothing: a descriptor with bytes to send is refused.
ipc_syscall!(
    sys_recv,
    |p, ep, _msg, data| p.ipc().recv(&ep).map(|(m, _)| m),
    if data.is_some() {
        Err(errno::EINVAL)
    } else {
        p.ipc().recv(&ep)
    }
);
ipc_syscall!(
    sys_call,
    |p, ep, msg, data| p.ipc().call(&ep, msg),
    p.ipc().call_long(&ep, msg, data)
);
ipc_syscall!(
    sys_reply_recv,
    |p, ep, msg, data| p.ipc().reply_recv(&ep, msg),
    p.ipc().reply_recv_long(&ep, msg, data)
);

/// Reads the long-message descriptor in `desc` (its first four words; the fifth is written
/// back by [`deliver`], not read): `-EFAULT` for unreadable memory, `-EINVAL` for a length
/// above the limit.
fn read_desc(desc: UserRange) -> Result<DataDesc, i64> {
    let mut words = [0u64; 4];
    words_from_user(desc.addr(), &mut words)?;
    DataDesc::from_words(words)
}

/// The bytes to send, copied in (`None` for none).
fn outgoing(d: &DataDesc) -> Result<Option<alloc::vec::Vec<u8>>, i64> {
    if d.send_len == 0 {
        return Ok(None);
    }
    let mut bytes = alloc::vec::Vec::new();
    bytes
        .try_reserve_exact(d.send_len as usize)
        .map_err(|_| errno::ENOMEM)?;
    bytes.resize(d.send_len as usize, 0);
    user::copy_from_user(&mut bytes, d.send_ptr).map_err(|_| errno::EFAULT)?;
    Ok(Some(bytes))
}

/// Copies the received bytes (as many as fit) to the receive buffer and stores their full
/// length in the descriptor's last word (0 when none came).
fn deliver(d: &DataDesc, desc: UserRange, bytes: Option<&[u8]>) -> Result<(), i64> {
    let bytes = bytes.unwrap_or(&[]);
    let n = bytes.len().min(d.recv_cap as usize);
    if n > 0 {
        user::copy_to_user(d.recv_ptr, &bytes[..n]).map_err(|_| errno::EFAULT)?;
    }
    user::copy_to_user(
        desc.addr() + DataDesc::RECV_LEN_OFFSET,
        &(bytes.len() as u64).to_le_bytes(),
    )
    .map_err(|_| errno::EFAULT)
}

syscall!(blocking sys_wait, |a| wait(args::wait(a)?));
syscall!(sys_mmap, |a| mmap(args::mmap(a)?));
syscall!(sys_munmap, |a| munmap(args::munmap(a)?));
syscall!(sys_cpu, |_a| Ok(
    crate::arch::x86_64::percpu::cpu_index() as u64
));
syscall!(sys_free_memory, |_a| Ok(
    crate::mm::frames::free_bytes() as u64
));

type SysResult = Result<u64, i64>;

/// `write` of the bytes in `buf` to the console.
fn write(buf: UserRange) -> SysResult {
    let (buf, len) = (buf.addr(), buf.len());
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        user::copy_from_user(&mut chunk[..n], buf + done).map_err(|_| errno::EFAULT)?;
        crate::console::write_bytes(&chunk[..n]);
        done += n as u64;
    }
    Ok(len)
}

/// Nanoseconds since boot from the TSC.
fn clock_ns() -> u64 {
    let hz = crate::arch::x86_64::apic::info().map_or(1_000_000_000, |i| i.tsc_hz.max(1));
    let tsc = veridian_perf::arch::rdtsc();
    ((u128::from(tsc) * 1_000_000_000) / u128::from(hz)) as u64
}

/// `spawn` of the program named in `a.name` with the `handles`.
fn spawn(a: args::Spawn, handles: &[Object]) -> SysResult {
    let mut buf = [0u8; limits::MAX_NAME as usize];
    let buf = buf.get_mut(..a.name.len() as usize).ok_or(errno::EINVAL)?;
    user::copy_from_user(buf, a.name.addr()).map_err(|_| errno::EFAULT)?;
    let name = core::str::from_utf8(buf).map_err(|_| errno::ENOENT)?;
    match process::spawn_child(name, a.arg, handles) {
        Ok(pid) => Ok(pid),
        Err(ProcessError::NoSuchProgram) => Err(errno::ENOENT),
        Err(ProcessError::OutOfMemory) => Err(errno::ENOMEM),
        Err(ProcessError::BadImage(m)) => {
            log::warn!("spawn {name}: {m}");
            Err(errno::EINVAL)
        }
        Err(ProcessError::Spawn(_)) => Err(errno::ENOMEM),
    }
}

/// `wait(pid, status)`: the exit code goes to user memory, so no exit code can be mistaken
/// for an error. The status address was checked by the decoder before the wait.
fn wait(w: args::Wait) -> SysResult {
    let code = process::wait_child(w.pid).ok_or(errno::ESRCH)?;
    user::copy_to_user(w.status.addr(), &code.to_le_bytes()).map_err(|_| errno::EFAULT)?;
    Ok(0)
}

/// `mmap` of `m.len` bytes in the calling process.
fn mmap(m: args::Mmap) -> SysResult {
    let space = process::current()
        .and_then(|p| p.space())
        .ok_or(errno::ESRCH)?;
    space.mmap(m.len, m.writable).map_err(|e| match e {
        crate::mm::aspace::AspaceError::OutOfMemory => errno::ENOMEM,
        _ => errno::EINVAL,
    })
}

/// `munmap` of the (rounded) `range` in the calling process.
fn munmap(range: UserRange) -> SysResult {
    let space = process::current()
        .and_then(|p| p.space())
        .ok_or(errno::ESRCH)?;
    space
        .munmap(range.addr(), range.len())
        .map(|()| 0)
        .map_err(|_| errno::EINVAL)
}
