//! Synchronous IPC: endpoints with `send`, `recv`, `call` and `reply_recv`, register-sized
//! messages, and per-process handle tables.
//!
//! What it does:
//! - An [`Endpoint`] holds the threads waiting on it: receivers, or senders with their
//!   messages (one side at a time). A message is [`MSG_WORDS`] words, passed in registers both
//!   ways by the system calls.
//! - `call` delivers its message like `send` and then waits for the reply: the receiver's
//!   [`Ipc`] state keeps the caller (a one-shot reply right, as seL4's reply capability), and
//!   its next `reply_recv` answers it. A `recv` that finds a caller still waiting for a reply
//!   from this receiver ends that wait with `-EPIPE` first.
//! - **Handles** ([`HandleTable`]): a process names endpoints by small indices into its own
//!   table; an index from another process's table means nothing here (`-EBADF`).
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
//! Not done yet: notifications and shared-memory channels (issue 16).
//!
//! Concurrency: the endpoint's queues are behind an `IrqLock`; a thread that blocks turns
//! interrupts off before it queues itself and keeps them off until it has switched away (the
//! pattern `join` uses), so a waker on another CPU may queue it at once.

#![deny(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::x86_64::context::{self, SwitchReason};
use crate::arch::x86_64::percpu::CpuGuard;
use crate::process_abi::errno;
use crate::sync::IrqLock;
use crate::task::{self, Thread};

pub use crate::process_abi::MSG_WORDS;

/// A message: [`MSG_WORDS`] words.
pub type Message = [u64; MSG_WORDS];

/// Handles per process.
pub const MAX_HANDLES: usize = 16;

/// A blocked IPC participant: the thread and what it is given when woken.
struct Waiter {
    thread: Arc<Thread>,
    /// The message (or error) delivered to it; taken when it wakes.
    slot: IrqLock<Option<Result<Message, i64>>>,
    /// The caller whose `call` this receiver took last (the one-shot reply right).
    reply_to: IrqLock<Option<Arc<Waiter>>>,
}

impl Waiter {
    /// Gives `result` to the waiter and makes it runnable.
    fn deliver(&self, result: Result<Message, i64>) {
        *self.slot.lock() = Some(result);
        task::wake(self.thread.clone());
    }
}

/// The calling thread blocks and `next`'s thread (given its result already, so woken by the
/// caller alone) runs: on this CPU directly where it can (`task::switch_to`), else through its
/// run queue. Interrupts off since the caller published itself to its wakers.
fn block_handing_to(next: &Waiter) {
    if let Err(thread) = task::switch_to(next.thread.clone()) {
        task::wake(thread);
        context::switch_to_scheduler(SwitchReason::Block);
    }
}

struct Sender {
    waiter: Arc<Waiter>,
    msg: Message,
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
        for s in senders {
            s.waiter.deliver(Err(errno::EPIPE));
        }
        for r in receivers {
            r.deliver(Err(errno::EPIPE));
        }
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::new()
    }
}

/// A process's endpoints, by handle.
pub struct HandleTable {
    slots: [Option<Arc<Endpoint>>; MAX_HANDLES],
}

impl HandleTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            slots: [const { None }; MAX_HANDLES],
        }
    }

    /// Adds `ep` at the lowest free handle; `-EMFILE` when full.
    pub fn insert(&mut self, ep: Arc<Endpoint>) -> Result<u64, i64> {
        let (i, slot) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.is_none())
            .ok_or(errno::EMFILE)?;
        ep.holders.fetch_add(1, Ordering::AcqRel);
        *slot = Some(ep);
        Ok(i as u64)
    }

    /// The endpoint `handle` names; `-EBADF` for anything else.
    pub fn get(&self, handle: u64) -> Result<Arc<Endpoint>, i64> {
        usize::try_from(handle)
            .ok()
            .and_then(|h| self.slots.get(h))
            .and_then(Option::clone)
            .ok_or(errno::EBADF)
    }

    /// Closes every handle (the process ended).
    pub fn close_all(&mut self) {
        for slot in &mut self.slots {
            if let Some(ep) = slot.take() {
                ep.close();
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
}

impl Ipc {
    /// No IPC yet.
    pub const fn new() -> Self {
        Self {
            waiter: IrqLock::new("ipc::Ipc::waiter", None),
        }
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
        });
        *waiter = Some(w.clone());
        Ok(w)
    }

    /// `send`: delivers `msg` to a waiting receiver, or waits until one takes it.
    pub fn send(&self, ep: &Endpoint, msg: Message) -> Result<(), i64> {
        self.transfer(ep, msg, false).map(|_| ())
    }

    /// `call`: delivers `msg` and waits for the reply.
    pub fn call(&self, ep: &Endpoint, msg: Message) -> Result<Message, i64> {
        self.transfer(ep, msg, true)
    }

    fn transfer(&self, ep: &Endpoint, msg: Message, call: bool) -> Result<Message, i64> {
        let me = self.me()?;
        // Off from queueing (or delivering a call) until the switch: a waker on another CPU
        // may queue this thread at once.
        let irq = CpuGuard::enter();
        let mut q = ep.queues.lock();
        if let Some(receiver) = q.receivers.pop_front() {
            drop(q);
            if !call {
                receiver.deliver(Ok(msg));
                return Ok([0; MSG_WORDS]);
            }
            *receiver.reply_to.lock() = Some(me.clone());
            *receiver.slot.lock() = Some(Ok(msg));
            // The fast path: straight to the waiting receiver, which replies straight back.
            block_handing_to(&receiver);
            drop(irq);
            return me.slot.lock().take().unwrap_or(Err(errno::EPIPE));
        } else {
            if ep.holders.load(Ordering::Acquire) <= q.senders.len() + q.receivers.len() + 1 {
                // Every other holder is blocked here already (or there is none).
                return Err(errno::EPIPE);
            }
            q.senders.push_back(Sender {
                waiter: me.clone(),
                msg,
                call,
            });
            drop(q);
        }
        context::switch_to_scheduler(SwitchReason::Block);
        drop(irq);
        me.slot.lock().take().unwrap_or(Err(errno::EPIPE))
    }

    /// `recv`: takes a waiting sender's message, or waits for one.
    pub fn recv(&self, ep: &Endpoint) -> Result<Message, i64> {
        let me = self.me()?;
        // A caller still waiting for this receiver's reply will not get one now.
        let stale = me.reply_to.lock().take();
        if let Some(stale) = stale {
            stale.deliver(Err(errno::EPIPE));
        }
        self.receive(ep, &me, None)
    }

    /// Receives on `ep` as `me`; `answered` is a caller just given its reply, not woken yet:
    /// it runs next on this CPU if this thread blocks, or is woken if it does not.
    fn receive(
        &self,
        ep: &Endpoint,
        me: &Arc<Waiter>,
        answered: Option<Arc<Waiter>>,
    ) -> Result<Message, i64> {
        let irq = CpuGuard::enter();
        let mut q = ep.queues.lock();
        if let Some(sender) = q.senders.pop_front() {
            drop(q);
            drop(irq);
            if let Some(caller) = answered {
                task::wake(caller.thread.clone());
            }
            if sender.call {
                *me.reply_to.lock() = Some(sender.waiter);
            } else {
                sender.waiter.deliver(Ok([0; MSG_WORDS]));
            }
            return Ok(sender.msg);
        }
        if ep.holders.load(Ordering::Acquire) <= q.receivers.len() + 1 {
            drop(q);
            drop(irq);
            if let Some(caller) = answered {
                task::wake(caller.thread.clone());
            }
            return Err(errno::EPIPE);
        }
        q.receivers.push_back(me.clone());
        drop(q);
        match answered {
            Some(caller) => block_handing_to(&caller),
            None => context::switch_to_scheduler(SwitchReason::Block),
        }
        drop(irq);
        me.slot.lock().take().unwrap_or(Err(errno::EPIPE))
    }

    /// `reply_recv`: answers the last caller (if any) with `msg`, then receives; the caller
    /// runs next on this CPU when this thread blocks (the fast path back).
    pub fn reply_recv(&self, ep: &Endpoint, msg: Message) -> Result<Message, i64> {
        let me = self.me()?;
        let caller = me.reply_to.lock().take();
        if let Some(caller) = &caller {
            *caller.slot.lock() = Some(Ok(msg));
        }
        self.receive(ep, &me, caller)
    }

    /// The process ended: a caller waiting for its reply gets `-EPIPE`, and the waiter (with
    /// its reference to the thread) goes.
    pub fn end(&self) {
        let me = self.waiter.lock().take();
        let caller = me.and_then(|w| w.reply_to.lock().take());
        if let Some(caller) = caller {
            caller.deliver(Err(errno::EPIPE));
        }
    }
}

impl Default for Ipc {
    fn default() -> Self {
        Self::new()
    }
}
