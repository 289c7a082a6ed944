//! One safe, typed function per system call of [`crate::abi::nr`]. Each returns the call's
//! value or its [`Errno`]; [`exit`] does not return.

use crate::abi::{limits, nr};
use crate::errno::Errno;
use crate::raw::{syscall0, syscall1, syscall2, syscall3, syscall5};

/// A raw result as a `Result`: negative is `-errno`, everything else the value.
fn result(ret: u64) -> Result<u64, Errno> {
    match Errno::from_result(ret) {
        Some(e) => Err(e),
        None => Ok(ret),
    }
}

/// Ends the calling process with `code` (what its parent's [`wait`] returns).
pub fn exit(code: i64) -> ! {
    // SAFETY: EXIT takes no pointer and ends the process; nothing after it runs. If a kernel
    // did return, `ud2` faults the process instead of running on.
    unsafe {
        core::arch::asm!(
            "syscall",
            "ud2",
            in("rax") nr::EXIT, in("rdi") code,
            options(noreturn, nostack)
        )
    }
}

/// Writes `buf` to `fd` (1 is the console); returns the number of bytes written. At most
/// [`limits::MAX_WRITE`] bytes go in one call: a longer `buf` is written in part (the count
/// says how much), so a loop over the rest writes it all.
pub fn write(fd: u64, buf: &[u8]) -> Result<u64, Errno> {
    let len = buf.len().min(limits::MAX_WRITE as usize);
    // SAFETY: `buf` is readable for `len` bytes; WRITE only reads it.
    result(unsafe { syscall3(nr::WRITE, fd, buf.as_ptr() as u64, len as u64) })
}

/// Lets another thread or process run.
pub fn yield_now() -> Result<u64, Errno> {
    // SAFETY: YIELD takes no argument and touches no memory of the program.
    result(unsafe { syscall0(nr::YIELD) })
}

/// The calling process's id.
pub fn getpid() -> Result<u64, Errno> {
    // SAFETY: GETPID takes no argument and touches no memory of the program.
    result(unsafe { syscall0(nr::GETPID) })
}

/// Nanoseconds since boot.
pub fn clock_ns() -> Result<u64, Errno> {
    // SAFETY: CLOCK takes no argument and touches no memory of the program.
    result(unsafe { syscall0(nr::CLOCK) })
}

/// Sleeps for at least `ms` milliseconds.
pub fn sleep_ms(ms: u64) -> Result<u64, Errno> {
    // SAFETY: SLEEP takes a number, not a pointer.
    result(unsafe { syscall1(nr::SLEEP, ms) })
}

/// Starts the embedded program `name` as a child with `arg` in its `rdi`; returns its pid.
pub fn spawn(name: &str, arg: u64) -> Result<u64, Errno> {
    // SAFETY: `name` is readable for its length; SPAWN only reads it.
    result(unsafe { syscall3(nr::SPAWN, name.as_ptr() as u64, name.len() as u64, arg) })
}

/// Waits for the child `pid` to end and returns its exit code ([`crate::abi::KILLED`] if the
/// kernel ended it). The code comes back through memory, so any `i64` is a code and every
/// error is an error (`ESRCH`: not a child of the caller).
pub fn wait(pid: u64) -> Result<i64, Errno> {
    let mut code = 0i64;
    // SAFETY: `code` is a writable local of 8 bytes; WAIT stores the exit code there.
    result(unsafe { syscall2(nr::WAIT, pid, (&raw mut code) as u64) })?;
    Ok(code)
}

/// Maps `len` bytes (rounded up to 4 KiB) of zeroed anonymous memory with [`crate::abi::prot`]
/// bits `prot`; returns its address. The memory is the caller's until [`munmap`]: reaching it
/// goes through raw pointers (volatile where the kernel's demand paging is what is tested).
pub fn mmap(len: u64, prot: u64) -> Result<u64, Errno> {
    // SAFETY: MMAP takes numbers and adds a region the program does not use yet.
    result(unsafe { syscall2(nr::MMAP, len, prot) })
}

/// Removes the region [`mmap`] returned at `addr` with length `len`.
///
/// # Safety
/// Nothing may use the region afterwards: no reference or pointer into it is dereferenced
/// again (a later `mmap` may reuse the addresses for something else).
pub unsafe fn munmap(addr: u64, len: u64) -> Result<u64, Errno> {
    // SAFETY: the caller no longer uses the region (function contract).
    result(unsafe { syscall2(nr::MUNMAP, addr, len) })
}

/// The index of the CPU running the caller (it may have moved by the time this returns).
pub fn cpu() -> Result<u64, Errno> {
    // SAFETY: CPU takes no argument and touches no memory of the program.
    result(unsafe { syscall0(nr::CPU) })
}

/// Free physical memory, in bytes.
pub fn free_memory() -> Result<u64, Errno> {
    // SAFETY: FREE_MEMORY takes no argument and touches no memory of the program.
    result(unsafe { syscall0(nr::FREE_MEMORY) })
}

/// An IPC message ([`crate::abi::MSG_WORDS`] words, passed in registers).
pub type Message = [u64; crate::abi::MSG_WORDS];

/// An IPC call: handle in `rdi`, message in `rsi rdx r10 r8` both ways, `r9` the long-message
/// descriptor (0: none). The raw result and the message registers.
///
/// # Safety
/// `desc` is 0, or points at a writable five-word descriptor whose buffers are valid (readable
/// send part, writable receive part) for the call.
#[inline(always)]
unsafe fn ipc_raw(nr: u64, handle: u64, msg: Message, desc: u64) -> (u64, Message) {
    let ret: u64;
    let (mut m0, mut m1, mut m2, mut m3) = (msg[0], msg[1], msg[2], msg[3]);
    // SAFETY: the IPC calls take a handle and four words and return four words in the message
    // registers (the ABI); `rcx` and `r11` are clobbered; the memory they touch is the
    // descriptor and its buffers, valid by the caller's contract (none when `desc` is 0).
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret, in("rdi") handle,
            inlateout("rsi") m0, inlateout("rdx") m1, inlateout("r10") m2, inlateout("r8") m3,
            in("r9") desc,
            out("rcx") _, out("r11") _,
            options(nostack)
        )
    };
    (ret, [m0, m1, m2, m3])
}

/// A register-only IPC call.
fn ipc(nr: u64, handle: u64, msg: Message) -> Result<Message, Errno> {
    // SAFETY: no descriptor: the call touches no memory of the program.
    let (ret, reply) = unsafe { ipc_raw(nr, handle, msg, 0) };
    result(ret).map(|_| reply)
}

/// An IPC call with a long message: `send` goes with `msg`, and the bytes that come back are
/// copied into `recv`; the reply's words and the full length of the bytes received (more than
/// `recv.len()` when some did not fit).
fn ipc_long(
    nr: u64,
    handle: u64,
    msg: Message,
    send: &[u8],
    recv: &mut [u8],
) -> Result<(Message, usize), Errno> {
    let mut desc: [u64; 5] = [
        send.as_ptr() as u64,
        send.len() as u64,
        recv.as_mut_ptr() as u64,
        recv.len() as u64,
        0,
    ];
    // SAFETY: the descriptor points at `send` (read) and `recv` (written, at most its length)
    // and is itself writable (its last word); all three outlive the call.
    let (ret, reply) = unsafe { ipc_raw(nr, handle, msg, desc.as_mut_ptr() as u64) };
    result(ret).map(|_| (reply, desc[4] as usize))
}

/// Creates an IPC endpoint; its handle.
pub fn endpoint() -> Result<u64, Errno> {
    // SAFETY: ENDPOINT takes no argument and touches no memory of the program.
    result(unsafe { syscall0(nr::ENDPOINT) })
}

/// Sends `msg` through the endpoint `handle`, waiting until a receiver takes it.
pub fn send(handle: u64, msg: Message) -> Result<(), Errno> {
    ipc(nr::SEND, handle, msg).map(|_| ())
}

/// Waits for a message on the endpoint `handle`.
pub fn recv(handle: u64) -> Result<Message, Errno> {
    ipc(nr::RECV, handle, [0; crate::abi::MSG_WORDS])
}

/// Sends `msg` through the endpoint `handle` and waits for the reply.
pub fn call(handle: u64, msg: Message) -> Result<Message, Errno> {
    ipc(nr::CALL, handle, msg)
}

/// Replies `msg` to the last caller received (if any), then waits for the next message.
pub fn reply_recv(handle: u64, msg: Message) -> Result<Message, Errno> {
    ipc(nr::REPLY_RECV, handle, msg)
}

/// [`send`] with `data` going with the message (a long message).
pub fn send_with(handle: u64, msg: Message, data: &[u8]) -> Result<(), Errno> {
    ipc_long(nr::SEND, handle, msg, data, &mut []).map(|_| ())
}

/// [`recv`], the bytes that came with the message copied into `buf`; the message and their
/// full length.
pub fn recv_with(handle: u64, buf: &mut [u8]) -> Result<(Message, usize), Errno> {
    ipc_long(nr::RECV, handle, [0; crate::abi::MSG_WORDS], &[], buf)
}

/// [`call`] with `data` going with the message, the reply's bytes copied into `buf`; the
/// reply and their full length.
pub fn call_with(
    handle: u64,
    msg: Message,
    data: &[u8],
    buf: &mut [u8],
) -> Result<(Message, usize), Errno> {
    ipc_long(nr::CALL, handle, msg, data, buf)
}

/// [`reply_recv`] with `data` going with the reply, the next message's bytes copied into
/// `buf`; the message and their full length.
pub fn reply_recv_with(
    handle: u64,
    msg: Message,
    data: &[u8],
    buf: &mut [u8],
) -> Result<(Message, usize), Errno> {
    ipc_long(nr::REPLY_RECV, handle, msg, data, buf)
}

/// [`spawn`], with the caller's handle `handle` as the child's handle 0.
pub fn spawn_with(name: &str, arg: u64, handle: u64) -> Result<u64, Errno> {
    spawn_with_handles(name, arg, &[handle])
}

/// [`spawn`], the child's handle `i` naming what the caller's `handles[i]` names.
pub fn spawn_with_handles(name: &str, arg: u64, handles: &[u64]) -> Result<u64, Errno> {
    // SAFETY: `name` and `handles` are readable for their lengths; SPAWN_WITH only reads them.
    result(unsafe {
        syscall5(
            nr::SPAWN_WITH,
            name.as_ptr() as u64,
            name.len() as u64,
            arg,
            handles.as_ptr() as u64,
            handles.len() as u64,
        )
    })
}

/// Creates a notification; its handle.
pub fn notification() -> Result<u64, Errno> {
    // SAFETY: NOTIFICATION takes no argument and touches no memory of the program.
    result(unsafe { syscall0(nr::NOTIFICATION) })
}

/// ORs `bits` into notification `handle`, waking its waiter.
pub fn signal(handle: u64, bits: u64) -> Result<(), Errno> {
    // SAFETY: SIGNAL takes two words and touches no memory of the program.
    result(unsafe { syscall2(nr::SIGNAL, handle, bits) }).map(|_| ())
}

/// A call that returns a word in `rsi` (WAIT_NOTIFY, POLL).
fn bits_call(nr: u64, handle: u64) -> Result<u64, Errno> {
    let ret: u64;
    let bits: u64;
    // SAFETY: the call takes a handle, touches no memory of the program and returns a word in
    // `rsi` (the ABI); `rcx` and `r11` are clobbered.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret, in("rdi") handle, lateout("rsi") bits,
            out("rcx") _, out("r11") _,
            options(nostack)
        )
    };
    result(ret).map(|_| bits)
}

/// Waits until notification `handle` has bits set; takes and returns them.
pub fn wait_notify(handle: u64) -> Result<u64, Errno> {
    bits_call(nr::WAIT_NOTIFY, handle)
}

/// Takes the bits of notification `handle` without waiting (0 if none).
pub fn poll(handle: u64) -> Result<u64, Errno> {
    bits_call(nr::POLL, handle)
}

/// Makes every interrupt on user interrupt line `line` signal `bits` on notification `handle`.
pub fn irq_bind(handle: u64, line: u64, bits: u64) -> Result<(), Errno> {
    // SAFETY: IRQ_BIND takes three words and touches no memory of the program.
    result(unsafe { syscall3(nr::IRQ_BIND, handle, line, bits) }).map(|_| ())
}

/// Creates `len` bytes of zeroed shared memory; its handle.
pub fn shm(len: u64) -> Result<u64, Errno> {
    // SAFETY: SHM takes a length and touches no memory of the program.
    result(unsafe { syscall1(nr::SHM, len) })
}

/// Maps shared-memory object `handle`; its address.
pub fn map(handle: u64) -> Result<u64, Errno> {
    // SAFETY: MAP adds a new region; it changes no memory the program uses.
    result(unsafe { syscall1(nr::MAP, handle) })
}

/// Ends the caller's child `pid`.
pub fn kill(pid: u64) -> Result<(), Errno> {
    // SAFETY: KILL takes a pid and touches no memory of the program.
    result(unsafe { syscall1(nr::KILL, pid) }).map(|_| ())
}
