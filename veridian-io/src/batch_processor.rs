//! [`BatchProcessor`]: collect items, hand them to a processor in batches (the design guide's
//! "Batching for Throughput").
//!
//! # What it does
//!
//! [`BatchProcessor::push`] queues an item; the processor (`FnMut(&mut Vec<T>)`, called with
//! every queued item, oldest first) runs when
//! - the queue reaches `max_batch` items (**size bound**, checked in `push`);
//! - the oldest queued item has waited `max_age_ns` or more (**time bound**, only when a
//!   [`Clock`] was given: checked in `push` and in [`poll`](BatchProcessor::poll), which a timer
//!   or an idle loop calls; [`deadline_ns`](BatchProcessor::deadline_ns) says when);
//! - the caller asks ([`flush`](BatchProcessor::flush), [`finish`](BatchProcessor::finish));
//! - the batch processor is dropped.
//!
//! # The processor's contract: it removes what it handled
//!
//! The processor receives the queue itself, `&mut Vec<T>`. **Items it removes are processed;
//! items still in the vector when it returns or unwinds stay queued**, in their order, ahead of
//! anything pushed later, and are offered again at the next flush. So a processor that can take
//! only part of a batch (a full device ring, a rate limit) takes what it can and leaves the rest
//! (back-pressure: while `max_batch` or more items stay queued, every `push` offers them again).
//! The usual processor takes all: `batch.drain(..)`.
//!
//! **Panics.** Nothing is lost by the batch processor when the processor panics: the vector is
//! left exactly as the processor left it. Beware that a `Vec::drain` iterator dropped during
//! unwinding drops the items it has not yet yielded; a processor that must not lose items when
//! it panics part-way should use [`drain_in_order`], which hands items over one by one and, on
//! unwinding, leaves every item not yet handed over in the queue (the item being handled when
//! the panic happened belongs to the processor). The panic propagates to the caller of `push` /
//! `flush` / `poll`; the batch processor stays usable.
//!
//! **Drop** flushes: it calls the processor again as long as items remain and each call takes
//! at least one, so all items reach the processor unless the processor refuses them. Items the
//! processor leaves in a call that takes none are then dropped with the batch processor (there
//! is no one left to own them): use [`finish`](BatchProcessor::finish) to get them back instead.
//! If the last call of the processor panicked, drop does not call it again (like
//! `std::io::BufWriter`: this drop is most likely part of that same unwinding, and a second
//! panic would abort the process) and the queued items are dropped; with feature `std` the same
//! holds whenever the thread is already panicking. Call [`take_queued`](BatchProcessor::take_queued)
//! after catching a panic to keep them.
//!
//! # Time
//!
//! The clock is the embedder's: [`Clock::now_ns`] must not go backwards (a backwards step is
//! read as no time passing). The age of the queue is measured from the arrival of the oldest
//! item not yet processed; after a flush that leaves items behind, it is measured from the
//! arrival of the oldest item of that flush, so the bound is kept early, never late.
//!
//! `no_std` with `alloc`; no `unsafe`.

use alloc::vec::Vec;
use core::fmt;

/// A monotonic clock in nanoseconds, supplied by the embedder (the kernel's TSC or timer
/// counter; `MonotonicClock` with feature `std`): the embedder trait of `veridian-embed`,
/// re-exported (a kernel that also embeds veridian-sched or veridian-perf implements it once).
pub use veridian_embed::Clock;

/// The clock type of a [`BatchProcessor`] without a time bound. It has no values, so no time
/// is ever read.
#[derive(Debug, Clone, Copy)]
pub enum NoClock {}

impl Clock for NoClock {
    fn now_ns(&self) -> u64 {
        match *self {}
    }
}

/// `std::time::Instant` as a [`Clock`] (feature `std`): nanoseconds since the clock was made.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: std::time::Instant,
}

#[cfg(feature = "std")]
impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }
}

#[cfg(feature = "std")]
impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Why a [`BatchProcessor`] could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// `max_batch` must be at least 1.
    ZeroBatch,
    /// The queue for `max_batch` items could not be allocated (or its size overflows).
    OutOfMemory,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroBatch => f.write_str("batch size must be at least 1"),
            Self::OutOfMemory => f.write_str("cannot allocate the batch queue"),
        }
    }
}

impl core::error::Error for BatchError {}

/// Counters of a [`BatchProcessor`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Items pushed.
    pub pushed: u64,
    /// Calls of the processor (including ones that panicked).
    pub calls: u64,
    /// Items the processor removed from the queue (also in calls that panicked).
    pub processed: u64,
    /// Calls made because the queue reached `max_batch`.
    pub size_flushes: u64,
    /// Calls made because the oldest item reached `max_age_ns`.
    pub time_flushes: u64,
    /// Calls of the processor that panicked.
    pub panics: u64,
}

/// Why the processor is being called.
#[derive(Clone, Copy)]
enum Reason {
    Size,
    Time,
    Explicit,
}

/// The time bound: the clock, the bound, and when the oldest queued item arrived.
struct Timer<K> {
    clock: K,
    max_age_ns: u64,
    oldest_ns: Option<u64>,
}

/// Collects items and hands them to a processor in batches; see the module documentation.
///
/// ```
/// use veridian_io::batch_processor::{BatchProcessor, drain_in_order};
///
/// let mut written = Vec::new();
/// {
///     let mut batcher = BatchProcessor::new(3, |batch: &mut Vec<u32>| {
///         drain_in_order(batch, |x| written.push(x));
///     })
///     .unwrap();
///     for x in 0..7 {
///         batcher.push(x); // the processor runs at 3 and 6 items
///     }
/// } // drop flushes the last item
/// assert_eq!(written, [0, 1, 2, 3, 4, 5, 6]);
/// ```
pub struct BatchProcessor<T, F, K = NoClock>
where
    F: FnMut(&mut Vec<T>),
    K: Clock,
{
    queue: Vec<T>,
    max_batch: usize,
    timer: Option<Timer<K>>,
    processor: F,
    stats: BatchStats,
    /// Queue length before the processor was called, while a call is in progress. Still set
    /// after the call means the call unwound (see `settle`).
    in_call: Option<usize>,
    /// The last call of the processor panicked (drop does not call it again).
    last_call_panicked: bool,
}

impl<T, F> BatchProcessor<T, F, NoClock>
where
    F: FnMut(&mut Vec<T>),
{
    /// A batch processor without a time bound: `processor` runs when `max_batch` items are
    /// queued, on [`flush`](Self::flush) and on drop. The queue's memory for `max_batch` items
    /// is allocated here.
    pub fn new(max_batch: usize, processor: F) -> Result<Self, BatchError> {
        Self::build(max_batch, None, processor)
    }
}

impl<T, F, K> BatchProcessor<T, F, K>
where
    F: FnMut(&mut Vec<T>),
    K: Clock,
{
    /// A batch processor that also runs `processor` once the oldest queued item has waited
    /// `max_age_ns` by `clock` (checked in [`push`](Self::push) and [`poll`](Self::poll)).
    pub fn with_time_bound(
        max_batch: usize,
        max_age_ns: u64,
        clock: K,
        processor: F,
    ) -> Result<Self, BatchError> {
        Self::build(
            max_batch,
            Some(Timer {
                clock,
                max_age_ns,
                oldest_ns: None,
            }),
            processor,
        )
    }

    fn build(max_batch: usize, timer: Option<Timer<K>>, processor: F) -> Result<Self, BatchError> {
        if max_batch == 0 {
            return Err(BatchError::ZeroBatch);
        }
        let mut queue = Vec::new();
        queue
            .try_reserve_exact(max_batch)
            .map_err(|_| BatchError::OutOfMemory)?;
        Ok(Self {
            queue,
            max_batch,
            timer,
            processor,
            stats: BatchStats::default(),
            in_call: None,
            last_call_panicked: false,
        })
    }

    /// Queues `item`, then runs the processor if the queue has reached `max_batch` items or the
    /// oldest item has reached the time bound. Returns how many items the processor took (0
    /// when it did not run). A panic of the processor propagates (see the module docs).
    pub fn push(&mut self, item: T) -> usize {
        self.settle();
        self.stats.pushed += 1;
        self.queue.push(item);
        if let Some(timer) = &mut self.timer
            && timer.oldest_ns.is_none()
        {
            timer.oldest_ns = Some(timer.clock.now_ns());
        }
        if self.queue.len() >= self.max_batch {
            self.call(Reason::Size)
        } else if self.time_is_up() {
            self.call(Reason::Time)
        } else {
            0
        }
    }

    /// Runs the processor if the time bound has passed for the oldest queued item; returns how
    /// many items it took. Without a clock this does nothing.
    pub fn poll(&mut self) -> usize {
        self.settle();
        if self.time_is_up() {
            self.call(Reason::Time)
        } else {
            0
        }
    }

    /// Runs the processor on everything queued (not when the queue is empty); returns how many
    /// items it took.
    pub fn flush(&mut self) -> usize {
        self.settle();
        self.call(Reason::Explicit)
    }

    /// Flushes and gives back the items the processor left (so none is dropped unprocessed).
    pub fn finish(mut self) -> Vec<T> {
        self.flush();
        self.take_queued()
    }

    /// Removes every queued item without processing it (for example after catching a panic of
    /// the processor).
    pub fn take_queued(&mut self) -> Vec<T> {
        self.settle();
        if let Some(timer) = &mut self.timer {
            timer.oldest_ns = None;
        }
        core::mem::take(&mut self.queue)
    }

    /// The queued items, oldest first.
    pub fn queued(&self) -> &[T] {
        &self.queue
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The size bound.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// When (by the clock) the time bound will make [`poll`](Self::poll) flush: `None` without a
    /// clock or with an empty queue.
    pub fn deadline_ns(&self) -> Option<u64> {
        let timer = self.timer.as_ref()?;
        if self.queue.is_empty() {
            return None;
        }
        Some(timer.oldest_ns?.saturating_add(timer.max_age_ns))
    }

    /// The counters.
    pub fn stats(&self) -> BatchStats {
        let mut stats = self.stats;
        if let Some(before) = self.in_call {
            stats.processed += before.saturating_sub(self.queue.len()) as u64;
            stats.panics += 1;
        }
        stats
    }

    /// Accounts for a call of the processor that unwound: nothing ran after it, so the queue is
    /// as the processor left it.
    fn settle(&mut self) {
        if let Some(before) = self.in_call.take() {
            self.stats.processed += before.saturating_sub(self.queue.len()) as u64;
            self.stats.panics += 1;
            self.last_call_panicked = true;
            self.forget_age_if_empty();
        }
    }

    /// An empty queue has no age.
    fn forget_age_if_empty(&mut self) {
        if let Some(timer) = &mut self.timer
            && self.queue.is_empty()
        {
            timer.oldest_ns = None;
        }
    }

    fn time_is_up(&self) -> bool {
        match &self.timer {
            Some(Timer {
                clock,
                max_age_ns,
                oldest_ns: Some(oldest),
            }) => clock.now_ns().saturating_sub(*oldest) >= *max_age_ns,
            _ => false,
        }
    }

    /// Calls the processor on the queue (if not empty); returns how many items it took.
    fn call(&mut self, reason: Reason) -> usize {
        let before = self.queue.len();
        if before == 0 {
            return 0;
        }
        self.stats.calls += 1;
        match reason {
            Reason::Size => self.stats.size_flushes += 1,
            Reason::Time => self.stats.time_flushes += 1,
            Reason::Explicit => {}
        }
        self.in_call = Some(before);
        (self.processor)(&mut self.queue);
        self.in_call = None;
        self.last_call_panicked = false;
        let taken = before.saturating_sub(self.queue.len());
        self.stats.processed += taken as u64;
        // Items left behind keep the old arrival time (the bound is kept early).
        self.forget_age_if_empty();
        taken
    }
}

impl<T, F, K> Drop for BatchProcessor<T, F, K>
where
    F: FnMut(&mut Vec<T>),
    K: Clock,
{
    fn drop(&mut self) {
        self.settle();
        if self.last_call_panicked {
            return;
        }
        #[cfg(feature = "std")]
        if std::thread::panicking() {
            return;
        }
        while !self.queue.is_empty() {
            if self.call(Reason::Explicit) == 0 {
                break;
            }
        }
    }
}

impl<T, F, K> fmt::Debug for BatchProcessor<T, F, K>
where
    F: FnMut(&mut Vec<T>),
    K: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchProcessor")
            .field("queued", &self.queue.len())
            .field("max_batch", &self.max_batch)
            .field(
                "max_age_ns",
                &self.timer.as_ref().map(|timer| timer.max_age_ns),
            )
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Hands the items of `batch` to `handle` one by one, oldest first, removing each as it is
/// handed over. If `handle` panics, the items not yet handed over stay in `batch`, in order
/// (with `Vec::drain` they would be dropped), so a [`BatchProcessor`] offers them again at its
/// next flush: every item reaches `handle` exactly once.
pub fn drain_in_order<T>(batch: &mut Vec<T>, mut handle: impl FnMut(T)) {
    /// Puts the items not yet handed over back in order, on return and on unwinding.
    struct Restore<'a, T>(&'a mut Vec<T>);
    impl<T> Drop for Restore<'_, T> {
        fn drop(&mut self) {
            self.0.reverse();
        }
    }
    // Reversed, the oldest item is at the end, where `pop` takes it in O(1).
    batch.reverse();
    let restore = Restore(batch);
    while let Some(item) = restore.0.pop() {
        handle(item);
    }
}
