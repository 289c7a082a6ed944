//! A small fork-join executor composed from the Veridian crates, for the comparison with
//! `rayon` in `benches/executor.rs`.
//!
//! - Each worker thread owns a bounded Chase–Lev deque ([`veridian_sched::deque`]): `join`
//!   pushes its second closure there as a job and runs the first itself; thieves take the
//!   oldest job.
//! - Idle workers steal in the order [`veridian_sched::Topology::nearby_cpus`] gives for a
//!   uniform topology of the pool's size, then look at the injector.
//! - Work from outside the pool ([`Pool::install`]) enters through a bounded MPMC queue
//!   ([`veridian_sync::mpmc::ArrayQueue`]); shared counters are [`veridian_sync::CachePadded`].
//! - Memory: jobs live on the stack of the thread that called `join`, as in rayon, so a `join`
//!   allocates nothing; the benchmark binary makes veridian-alloc's `Heap` the global allocator
//!   of the whole process (ours and rayon's allocations alike).
//!
//! The design is rayon's: a `join` whose second job was not stolen pops it back and runs it
//! inline; one that was stolen runs other jobs (its own deque's, then stolen ones) until the
//! thief sets the job's latch. A worker that finds no work spins, then yields, then parks; a
//! push wakes parked workers (a `SeqCst` fence on each side of the sleeper count, so no wake-up
//! is lost) and every park also times out after [`PARK_TIMEOUT`].

use std::cell::{Cell, UnsafeCell};
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use veridian_sched::Topology;
use veridian_sched::deque::{self, IntoWord, Steal, Stealer, Worker};
use veridian_sync::CachePadded;
use veridian_sync::mpmc::ArrayQueue;

/// Jobs each worker's deque holds; a `join` that finds it full runs both closures itself.
pub const DEQUE_CAPACITY: usize = 1024;

/// The longest a parked worker sleeps before it looks for work again.
pub const PARK_TIMEOUT: Duration = Duration::from_millis(10);

/// Failed searches for work before a worker yields its CPU (then as many again before it parks).
const SPINS: u32 = 64;

/// The start of every job: how to run it, given a pointer to the job.
struct JobHeader {
    execute: unsafe fn(*const JobHeader),
}

/// A pointer to a job on some thread's stack; what the deques hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct JobRef(NonNull<JobHeader>);

// SAFETY: a `JobRef` points to a `StackJob` whose closure and result are `Send` (required by
// `join` and `install`); the job lives until its latch is set, which happens only after it ran.
unsafe impl Send for JobRef {}

// SAFETY: the word is the job pointer cast to `*mut ()` (provenance kept), and `from_word` casts
// it back, so the round trip gives the same pointer. A dropped word leaks nothing (the job lives
// on a stack, owned by the thread waiting for it). `into_word` cannot panic.
unsafe impl IntoWord for JobRef {
    fn into_word(self) -> *mut () {
        self.0.as_ptr().cast()
    }

    unsafe fn from_word(word: *mut ()) -> Self {
        // SAFETY: `word` came from `into_word` of a non-null pointer.
        Self(unsafe { NonNull::new_unchecked(word.cast()) })
    }
}

impl JobRef {
    /// Runs the job.
    ///
    /// # Safety
    /// The job is alive and not run before (each `JobRef` is popped or stolen once).
    unsafe fn execute(self) {
        let header = self.0.as_ptr();
        // SAFETY: the job is alive (the caller's contract), so its header is readable.
        unsafe { ((*header).execute)(header) }
    }
}

/// How a job tells the thread that waits for it that it is done.
trait Latch {
    /// Marks the job done. The job (and this latch) may be gone as soon as this stores.
    fn set(&self);
    /// Whether the job is done (`Acquire`: its result is visible after `true`).
    fn probe(&self) -> bool;
}

/// A flag the waiting worker polls while it runs other jobs.
struct SpinLatch(AtomicBool);

impl Latch for SpinLatch {
    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
    fn probe(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A flag plus the waiting (non-worker) thread, which parks until the job is done.
struct ThreadLatch {
    done: AtomicBool,
    thread: Thread,
}

impl Latch for ThreadLatch {
    fn set(&self) {
        // Clone the handle first: once `done` is stored the waiter may return and free us.
        let thread = self.thread.clone();
        self.done.store(true, Ordering::Release);
        thread.unpark();
    }
    fn probe(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// A job on the stack of the thread that waits for it. `header` is the first field, so a
/// pointer to the job is a pointer to its header.
#[repr(C)]
struct StackJob<F, R, L> {
    header: JobHeader,
    func: UnsafeCell<Option<F>>,
    result: UnsafeCell<Option<thread::Result<R>>>,
    latch: L,
}

impl<F: FnOnce() -> R + Send, R: Send, L: Latch> StackJob<F, R, L> {
    fn new(func: F, latch: L) -> Self {
        Self {
            header: JobHeader {
                execute: Self::execute,
            },
            func: UnsafeCell::new(Some(func)),
            result: UnsafeCell::new(None),
            latch,
        }
    }

    fn as_job_ref(&self) -> JobRef {
        JobRef(NonNull::from(&self.header))
    }

    /// Runs the job on the thread that executes it (a thief or a worker).
    ///
    /// # Safety
    /// `this` points to a live `StackJob<F, R, L>` that nobody else runs or reads until its
    /// latch is set.
    unsafe fn execute(this: *const JobHeader) {
        // SAFETY: `header` is the first field of a `repr(C)` struct, so `this` points to the
        // job; it is alive until we set the latch (the caller's contract).
        let job = unsafe { &*this.cast::<Self>() };
        // SAFETY: until the latch is set only we touch `func` and `result`.
        let func = unsafe { (*job.func.get()).take() }.expect("a job runs once");
        let result = panic::catch_unwind(AssertUnwindSafe(func));
        // SAFETY: as above.
        unsafe { *job.result.get() = Some(result) };
        // Last access: the waiter may free the job right after this.
        job.latch.set();
    }

    /// Runs the closure on the thread that owns the job (it was never handed out, or was taken
    /// back from the deque before anyone stole it).
    fn run_inline(&self) -> R {
        // SAFETY: the job is not in any deque, so no other thread can reach it.
        let func = unsafe { (*self.func.get()).take() }.expect("a job runs once");
        func()
    }

    /// The result of a job whose latch is set (re-raising its panic).
    fn into_result(self) -> R {
        debug_assert!(self.latch.probe());
        match self.result.into_inner() {
            Some(Ok(r)) => r,
            Some(Err(payload)) => panic::resume_unwind(payload),
            None => unreachable!("the latch is set only after the result is stored"),
        }
    }
}

/// What the workers share.
struct Registry {
    stealers: Vec<Stealer<JobRef>>,
    /// For each worker, the others in the order it steals from them.
    steal_order: Vec<Vec<usize>>,
    injector: ArrayQueue<JobRef>,
    sleepers: CachePadded<AtomicUsize>,
    threads: OnceLock<Vec<Thread>>,
    shutdown: AtomicBool,
}

impl Registry {
    /// Wakes parked workers if there are any (called after new work was published).
    fn notify(&self) {
        // Pairs with the fence in `Worker::sleep`: either we see its count, or it sees our work.
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        for thread in self.threads.get().into_iter().flatten() {
            thread.unpark();
        }
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }
}

/// A worker thread's own state, on its stack for the thread's life.
struct WorkerThread {
    index: usize,
    worker: Worker<JobRef>,
    registry: Arc<Registry>,
}

thread_local! {
    static CURRENT: Cell<*const WorkerThread> = const { Cell::new(std::ptr::null()) };
}

impl WorkerThread {
    /// The worker running on this thread, if it is one of a pool's.
    fn current<'a>() -> Option<&'a WorkerThread> {
        let ptr = CURRENT.with(Cell::get);
        // SAFETY: `CURRENT` is non-null only while `worker_main`'s `WorkerThread` is alive on
        // this thread's stack (set at its start, cleared before it returns), and every caller
        // runs inside that call.
        unsafe { ptr.as_ref() }
    }

    fn steal(&self) -> Option<JobRef> {
        for &victim in &self.registry.steal_order[self.index] {
            loop {
                match self.registry.stealers[victim].steal() {
                    Steal::Success(job) => return Some(job),
                    Steal::Empty => break,
                    Steal::Retry => std::hint::spin_loop(),
                }
            }
        }
        self.registry.injector.pop()
    }

    fn find_work(&self) -> Option<JobRef> {
        self.worker.pop().or_else(|| self.steal())
    }

    /// Parks until woken or [`PARK_TIMEOUT`], unless work or shutdown shows up first.
    fn sleep(&self) {
        let registry = &self.registry;
        registry.sleepers.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `Registry::notify`.
        fence(Ordering::SeqCst);
        if !registry.has_work() && !registry.shutdown.load(Ordering::Acquire) {
            thread::park_timeout(PARK_TIMEOUT);
        }
        registry.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

fn worker_main(registry: Arc<Registry>, index: usize, worker: Worker<JobRef>) {
    let me = WorkerThread {
        index,
        worker,
        registry,
    };
    CURRENT.with(|c| c.set(&me));
    let mut idle = 0u32;
    while !me.registry.shutdown.load(Ordering::Acquire) {
        if let Some(job) = me.find_work() {
            // SAFETY: popped or stolen, so we are the only one to run it; its owner waits for
            // its latch, so it is alive.
            unsafe { job.execute() };
            idle = 0;
        } else if idle < SPINS {
            idle += 1;
            std::hint::spin_loop();
        } else if idle < 2 * SPINS {
            idle += 1;
            thread::yield_now();
        } else {
            me.sleep();
        }
    }
    CURRENT.with(|c| c.set(std::ptr::null()));
}

/// A pool of worker threads (see the [module docs](self)).
pub struct Pool {
    registry: Arc<Registry>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.handles.len())
            .finish()
    }
}

impl Pool {
    /// A pool of `threads` workers (at least 1).
    ///
    /// # Panics
    /// If `threads` is 0 or more than a [`Topology`] can describe, or a thread cannot start.
    pub fn new(threads: usize) -> Self {
        assert!(threads > 0, "a pool needs a thread");
        let topology = Topology::uniform(threads).expect("too many threads for a topology");
        let (workers, stealers): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| deque::new(DEQUE_CAPACITY)).unzip();
        let steal_order = (0..threads)
            .map(|cpu| {
                topology
                    .nearby_cpus(cpu)
                    .expect("every CPU of a uniform topology is present")
                    .iter()
                    .collect()
            })
            .collect();
        let registry = Arc::new(Registry {
            stealers,
            steal_order,
            injector: ArrayQueue::new(64),
            sleepers: CachePadded::new(AtomicUsize::new(0)),
            threads: OnceLock::new(),
            shutdown: AtomicBool::new(false),
        });
        let handles: Vec<_> = workers
            .into_iter()
            .enumerate()
            .map(|(index, worker)| {
                let registry = Arc::clone(&registry);
                thread::Builder::new()
                    .name(format!("veridian-worker-{index}"))
                    .spawn(move || worker_main(registry, index, worker))
                    .expect("cannot start a worker thread")
            })
            .collect();
        let _ = registry
            .threads
            .set(handles.iter().map(|h| h.thread().clone()).collect());
        Self { registry, handles }
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.handles.len()
    }

    /// Runs `f` on one of the pool's workers (so that its `join`s run in parallel) and returns
    /// its result; the calling thread parks meanwhile. Called from a worker of this pool, runs
    /// `f` directly.
    pub fn install<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> R {
        if WorkerThread::current().is_some_and(|w| Arc::ptr_eq(&w.registry, &self.registry)) {
            return f();
        }
        let job = StackJob::new(
            f,
            ThreadLatch {
                done: AtomicBool::new(false),
                thread: thread::current(),
            },
        );
        let mut job_ref = job.as_job_ref();
        while let Err(back) = self.registry.injector.push(job_ref) {
            job_ref = back;
            thread::yield_now();
        }
        self.registry.notify();
        while !job.latch.probe() {
            thread::park();
        }
        job.into_result()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.registry.shutdown.store(true, Ordering::Release);
        self.registry.wake_all();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Runs `a` and `b`, in parallel when called on a pool's worker and another worker is free to
/// steal `b`, and returns both results. Outside a pool it runs `a`, then `b`. A panic in either
/// is re-raised after both finished.
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let Some(me) = WorkerThread::current() else {
        return (a(), b());
    };
    let job_b = StackJob::new(b, SpinLatch(AtomicBool::new(false)));
    let job_ref = job_b.as_job_ref();
    if me.worker.push(job_ref).is_err() {
        return (a(), job_b.run_inline());
    }
    me.registry.notify();
    let result_a = panic::catch_unwind(AssertUnwindSafe(a));
    // `job_b` lives on our stack: whatever `a` did, wait until it was taken back or has run.
    while !job_b.latch.probe() {
        match me.worker.pop() {
            Some(job) if job == job_ref => {
                let result_b = job_b.run_inline();
                return (unwind(result_a), result_b);
            }
            // SAFETY: popped from our deque, so ours alone to run; its owner waits for it.
            Some(job) => unsafe { job.execute() },
            None => match me.steal() {
                // SAFETY: stolen, so ours alone to run; its owner waits for its latch.
                Some(job) => unsafe { job.execute() },
                None => std::hint::spin_loop(),
            },
        }
    }
    (unwind(result_a), job_b.into_result())
}

fn unwind<R>(result: thread::Result<R>) -> R {
    result.unwrap_or_else(|payload| panic::resume_unwind(payload))
}

/// The fork-join workloads, written once over a `join` function so that the same code runs on
/// this executor and on rayon.
pub mod tasks {
    /// A `join`: [`super::join`] or `rayon::join`.
    pub trait Join {
        /// Runs both closures, possibly in parallel.
        fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
        where
            A: FnOnce() -> RA + Send,
            B: FnOnce() -> RB + Send,
            RA: Send,
            RB: Send;
    }

    /// This crate's executor.
    #[derive(Debug)]
    pub struct Veridian;

    impl Join for Veridian {
        fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
        where
            A: FnOnce() -> RA + Send,
            B: FnOnce() -> RB + Send,
            RA: Send,
            RB: Send,
        {
            super::join(a, b)
        }
    }

    /// Fibonacci number `n` (fib(0) = 0), forking down to `cutoff`, sequential below it.
    pub fn fib<J: Join>(n: u32, cutoff: u32) -> u64 {
        if n <= cutoff {
            return fib_sequential(n);
        }
        let (a, b) = J::join(|| fib::<J>(n - 1, cutoff), || fib::<J>(n - 2, cutoff));
        a + b
    }

    /// Fibonacci number `n`, plain recursion.
    pub fn fib_sequential(n: u32) -> u64 {
        if n < 2 {
            u64::from(n)
        } else {
            fib_sequential(n - 1) + fib_sequential(n - 2)
        }
    }

    /// The wrapping sum of `values`, split in halves down to `cutoff` elements.
    pub fn sum<J: Join>(values: &[u64], cutoff: usize) -> u64 {
        if values.len() <= cutoff.max(1) {
            return values.iter().fold(0, |a, &v| a.wrapping_add(v));
        }
        let (left, right) = values.split_at(values.len() / 2);
        let (a, b) = J::join(|| sum::<J>(left, cutoff), || sum::<J>(right, cutoff));
        a.wrapping_add(b)
    }

    /// Sorts `values`: a quicksort whose two partitions are sorted in parallel, with the
    /// standard library's unstable sort below `cutoff` elements.
    pub fn quicksort<J: Join, T: Ord + Send>(values: &mut [T], cutoff: usize) {
        if values.len() <= cutoff.max(2) {
            values.sort_unstable();
            return;
        }
        let mid = partition(values);
        let (left, right) = values.split_at_mut(mid);
        J::join(
            || quicksort::<J, T>(left, cutoff),
            || quicksort::<J, T>(&mut right[1..], cutoff),
        );
    }

    /// Lomuto partition around the median of the first, middle and last elements; returns the
    /// pivot's final index.
    fn partition<T: Ord>(values: &mut [T]) -> usize {
        let last = values.len() - 1;
        let mid = values.len() / 2;
        // Median of three into the last position.
        if values[mid] < values[0] {
            values.swap(mid, 0);
        }
        if values[last] < values[0] {
            values.swap(last, 0);
        }
        if values[mid] < values[last] {
            values.swap(mid, last);
        }
        let mut store = 0;
        for i in 0..last {
            if values[i] < values[last] {
                values.swap(i, store);
                store += 1;
            }
        }
        values.swap(store, last);
        store
    }
}
