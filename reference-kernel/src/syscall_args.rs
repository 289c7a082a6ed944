//! The system calls' argument checks that need only the registers (the ABI is
//! [`crate::process_abi`]): user ranges and their overflow, lengths and counts against
//! [`limits`], `mmap` protection bits, non-zero bits, interrupt lines. The kernel's
//! `task/syscall.rs` decodes every call's six argument words here before it touches kernel
//! state, and reports the errors with the same codes and in the same order as it did when these
//! checks were written inline:
//!
//! * A check that ran after a lookup of kernel state (a handle that must name an object) is
//!   kept as a `Result` that the kernel reports after that lookup: [`SpawnWith::spawn`] and
//!   [`IrqBind::binding`] (decoded up front), [`Ipc::desc`] (checked when asked).
//! * A check that ran after finding the calling process only (which never fails for a call made
//!   from ring 3) now runs first: the `mmap` length, the `munmap` range.
//!
//! [`decode`] maps a call number to its decoder (the kernel's table calls the decoders
//! directly); the fuzz target `syscall_args` checks it against a plain model.

use crate::process_abi::{MSG_WORDS, errno, layout, limits, nr, prot};

/// Entries of the kernel's system-call table: one past the highest number. A higher number is
/// `-ENOSYS`.
pub const CALLS: u64 = nr::KILL + 1;

/// Bytes of a long-message descriptor in user memory: five words, see [`nr::SEND`].
pub const DESC_BYTES: u64 = 5 * 8;

/// What a decoder returns: the decoded arguments, or the ABI's error number (positive, see
/// [`errno`]).
pub type Decoded<T> = Result<T, i64>;

/// Whether `[addr, addr + len)` lies in the user half: it does not wrap and ends at or below
/// [`layout::USER_END`] (an empty range at any user address, or at `USER_END`, is fine).
#[inline]
pub const fn user_range(addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => end <= layout::USER_END,
        None => false,
    }
}

/// `len` bytes at user address `addr`, checked with [`user_range`]. Whether the memory is
/// mapped is only known when it is copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRange {
    addr: u64,
    len: u64,
}

impl UserRange {
    /// The range, or `-EFAULT` when it is not inside the user half.
    #[inline]
    pub const fn new(addr: u64, len: u64) -> Decoded<Self> {
        if user_range(addr, len) {
            Ok(Self { addr, len })
        } else {
            Err(errno::EFAULT)
        }
    }

    /// The first address.
    #[inline]
    pub const fn addr(&self) -> u64 {
        self.addr
    }

    /// Bytes in the range.
    #[inline]
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Whether the range holds no byte.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the last address (at most [`layout::USER_END`]).
    #[inline]
    pub const fn end(&self) -> u64 {
        self.addr + self.len
    }
}

/// `write(fd, buf, len)`: fd 1 only (`-EBADF`), at most [`limits::MAX_WRITE`] bytes
/// (`-EINVAL`), `buf` in the user half (`-EFAULT`); the bytes to write.
#[inline]
pub fn write(a: [u64; 6]) -> Decoded<UserRange> {
    if a[0] != 1 {
        return Err(errno::EBADF);
    }
    if a[2] > limits::MAX_WRITE {
        return Err(errno::EINVAL);
    }
    UserRange::new(a[1], a[2])
}

/// `sleep(ms)`: at most [`limits::MAX_SLEEP_MS`] (`-EINVAL`).
#[inline]
pub fn sleep(a: [u64; 6]) -> Decoded<u64> {
    if a[0] > limits::MAX_SLEEP_MS {
        return Err(errno::EINVAL);
    }
    Ok(a[0])
}

/// The arguments of `spawn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spawn {
    /// The program name's bytes: 1 to [`limits::MAX_NAME`] of them.
    pub name: UserRange,
    /// The child's `rdi`.
    pub arg: u64,
}

/// `spawn(name, name_len, arg)`: a name of 1 to [`limits::MAX_NAME`] bytes (`-EINVAL`) in
/// the user half (`-EFAULT`).
#[inline]
pub fn spawn(a: [u64; 6]) -> Decoded<Spawn> {
    if a[1] == 0 || a[1] > limits::MAX_NAME {
        return Err(errno::EINVAL);
    }
    Ok(Spawn {
        name: UserRange::new(a[0], a[1])?,
        arg: a[2],
    })
}

/// The arguments of `spawn_with`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpawnWith {
    /// The handle words: `count` of them (at most [`limits::MAX_HANDLES`]).
    pub handles: UserRange,
    /// Handles the child gets.
    pub count: usize,
    /// The `spawn` arguments, reported after the handles are looked up.
    pub spawn: Decoded<Spawn>,
}

/// `spawn_with(name, name_len, arg, handles, count)`: at most [`limits::MAX_HANDLES`] handles
/// (`-EINVAL`) whose words lie in the user half (`-EFAULT`); the rest as [`spawn`].
#[inline]
pub fn spawn_with(a: [u64; 6]) -> Decoded<SpawnWith> {
    if a[4] > limits::MAX_HANDLES {
        return Err(errno::EINVAL);
    }
    Ok(SpawnWith {
        handles: UserRange::new(a[3], a[4] * 8)?,
        count: a[4] as usize,
        spawn: spawn(a),
    })
}

/// The arguments of `wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The child's process id.
    pub pid: u64,
    /// Where its exit code goes: 8 bytes in the user half.
    pub status: UserRange,
}

/// `wait(pid, status)`: `status` is 8 bytes in the user half (`-EFAULT`, before the wait).
#[inline]
pub fn wait(a: [u64; 6]) -> Decoded<Wait> {
    Ok(Wait {
        pid: a[0],
        status: UserRange::new(a[1], 8)?,
    })
}

/// The arguments of `mmap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmap {
    /// Bytes to reserve: 1 to [`limits::MAX_MMAP`].
    pub len: u64,
    /// Whether [`prot::WRITE`] was asked for.
    pub writable: bool,
}

/// `mmap(len, prot)`: only [`prot`] bits (`-EINVAL`), a length of 1 to [`limits::MAX_MMAP`]
/// bytes (`-EINVAL`).
#[inline]
pub fn mmap(a: [u64; 6]) -> Decoded<Mmap> {
    if a[1] & !(prot::READ | prot::WRITE) != 0 || a[0] == 0 || a[0] > limits::MAX_MMAP {
        return Err(errno::EINVAL);
    }
    Ok(Mmap {
        len: a[0],
        writable: a[1] & prot::WRITE != 0,
    })
}

/// `munmap(addr, len)`: a non-empty range, its length rounded up to 4 KiB, in the user half
/// (`-EINVAL`: no `mmap` region lies elsewhere); the rounded range.
#[inline]
pub fn munmap(a: [u64; 6]) -> Decoded<UserRange> {
    let len = a[1]
        .checked_next_multiple_of(4096)
        .filter(|&len| len > 0)
        .ok_or(errno::EINVAL)?;
    UserRange::new(a[0], len).map_err(|_| errno::EINVAL)
}

/// The arguments of the IPC calls (`send`, `recv`, `call`, `reply_recv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipc {
    /// The endpoint's handle.
    pub handle: u64,
    /// The register message.
    pub msg: [u64; MSG_WORDS],
    /// The descriptor's address (`r9`).
    desc_addr: u64,
}

impl Ipc {
    /// The long-message descriptor's [`DESC_BYTES`] (`None`: a register-only message), or
    /// `-EFAULT` when they are not in the user half. Checked when asked (the kernel asks
    /// after the endpoint is found), so the register-only path only compares with 0.
    #[inline]
    pub const fn desc(&self) -> Decoded<Option<UserRange>> {
        match self.desc_addr {
            0 => Ok(None),
            addr => match UserRange::new(addr, DESC_BYTES) {
                Ok(range) => Ok(Some(range)),
                Err(e) => Err(e),
            },
        }
    }
}

/// `send`/`recv`/`call`/`reply_recv(handle, m0, m1, m2, m3, desc)`: a descriptor address other
/// than 0 must hold [`DESC_BYTES`] in the user half (`-EFAULT`).
#[inline]
pub fn ipc(a: [u64; 6]) -> Ipc {
    Ipc {
        handle: a[0],
        msg: [a[1], a[2], a[3], a[4]],
        desc_addr: a[5],
    }
}

/// A long message's descriptor, as read from user memory (the first four of its five words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataDesc {
    /// Address of the bytes to send.
    pub send_ptr: u64,
    /// Bytes to send: at most [`limits::MAX_IPC_DATA`].
    pub send_len: u64,
    /// Address of the buffer for the bytes received.
    pub recv_ptr: u64,
    /// Bytes the buffer holds: at most [`limits::MAX_IPC_DATA`].
    pub recv_cap: u64,
}

impl DataDesc {
    /// Offset of the word where the received length is stored.
    pub const RECV_LEN_OFFSET: u64 = 4 * 8;

    /// The descriptor with `words`; `-EINVAL` for a length above [`limits::MAX_IPC_DATA`].
    /// The pointers are checked when the bytes are copied.
    #[inline]
    pub fn from_words(words: [u64; 4]) -> Decoded<Self> {
        let [send_ptr, send_len, recv_ptr, recv_cap] = words;
        if send_len > limits::MAX_IPC_DATA || recv_cap > limits::MAX_IPC_DATA {
            return Err(errno::EINVAL);
        }
        Ok(Self {
            send_ptr,
            send_len,
            recv_ptr,
            recv_cap,
        })
    }
}

/// The arguments of `signal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    /// The notification's handle.
    pub handle: u64,
    /// The bits to set (not 0).
    pub bits: u64,
}

/// `signal(handle, bits)`: `bits` not 0 (`-EINVAL`, before the handle is looked up).
#[inline]
pub fn signal(a: [u64; 6]) -> Decoded<Signal> {
    if a[1] == 0 {
        return Err(errno::EINVAL);
    }
    Ok(Signal {
        handle: a[0],
        bits: a[1],
    })
}

/// The arguments of `irq_bind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqBind {
    /// The notification's handle.
    pub handle: u64,
    /// The line (below [`limits::USER_IRQ_LINES`]) and the bits (not 0), or `-EINVAL`;
    /// reported after the notification is found.
    pub binding: Decoded<(u8, u64)>,
}

/// `irq_bind(handle, line, bits)`: a line below [`limits::USER_IRQ_LINES`] and bits other than
/// 0 (`-EINVAL`, after the handle is looked up).
#[inline]
pub fn irq_bind(a: [u64; 6]) -> IrqBind {
    let binding = if a[1] < limits::USER_IRQ_LINES && a[2] != 0 {
        Ok((a[1] as u8, a[2]))
    } else {
        Err(errno::EINVAL)
    };
    IrqBind {
        handle: a[0],
        binding,
    }
}

/// `shm(len)`: 1 to [`limits::MAX_SHARED`] bytes (`-EINVAL`).
#[inline]
pub fn shm(a: [u64; 6]) -> Decoded<u64> {
    if a[0] == 0 || a[0] > limits::MAX_SHARED {
        return Err(errno::EINVAL);
    }
    Ok(a[0])
}

/// One call's decoded arguments (see [`decode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// [`nr::EXIT`] with the exit code.
    Exit(i64),
    /// [`nr::WRITE`] to the console.
    Write(UserRange),
    /// A call without arguments: [`nr::YIELD`], [`nr::GETPID`], [`nr::CLOCK`], [`nr::CPU`],
    /// [`nr::FREE_MEMORY`], [`nr::ENDPOINT`], [`nr::NOTIFICATION`].
    NoArgs,
    /// [`nr::SLEEP`] (ms).
    Sleep(u64),
    /// [`nr::SPAWN`].
    Spawn(Spawn),
    /// [`nr::SPAWN_WITH`].
    SpawnWith(SpawnWith),
    /// [`nr::WAIT`].
    Wait(Wait),
    /// [`nr::MMAP`].
    Mmap(Mmap),
    /// [`nr::MUNMAP`] of the rounded range.
    Munmap(UserRange),
    /// [`nr::SEND`], [`nr::RECV`], [`nr::CALL`], [`nr::REPLY_RECV`].
    Ipc(Ipc),
    /// [`nr::SIGNAL`].
    Signal(Signal),
    /// [`nr::IRQ_BIND`].
    IrqBind(IrqBind),
    /// [`nr::SHM`] (bytes).
    Shm(u64),
    /// A call whose one argument is a handle or a process id, checked against kernel state
    /// only: [`nr::WAIT_NOTIFY`], [`nr::POLL`], [`nr::MAP`], [`nr::KILL`].
    Id(u64),
}

/// Call `number`'s arguments `a` (`rdi rsi rdx r10 r8 r9`) decoded by its decoder, or the
/// first error those checks report; `-ENOSYS` for a number without a call.
#[inline]
pub fn decode(number: u64, a: [u64; 6]) -> Decoded<Call> {
    Ok(match number {
        nr::EXIT => Call::Exit(a[0] as i64),
        nr::WRITE => Call::Write(write(a)?),
        nr::YIELD
        | nr::GETPID
        | nr::CLOCK
        | nr::CPU
        | nr::FREE_MEMORY
        | nr::ENDPOINT
        | nr::NOTIFICATION => Call::NoArgs,
        nr::SLEEP => Call::Sleep(sleep(a)?),
        nr::SPAWN => Call::Spawn(spawn(a)?),
        nr::SPAWN_WITH => Call::SpawnWith(spawn_with(a)?),
        nr::WAIT => Call::Wait(wait(a)?),
        nr::MMAP => Call::Mmap(mmap(a)?),
        nr::MUNMAP => Call::Munmap(munmap(a)?),
        nr::SEND | nr::RECV | nr::CALL | nr::REPLY_RECV => Call::Ipc(ipc(a)),
        nr::SIGNAL => Call::Signal(signal(a)?),
        nr::IRQ_BIND => Call::IrqBind(irq_bind(a)),
        nr::SHM => Call::Shm(shm(a)?),
        nr::WAIT_NOTIFY | nr::POLL | nr::MAP | nr::KILL => Call::Id(a[0]),
        _ => return Err(errno::ENOSYS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u64; 6] = [0; 6];

    fn args(words: &[u64]) -> [u64; 6] {
        let mut a = A;
        a[..words.len()].copy_from_slice(words);
        a
    }

    #[test]
    fn user_ranges_end_at_the_user_half_and_never_wrap() {
        let end = layout::USER_END;
        assert!(user_range(0, 0));
        assert!(user_range(end, 0));
        assert!(user_range(end - 8, 8));
        assert!(!user_range(end - 7, 8));
        assert!(!user_range(end + 1, 0));
        assert!(!user_range(u64::MAX, 1));
        assert!(!user_range(8, u64::MAX - 4));
        assert_eq!(UserRange::new(end - 8, 8).map(|r| r.end()), Ok(end));
        assert_eq!(UserRange::new(u64::MAX - 3, 8), Err(errno::EFAULT));
    }

    #[test]
    fn numbers_without_a_call_are_enosys() {
        assert_eq!(decode(CALLS, A), Err(errno::ENOSYS));
        assert_eq!(decode(u64::MAX, A), Err(errno::ENOSYS));
        for number in 0..CALLS {
            assert_ne!(decode(number, A), Err(errno::ENOSYS), "call {number}");
        }
    }

    #[test]
    fn write_checks_fd_then_length_then_range() {
        let max = limits::MAX_WRITE;
        assert_eq!(write(args(&[2, u64::MAX, max + 1])), Err(errno::EBADF));
        assert_eq!(write(args(&[1, u64::MAX, max + 1])), Err(errno::EINVAL));
        assert_eq!(write(args(&[1, u64::MAX - 2, 4])), Err(errno::EFAULT));
        assert_eq!(
            write(args(&[1, layout::USER_END - max + 1, max])),
            Err(errno::EFAULT)
        );
        let r = write(args(&[1, 0x40_0000, max])).unwrap();
        assert_eq!((r.addr(), r.len()), (0x40_0000, max));
    }

    #[test]
    fn sleep_and_shm_limits() {
        assert_eq!(
            sleep(args(&[limits::MAX_SLEEP_MS])),
            Ok(limits::MAX_SLEEP_MS)
        );
        assert_eq!(sleep(args(&[limits::MAX_SLEEP_MS + 1])), Err(errno::EINVAL));
        assert_eq!(shm(args(&[0])), Err(errno::EINVAL));
        assert_eq!(shm(args(&[1])), Ok(1));
        assert_eq!(shm(args(&[limits::MAX_SHARED])), Ok(limits::MAX_SHARED));
        assert_eq!(shm(args(&[limits::MAX_SHARED + 1])), Err(errno::EINVAL));
    }

    #[test]
    fn spawn_names_are_short_and_in_the_user_half() {
        assert_eq!(spawn(args(&[0x1000, 0])), Err(errno::EINVAL));
        assert_eq!(
            spawn(args(&[0x1000, limits::MAX_NAME + 1])),
            Err(errno::EINVAL)
        );
        assert_eq!(spawn(args(&[u64::MAX, 4])), Err(errno::EFAULT));
        let s = spawn(args(&[0x1000, 3, 7])).unwrap();
        assert_eq!((s.name.addr(), s.name.len(), s.arg), (0x1000, 3, 7));
    }

    #[test]
    fn spawn_with_reports_the_name_after_the_handles() {
        let max = limits::MAX_HANDLES;
        assert_eq!(
            spawn_with(args(&[0, 0, 0, 0x1000, max + 1])),
            Err(errno::EINVAL)
        );
        assert_eq!(
            spawn_with(args(&[0, 0, 0, layout::USER_END - 8, 2])),
            Err(errno::EFAULT)
        );
        let s = spawn_with(args(&[0, 0, 0, 0x1000, max])).unwrap();
        assert_eq!((s.handles.len(), s.count), (max * 8, max as usize));
        assert_eq!(s.spawn, Err(errno::EINVAL));
        // No handles: the address must still be in the user half, as an empty copy checks.
        assert_eq!(
            spawn_with(args(&[0x1000, 1, 0, layout::USER_END + 1, 0])),
            Err(errno::EFAULT)
        );
        let s = spawn_with(args(&[0x1000, 1, 9, layout::USER_END, 0])).unwrap();
        assert_eq!(s.spawn.map(|s| s.arg), Ok(9));
    }

    #[test]
    fn wait_needs_eight_user_bytes() {
        assert_eq!(wait(args(&[1, layout::USER_END - 7])), Err(errno::EFAULT));
        let w = wait(args(&[5, layout::USER_END - 8])).unwrap();
        assert_eq!((w.pid, w.status.len()), (5, 8));
    }

    #[test]
    fn mmap_checks_prot_and_length() {
        assert_eq!(mmap(args(&[4096, 4])), Err(errno::EINVAL));
        assert_eq!(mmap(args(&[0, prot::READ])), Err(errno::EINVAL));
        assert_eq!(
            mmap(args(&[limits::MAX_MMAP + 1, prot::READ])),
            Err(errno::EINVAL)
        );
        assert_eq!(
            mmap(args(&[limits::MAX_MMAP, prot::READ | prot::WRITE])),
            Ok(Mmap {
                len: limits::MAX_MMAP,
                writable: true
            })
        );
        assert_eq!(
            mmap(args(&[1, 0])),
            Ok(Mmap {
                len: 1,
                writable: false
            })
        );
    }

    #[test]
    fn munmap_rounds_up_without_wrapping() {
        assert_eq!(munmap(args(&[0x1000, 0])), Err(errno::EINVAL));
        assert_eq!(munmap(args(&[0x1000, u64::MAX])), Err(errno::EINVAL));
        assert_eq!(
            munmap(args(&[layout::USER_END - 4096, 4097])),
            Err(errno::EINVAL)
        );
        let r = munmap(args(&[layout::USER_END - 8192, 4097])).unwrap();
        assert_eq!(
            (r.addr(), r.end()),
            (layout::USER_END - 8192, layout::USER_END)
        );
    }

    #[test]
    fn ipc_descriptors() {
        let i = ipc([3, 1, 2, 3, 4, 0]);
        assert_eq!((i.handle, i.msg, i.desc()), (3, [1, 2, 3, 4], Ok(None)));
        let top = layout::USER_END - DESC_BYTES;
        assert_eq!(
            ipc([3, 0, 0, 0, 0, top]).desc(),
            UserRange::new(top, DESC_BYTES).map(Some)
        );
        assert_eq!(ipc([3, 0, 0, 0, 0, top + 1]).desc(), Err(errno::EFAULT));
        let max = limits::MAX_IPC_DATA;
        assert!(DataDesc::from_words([1, max, 2, max]).is_ok());
        assert_eq!(DataDesc::from_words([1, max + 1, 2, 0]), Err(errno::EINVAL));
        assert_eq!(DataDesc::from_words([1, 0, 2, max + 1]), Err(errno::EINVAL));
    }

    #[test]
    fn signal_and_irq_bind_bits() {
        assert_eq!(signal(args(&[1, 0])), Err(errno::EINVAL));
        assert_eq!(signal(args(&[1, 6])), Ok(Signal { handle: 1, bits: 6 }));
        let lines = limits::USER_IRQ_LINES;
        assert_eq!(
            irq_bind(args(&[1, lines - 1, 2])).binding,
            Ok(((lines - 1) as u8, 2))
        );
        assert_eq!(irq_bind(args(&[1, lines, 2])).binding, Err(errno::EINVAL));
        assert_eq!(irq_bind(args(&[1, 0, 0])).binding, Err(errno::EINVAL));
        assert_eq!(irq_bind(args(&[1, 1 << 32, 1])).binding, Err(errno::EINVAL));
    }
}
