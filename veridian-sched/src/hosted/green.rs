//! Green threads (stackful coroutines) on the crate's x86_64 context switch, for hosted tests
//! and benchmarks of the routine the kernel uses.
//!
//! # What it does
//! [`GreenThread::new`] maps a [`Stack`] and prepares it with
//! `prepare_stack`; [`GreenThread::resume`] switches to
//! the thread, which runs until it calls [`Yielder::suspend`] or returns. A `usize` travels
//! with every switch in each direction. The switch is
//! `switch_stacks_fp`: ordinary compiled code runs on
//! both sides, so the floating-point control words are part of what the ABI says a call
//! preserves.
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

use crate::arch::x86_64::{prepare_stack, switch_stacks_fp};

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

type Body = Box<dyn FnOnce(&Yielder, usize) -> usize>;

/// State shared by the two sides of a green thread; only ever accessed through a raw pointer.
struct Shared {
    /// Stack pointer of the side that called `resume`, while the green thread runs.
    caller_sp: usize,
    /// Stack pointer of the green thread, while it is suspended.
    green_sp: usize,
    /// The value travelling with the current switch.
    transfer: usize,
    started: bool,
    finished: bool,
    body: Option<Body>,
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
pub struct GreenThread {
    shared: *mut Shared,
    /// `None` once leaked (dropped while suspended).
    stack: Option<Stack>,
    _not_send: PhantomData<*mut ()>,
}

/// The green thread's handle for giving control back; passed to its closure.
pub struct Yielder {
    shared: *mut Shared,
    _not_send: PhantomData<Cell<()>>,
}

impl Yielder {
    /// Switches back to the caller of [`GreenThread::resume`], which returns
    /// [`Resumed::Yielded`]`(value)`; returns the value of the next `resume`.
    pub fn suspend(&self, value: usize) -> usize {
        let shared = self.shared;
        // SAFETY: `shared` is the live `Shared` of the green thread running this code (it is
        // freed only when the thread is finished or will never run again). The caller's stack
        // pointer was stored by the `resume` that switched to us and is resumed only here.
        unsafe {
            (*shared).transfer = value;
            switch_stacks_fp(&raw mut (*shared).green_sp, (*shared).caller_sp);
            (*shared).transfer
        }
    }
}

/// First function on a new green thread's stack.
extern "C" fn green_entry(arg: usize) -> ! {
    let shared = arg as *mut Shared;
    // SAFETY: `arg` is the `Shared` pointer given to `prepare_stack`, live while the thread
    // runs; `resume` stored the caller's stack pointer before switching here.
    unsafe {
        let body = (*shared).body.take();
        let input = (*shared).transfer;
        let yielder = Yielder {
            shared,
            _not_send: PhantomData,
        };
        if let Some(body) = body {
            match catch_unwind(AssertUnwindSafe(|| body(&yielder, input))) {
                Ok(value) => (*shared).transfer = value,
                Err(payload) => (*shared).panic = Some(payload),
            }
        }
        (*shared).finished = true;
        let mut dead_sp = 0usize;
        switch_stacks_fp(&raw mut dead_sp, (*shared).caller_sp);
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
        let stack = Stack::new(stack_size)?;
        let shared = Box::into_raw(Box::new(Shared {
            caller_sp: 0,
            green_sp: 0,
            transfer: 0,
            started: false,
            finished: false,
            body: Some(Box::new(body)),
            panic: None,
        }));
        let usable = stack.usable();
        // SAFETY: the usable part of our fresh mapping, used by nothing else.
        let sp = unsafe {
            prepare_stack(
                usable.start as *mut u8,
                usable.end as *mut u8,
                green_entry,
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
    pub fn resume(&mut self, value: usize) -> Result<Resumed, AlreadyFinished> {
        let shared = self.shared;
        // SAFETY: `shared` is live (freed only in `drop`); the green thread is suspended (it
        // runs only inside this call), so its stack pointer is valid to switch to, and our
        // frame stays valid until it switches back.
        unsafe {
            if (*shared).finished {
                return Err(AlreadyFinished);
            }
            (*shared).started = true;
            (*shared).transfer = value;
            switch_stacks_fp(&raw mut (*shared).caller_sp, (*shared).green_sp);
            if let Some(payload) = (*shared).panic.take() {
                resume_unwind(payload);
            }
            let value = (*shared).transfer;
            Ok(if (*shared).finished {
                Resumed::Finished(value)
            } else {
                Resumed::Yielded(value)
            })
        }
    }

    /// Whether the thread's closure has returned (or panicked).
    pub fn is_finished(&self) -> bool {
        // SAFETY: `shared` is live until drop and not being written (the thread is not running).
        unsafe { (*self.shared).finished }
    }

    /// The thread's stack.
    pub fn stack(&self) -> Option<&Stack> {
        self.stack.as_ref()
    }
}

impl Drop for GreenThread {
    fn drop(&mut self) {
        // SAFETY: the thread is not running (it runs only inside `resume`), so nothing else
        // touches `shared`; it came from `Box::into_raw` and is freed only here. The green
        // stack may still hold a `Yielder` pointing at it, but that code never runs again.
        let shared = unsafe { Box::from_raw(self.shared) };
        if shared.started && !shared.finished {
            // Suspended mid-way: leak the stack (see the module docs).
            core::mem::forget(self.stack.take());
        }
        drop(shared);
    }
}

impl core::fmt::Debug for GreenThread {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GreenThread")
            .field("finished", &self.is_finished())
            .field("stack", &self.stack)
            .finish()
    }
}
