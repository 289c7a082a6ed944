//! The reference kernel's system-call ABI: the one definition both sides use (the kernel
//! includes this file with `#[path]`, user programs through `veridian-user-rt`).
//!
//! Convention (as Linux x86_64): `syscall` with the number in `rax` and up to six arguments in
//! `rdi rsi rdx r10 r8 r9`; the result comes back in `rax`. A negative result `-e` is an error
//! code `e` from [`errno`]; everything else is the call's value. `rcx` and `r11` are clobbered
//! (the CPU keeps the return address and flags there); every other general-purpose register
//! is preserved, except that the IPC calls ([`nr::RECV`], [`nr::CALL`], [`nr::REPLY_RECV`])
//! return a message in `rsi rdx r10 r8`, and [`nr::WAIT_NOTIFY`]/[`nr::POLL`] return their bits
//! in `rsi`. The x87/SSE/AVX registers are not (kernel code such as its `memcpy` may use
//! them during a call): treat a system call like a SysV function call for them. The programs
//! here are built for a soft-float target and keep nothing there.
//!
//! A process starts at its ELF entry point with `rsp` 16-byte aligned at the top of its stack
//! and its spawn argument in `rdi`.

/// System-call numbers.
pub mod nr {
    /// `exit(code: i64) -> !`: ends the calling process with `code`.
    pub const EXIT: u64 = 0;
    /// `write(fd: u64, buf: *const u8, len: u64) -> written`: fd 1 is the console. At most
    /// [`super::limits::MAX_WRITE`] bytes per call.
    pub const WRITE: u64 = 1;
    /// `yield() -> 0`: lets another thread or process run.
    pub const YIELD: u64 = 2;
    /// `getpid() -> pid`.
    pub const GETPID: u64 = 3;
    /// `clock() -> ns`: nanoseconds since boot (TSC-based).
    pub const CLOCK: u64 = 4;
    /// `sleep(ms: u64) -> 0`: at most [`super::limits::MAX_SLEEP_MS`] (`-EINVAL`).
    pub const SLEEP: u64 = 5;
    /// `spawn(name: *const u8, name_len: u64, arg: u64) -> pid`: starts the embedded program
    /// `name` as a child process with `arg` in its `rdi`.
    pub const SPAWN: u64 = 6;
    /// `wait(pid: u64, status: *mut i64) -> 0`: waits for the calling process's child `pid` to
    /// end and stores its exit code ([`super::KILLED`] if the kernel ended it) at `status`
    /// (8 bytes, any alignment). `-EFAULT` if `status` is not writable user memory (checked
    /// first when it is outside the user half; otherwise after the wait, and a child reaped and
    /// then not stored is lost); `-ESRCH` if `pid` is not a child of the caller.
    pub const WAIT: u64 = 7;
    /// `mmap(len: u64, prot: u64) -> address`: reserves `len` bytes (rounded up to 4 KiB) of
    /// zeroed anonymous memory, backed on first touch. `prot` is [`super::prot`] bits.
    pub const MMAP: u64 = 8;
    /// `munmap(addr: u64, len: u64) -> 0`: removes exactly one earlier `mmap` region.
    pub const MUNMAP: u64 = 9;
    /// `cpu() -> index`: the CPU running the caller (for tests of placement).
    pub const CPU: u64 = 10;
    /// `frames() -> free frame bytes`: free physical memory (for tests that check that frames
    /// come back).
    pub const FREE_MEMORY: u64 = 11;
    /// `endpoint() -> handle`: creates a synchronous IPC endpoint and returns its handle in the
    /// caller's handle table (`-EMFILE` when the table is full).
    pub const ENDPOINT: u64 = 12;
    /// `send(handle, m0, m1, m2, m3, desc) -> 0`: sends the four-word message in
    /// `rsi rdx r10 r8` and blocks until a receiver took it. `desc` (`r9`): 0 for a
    /// register-only message, else the address of a long-message descriptor, five words:
    /// `[send_ptr, send_len, recv_ptr, recv_cap, recv_len]`. The `send_len` bytes at `send_ptr`
    /// go with the message (copied once into the kernel, at most
    /// [`super::limits::MAX_IPC_DATA`]); for the calls that receive ([`RECV`], [`CALL`],
    /// [`REPLY_RECV`]), the bytes that came with the message or reply received are copied to
    /// `recv_ptr` (as many as `recv_cap` holds; the rest are dropped) and their full length is
    /// stored in `recv_len` (0 when none came). A receive without a descriptor drops such
    /// bytes. Same rules for every IPC call below ([`RECV`] sends nothing: `send_len` must be
    /// 0 there, else `-EINVAL`).
    pub const SEND: u64 = 13;
    /// `recv(handle) -> 0`: blocks until a message arrives; its words come back in
    /// `rsi rdx r10 r8`. If it came from [`CALL`], the caller waits for the receiver's next
    /// [`REPLY_RECV`] (a new `recv` first ends that wait with `-EPIPE`).
    pub const RECV: u64 = 14;
    /// `call(handle, m0, m1, m2, m3) -> 0`: sends the message and blocks for the reply, whose
    /// words come back in `rsi rdx r10 r8`.
    pub const CALL: u64 = 15;
    /// `reply_recv(handle, m0, m1, m2, m3) -> 0`: replies with the message to the caller whose
    /// [`CALL`] the caller received last (if any), then receives as [`RECV`].
    pub const REPLY_RECV: u64 = 16;
    /// `spawn_with(name, name_len, arg, handles: *const u64, count) -> pid`: [`SPAWN`], and
    /// the child's handle `i` names what the caller's handle `handles[i]` names, for `i` below
    /// `count` (at most [`super::limits::MAX_HANDLES`]; `-EBADF` if one names nothing).
    pub const SPAWN_WITH: u64 = 17;
    /// `notification() -> handle`: creates a notification (one word of bits, all clear).
    pub const NOTIFICATION: u64 = 18;
    /// `signal(handle, bits) -> 0`: ORs `bits` (non-zero) into the notification and wakes its
    /// waiter. Never blocks.
    pub const SIGNAL: u64 = 19;
    /// `wait_notify(handle) -> 0`, bits in `rsi`: takes (and clears) the notification's bits,
    /// blocking while none is set. `-EBUSY` if another thread waits on it; `-EPIPE` if nobody
    /// else holds it (no process, no interrupt binding) and no bit is set.
    pub const WAIT_NOTIFY: u64 = 20;
    /// `poll(handle) -> 0`, bits in `rsi`: as [`WAIT_NOTIFY`] without blocking (0 if none).
    pub const POLL: u64 = 21;
    /// `irq_bind(handle, line, bits) -> 0`: every interrupt on user interrupt line `line`
    /// (below [`super::limits::USER_IRQ_LINES`]) signals `bits` (non-zero) on the notification,
    /// for as long as the notification exists. `-EINVAL` for a line out of range or no bits
    /// (checked after the handle), `-EBUSY` if a live notification has the line.
    pub const IRQ_BIND: u64 = 22;
    /// `shm(len) -> handle`: creates `len` bytes (rounded up to 4 KiB, at most
    /// [`super::limits::MAX_SHARED`]) of zeroed shared memory.
    pub const SHM: u64 = 23;
    /// `map(handle) -> address`: maps the whole shared-memory object read-write at a new
    /// address; [`MUNMAP`] of exactly that range removes the mapping. The memory lives while a
    /// handle or a mapping names it.
    pub const MAP: u64 = 24;
    /// `kill(pid) -> 0`: ends the calling process's child `pid` (exit code [`super::KILLED`]):
    /// at once if it is blocked in IPC or a notification wait, at the end of its next blocking
    /// system call (the IPC calls, [`WAIT_NOTIFY`], [`YIELD`], [`SLEEP`], [`WAIT`], [`WRITE`]),
    /// or at the next timer interrupt while it runs in ring 3. `-ESRCH` if `pid` is not a
    /// child of the caller.
    pub const KILL: u64 = 25;
}

/// Words in an IPC message (passed in registers both ways).
pub const MSG_WORDS: usize = 4;

/// Error codes (returned negated).
pub mod errno {
    /// No such program.
    pub const ENOENT: i64 = 2;
    /// No such process (or not a child of the caller).
    pub const ESRCH: i64 = 3;
    /// The wait was interrupted (the process is being killed; it never sees this code).
    pub const EINTR: i64 = 4;
    /// Bad file descriptor.
    pub const EBADF: i64 = 9;
    /// Out of memory.
    pub const ENOMEM: i64 = 12;
    /// Busy: another thread waits on the notification, or the interrupt line is bound.
    pub const EBUSY: i64 = 16;
    /// A pointer argument is not readable/writable user memory.
    pub const EFAULT: i64 = 14;
    /// An argument is out of range.
    pub const EINVAL: i64 = 22;
    /// Too many handles.
    pub const EMFILE: i64 = 24;
    /// The other side of an IPC endpoint is gone: no process left that could answer.
    pub const EPIPE: i64 = 32;
    /// Unknown system-call number.
    pub const ENOSYS: i64 = 38;
}

/// `mmap` protection bits.
pub mod prot {
    /// Readable (always implied).
    pub const READ: u64 = 1;
    /// Writable.
    pub const WRITE: u64 = 2;
}

/// Limits the kernel enforces.
pub mod limits {
    /// Bytes per `write` call.
    pub const MAX_WRITE: u64 = 4096;
    /// Bytes of a program name.
    pub const MAX_NAME: u64 = 64;
    /// Bytes of one `mmap` region.
    pub const MAX_MMAP: u64 = 1 << 30;
    /// Handles per process.
    pub const MAX_HANDLES: u64 = 16;
    /// Bytes of a long IPC message (either direction).
    pub const MAX_IPC_DATA: u64 = 64 << 10;
    /// Bytes of one shared-memory object.
    pub const MAX_SHARED: u64 = 16 << 20;
    /// User interrupt lines ([`super::nr::IRQ_BIND`]).
    pub const USER_IRQ_LINES: u64 = 8;
    /// Milliseconds of one `sleep` call.
    pub const MAX_SLEEP_MS: u64 = 60_000;
}

/// Exit code of a process the kernel ended (a fault).
pub const KILLED: i64 = -9;
/// Exit code of a process whose Rust code panicked (the runtime's panic handler).
pub const PANICKED: i64 = 101;

/// Address-space layout of a process (the lower, user half: below `0x0000_8000_0000_0000`).
pub mod layout {
    /// Lowest address a program's ELF segments may use (page 0 and the first MiB stay unmapped,
    /// so null and small offsets from null fault).
    pub const USER_MIN: u64 = 0x0010_0000;
    /// Where programs are linked (their first `PT_LOAD` segment).
    pub const PROGRAM_BASE: u64 = 0x0040_0000;
    /// End (exclusive) of the user half.
    pub const USER_END: u64 = 0x0000_8000_0000_0000;
    /// Top (exclusive) of the main thread's stack; `rsp` starts here.
    pub const STACK_TOP: u64 = 0x0000_7fff_ff00_0000;
    /// Size of the main thread's stack; the page below it is an unmapped guard page.
    pub const STACK_SIZE: u64 = 256 * 1024;
    /// Where `mmap` places regions (upwards).
    pub const MMAP_BASE: u64 = 0x0000_2000_0000_0000;
}
