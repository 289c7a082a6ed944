//! A sequence lock for small `Copy` data, sound in Rust's memory model.
//!
//! # What it does
//! A [`SeqLock<T>`] lets any number of readers take consistent copies of a `T` without writing to
//! shared memory, while writers (serialised among themselves) replace it. A reader reads the
//! sequence number, copies the data, and reads the sequence number again; the copy is kept only
//! if the number was even (no write in progress) and did not change. Readers never block writers
//! and never make them wait; a reader that overlaps a write retries.
//!
//! # Why it is sound (and the usual version is not)
//! The classic seqlock copies the data with plain (or `volatile`) loads while a writer may be
//! storing to it: in Rust, as in C++, that is a data race and so undefined behaviour, whatever
//! the sequence check does afterwards. Here every byte of the data is only ever accessed through
//! atomic operations: the data is stored as a run of word-sized chunks (`usize`, then `u32`,
//! `u16`, `u8` for the tail, each at its natural alignment, always the same chunking for a given
//! `T`, so there are no mixed-size accesses), which writers store and readers load with `Relaxed`
//! atomics. A torn copy is then merely a set of values from different writes, never undefined
//! behaviour, and it is discarded before it is ever interpreted as a `T`.
//!
//! Relaxed loads are not enough on their own: the sequence check must prove that the chunks came
//! from one write. This is the construction of H.-J. Boehm, *Can Seqlocks Get Along With
//! Programming Language Memory Models?* (MSPC 2012):
//!
//! ```text
//! writer (holds the writer lock)        reader
//!   s = seq                              s0 = seq.load(Acquire)          [R1]
//!   seq.store(s + 1, Relaxed)   [W1]     if s0 is odd: retry
//!   fence(Release)              [F_w]    d = data.load(Relaxed) ...      [R2]
//!   data.store(.., Relaxed) ... [W2]     fence(Acquire)                  [F_r]
//!   seq.store(s + 2, Release)   [W3]     s1 = seq.load(Relaxed)          [R3]
//!                                        valid iff s1 == s0
//! ```
//!
//! - If any chunk load in R2 reads a value stored by a writer's W2, then that writer's `F_w`
//!   synchronises with the reader's `F_r` (a release fence, a store after it, a load reading
//!   that store, an acquire fence after the load). So that writer's W1 happens-before R3, and R3
//!   reads `s + 1` or a later value. `seq` only grows, so `s1 >= s + 1`.
//! - If R1 read `s0` from writer X's W3 (Acquire reading Release), all of X's data stores
//!   happen-before R2, so R2 cannot read anything older than X's values (coherence; every write
//!   stores every chunk).
//! - So if `s1 == s0`, no chunk came from a writer after X (that would force `s1 > s0`), and
//!   none from before X: the copy is exactly X's value (or the initial one).
//!
//! Writers serialise on an internal FIFO ticket lock ([`RawTicketLock`]); its Acquire/Release
//! hand-off orders each writer after the previous one, which the argument above uses ("every
//! write stores every chunk", "`seq` only grows").
//!
//! # What `T` must be: [`Plain`]
//! Atomic integer loads and stores cannot carry uninitialised bytes (reading padding as an
//! integer is undefined behaviour) nor pointer provenance (integers have none). So `T` must be
//! [`Plain`]: `Copy`, no padding or other uninitialised bytes, no pointers or references.
//! Integers, floats, `bool`, `char`, arrays of those, and `#[repr(C)]` structs of them without
//! padding qualify; `(u8, u32)`, `Option<u32>` and `core::time::Duration` (4 padding bytes) do
//! not. A type with padding can be made `Plain` by turning its padding into explicit fields.
//! Any alignment works: the storage is aligned to `max(align_of::<T>(), align_of::<usize>())`.
//!
//! # Progress, and what a reader waits for
//! - A writer holds `seq` odd for one copy of `size_of::<T>()` bytes (a few word stores), not
//!   for the closure of [`SeqLock::write_with`], which runs on a private copy *before* the
//!   sequence is touched. So a reader's attempt fails only if it overlaps that short window.
//! - [`SeqLock::try_read`] makes one attempt and never waits; [`SeqLock::read_with_limit`] makes at
//!   most `n`. Both never block a writer.
//! - [`SeqLock::read`] retries until an attempt succeeds. It is obstruction-free, not
//!   starvation-free: it returns as soon as writes leave a gap of one copy, which any
//!   realistic writer does (between two writes it releases the writer lock, re-acquires it and,
//!   for `write_with`, runs its closure), but a writer that writes back to back forever could in
//!   principle keep a reader retrying forever.
//! - [`SeqLock::read_or_lock`] is the bounded one: after `n` failed attempts it takes the writer
//!   lock (FIFO), so it completes after at most `n` attempts plus the writes already queued
//!   ahead of it (each one closure and one copy long). The price: it makes writers wait while it
//!   copies, so it has the writers' restriction below.
//!
//! # Interrupts
//! Readers may be interrupted by writers (`read`, `try_read`, `read_with_limit` hold nothing). A
//! writer, or a reader in `read_or_lock`, interrupted on the same CPU by a handler that writes
//! the same `SeqLock` deadlocks, as with any spin lock: such callers must run with interrupts
//! off (for example inside an `IrqMutex` section, or between `InterruptControl::disable` and
//! `restore`).
//!
//! `seq` is a `usize`. On a 32-bit target, a reader stalled inside one attempt for exactly 2^31
//! writes would accept a torn copy (the sequence wrapped around to the same value), as with
//! every seqlock that uses a 32-bit counter.
//!
//! Under `cfg(loom)` the chunks are a boxed array of loom atomics instead of atomic views of the
//! bytes of an inline `T` (loom cannot track atomics it did not create); the sequence protocol,
//! which is what loom checks, is the same code.

use core::fmt;
use core::mem::size_of;

use crate::lock::{RawTicketLock, SpinWait};
use crate::primitives::{AtomicUsize, Ordering, fence, spin_loop};

/// Data that can go through a [`SeqLock`]: `Copy`, without uninitialised bytes and without
/// pointers.
///
/// # Safety
/// Every byte of every value of the type is initialised (no padding, no unions or enums with
/// uninitialised parts), and the type holds no pointers or references (their provenance would
/// be lost in the integer copy). Any byte sequence copied from a valid value of the type is,
/// copied back, that same valid value (true of all such types).
pub unsafe trait Plain: Copy {}

macro_rules! plain {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: a primitive with no padding, no uninitialised bytes and no pointers.
            unsafe impl Plain for $t {}
        )*
    };
}

plain!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);
plain!(
    core::num::NonZeroU8,
    core::num::NonZeroU16,
    core::num::NonZeroU32,
    core::num::NonZeroU64,
    core::num::NonZeroU128,
    core::num::NonZeroUsize,
    core::num::NonZeroI8,
    core::num::NonZeroI16,
    core::num::NonZeroI32,
    core::num::NonZeroI64,
    core::num::NonZeroI128,
    core::num::NonZeroIsize,
);

// SAFETY: an array has no padding between elements (its stride is the element size, which
// includes the element's own padding, of which a `Plain` element has none).
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

// SAFETY: `Wrapping<T>` is `repr(transparent)` over `T`.
unsafe impl<T: Plain> Plain for core::num::Wrapping<T> {}

/// The size of one chunk of the stored data.
#[derive(Clone, Copy)]
enum Chunk {
    Word,
    U32,
    U16,
    U8,
}

impl Chunk {
    const fn bytes(self) -> usize {
        match self {
            Chunk::Word => size_of::<usize>(),
            Chunk::U32 => 4,
            Chunk::U16 => 2,
            Chunk::U8 => 1,
        }
    }
}

/// Calls `f(offset, chunk)` for the chunks covering `size` bytes: whole words, then at most one
/// `u32`, `u16` and `u8` each. From a word-aligned base every chunk is naturally aligned.
#[inline(always)]
fn for_each_chunk(size: usize, mut f: impl FnMut(usize, Chunk)) {
    let mut offset = 0;
    while size - offset >= size_of::<usize>() {
        f(offset, Chunk::Word);
        offset += size_of::<usize>();
    }
    for chunk in [Chunk::U32, Chunk::U16, Chunk::U8] {
        if chunk.bytes() < size_of::<usize>() && size - offset >= chunk.bytes() {
            f(offset, chunk);
            offset += chunk.bytes();
        }
    }
}

/// Reads the chunk at `src` (plain, unaligned), zero-extended to a word.
///
/// # Safety
/// `src` is valid for reading `chunk.bytes()` initialised bytes.
#[inline(always)]
unsafe fn read_chunk(src: *const u8, chunk: Chunk) -> usize {
    // SAFETY: caller's guarantee; `read_unaligned` needs no alignment.
    unsafe {
        match chunk {
            Chunk::Word => src.cast::<usize>().read_unaligned(),
            Chunk::U32 => src.cast::<u32>().read_unaligned() as usize,
            Chunk::U16 => src.cast::<u16>().read_unaligned() as usize,
            Chunk::U8 => src.read() as usize,
        }
    }
}

/// Writes the low `chunk.bytes()` bytes of `value` to `dst` (plain, unaligned).
///
/// # Safety
/// `dst` is valid for writing `chunk.bytes()` bytes.
#[inline(always)]
unsafe fn write_chunk(dst: *mut u8, chunk: Chunk, value: usize) {
    // SAFETY: caller's guarantee; `write_unaligned` needs no alignment. The truncating casts
    // undo the zero-extension of `read_chunk`.
    unsafe {
        match chunk {
            Chunk::Word => dst.cast::<usize>().write_unaligned(value),
            Chunk::U32 => dst.cast::<u32>().write_unaligned(value as u32),
            Chunk::U16 => dst.cast::<u16>().write_unaligned(value as u16),
            Chunk::U8 => dst.write(value as u8),
        }
    }
}

#[cfg(not(loom))]
mod storage {
    //! The data as atomic chunks over the bytes of an inline, word-aligned `T`.

    use core::cell::UnsafeCell;
    use core::mem::{MaybeUninit, size_of};
    // `core`'s atomics directly: `from_ptr` (atomic views of plain memory) is the point here,
    // and loom has no equivalent (the `cfg(loom)` storage below replaces this module).
    use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicUsize, Ordering};

    use super::{Chunk, Plain, for_each_chunk, read_chunk, write_chunk};

    /// `T` at offset 0, aligned to at least a word. Bytes past `size_of::<T>()` (tail padding)
    /// are never accessed.
    #[repr(C)]
    struct Aligned<T> {
        _align: [usize; 0],
        value: MaybeUninit<T>,
    }

    /// A `T` whose bytes are accessed only by `Relaxed` atomic chunk operations once shared.
    pub(super) struct Storage<T> {
        cell: UnsafeCell<Aligned<T>>,
    }

    impl<T: Plain> Storage<T> {
        pub(super) const fn new(value: T) -> Self {
            Self {
                cell: UnsafeCell::new(Aligned {
                    _align: [],
                    value: MaybeUninit::new(value),
                }),
            }
        }

        /// Atomically loads chunk `chunk` at byte `offset` of the stored `T`.
        ///
        /// # Safety
        /// `offset`/`chunk` come from `for_each_chunk(size_of::<T>())`.
        #[inline(always)]
        unsafe fn load_chunk(&self, offset: usize, chunk: Chunk) -> usize {
            // SAFETY: the chunk lies inside the `T` (caller), at its natural alignment (the base
            // is word-aligned, `for_each_chunk` aligns every chunk). The memory is inside an
            // `UnsafeCell`, so atomic access through a shared reference is allowed; after
            // `new` (which happens-before any sharing) every access is an atomic one of this
            // same size at this same offset, except through `&mut self`/`self`, which excludes
            // concurrent access. Relaxed: ordering comes from the sequence protocol's fences.
            unsafe {
                let p = self.cell.get().cast::<u8>().add(offset);
                match chunk {
                    Chunk::Word => AtomicUsize::from_ptr(p.cast()).load(Ordering::Relaxed),
                    Chunk::U32 => AtomicU32::from_ptr(p.cast()).load(Ordering::Relaxed) as usize,
                    Chunk::U16 => AtomicU16::from_ptr(p.cast()).load(Ordering::Relaxed) as usize,
                    Chunk::U8 => AtomicU8::from_ptr(p).load(Ordering::Relaxed) as usize,
                }
            }
        }

        /// Atomically stores the low bytes of `value` into chunk `chunk` at `offset`.
        ///
        /// # Safety
        /// As for `load_chunk`.
        #[inline(always)]
        unsafe fn store_chunk(&self, offset: usize, chunk: Chunk, value: usize) {
            // SAFETY: as in `load_chunk`.
            unsafe {
                let p = self.cell.get().cast::<u8>().add(offset);
                match chunk {
                    Chunk::Word => AtomicUsize::from_ptr(p.cast()).store(value, Ordering::Relaxed),
                    Chunk::U32 => {
                        AtomicU32::from_ptr(p.cast()).store(value as u32, Ordering::Relaxed)
                    }
                    Chunk::U16 => {
                        AtomicU16::from_ptr(p.cast()).store(value as u16, Ordering::Relaxed)
                    }
                    Chunk::U8 => AtomicU8::from_ptr(p).store(value as u8, Ordering::Relaxed),
                }
            }
        }

        /// Copies the stored bytes out with `Relaxed` chunk loads. The result is a `T` only if
        /// no store overlapped the copy (the caller checks).
        #[inline(always)]
        pub(super) fn load(&self) -> MaybeUninit<T> {
            let mut out = MaybeUninit::<T>::uninit();
            let dst = out.as_mut_ptr().cast::<u8>();
            for_each_chunk(size_of::<T>(), |offset, chunk| {
                // SAFETY: `offset`/`chunk` come from `for_each_chunk(size_of::<T>())`, so they
                // lie inside both the stored `T` and `out`.
                unsafe { write_chunk(dst.add(offset), chunk, self.load_chunk(offset, chunk)) };
            });
            out
        }

        /// Copies `value` in with `Relaxed` chunk stores.
        #[inline(always)]
        pub(super) fn store(&self, value: &T) {
            let src = core::ptr::from_ref(value).cast::<u8>();
            for_each_chunk(size_of::<T>(), |offset, chunk| {
                // SAFETY: the chunk lies inside `*value`, whose bytes are all initialised
                // (`T: Plain`), and inside the stored `T`.
                unsafe { self.store_chunk(offset, chunk, read_chunk(src.add(offset), chunk)) };
            });
        }

        pub(super) fn get_mut(&mut self) -> &mut T {
            // SAFETY: the storage always holds a complete `T` when nobody accesses it: `new`
            // initialises it and every `store` writes all its bytes from a valid `T`; `&mut self`
            // rules out a store in progress.
            unsafe { self.cell.get_mut().value.assume_init_mut() }
        }

        pub(super) fn into_inner(self) -> T {
            // SAFETY: as in `get_mut`.
            unsafe { self.cell.into_inner().value.assume_init() }
        }
    }
}

#[cfg(loom)]
mod storage {
    //! Under loom: one loom atomic per chunk, each holding the chunk zero-extended.

    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use core::marker::PhantomData;
    use core::mem::{MaybeUninit, size_of};

    use super::{Plain, for_each_chunk, read_chunk, write_chunk};
    use crate::primitives::{AtomicUsize, Ordering};

    pub(super) struct Storage<T> {
        chunks: Box<[AtomicUsize]>,
        _value: PhantomData<T>,
    }

    impl<T: Plain> Storage<T> {
        pub(super) fn new(value: T) -> Self {
            let src = core::ptr::from_ref(&value).cast::<u8>();
            let mut chunks = Vec::new();
            for_each_chunk(size_of::<T>(), |offset, chunk| {
                // SAFETY: inside `value`, whose bytes are all initialised (`T: Plain`).
                chunks.push(AtomicUsize::new(unsafe {
                    read_chunk(src.add(offset), chunk)
                }));
            });
            Self {
                chunks: chunks.into_boxed_slice(),
                _value: PhantomData,
            }
        }

        pub(super) fn load(&self) -> MaybeUninit<T> {
            let mut out = MaybeUninit::<T>::uninit();
            let dst = out.as_mut_ptr().cast::<u8>();
            let mut index = 0;
            for_each_chunk(size_of::<T>(), |offset, chunk| {
                let value = self.chunks[index].load(Ordering::Relaxed);
                index += 1;
                // SAFETY: inside `out`.
                unsafe { write_chunk(dst.add(offset), chunk, value) };
            });
            out
        }

        pub(super) fn store(&self, value: &T) {
            let src = core::ptr::from_ref(value).cast::<u8>();
            let mut index = 0;
            for_each_chunk(size_of::<T>(), |offset, chunk| {
                // SAFETY: inside `*value`, whose bytes are all initialised (`T: Plain`).
                let word = unsafe { read_chunk(src.add(offset), chunk) };
                self.chunks[index].store(word, Ordering::Relaxed);
                index += 1;
            });
        }

        pub(super) fn into_inner(self) -> T {
            // SAFETY: `self` is exclusive, so the chunks hold one complete stored `T`.
            unsafe { self.load().assume_init() }
        }
    }
}

use storage::Storage;

/// A sequence lock holding a [`Plain`] value; see the [module documentation](self).
///
/// ```
/// use veridian_sync::seqlock::SeqLock;
///
/// static CLOCK: SeqLock<[u64; 2]> = SeqLock::new([0, 0]); // (seconds, nanoseconds)
///
/// CLOCK.write([1, 500]);
/// CLOCK.write_with(|t| t[1] += 250);
/// assert_eq!(CLOCK.read(), [1, 750]);
/// ```
pub struct SeqLock<T: Plain> {
    /// Even: no write in progress; odd: a writer is copying. Grows by 2 per write.
    seq: AtomicUsize,
    /// Serialises writers (and `read_or_lock`).
    writer: RawTicketLock,
    data: Storage<T>,
}

// SAFETY: shared access only reads and writes the data through atomic chunk operations, under the
// sequence protocol (module documentation), and hands out copies of `T`, hence `T: Send`.
unsafe impl<T: Plain + Send> Sync for SeqLock<T> {}

/// Releases the writer lock on drop, so a panicking `write_with` closure does not leave it held.
struct WriterGuard<'a>(&'a RawTicketLock);

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: a `WriterGuard` is created only right after `lock` on this lock.
        unsafe { self.0.unlock() };
    }
}

impl<T: Plain> SeqLock<T> {
    /// A seqlock holding `value`.
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        Self {
            seq: AtomicUsize::new(0),
            writer: RawTicketLock::new(),
            data: Storage::new(value),
        }
    }

    /// A seqlock holding `value` (loom's atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        Self {
            seq: AtomicUsize::new(0),
            writer: RawTicketLock::new(),
            data: Storage::new(value),
        }
    }

    /// One read attempt starting from the sequence value `start` (even).
    #[inline(always)]
    fn read_attempt(&self, start: usize) -> Option<T> {
        // R2: Relaxed chunk loads.
        let copy = self.data.load();
        // F_r: makes every writer whose data store R2 read happen-before R3 (module docs).
        fence(Ordering::Acquire);
        // R3. Relaxed: the fence above orders it.
        if self.seq.load(Ordering::Relaxed) == start {
            // SAFETY: the sequence did not move and was even, so every chunk came from the
            // same write (module documentation): the bytes of one valid `T`.
            Some(unsafe { copy.assume_init() })
        } else {
            None
        }
    }

    /// One read attempt: the value, or `None` if a write was in progress or overlapped it.
    /// Never waits and never blocks a writer.
    #[inline]
    pub fn try_read(&self) -> Option<T> {
        // R1. Acquire: if this reads a writer's final store (W3), that writer's data stores
        // happen-before our copy.
        let start = self.seq.load(Ordering::Acquire);
        if start & 1 != 0 {
            return None;
        }
        self.read_attempt(start)
    }

    /// At most `max_attempts` read attempts (0 makes none): the value, or `None` if every
    /// attempt overlapped a write. Never blocks a writer.
    #[inline]
    pub fn read_with_limit(&self, max_attempts: usize) -> Option<T> {
        for _ in 0..max_attempts {
            if let Some(value) = self.try_read() {
                return Some(value);
            }
            spin_loop();
        }
        None
    }

    /// A consistent copy, retrying while writes overlap. Never blocks a writer; obstruction-free,
    /// not starvation-free (see the module documentation; [`SeqLock::read_or_lock`] is bounded).
    #[inline]
    pub fn read(&self) -> T {
        let mut wait = SpinWait::new();
        loop {
            if let Some(value) = self.try_read() {
                return value;
            }
            wait.wait(1);
        }
    }

    /// A consistent copy, with a bound on the wait: up to `optimistic_attempts` lock-free
    /// attempts, then the copy is taken under the writer lock, behind the writers already queued
    /// (FIFO). Unlike the other reads this may make a writer wait, so it must not be interrupted
    /// by a handler that writes this `SeqLock` (module documentation, "Interrupts").
    pub fn read_or_lock(&self, optimistic_attempts: usize) -> T {
        if let Some(value) = self.read_with_limit(optimistic_attempts) {
            return value;
        }
        self.writer.lock();
        let _unlock = WriterGuard(&self.writer);
        // SAFETY: while we hold the writer lock nobody stores to the data, and the lock's
        // Acquire ordered every earlier store before our loads: the copy is the last written `T`.
        unsafe { self.data.load().assume_init() }
    }

    /// Replaces the value.
    #[inline]
    pub fn write(&self, value: T) {
        self.writer.lock();
        let _unlock = WriterGuard(&self.writer);
        // SAFETY: we hold the writer lock.
        unsafe { self.publish(&value) };
    }

    /// Replaces the value by what `f` makes of a copy of it; returns what `f` returns.
    ///
    /// `f` runs on a private copy while this writer holds the writer lock but *before* the
    /// sequence turns odd: readers carry on unhindered (and see the old value) while `f` runs,
    /// other writers wait. If `f` panics, nothing is written and the writer lock is released.
    pub fn write_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.writer.lock();
        let _unlock = WriterGuard(&self.writer);
        // SAFETY: with the writer lock held the data is stable and complete (as in
        // `read_or_lock`).
        let mut value = unsafe { self.data.load().assume_init() };
        let result = f(&mut value);
        // SAFETY: we hold the writer lock.
        unsafe { self.publish(&value) };
        result
    }

    /// Stores `value` under the sequence protocol (W1, F_w, W2, W3).
    ///
    /// # Safety
    /// The caller holds `self.writer`.
    #[inline(always)]
    unsafe fn publish(&self, value: &T) {
        // Relaxed: only writers change `seq` and the writer lock ordered the previous writer's
        // stores before us, so this reads the last value, which is even.
        let start = self.seq.load(Ordering::Relaxed);
        debug_assert!(
            start & 1 == 0,
            "seqlock sequence odd with the writer lock held"
        );
        // W1. Relaxed, followed by F_w: the fence, not this store, is what readers synchronise
        // with (a release *store* would not order the data stores after it).
        self.seq.store(start.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        // W2.
        self.data.store(value);
        // W3. Release: readers whose R1 reads this see all of W2.
        self.seq.store(start.wrapping_add(2), Ordering::Release);
    }

    /// The value, through exclusive access (no atomics needed).
    #[cfg(not(loom))]
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Consumes the lock and returns the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Plain + Default> Default for SeqLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for SeqLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_read() {
            Some(value) => f.debug_struct("SeqLock").field("value", &value).finish(),
            None => f
                .debug_struct("SeqLock")
                .field("value", &"<write in progress>")
                .finish(),
        }
    }
}
