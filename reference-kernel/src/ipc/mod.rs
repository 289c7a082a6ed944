//! IPC: synchronous endpoints with `send`, `recv`, `call` and `reply_recv` and register-sized
//! messages; asynchronous [`notification`]s; shared memory ([`crate::mm::shared`]) for
//! channels; per-process handle tables naming all three.
//!
//! What it does:
//! - An [`Endpoint`] holds the threads waiting on it: receivers, or senders with their
//!   messages (one side at a time). A message is [`MSG_WORDS`] words, passed in registers both
//!   ways by the system calls.
//! - `call` delivers its message like `send` and then waits for the reply: the receiver's
//!   [`Ipc`] state keeps the caller (a one-shot reply right, as seL4's reply capability), and
//!   its next `reply_recv` answers it. A `recv` that finds a caller still waiting for a reply
//!   from this receiver ends that wait with `-EPIPE` first.
//! - **Handles** ([`HandleTable`]): a process names endpoints, notifications and shared-memory
//!   objects by small indices into its own table; an index from another process's table means
//!   nothing here, and a handle of the wrong kind for the call is refused (`-EBADF` both).
//! - **No hang on a dead peer**: an endpoint counts the handles that name it; when a process
//!   ends, its handles are closed, and once every remaining holder is blocked on the endpoint,
//!   each is woken with `-EPIPE`; a blocking call on an endpoint nobody else holds fails at
//!   once with `-EPIPE`; a caller whose server ends before replying gets `-EPIPE`.
//!
//! - **Fast path**: a `call` that finds its receiver waiting, and a `reply_recv` whose receive
//!   blocks, switch straight to the other thread on this CPU (`task::switch_to`: one stack
//!   switch, no run-queue operation, no pass through the scheduler context) when it last ran
//!   here; otherwise the other thread is woken through the scheduler (the slow path).
//!
//! - **Cancellation** ([`Ipc::cancel`], for killing a process): a thread blocked in an IPC
//!   call or a notification wait is woken with `-EINTR`; its system call then ends the process
//!   instead of returning. A thread blocked on an endpoint arms a flag before it is published
//!   (in a queue, or in a server's reply right); whoever takes the flag back (one atomic swap)
//!   owns waking it, a peer delivering or the canceller, and entries whose flag is gone are
//!   stale and skipped (the cancelled thread also removes its own queue entries). A
//!   notification waiter is woken through the notification.
//!
//! Concurrency: the endpoint's queues are behind an `IrqLock`; a thread that blocks turns
//! interrupts off before it queues itself and keeps them off until it has switched away (the
//! pattern `join` uses), so a waker on another CPU may queue it at once. Lock order: an
//! endpoint's queue lock, then a waiter's `reply_to` lock (never the reverse).

#![deny(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use core::sync::atomic::AtomicBool;

use crate::arch::x86_64::context::{self, SwitchReason};
use crate::arch::x86_64::percpu::CpuGuard;
use crate::mm::shared::SharedMemory;
use crate::process_abi::errno;
use crate::sync::IrqLock;
use crate::task::{self, Thread};

pub mod notification;

pub use notification::Notification;

pub use crate::process_abi::MSG_WORDS;

/// A message: [`MSG_WORDS`] words.
pub type Message = [u64; MSG_WORDS];

/// What a receive returns: the message's words and the bytes of a long message, if any.
pub type Received = Result<(Message, Option<Vec<u8>>), i64>;

/// Handles per process.
pub const MAX_HANDLES: usize = 16;

/// A blocked IPC participant: the thread and what it is given when woken.
struct Waiter {
    thread: Arc<Thread>,
    /// The message (or error) delivered to it; taken when it wakes.
    slot: IrqLock<Option<Result<Message, i64>>>,
    /// The caller whose `call` this receiver took last (the one-shot reply right).
    reply_to: IrqLock<Option<Arc<Waiter>>>,
    /// Set when it blocks on an endpoint (queued, or a caller waiting for its reply); whoever
    /// takes it back ([`Waiter::claim`]) owns waking it: a peer delivering, or the canceller.
    /// An entry whose flag is gone is stale (its thread was cancelled) and is skipped.
    armed: AtomicBool,
    /// The notification it waits on, if any (for [`Ipc::cancel`]).
    notify: IrqLock<Option<Arc<Notification>>>,
    /// The bytes that came with the last message or reply delivered to it (a long message),
    /// until the system-call layer copies them out; `has_data` says whether there are any
    /// (one load on the register-only path).
    data: IrqLock<Option<Vec<u8>>>,
    has_data: AtomicBool,
}

impl Waiter {
    /// Marks it blocked (before it is published to its wakers).
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Takes the right to wake it: true for exactly one caller per `arm`.
    fn claim(&self) -> bool {
        self.armed.swap(false, Ordering::SeqCst)
    }

    /// Attaches `data` (if any) to the message or reply being delivered to it.
    fn give_data(&self, data: Option<Vec<u8>>) {
        if let Some(d) = data {
            *self.data.lock() = Some(d);
            self.has_data.store(true, Ordering::Release);
        }
    }

    /// The bytes delivered with its last message or reply, if any (one load when none).
    fn take_data(&self) -> Option<Vec<u8>> {
        if !self.has_data.load(Ordering::Relaxed) {
            return None;
        }
        self.has_data.store(false, Ordering::Relaxed);
        self.data.lock().take()
    }

    /// Drops bytes a register-only receive left (one load when there are none).
    fn discard_data(&self) {
        if self.has_data.load(Ordering::Relaxed) {
            drop(self.take_data());
        }
    }

    /// Gives `result` to the waiter (claimed by the caller) and makes it runnable.
    fn deliver(&self, result: Result<Message, i64>) {
        *self.slot.lock() = Some(result);
        task::wake(self.thread.clone());
    }
}

/// The calling thread blocks and `next`'s thread (claimed and given its result already, so
/// woken by the caller alone) runs: on this CPU directly where it can (`task::switch_to`),
/// else through its run queue. Interrupts off since the caller published itself to its
/// wakers.
fn block_handing_to(next: &Waiter) {
    if let Err(thread) = task::switch_to(next.thread.clone()) {
        task::wake(thread);
        context::switch_to_scheduler(SwitchReason::Block);
    }
}

struct Sender {
    waiter: Arc<Waiter>,
    msg: Message,
    /// The bytes of a long message.
    data: Option<Vec<u8>>,
    /// A `call`: the sender waits for a reply after delivery.
    call: bool,
}

#[derive(Default)]
struct Queues {
    receivers: VecDeque<Arc<Waiter>>,
    senders: VecDeque<Sender>,
}

/// A synchronous IPC endpoint.
pub struct Endpoint {
    queues: IrqLock<Queues>,
    /// Handle-table entries that name it.
    holders: AtomicUsize,
}

impl Endpoint {
    /// A new endpoint, named by no handle yet.
    pub fn new() -> Self {
        Self {
            queues: IrqLock::new("ipc::Endpoint", Queues::default()),
            holders: AtomicUsize::new(0),
        }
    }

    /// Drops `w`'s stale entries (its wait was cancelled), so they are not counted as
    /// blocked holders.
    fn forget(&self, w: &Arc<Waiter>) {
        let mut q = self.queues.lock();
        q.receivers.retain(|r| !Arc::ptr_eq(r, w));
        q.senders.retain(|s| !Arc::ptr_eq(&s.waiter, w));
    }

    /// A handle naming it went away: if every remaining holder is blocked here, nobody can
    /// ever answer them: each gets `-EPIPE`.
    fn close(&self) {
        let holders = self.holders.fetch_sub(1, Ordering::AcqRel) - 1;
        let mut q = self.queues.lock();
        if holders > q.senders.len() + q.receivers.len() {
            return;
        }
        let senders: VecDeque<Sender> = core::mem::take(&mut q.senders);
        let receivers: VecDeque<Arc<Waiter>> = core::mem::take(&mut q.receivers);
        drop(q);
        for w in senders.iter().map(|s| &s.waiter).chain(receivers.iter()) {
            if w.claim() {
                w.deliver(Err(errno::EPIPE));
            }
        }
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::new()
    }
}

/// What a handle names.
#[derive(Clone)]
pub enum Object {
    /// A synchronous endpoint.
    Endpoint(Arc<Endpoint>),
    /// A notification.
    Notification(Arc<Notification>),
    /// A shared-memory object.
    Memory(Arc<SharedMemory>),
}

impl Object {
    fn hold(&self) {
        match self {
            Self::Endpoint(ep) => {
                ep.holders.fetch_add(1, Ordering::AcqRel);
            }
            Self::Notification(n) => n.hold(),
            Self::Memory(_) => {}
        }
    }

    fn close(self) {
        match self {
            Self::Endpoint(ep) => ep.close(),
            Self::Notification(n) => n.close(),
            Self::Memory(_) => {}
        }
    }
}

/// The kernel holding an object as a process's handle would (counted as a holder until
/// dropped): what kernel code keeps while it hands one object to several processes, so that
/// the first one started does not find itself alone (`-EPIPE`) before the others exist.
pub struct KernelHold(Object);

impl KernelHold {
    /// Holds `object`.
    pub fn new(object: Object) -> Self {
        object.hold();
        Self(object)
    }

    /// The object held.
    pub fn object(&self) -> &Object {
        &self.0
    }
}

impl Drop for KernelHold {
    fn drop(&mut self) {
        self.0.clone().close();
    }
}

/// A process's IPC objects, by handle.
pub struct HandleTable {
    slots: [Option<Object>; MAX_HANDLES],
}

impl HandleTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            slots: [const { None }; MAX_HANDLES],
        }
    }

    /// Adds `object` at the lowest free handle; `-EMFILE` when full.
    pub fn insert(&mut self, object: Object) -> Result<u64, i64> {
        let (i, slot) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.is_none())
            .ok_or(errno::EMFILE)?;
        object.hold();
        *slot = Some(object);
        Ok(i as u64)
    }

    /// What `handle` names; `-EBADF` for a handle that names nothing.
    pub fn get(&self, handle: u64) -> Result<Object, i64> {
        usize::try_from(handle)
            .ok()
            .and_then(|h| self.slots.get(h))
            .and_then(Option::clone)
            .ok_or(errno::EBADF)
    }

    /// The endpoint `handle` names; `-EBADF` for anything else.
    pub fn endpoint(&self, handle: u64) -> Result<Arc<Endpoint>, i64> {
        match self.get(handle)? {
            Object::Endpoint(ep) => Ok(ep),
            _ => Err(errno::EBADF),
        }
    }

    /// The notification `handle` names; `-EBADF` for anything else.
    pub fn notification(&self, handle: u64) -> Result<Arc<Notification>, i64> {
        match self.get(handle)? {
            Object::Notification(n) => Ok(n),
            _ => Err(errno::EBADF),
        }
    }

    /// The shared-memory object `handle` names; `-EBADF` for anything else.
    pub fn memory(&self, handle: u64) -> Result<Arc<SharedMemory>, i64> {
        match self.get(handle)? {
            Object::Memory(m) => Ok(m),
            _ => Err(errno::EBADF),
        }
    }

    /// Closes every handle (the process ended).
    pub fn close_all(&mut self) {
        for slot in &mut self.slots {
            if let Some(object) = slot.take() {
                object.close();
            }
        }
    }
}

impl Default for HandleTable {
    fn default() -> Self {
        Self::new()
    }
}

/// One process's IPC state: its waiter (made on first use, for its one thread; it holds the
/// thread, which holds the process, so [`Ipc::end`] drops it) and through it whom it owes a
/// reply.
pub struct Ipc {
    waiter: IrqLock<Option<Arc<Waiter>>>,
    /// The process is being killed ([`Ipc::cancel`]): no new wait starts.
    killed: AtomicBool,
}

impl Ipc {
    /// No IPC yet.
    pub const fn new() -> Self {
        Self {
            waiter: IrqLock::new("ipc::Ipc::waiter", None),
            killed: AtomicBool::new(false),
        }
    }

    /// Whether [`Ipc::cancel`] was called.
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// The process is being killed: from now on every IPC wait of its thread ends at once with
    /// `-EINTR`, and the one it is blocked in now (if any) is ended the same way. False if it
    /// was cancelled already (nothing done).
    pub fn cancel(&self) -> bool {
        if self.killed.swap(true, Ordering::SeqCst) {
            return false;
        }
        let Some(me) = self.waiter.lock().clone() else {
            return true;
        };
        // Blocked on an endpoint: we own its wake-up if we claim it first (a thread that
        // arms itself after this sees `killed` and claims itself back instead of blocking).
        if me.claim() {
            me.deliver(Err(errno::EINTR));
        }
        // Waiting on a notification: woken there, its wait sees the cancellation.
        let notify = me.notify.lock().clone();
        if let Some(n) = notify {
            n.interrupt(&me.thread);
        }
        true
    }

    /// `wait` on notification `n` as this process's thread (see [`Notification::wait`]);
    /// `-EINTR` if the process is being killed.
    pub fn wait_notification(&self, n: &Arc<Notification>) -> Result<u64, i64> {
        let me = self.me()?;
        *me.notify.lock() = Some(n.clone());
        let r = n.wait(|| self.killed());
        *me.notify.lock() = None;
        r
    }

    /// The caller's waiter (the running thread must be the process's own).
    fn me(&self) -> Result<Arc<Waiter>, i64> {
        let mut waiter = self.waiter.lock();
        if let Some(w) = &*waiter {
            return Ok(w.clone());
        }
        let thread = task::current().ok_or(errno::ESRCH)?;
        let w = Arc::new(Waiter {
            thread,
            slot: IrqLock::new("ipc::Waiter::slot", None),
            reply_to: IrqLock::new("ipc::Waiter::reply_to", None),
            armed: AtomicBool::new(false),
            notify: IrqLock::new("ipc::Waiter::notify", None),
            data: IrqLock::new("ipc::Waiter::data", None),
            has_data: AtomicBool::new(false),
        });
        *waiter = Some(w.clone());
        Ok(w)
    }

    /// `send`: delivers `msg` (and `data`, a long message's bytes) to a waiting receiver, or
    /// waits until one takes it.
    pub fn send(&self, ep: &Arc<Endpoint>, msg: Message, data: Option<Vec<u8>>) -> Result<(), i64> {
        let me = self.me()?;
        self.transfer(&me, ep, msg, data, false).map(|_| ())
    }

    /// `call`, register-only: delivers `msg` and waits for the reply (bytes that came with it
    /// are dropped).
    pub fn call(&self, ep: &Arc<Endpoint>, msg: Message) -> Result<Message, i64> {
        let me = self.me()?;
        let reply = self.transfer(&me, ep, msg, None, true);
        me.discard_data();
        reply
    }

    /// `call` with a long message: delivers `msg` and `data` and waits for the reply; the
    /// reply and the bytes that came with it.
    pub fn call_long(&self, ep: &Arc<Endpoint>, msg: Message, data: Option<Vec<u8>>) -> Received {
        let me = self.me()?;
        let reply = self.transfer(&me, ep, msg, data, true)?;
        Ok((reply, me.take_data()))
    }

    #[inline(always)]
    fn transfer(
        &self,
        me: &Arc<Waiter>,
        ep: &Arc<Endpoint>,
        msg: Message,
        data: Option<Vec<u8>>,
        call: bool,
    ) -> Result<Message, i64> {
        // Off from queueing (or delivering a call) until the switch: a waker on another CPU
        // may queue this thread at once.
        let irq = CpuGuard::enter();
        let mut q = ep.queues.lock();
        // The first receiver still waiting (one whose thread was cancelled is stale).
        let receiver = loop {
            match q.receivers.pop_front() {
                Some(r) if r.claim() => break Some(r),
                Some(_) => continue,
                None => break None,
            }
        };
        if let Some(receiver) = receiver {
            receiver.give_data(data);
            if !call {
                drop(q);
                receiver.deliver(Ok(msg));
                return Ok([0; MSG_WORDS]);
            }
            // We wait for the reply from here: armed before the receiver can see us.
            me.arm();
            *receiver.reply_to.lock() = Some(me.clone());
            drop(q);
            *receiver.slot.lock() = Some(Ok(msg));
            if self.cancelled_before_blocking(me) {
                // The receiver has its message and runs; we do not wait for its reply.
                task::wake(receiver.thread.clone());
                drop(irq);
                return Err(errno::EINTR);
            }
            // The fast path: straight to the waiting receiver, which replies straight back.
            block_handing_to(&receiver);
            drop(irq);
            return woken(me);
        }
        if ep.holders.load(Ordering::Acquire) <= q.senders.len() + q.receivers.len() + 1 {
            // Every other holder is blocked here already (or there is none).
            return Err(errno::EPIPE);
        }
        me.arm();
        q.senders.push_back(Sender {
            waiter: me.clone(),
            msg,
            data,
            call,
        });
        drop(q);
        if self.cancelled_before_blocking(me) {
            drop(irq);
            ep.forget(me);
            return Err(errno::EINTR);
        }
        context::switch_to_scheduler(SwitchReason::Block);
        drop(irq);
        let r = woken(me);
        if r == Err(errno::EINTR) {
            ep.forget(me);
        }
        r
    }

    /// Called after `me` armed itself and was published, before switching away: if the
    /// process is being killed, takes `me` back (true: it must not block) unless a peer or the
    /// canceller claimed it already (false: they wake it).
    fn cancelled_before_blocking(&self, me: &Waiter) -> bool {
        self.killed.load(Ordering::SeqCst) && me.claim()
    }

    /// `recv`: takes a waiting sender's message (and its bytes), or waits for one.
    pub fn recv(&self, ep: &Arc<Endpoint>) -> Received {
        let me = self.me()?;
        // A caller still waiting for this receiver's reply will not get one now.
        let stale = me.reply_to.lock().take();
        if let Some(stale) = stale
            && stale.claim()
        {
            stale.deliver(Err(errno::EPIPE));
        }
        let msg = self.receive(ep, &me, None)?;
        Ok((msg, me.take_data()))
    }

    /// `reply_recv`, register-only (bytes that came with the next message are dropped).
    pub fn reply_recv(&self, ep: &Arc<Endpoint>, msg: Message) -> Result<Message, i64> {
        let me = self.me()?;
        let next = self.answer_and_receive(&me, ep, msg, None);
        me.discard_data();
        next
    }

    /// Receives on `ep` as `me`; `answered` is a caller just given its reply (claimed), not
    /// woken yet: it runs next on this CPU if this thread blocks, or is woken if it does not.
    #[inline(always)]
    fn receive(
        &self,
        ep: &Arc<Endpoint>,
        me: &Arc<Waiter>,
        answered: Option<Arc<Waiter>>,
    ) -> Result<Message, i64> {
        let irq = CpuGuard::enter();
        let mut q = ep.queues.lock();
        while let Some(sender) = q.senders.pop_front() {
            let Sender {
                waiter,
                msg,
                data,
                call,
            } = sender;
            if call {
                // The caller stays blocked, now for our reply (a cancelled one is skipped).
                if !waiter.armed.load(Ordering::SeqCst) {
                    continue;
                }
                *me.reply_to.lock() = Some(waiter);
                drop(q);
            } else {
                if !waiter.claim() {
                    continue;
                }
                drop(q);
                waiter.deliver(Ok([0; MSG_WORDS]));
            }
            drop(irq);
            me.give_data(data);
            if let Some(caller) = answered {
                task::wake(caller.thread.clone());
            }
            return Ok(msg);
        }
        if ep.holders.load(Ordering::Acquire) <= q.receivers.len() + 1 {
            drop(q);
            drop(irq);
            if let Some(caller) = answered {
                task::wake(caller.thread.clone());
            }
            return Err(errno::EPIPE);
        }
        me.arm();
        q.receivers.push_back(me.clone());
        drop(q);
        if self.cancelled_before_blocking(me) {
            if let Some(caller) = answered {
                task::wake(caller.thread.clone());
            }
            drop(irq);
            ep.forget(me);
            return Err(errno::EINTR);
        }
        match answered {
            Some(caller) => block_handing_to(&caller),
            None => context::switch_to_scheduler(SwitchReason::Block),
        }
        drop(irq);
        let r = woken(me);
        if r == Err(errno::EINTR) {
            ep.forget(me);
        }
        r
    }

    /// `reply_recv` with a long message: answers the last caller (if any) with `msg` and
    /// `data`, then receives; the message and the bytes that came with it.
    pub fn reply_recv_long(
        &self,
        ep: &Arc<Endpoint>,
        msg: Message,
        data: Option<Vec<u8>>,
    ) -> Received {
        let me = self.me()?;
        let next = self.answer_and_receive(&me, ep, msg, data)?;
        Ok((next, me.take_data()))
    }

    /// Answers the last caller (if any) with `msg` and `data`, then receives; the caller runs
    /// next on this CPU when this thread blocks (the fast path back).
    #[inline(always)]
    fn answer_and_receive(
        &self,
        me: &Arc<Waiter>,
        ep: &Arc<Endpoint>,
        msg: Message,
        data: Option<Vec<u8>>,
    ) -> Result<Message, i64> {
        // A caller that was cancelled meanwhile is not answered.
        let caller = me.reply_to.lock().take().filter(|c| c.claim());
        if let Some(caller) = &caller {
            caller.give_data(data);
            *caller.slot.lock() = Some(Ok(msg));
        }
        self.receive(ep, me, caller)
    }

    /// The process ended: a caller waiting for its reply gets `-EPIPE`, and the waiter (with
    /// its reference to the thread) goes.
    pub fn end(&self) {
        let me = self.waiter.lock().take();
        let caller = me.and_then(|w| w.reply_to.lock().take());
        if let Some(caller) = caller
            && caller.claim()
        {
            caller.deliver(Err(errno::EPIPE));
        }
    }
}

/// The result a woken waiter was given.
fn woken(me: &Waiter) -> Result<Message, i64> {
    me.slot.lock().take().unwrap_or(Err(errno::EPIPE))
}

impl Default for Ipc {
    fn default() -> Self {
        Self::new()
    }
}
