//! Lock-free LIFO stack (Treiber's stack) with epoch-based memory reclamation.
//!
//! # What it does
//! [`TreiberStack`] is a singly linked list whose head is swung with compare-and-swap: a push
//! links a new node in front of the current head, a pop replaces the head with its successor.
//! [`TreiberStack::push_batch`] links a whole chain privately and publishes it with one CAS.
//!
//! # What it relies on
//! Popped nodes cannot be freed at once: another thread may have loaded the same head and be
//! about to read its `next` field. Reclamation goes through `crossbeam-epoch`: every operation
//! runs under a [`Guard`] (the caller is *pinned*), and a popped node is handed to
//! [`Guard::defer_unchecked`], which frees it only after every thread that was pinned at the time
//! has unpinned. In `no_std` there is no thread-local default collector, so the stack works with
//! an explicit [`Collector`]: each thread registers once ([`TreiberStack::register`] or
//! [`Collector::register`]) and pins its [`LocalHandle`] around operations. A stack either owns a
//! private collector ([`TreiberStack::new`]) or shares one with other structures
//! ([`TreiberStack::with_collector`], for example a kernel-wide collector).
//!
//! Guards must come from the stack's own collector: a guard of another collector does not hold
//! back *this* collector's reclamation, so it would not protect the nodes it reads. Every
//! operation checks this (one pointer comparison) and panics on a mismatch; that check is what
//! makes the guard-taking methods safe.
//!
//! # What it guarantees
//! - Lock-free: a push or pop only retries when another operation succeeded in between.
//! - No use-after-free: a node is read only while the reader is pinned, and freed only after
//!   every guard that could have seen it is gone.
//! - No ABA: a node's memory cannot be reused while a pinned thread may still compare against its
//!   address, so a successful CAS really means "the head did not change". (This is also why
//!   `push` needs a guard even though it never reads a node: without one, the old head could be
//!   freed and its address reused between the load and the CAS, and the new node would link to a
//!   pointer whose provenance is the dead allocation.)
//! - Every value is dropped exactly once: popped values are moved out to the caller, values still
//!   in the stack are dropped by [`TreiberStack`]'s `Drop`. The deferred node destructor never
//!   touches the value (see below).
//!
//! # Why the node stores `ManuallyDrop<T>`
//! A common textbook version pops with `let value = ptr::read(&(*head).data);` and then defers
//! `drop(Box::from_raw(head))`, with the node holding a plain `T`. The `ptr::read` makes a bitwise
//! copy that the caller now owns, and the deferred `Box` drop later runs `T`'s destructor on the
//! original: the value is dropped twice (for a `Box<U>` or `String` that is a double free, at a
//! random later time on a random thread). Here the node holds `ManuallyDrop<T>`: the winning
//! popper moves the value out exactly once, and destroying the node only frees its memory.
//!
//! # Memory orderings
//! Justified next to each atomic operation below. In short: a push publishes its node with a
//! `Release` CAS; a pop reads the head with `Acquire` before dereferencing it. Reclamation
//! ordering (no free before the last reader is done) is crossbeam-epoch's job (its pin is a
//! `SeqCst` operation; its collection acquires every participant's epoch).

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr;

use crossbeam_epoch::{Collector, Guard, LocalHandle};
use crossbeam_utils::CachePadded;

use crate::primitives::{AtomicBool, AtomicPtr, Ordering, UnsafeCell};

/// One element of the list.
///
/// Both fields are written only by the thread that creates the node, before the node is
/// published, and never changed afterwards (except that the winning popper moves the value out).
/// They sit in `UnsafeCell`s so that loom sees every access to them and checks that each read
/// happens after the write that published the node, and the free after every read.
struct Node<T> {
    /// The value; moved out exactly once, by the popper whose CAS unlinked the node, or by
    /// `Drop for TreiberStack`. Destroying the node never drops it.
    value: UnsafeCell<ManuallyDrop<T>>,
    /// The node below this one (null at the bottom).
    next: UnsafeCell<*mut Node<T>>,
}

impl<T> Node<T> {
    /// Allocates an unpublished node.
    fn alloc(value: T) -> *mut Self {
        Box::into_raw(Box::new(Self {
            value: UnsafeCell::new(ManuallyDrop::new(value)),
            next: UnsafeCell::new(ptr::null_mut()),
        }))
    }
}

/// Under loom, freeing a node counts as a write to its cells, so loom reports a free that is not
/// ordered after some thread's read of `next` or of the value (a use-after-free).
#[cfg(loom)]
impl<T> Drop for Node<T> {
    fn drop(&mut self) {
        self.value.with_mut(|_| ());
        self.next.with_mut(|_| ());
    }
}

/// A lock-free LIFO stack whose nodes are reclaimed through a `crossbeam-epoch` [`Collector`].
///
/// All operations take a [`Guard`] pinned on the stack's collector (see the [module
/// docs](self)); the `*_with` variants pin a [`LocalHandle`] for one operation.
///
/// ```
/// use veridian_sync::stack::TreiberStack;
///
/// let stack = TreiberStack::new();
/// let handle = stack.register(); // once per thread
/// let guard = handle.pin();
/// stack.push(1, &guard);
/// stack.push_batch([2, 3], &guard);
/// assert_eq!(stack.pop(&guard), Some(3));
/// assert_eq!(stack.pop_with(&handle), Some(2));
/// ```
pub struct TreiberStack<T> {
    /// Top of the stack (null when empty). Padded: it is the one contended word.
    head: CachePadded<AtomicPtr<Node<T>>>,
    /// The collector whose guards protect this stack's nodes.
    collector: Collector,
    /// The stack owns values of type `T` (drop check, auto traits).
    _owns: PhantomData<T>,
}

// SAFETY: the stack hands each `T` to exactly one thread (values move in with `push` and out with
// `pop`; no reference to a value is ever shared), so sending or sharing the stack only ever sends
// `T`s between threads: `T: Send` is enough. The raw pointers are owned nodes.
unsafe impl<T: Send> Send for TreiberStack<T> {}
// SAFETY: as above; `&TreiberStack` only allows moving `T`s in and out, never `&T` access.
unsafe impl<T: Send> Sync for TreiberStack<T> {}

impl<T> TreiberStack<T> {
    /// Creates an empty stack with its own private collector.
    pub fn new() -> Self {
        Self::with_collector(Collector::new())
    }

    /// Creates an empty stack whose nodes are reclaimed through `collector`, so one
    /// [`LocalHandle`] per thread serves every structure sharing that collector.
    pub fn with_collector(collector: Collector) -> Self {
        Self {
            head: CachePadded::new(AtomicPtr::new(ptr::null_mut())),
            collector,
            _owns: PhantomData,
        }
    }

    /// The collector whose guards this stack accepts.
    pub fn collector(&self) -> &Collector {
        &self.collector
    }

    /// Registers the calling thread with the stack's collector. Keep the handle for the thread's
    /// lifetime: registering is far more expensive than pinning.
    pub fn register(&self) -> LocalHandle {
        self.collector.register()
    }

    /// Panics unless `guard` is pinned on this stack's collector.
    #[inline]
    #[track_caller]
    fn check_guard(&self, guard: &Guard) {
        // One pointer comparison; without it a guard from another collector (or the
        // `unprotected()` guard) would let a popped node be freed under a concurrent reader.
        assert!(
            guard.collector() == Some(&self.collector),
            "TreiberStack: guard is not pinned on this stack's collector"
        );
    }

    /// Pushes `value` on top of the stack.
    ///
    /// # Panics
    /// If `guard` does not belong to the stack's collector.
    pub fn push(&self, value: T, guard: &Guard) {
        self.check_guard(guard);
        let node = Node::alloc(value);
        // SAFETY: `node` is a fresh, unpublished allocation; `node` is both ends of the chain.
        unsafe { self.link(node, node) };
    }

    /// Pushes every value of `values` in iteration order (the last one ends on top), linking
    /// them privately and publishing the whole chain with a single CAS. Returns how many values
    /// were pushed. Other threads see either none or all of them.
    ///
    /// If the iterator panics, the values it produced so far are dropped and nothing is pushed.
    ///
    /// # Panics
    /// If `guard` does not belong to the stack's collector.
    pub fn push_batch<I: IntoIterator<Item = T>>(&self, values: I, guard: &Guard) -> usize {
        self.check_guard(guard);
        let mut chain = Chain::<T> {
            top: ptr::null_mut(),
            bottom: ptr::null_mut(),
            len: 0,
        };
        for value in values {
            let node = Node::alloc(value);
            // SAFETY: `node` is fresh and unpublished; nobody else can see it.
            unsafe { (*node).next.with_mut(|next| *next = chain.top) };
            if chain.bottom.is_null() {
                chain.bottom = node;
            }
            chain.top = node;
            chain.len += 1;
        }
        if chain.len == 0 {
            return 0;
        }
        let chain = ManuallyDrop::new(chain);
        // SAFETY: the chain was built above from fresh nodes linked `top -> ... -> bottom`; it is
        // unpublished, and `ManuallyDrop` stops its cleanup from freeing it once published.
        unsafe { self.link(chain.top, chain.bottom) };
        chain.len
    }

    /// Publishes the private chain `top -> ... -> bottom` on top of the stack.
    ///
    /// # Safety
    /// `top` to `bottom` must be a chain of nodes from [`Node::alloc`] linked through `next`,
    /// not reachable by any other thread. The caller must be pinned on `self.collector` (which
    /// keeps the head it compares against from being freed and reused, see the module docs).
    unsafe fn link(&self, top: *mut Node<T>, bottom: *mut Node<T>) {
        // Relaxed: the head is only compared against and stored into `bottom.next`, never
        // dereferenced here; what it points to is published by whoever pushed it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the chain is still private (caller's contract), so this write races with
            // nothing; the `Release` CAS below publishes it.
            unsafe { (*bottom).next.with_mut(|next| *next = head) };
            // Success `Release`: publishes the chain's values and `next` links to every thread
            // that acquires the head later (pops' `Acquire` load; pops' CASes are RMWs, so they
            // continue this release sequence). Failure `Relaxed`: the new head is again only
            // compared against.
            match self
                .head
                .compare_exchange_weak(head, top, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(current) => head = current,
            }
        }
    }

    /// Removes the top value, or returns `None` if the stack is empty.
    ///
    /// # Panics
    /// If `guard` does not belong to the stack's collector.
    pub fn pop(&self, guard: &Guard) -> Option<T> {
        self.check_guard(guard);
        // SAFETY: the guard is pinned on this stack's collector (checked above).
        let node = unsafe { self.unlink(guard) }?;
        // SAFETY: our CAS unlinked `node`, so we are the only thread that will ever touch its
        // value; it was initialised by the push and not yet moved out. After this read the
        // node's value is logically uninitialised; the node is only freed below, and freeing a
        // `ManuallyDrop` never drops it again.
        let value = unsafe { (*node).value.with(|value| ptr::read(value)) };
        // SAFETY: `node` is unlinked, so no thread that pins from now on can reach it; threads
        // pinned now are waited for by the collector. The closure only frees the box; `Node`
        // holds `ManuallyDrop<T>`, so `T` is not dropped again. The node came from
        // `Box::into_raw` in `Node::alloc`, and only the unlinking thread (us) defers it, so it
        // is freed once.
        unsafe { guard.defer_unchecked(move || drop(Box::from_raw(node))) };
        Some(ManuallyDrop::into_inner(value))
    }

    /// Unlinks the top node and returns it (its value still inside), or `None` if the stack is
    /// empty. The caller owns the node's value; the node's memory may still be read by threads
    /// pinned now, so it may be freed or reused only after they unpinned.
    ///
    /// # Safety
    /// `guard` is pinned on `self.collector`.
    unsafe fn unlink(&self, guard: &Guard) -> Option<*mut Node<T>> {
        debug_assert!(guard.collector() == Some(&self.collector));
        // Acquire: pairs with the `Release` CAS that published this node, so its `next` and
        // value are visible before we read them.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            if head.is_null() {
                return None;
            }
            // SAFETY: `head` was loaded while pinned on the stack's collector (the caller's
            // contract). A popper unlinks a node before retiring it, so it is freed or reused
            // only after our guard is dropped: the node is live. `next` never changes while the
            // node is published, and the Acquire load ordered its initialising write before
            // this read.
            let next = unsafe { (*head).next.with(|next| *next) };
            // Success `Relaxed`: the node's contents were already acquired by the load that
            // produced `head` (above or the failure case below), and the epoch pin keeps `head`
            // the same allocation, so a matching CAS needs no further synchronisation. Nothing
            // of ours needs releasing: we only unlink. Failure `Acquire`: the returned head is
            // dereferenced in the next round.
            match self
                .head
                .compare_exchange_weak(head, next, Ordering::Relaxed, Ordering::Acquire)
            {
                Ok(_) => return Some(head),
                Err(current) => head = current,
            }
        }
    }

    /// A handle for the calling thread that pushes and pops with node recycling (see
    /// [`StackHandle`]). Registers the thread with the stack's collector: keep the handle for
    /// as long as the thread uses the stack.
    pub fn handle(&self) -> StackHandle<'_, T> {
        StackHandle {
            stack: self,
            local: self.collector.register(),
            free: Vec::new(),
            retiring: Vec::new(),
            in_flight: VecDeque::new(),
        }
    }

    /// [`push`](Self::push) under a guard pinned on `handle` for this one operation.
    ///
    /// # Panics
    /// If `handle` is not registered with the stack's collector.
    pub fn push_with(&self, value: T, handle: &LocalHandle) {
        self.push(value, &handle.pin());
    }

    /// [`pop`](Self::pop) under a guard pinned on `handle` for this one operation.
    ///
    /// # Panics
    /// If `handle` is not registered with the stack's collector.
    pub fn pop_with(&self, handle: &LocalHandle) -> Option<T> {
        self.pop(&handle.pin())
    }

    /// Whether the stack was empty at the moment of the check (a snapshot: other threads may
    /// push or pop right after).
    pub fn is_empty(&self) -> bool {
        // Relaxed: only compared with null, never dereferenced.
        self.head.load(Ordering::Relaxed).is_null()
    }
}

impl<T> Default for TreiberStack<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for TreiberStack<T> {
    fn drop(&mut self) {
        // `&mut self`: no other thread can reach the list, so walk it without a guard. Nodes
        // popped earlier are not in the list (they belong to the collector, which frees them
        // without touching their moved-out values).
        // Relaxed: exclusive access; whatever synchronisation handed us `&mut self` (a join, the
        // last `Arc` drop) already ordered every push before this.
        let mut node = self.head.load(Ordering::Relaxed);
        self.head.store(ptr::null_mut(), Ordering::Relaxed);
        while !node.is_null() {
            // SAFETY: `node` is in the list, so it came from `Node::alloc`, its value was never
            // moved out, and nobody else holds it; we take the box back exactly once.
            let boxed = unsafe { Box::from_raw(node) };
            // SAFETY: exclusive access (see above) to the node's cells.
            node = unsafe { boxed.next.with(|next| *next) };
            // SAFETY: the value is initialised and taken exactly once, here; the node is freed
            // right after without dropping it again. If `T::drop` panics, the rest of the list
            // leaks (no double drop).
            let value = unsafe { boxed.value.with(|value| ptr::read(value)) };
            drop(boxed);
            drop(ManuallyDrop::into_inner(value));
        }
    }
}

impl<T> fmt::Debug for TreiberStack<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreiberStack")
            .field("is_empty", &self.is_empty())
            .finish_non_exhaustive()
    }
}

/// A private, not yet published chain of nodes; frees itself (and drops its values) if dropped,
/// which only happens when the iterator feeding [`TreiberStack::push_batch`] panics.
struct Chain<T> {
    /// First node of the chain (becomes the new head).
    top: *mut Node<T>,
    /// Last node of the chain (gets the old head as `next`).
    bottom: *mut Node<T>,
    /// Number of nodes.
    len: usize,
}

impl<T> Drop for Chain<T> {
    fn drop(&mut self) {
        let mut node = self.top;
        for _ in 0..self.len {
            // SAFETY: the chain is private, its `len` nodes came from `Node::alloc`, are linked
            // from `top`, and still hold their values.
            let boxed = unsafe { Box::from_raw(node) };
            // SAFETY: private node (see above).
            node = unsafe { boxed.next.with(|next| *next) };
            // SAFETY: the value is initialised and taken exactly once, here.
            let value = unsafe { boxed.value.with(|value| ptr::read(value)) };
            drop(boxed);
            drop(ManuallyDrop::into_inner(value));
        }
    }
}

/// Nodes a [`StackHandle`] retires together: one epoch deferral per batch instead of one per
/// node. Each batch also flushes the thread's deferral bag to the collector (sealing a bag
/// moves its 2 KiB), so the batch is large enough to make that about a nanosecond per pop,
/// while the nodes held back (not yet in flight) stay at most 128 (3 KiB of `u64` nodes). Under
/// loom a batch is one node, so the models reach recycling within a few operations.
const RETIRE_BATCH: usize = if cfg!(loom) { 1 } else { 128 };

/// Reusable nodes a [`StackHandle`] keeps; nodes that become reusable beyond this are freed.
/// Bounds the memory a thread that pops much more than it pushes holds on to (the nodes of a
/// thread that only pushes come from the allocator either way); two batches, so one ready
/// batch always fits.
const FREE_MAX: usize = 2 * RETIRE_BATCH;

/// A thread's handle on one [`TreiberStack`]: its registration with the stack's collector and a
/// private cache of nodes, so that pushes and pops in a steady state neither allocate nor free.
///
/// # How nodes are recycled
/// A popped node may still be read by threads that loaded it as the head before the pop
/// unlinked it (they were pinned), so it can be reused only after they all unpinned, which is
/// what the epoch scheme tracks. The handle collects popped nodes in a batch of
/// 128 (`RETIRE_BATCH`); a full batch is handed to the collector as *one* deferred function, which
/// only sets the batch's `ready` flag, and the bag is flushed so the collector sees it without
/// waiting for 63 more deferrals. Once the flag is set (some later pin, on any thread, collected
/// it), every thread that could have seen one of the batch's nodes has unpinned, and the nodes
/// are this handle's again: a push takes a node from the handle's free list before it asks the
/// allocator. This is the epoch rule the plain [`TreiberStack::pop`] follows, applied per batch:
/// its per-node deferral and the allocator's free and malloc are what the recycling removes.
///
/// A handle is for the thread that made it (neither `Send` nor `Sync`, like the crossbeam-epoch
/// `LocalHandle` inside it). Dropping it frees the nodes it holds; nodes still waiting for the
/// epoch are handed to the collector to free.
///
/// ```
/// use veridian_sync::stack::TreiberStack;
///
/// let stack = TreiberStack::new();
/// let mut handle = stack.handle(); // once per thread
/// handle.push(1);
/// handle.push(2);
/// assert_eq!(handle.pop(), Some(2));
/// assert_eq!(handle.pop(), Some(1));
/// assert_eq!(handle.pop(), None);
/// ```
pub struct StackHandle<'s, T> {
    stack: &'s TreiberStack<T>,
    local: LocalHandle,
    /// Nodes nobody else can reach: reusable at once (their values were moved out).
    free: Vec<*mut Node<T>>,
    /// Popped nodes not yet handed to the collector.
    retiring: Vec<*mut Node<T>>,
    /// Batches handed to the collector, oldest first, each with the flag its deferred function
    /// sets.
    in_flight: VecDeque<(Arc<AtomicBool>, Vec<*mut Node<T>>)>,
}

impl<T> StackHandle<'_, T> {
    /// Pushes `value` on top of the stack, in a recycled node when one is ready.
    pub fn push(&mut self, value: T) {
        let node = match self.take_free() {
            Some(node) => {
                // SAFETY: a node from the free list is reachable by nobody else (see
                // "How nodes are recycled"); its value was moved out, so overwriting the
                // `ManuallyDrop` drops nothing. The flag's `Acquire` load (in `take_free`)
                // ordered every earlier reader's accesses before these writes.
                unsafe {
                    (*node)
                        .value
                        .with_mut(|slot| ptr::write(slot, ManuallyDrop::new(value)));
                }
                node
            }
            None => Node::alloc(value),
        };
        let guard = self.local.pin();
        // SAFETY: `node` is unpublished and ours; we are pinned on the stack's collector (the
        // handle was registered with it).
        unsafe { self.stack.link(node, node) };
        drop(guard);
    }

    /// Removes the top value, or returns `None` if the stack is empty. The node goes to this
    /// handle's retiring batch.
    pub fn pop(&mut self) -> Option<T> {
        let guard = self.local.pin();
        // SAFETY: pinned on the stack's collector (the handle was registered with it).
        let node = unsafe { self.stack.unlink(&guard) }?;
        // SAFETY: our CAS unlinked `node`: its value is ours to move out, once (as in
        // `TreiberStack::pop`). The node itself is only retired below, not freed.
        let value = unsafe { (*node).value.with(|value| ptr::read(value)) };
        self.retiring.push(node);
        if self.retiring.len() >= RETIRE_BATCH {
            self.retire_batch(&guard);
        }
        drop(guard);
        Some(ManuallyDrop::into_inner(value))
    }

    /// Hands the retiring batch to the collector: its deferred function sets the batch's flag
    /// once every thread pinned now has unpinned.
    fn retire_batch(&mut self, guard: &Guard) {
        let ready = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ready);
        // Release: pairs with the `Acquire` load in `take_free`, so that everything the
        // collector ordered before this call (the unpins of every thread that could read the
        // batch's nodes) happens before the handle writes to the nodes again.
        guard.defer(move || flag.store(true, Ordering::Release));
        // Move the deferral to the global queue now rather than after 63 more.
        guard.flush();
        let batch = core::mem::replace(&mut self.retiring, Vec::with_capacity(RETIRE_BATCH));
        self.in_flight.push_back((ready, batch));
    }

    /// A reusable node, from the free list or from the oldest batch whose flag is set.
    fn take_free(&mut self) -> Option<*mut Node<T>> {
        if let Some(node) = self.free.pop() {
            return Some(node);
        }
        // Acquire: see `retire_batch`.
        if self
            .in_flight
            .front()
            .is_some_and(|(ready, _)| ready.load(Ordering::Acquire))
        {
            let (_, nodes) = self.in_flight.pop_front()?;
            let spare = core::mem::replace(&mut self.free, nodes);
            drop(spare);
            // Free what exceeds the bound (a thread that pops more than it pushes).
            while self.free.len() > FREE_MAX {
                if let Some(node) = self.free.pop() {
                    // SAFETY: a ready node is ours alone (see above), came from
                    // `Node::alloc`, and holds no value; freeing it drops nothing else.
                    drop(unsafe { Box::from_raw(node) });
                }
            }
            return self.free.pop();
        }
        None
    }
}

impl<T> Drop for StackHandle<'_, T> {
    fn drop(&mut self) {
        for node in self.free.drain(..) {
            // SAFETY: free nodes are ours alone, from `Node::alloc`, without a value.
            drop(unsafe { Box::from_raw(node) });
        }
        let guard = self.local.pin();
        let mut waiting = core::mem::take(&mut self.retiring);
        for (ready, nodes) in self.in_flight.drain(..) {
            if ready.load(Ordering::Acquire) {
                for node in nodes {
                    // SAFETY: the batch's flag is set: nobody else can reach its nodes.
                    drop(unsafe { Box::from_raw(node) });
                }
            } else {
                waiting.extend(nodes);
            }
        }
        if !waiting.is_empty() {
            let nodes = ManuallyDrop::new(waiting);
            let (ptr, len, cap) = (nodes.as_ptr().cast_mut(), nodes.len(), nodes.capacity());
            // SAFETY: every node in `waiting` was unlinked before now, so deferring its free
            // past every thread pinned now is the rule `TreiberStack::pop` follows; the nodes
            // hold no value and came from `Node::alloc`; the vector is rebuilt from its own
            // parts, once.
            unsafe {
                guard.defer_unchecked(move || {
                    for node in Vec::from_raw_parts(ptr, len, cap) {
                        drop(Box::from_raw(node));
                    }
                });
            }
        }
        drop(guard);
    }
}

impl<T> fmt::Debug for StackHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackHandle")
            .field("free", &self.free.len())
            .field("retiring", &self.retiring.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}
