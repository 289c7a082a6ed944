//! The system calls (the ABI is `reference-kernel/user/rt/src/abi.rs`, shared with user
//! programs): every argument is checked, user memory is only reached through
//! `arch::x86_64::user`'s copies (a bad pointer is `-EFAULT`, never a kernel fault), and every
//! failure is a negative error code.

use crate::arch::x86_64::user::{self, SyscallFrame};
use crate::process_abi::{errno, limits, nr, prot};

use super::process::{self, ProcessError};

/// The system-call hook: runs the call in `frame.rax` and writes its result there.
pub fn dispatch(frame: &mut SyscallFrame) {
    let a = &frame.args;
    let result = match frame.rax {
        nr::EXIT => {
            process::exit(a[0] as i64);
            Err(errno::ESRCH)
        }
        nr::WRITE => write(a[0], a[1], a[2]),
        nr::YIELD => {
            super::yield_now();
            Ok(0)
        }
        nr::GETPID => process::current_pid().ok_or(errno::ESRCH),
        nr::CLOCK => Ok(clock_ns()),
        nr::SLEEP => sleep(a[0]),
        nr::SPAWN => spawn(a[0], a[1], a[2]),
        nr::WAIT => wait(a[0], a[1]),
        nr::MMAP => mmap(a[0], a[1]),
        nr::MUNMAP => munmap(a[0], a[1]),
        nr::CPU => Ok(crate::arch::x86_64::percpu::cpu_index() as u64),
        nr::FREE_MEMORY => Ok(crate::mm::frames::free_bytes() as u64),
        _ => Err(errno::ENOSYS),
    };
    frame.rax = match result {
        Ok(v) => v,
        Err(e) => (-e) as u64,
    };
}

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

fn spawn(name: u64, len: u64, arg: u64) -> SysResult {
    if len == 0 || len > limits::MAX_NAME {
        return Err(errno::EINVAL);
    }
    let mut buf = [0u8; limits::MAX_NAME as usize];
    let buf = &mut buf[..len as usize];
    user::copy_from_user(buf, name).map_err(|_| errno::EFAULT)?;
    let name = core::str::from_utf8(buf).map_err(|_| errno::ENOENT)?;
    match process::spawn_child(name, arg) {
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
