//! The system calls (the ABI is `reference-kernel/user/rt/src/abi.rs`, shared with user
//! programs): every argument is checked, user memory is only reached through
//! `arch::x86_64::user`'s copies (a bad pointer is `-EFAULT`, never a kernel fault), and every
//! failure is a negative error code.

use crate::arch::x86_64::user::{self, SyscallFrame, SyscallHandler};
use crate::process_abi::{errno, limits, nr, prot};

use alloc::sync::Arc;

use super::process::{self, ProcessError};
use crate::ipc::{Endpoint, MSG_WORDS, Message};

/// The system calls by number, for `syscall_entry` (a number past the end is `-ENOSYS`).
pub static TABLE: [SyscallHandler; nr::SPAWN_WITH as usize + 1] = {
    let mut t: [SyscallHandler; nr::SPAWN_WITH as usize + 1] =
        [sys_enosys; nr::SPAWN_WITH as usize + 1];
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
    t
};

/// A result in the ABI's encoding: the value, or the negated error number.
fn encode(result: SysResult) -> u64 {
    match result {
        Ok(v) => v,
        Err(e) => (-e) as u64,
    }
}

/// One table entry per call: decodes the arguments, encodes the result into `rax`.
macro_rules! syscall {
    ($name:ident, |$a:ident| $body:expr) => {
        extern "C" fn $name(frame: &mut SyscallFrame) {
            fn body($a: [u64; 6]) -> SysResult {
                $body
            }
            frame.rax = encode(body(frame.args));
        }
    };
}

syscall!(sys_enosys, |_a| Err(errno::ENOSYS));
syscall!(sys_exit, |a| {
    process::exit(a[0] as i64);
    Err(errno::ESRCH)
});
syscall!(sys_write, |a| write(a[0], a[1], a[2]));
syscall!(sys_yield, |_a| {
    super::yield_now();
    Ok(0)
});
syscall!(sys_getpid, |_a| process::current_pid().ok_or(errno::ESRCH));
syscall!(sys_clock, |_a| Ok(clock_ns()));
syscall!(sys_sleep, |a| sleep(a[0]));
syscall!(sys_spawn, |a| spawn(a[0], a[1], a[2], None));
syscall!(sys_spawn_with, |a| {
    endpoint(a[3]).and_then(|ep| spawn(a[0], a[1], a[2], Some(ep)))
});
syscall!(sys_endpoint, |_a| {
    let p = process::current().ok_or(errno::ESRCH)?;
    let mut handles = p.handles().lock();
    handles.insert(Arc::new(Endpoint::new()))
});
syscall!(sys_send, |a| {
    let p = process::current().ok_or(errno::ESRCH)?;
    let ep = p.handles().lock().get(a[0])?;
    p.ipc().send(&ep, [a[1], a[2], a[3], a[4]]).map(|()| 0)
});

/// An IPC call that returns a message: its words go back in `rsi rdx r10 r8`.
macro_rules! ipc_syscall {
    ($name:ident, |$p:ident, $ep:ident, $msg:ident| $body:expr) => {
        extern "C" fn $name(frame: &mut SyscallFrame) {
            let a = frame.args;
            let result = process::current().ok_or(errno::ESRCH).and_then(|$p| {
                let $ep = $p.handles().lock().get(a[0])?;
                let $msg: Message = [a[1], a[2], a[3], a[4]];
                $body
            });
            frame.rax = encode(result.map(|reply| {
                frame.args[1..=MSG_WORDS].copy_from_slice(&reply);
                0
            }));
        }
    };
}

ipc_syscall!(sys_recv, |p, ep, _msg| p.ipc().recv(&ep));
ipc_syscall!(sys_call, |p, ep, msg| p.ipc().call(&ep, msg));
ipc_syscall!(sys_reply_recv, |p, ep, msg| p.ipc().reply_recv(&ep, msg));

/// The calling process's endpoint `handle`.
fn endpoint(handle: u64) -> Result<Arc<Endpoint>, i64> {
    let p = process::current().ok_or(errno::ESRCH)?;
    p.handles().lock().get(handle)
}
syscall!(sys_wait, |a| wait(a[0], a[1]));
syscall!(sys_mmap, |a| mmap(a[0], a[1]));
syscall!(sys_munmap, |a| munmap(a[0], a[1]));
syscall!(sys_cpu, |_a| Ok(
    crate::arch::x86_64::percpu::cpu_index() as u64
));
syscall!(sys_free_memory, |_a| Ok(
    crate::mm::frames::free_bytes() as u64
));

type SysResult = Result<u64, i64>;

/// `write(fd, buf, len)`: fd 1 (the console) only.
fn write(fd: u64, buf: u64, len: u64) -> SysResult {
    if fd != 1 {
        return Err(errno::EBADF);
    }
    if len > limits::MAX_WRITE {
        return Err(errno::EINVAL);
    }
    if !user::user_range(buf, len as usize) {
        return Err(errno::EFAULT);
    }
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

/// Longest sleep accepted (ms).
const MAX_SLEEP_MS: u64 = 60_000;

fn sleep(ms: u64) -> SysResult {
    if ms > MAX_SLEEP_MS {
        return Err(errno::EINVAL);
    }
    super::sleep_ms(ms);
    Ok(0)
}

fn spawn(name: u64, len: u64, arg: u64, endpoint: Option<Arc<Endpoint>>) -> SysResult {
    if len == 0 || len > limits::MAX_NAME {
        return Err(errno::EINVAL);
    }
    let mut buf = [0u8; limits::MAX_NAME as usize];
    let buf = &mut buf[..len as usize];
    user::copy_from_user(buf, name).map_err(|_| errno::EFAULT)?;
    let name = core::str::from_utf8(buf).map_err(|_| errno::ENOENT)?;
    match process::spawn_child(name, arg, endpoint) {
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
/// for an error.
fn wait(pid: u64, status: u64) -> SysResult {
    if !user::user_range(status, 8) {
        return Err(errno::EFAULT);
    }
    let code = process::wait_child(pid).ok_or(errno::ESRCH)?;
    user::copy_to_user(status, &code.to_le_bytes()).map_err(|_| errno::EFAULT)?;
    Ok(0)
}

fn mmap(len: u64, prot_bits: u64) -> SysResult {
    if prot_bits & !(prot::READ | prot::WRITE) != 0 {
        return Err(errno::EINVAL);
    }
    let space = process::current()
        .and_then(|p| p.space())
        .ok_or(errno::ESRCH)?;
    space
        .mmap(len, prot_bits & prot::WRITE != 0)
        .map_err(|e| match e {
            crate::mm::aspace::AspaceError::OutOfMemory => errno::ENOMEM,
            _ => errno::EINVAL,
        })
}

fn munmap(addr: u64, len: u64) -> SysResult {
    let space = process::current()
        .and_then(|p| p.space())
        .ok_or(errno::ESRCH)?;
    space
        .munmap(addr, len)
        .map(|()| 0)
        .map_err(|_| errno::EINVAL)
}
