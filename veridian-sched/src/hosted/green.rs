//! Green threads (stackful coroutines) on the crate's x86_64 context switch, for hosted tests
//! and benchmarks of the routine the kernel uses.
//!
//! # What it does
//! [`GreenThread::new`] maps a [`Stack`] and prepares it with
//! `prepare_stack`; [`GreenThread::resume`] switches to
//! the thread, which runs until it calls [`Yielder::suspend`] or returns. A `usize` travels
//! with every switch in each direction. The switch is the inline `switch_stacks`: the
//! compiler saves only the registers live at each switch, and no `ret` is mispredicted (see
//! the `arch::x86_64` module docs).
//!
//! # Floating-point control words
//! The System V ABI makes the MXCSR control bits and the x87 control word callee-saved, but
//! Rust code never changes them: Rust assumes the default rounding mode, exception masks and
//! denormal handling everywhere, and changing them (`_mm_setcsr`, or `asm!` that does not put
//! them back) is undefined behaviour (see the `core::arch::x86_64::_mm_setcsr` docs). So a
//! green thread running Rust code has nothing to preserve there, and [`GreenThread::new`]
//! switches without touching them, as corosensei does. A thread that calls foreign code which
//! changes them (C's `fesetround`, x87 precision control) and switches while they differ is
//! made with [`GreenThread::new_preserving_fp_control`] (a `GreenThread<true>`, whose closure
//! gets a `Yielder<true>`: the choice is part of the type, so no switch tests a flag): its
//! switches use `switch_stacks_fp`, which carries both words with each side (about 35 ns more per round
//! trip on the machine of `docs/benchmarks/sched.md`: `stmxcsr`/`fnstcw` are slow).
//!
//! # What it relies on
//! Linux `mmap`/`mprotect`/`munmap` (through `libc`) for stacks, and the x86_64 routine.
//!
//! # What it guarantees
//! - Each stack has an inaccessible guard page below it ([`Stack::guard`]): an overflow
//!   faults (SIGSEGV) instead of overwriting other memory.
//! - A panic inside a green thread is caught on its own stack and resumed in the thread that
//!   called [`GreenThread::resume`].
//! - Dropping a green thread that is suspended mid-way does not run the destructors of what
//!   lives on its stack, and *leaks* the stack mapping rather than unmapping it: memory that
//!   may hold pinned values is never reused, so `Pin`'s guarantee holds. Run threads to
//!   completion to reclaim their stacks.
//! - [`GreenThread`] is neither `Send` nor `Sync`: the closure need not be `Send`, and the
//!   thread runs only on the OS thread that resumes it.

use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr;
use std::any::Any;
use std::boxed::Box;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crate::arch::x86_64::{prepare_stack, switch_stacks_fp_with, switch_stacks_with};

/// A stack from `mmap`, with an inaccessible guard page below it.
#[derive(Debug)]
pub struct Stack {
    /// Start of the whole mapping (the guard page).
    base: *mut u8,
    /// Length of the whole mapping.
    len: usize,
    page: usize,
}

impl Stack {
    /// Maps a stack of at least `size` usable bytes (rounded up to whole pages, at least one)
    /// plus one guard page below it.
    pub fn new(size: usize) -> io::Result<Self> {
        // SAFETY: `sysconf` has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page)
            .ok()
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let usable = size
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let len = usable
            .checked_add(page)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choice affects no
        // existing memory.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the first page of the mapping we just made; nothing uses it.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            let err = io::Error::last_os_error();
            // SAFETY: unmapping our own fresh mapping.
            unsafe { libc::munmap(base, len) };
            return Err(err);
        }
        Ok(Self {
            base: base.cast(),
            len,
            page,
        })
    }

    /// The guard page's address range (inaccessible).
    pub fn guard(&self) -> core::ops::Range<usize> {
        self.base as usize..self.base as usize + self.page
    }

    /// The usable stack's address range (the stack grows down from `end`).
    pub fn usable(&self) -> core::ops::Range<usize> {
        self.base as usize + self.page..self.base as usize + self.len
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, not used any more (a `Stack` still in use by a suspended
        // green thread is leaked instead of dropped, see the module docs).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// What a [`GreenThread::resume`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// The thread called [`Yielder::suspend`] with this value.
    Yielded(usize),
    /// The thread's closure returned this value; the thread is finished.
    Finished(usize),
}

/// [`GreenThread::resume`] on a finished thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyFinished;

impl core::fmt::Display for AlreadyFinished {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the green thread has already finished")
    }
}

impl std::error::Error for AlreadyFinished {}

type Body<const FP: bool> = Box<dyn FnOnce(&Yielder<FP>, usize) -> usize>;

/// `Shared::green_sp` of a finished thread (no stack pointer is 0): one load tells `resume`
/// both where to switch and whether it may.
const FINISHED: usize = 0;

/// State shared by the two sides of a green thread; only ever accessed through a raw pointer.
struct Shared<const FP: bool> {
    /// Stack pointer of the side that called `resume`, while the green thread runs.
    caller_sp: usize,
    /// Stack pointer of the green thread while it is suspended; [`FINISHED`] once its closure
    /// returned (or panicked).
    green_sp: usize,
    /// The value of the first resume (later values travel in a register with the switch).
    transfer: usize,
    started: bool,
    body: Option<Body<FP>>,
    panic: Option<Box<dyn Any + Send>>,
}

/// A stackful coroutine on its own [`Stack`].
///
/// ```
/// use veridian_sched::hosted::green::{GreenThread, Resumed};
///
/// let mut t = GreenThread::new(64 * 1024, |y, first| {
///     let second = y.suspend(first + 1);
///     second * 10
/// })
/// .unwrap();
/// assert_eq!(t.resume(1).unwrap(), Resumed::Yielded(2));
/// assert_eq!(t.resume(5).unwrap(), Resumed::Finished(50));
/// assert!(t.resume(0).is_err());
/// ```
pub struct GreenThread<const FP_CONTROL: bool = false> {
    shared: *mut Shared<FP_CONTROL>,
    /// `None` once leaked (dropped while suspended).
    stack: Option<Stack>,
    _not_send: PhantomData<*mut ()>,
}

/// The green thread's handle for giving control back; passed to its closure.
pub struct Yielder<const FP_CONTROL: bool = false> {
    shared: *mut Shared<FP_CONTROL>,
    _not_send: PhantomData<Cell<()>>,
}

impl<const FP_CONTROL: bool> Yielder<FP_CONTROL> {
    /// Switches back to the caller of [`GreenThread::resume`], which returns
    /// [`Resumed::Yielded`]`(value)`; returns the value of the next `resume`.
    #[inline]
    pub fn suspend(&self, value: usize) -> usize {
        let shared = self.shared;
        // SAFETY: `shared` is the live `Shared` of the green thread running this code (it is
        // freed only when the thread is finished or will never run again). The caller's stack
        // pointer was stored by the `resume` that switched to us and is resumed only here.
        unsafe { switch::<FP_CONTROL>(&raw mut (*shared).green_sp, (*shared).caller_sp, value) }
    }
}

/// The switch a green thread uses (chosen at creation, the same on both sides); `value` goes
/// to the other side, which returns what the other side sends back.
///
/// # Safety
/// As for `switch_stacks_with` (and `switch_stacks_fp_with` with `FP_CONTROL`, whose extra
/// conditions always hold in a hosted process).
#[inline(always)]
unsafe fn switch<const FP_CONTROL: bool>(save: *mut usize, next: usize, value: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe {
        if FP_CONTROL {
            switch_stacks_fp_with(save, next, value)
        } else {
            switch_stacks_with(save, next, value)
        }
    }
}

/// First function on a new green thread's stack.
extern "C" fn green_entry<const FP_CONTROL: bool>(arg: usize) -> ! {
    let shared = arg as *mut Shared<FP_CONTROL>;
    // SAFETY: `arg` is the `Shared` pointer given to `prepare_stack`, live while the thread
    // runs; `resume` stored the caller's stack pointer before switching here.
    unsafe {
        let body = (*shared).body.take();
        let input = (*shared).transfer;
        let yielder = Yielder {
            shared,
            _not_send: PhantomData,
        };
        let mut result = 0;
        if let Some(body) = body {
            match catch_unwind(AssertUnwindSafe(|| body(&yielder, input))) {
                Ok(value) => result = value,
                Err(payload) => (*shared).panic = Some(payload),
            }
        }
        (*shared).green_sp = FINISHED;
        let mut dead_sp = 0usize;
        switch::<FP_CONTROL>(&raw mut dead_sp, (*shared).caller_sp, result);
    }
    // A finished thread is never resumed (`resume` refuses), so control cannot come back.
    std::process::abort()
}

impl GreenThread {
    /// A green thread with a stack of at least `stack_size` bytes that will run `body(yielder,
    /// first_resume_value)`; it starts at the first [`resume`](Self::resume).
    pub fn new(
        stack_size: usize,
        body: impl FnOnce(&Yielder, usize) -> usize + 'static,
    ) -> io::Result<Self> {
        Self::with_body(stack_size, Box::new(body))
    }
}

impl GreenThread<true> {
    /// As [`new`](Self::new), but every switch to and from the thread also carries MXCSR and
    /// the x87 control word (see "Floating-point control words" in the module docs): for a
    /// thread that calls foreign code which changes them. The thread starts with the words of
    /// its first resumer.
    pub fn new_preserving_fp_control(
        stack_size: usize,
        body: impl FnOnce(&Yielder<true>, usize) -> usize + 'static,
    ) -> io::Result<Self> {
        Self::with_body(stack_size, Box::new(body))
    }
}

impl<const FP_CONTROL: bool> GreenThread<FP_CONTROL> {
    fn with_body(stack_size: usize, body: Body<FP_CONTROL>) -> io::Result<Self> {
        let stack = Stack::new(stack_size)?;
        let shared = Box::into_raw(Box::new(Shared {
            caller_sp: 0,
            green_sp: 0,
            transfer: 0,
            started: false,
            body: Some(body),
            panic: None,
        }));
        let usable = stack.usable();
        // SAFETY: the usable part of our fresh mapping, used by nothing else.
        let sp = unsafe {
            prepare_stack(
                usable.start as *mut u8,
                usable.end as *mut u8,
                green_entry::<FP_CONTROL>,
                shared as usize,
            )
        };
        let Some(sp) = sp else {
            // SAFETY: `shared` came from `Box::into_raw` above and was not shared.
            drop(unsafe { Box::from_raw(shared) });
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        // SAFETY: `shared` is valid and not shared yet.
        unsafe { (*shared).green_sp = sp };
        Ok(Self {
            shared,
            stack: Some(stack),
            _not_send: PhantomData,
        })
    }

    /// Runs the thread until it suspends or finishes, handing it `value` (the closure's second
    /// argument on the first resume, the return value of `suspend` afterwards). A panic in the
    /// thread is resumed here.
    #[inline]
    pub fn resume(&mut self, value: usize) -> Result<Resumed, AlreadyFinished> {
        let shared = self.shared;
        // SAFETY: `shared` is live (freed only in `drop`); the green thread is suspended (it
        // runs only inside this call), so its stack pointer is valid to switch to, and our
        // frame stays valid until it switches back.
        unsafe {
            let next = (*shared).green_sp;
            if next == FINISHED {
                return Err(AlreadyFinished);
            }
            // Two plain stores rather than a test: the first switch to a new thread carries no
            // value (`green_entry` reads `transfer`), and `Drop` needs `started`.
            (*shared).started = true;
            (*shared).transfer = value;
            let back = switch::<FP_CONTROL>(&raw mut (*shared).caller_sp, next, value);
            // `green_entry` sets `panic` only before it marks the thread finished.
            if (*shared).green_sp == FINISHED {
                if let Some(payload) = (*shared).panic.take() {
                    resume_unwind(payload);
                }
                return Ok(Resumed::Finished(back));
            }
            Ok(Resumed::Yielded(back))
        }
    }

    /// Whether the thread's closure has returned (or panicked).
    pub fn is_finished(&self) -> bool {
        // SAFETY: `shared` is live until drop and not being written (the thread is not running).
        unsafe { (*self.shared).green_sp == FINISHED }
    }

    /// The thread's stack.
    pub fn stack(&self) -> Option<&Stack> {
        self.stack.as_ref()
    }
}

impl<const FP_CONTROL: bool> Drop for GreenThread<FP_CONTROL> {
    fn drop(&mut self) {
        // SAFETY: the thread is not running (it runs only inside `resume`), so nothing else
        // touches `shared`; it came from `Box::into_raw` and is freed only here. The green
        // stack may still hold a `Yielder` pointing at it, but that code never runs again.
        let shared = unsafe { Box::from_raw(self.shared) };
        if shared.started && shared.green_sp != FINISHED {
            // Suspended mid-way: leak the stack (see the module docs).
            core::mem::forget(self.stack.take());
        }
        drop(shared);
    }
}

impl<const FP_CONTROL: bool> core::fmt::Debug for GreenThread<FP_CONTROL> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GreenThread")
            .field("finished", &self.is_finished())
            .field("stack", &self.stack)
            .finish()
    }
}
