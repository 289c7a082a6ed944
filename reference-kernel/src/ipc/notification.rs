//! Notifications: asynchronous signals of one word of bits, as seL4's.
//!
//! What it does:
//! - [`Notification::signal`] ORs bits into the word and wakes the thread waiting on it, if
//!   any; it never blocks, so interrupt handlers use it ([`irq_fired`] for the user interrupt
//!   lines a process bound with `irq_bind`).
//! - [`Notification::wait`] returns the accumulated bits and clears them, blocking while they
//!   are zero; [`Notification::poll`] does the same without blocking. Signals before a wait
//!   are never lost: the bits stay until taken.
//! - One waiter at a time (`-EBUSY` for a second one), which is how the handles are meant to
//!   be used: one thread per process.
//! - **No hang on a dead peer**: handles and interrupt bindings count as holders; a wait
//!   with no bits on a notification nobody else holds fails with `-EPIPE`, and a waiter is
//!   woken to that error when the last other holder goes.
//!
//! Concurrency: the word and the waiter are behind one `IrqLock` (interrupt handlers signal),
//! so a wait checks the bits and publishes itself in one critical section: a signal either
//! sees the waiter or left bits the waiter sees. The waiter keeps interrupts off from
//! publishing itself until it has switched away (the pattern of `join` and the endpoints).

#![deny(unsafe_code)]

use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::x86_64::context::{self, SwitchReason};
use crate::arch::x86_64::percpu::CpuGuard;
use crate::process_abi::{errno, limits};
use crate::sync::IrqLock;
use crate::task::{self, Thread};

struct State {
    bits: u64,
    waiter: Option<Arc<Thread>>,
}

/// An asynchronous notification word.
pub struct Notification {
    state: IrqLock<State>,
    /// Handles and interrupt bindings that name it.
    holders: AtomicUsize,
}

impl Notification {
    /// A notification with no bits set, held by nobody yet.
    pub fn new() -> Self {
        Self {
            state: IrqLock::new(
                "ipc::Notification",
                State {
                    bits: 0,
                    waiter: None,
                },
            ),
            holders: AtomicUsize::new(0),
        }
    }

    /// ORs `bits` into the word and wakes the waiter, if any. Any context.
    pub fn signal(&self, bits: u64) {
        let woken = {
            let mut s = self.state.lock();
            s.bits |= bits;
            if s.bits != 0 { s.waiter.take() } else { None }
        };
        if let Some(t) = woken {
            task::wake(t);
        }
    }

    /// Takes the bits set so far (0 if none), without blocking.
    pub fn poll(&self) -> u64 {
        core::mem::take(&mut self.state.lock().bits)
    }

    /// Takes the bits set so far, waiting while there are none. `-EBUSY` if another thread
    /// waits already; `-EPIPE` if nobody else holds the notification and no bits are set;
    /// `-ESRCH` outside a thread. `cancelled` is asked after every wake-up: `true` ends the wait
    /// with `-EINTR` (the process is being killed).
    pub fn wait(&self, cancelled: impl Fn() -> bool) -> Result<u64, i64> {
        let me = task::current().ok_or(errno::ESRCH)?;
        loop {
            // Off from publishing ourselves until the switch: a signal on another CPU (or an
            // interrupt here) may wake us at once.
            let irq = CpuGuard::enter();
            {
                let mut s = self.state.lock();
                if s.bits != 0 {
                    return Ok(core::mem::take(&mut s.bits));
                }
                if cancelled() {
                    return Err(errno::EINTR);
                }
                if self.holders.load(Ordering::Acquire) <= 1 {
                    return Err(errno::EPIPE);
                }
                match &s.waiter {
                    Some(w) if !Arc::ptr_eq(w, &me) => return Err(errno::EBUSY),
                    _ => s.waiter = Some(me.clone()),
                }
            }
            context::switch_to_scheduler(SwitchReason::Block);
            drop(irq);
        }
    }

    /// Wakes `thread` if it waits here (to see a cancellation); whether it did.
    pub fn interrupt(&self, thread: &Arc<Thread>) -> bool {
        let woken = {
            let mut s = self.state.lock();
            match &s.waiter {
                Some(w) if Arc::ptr_eq(w, thread) => s.waiter.take(),
                _ => None,
            }
        };
        woken.map(task::wake).is_some()
    }

    /// A handle or binding now names it.
    pub(super) fn hold(&self) {
        self.holders.fetch_add(1, Ordering::AcqRel);
    }

    /// A handle naming it went away: with at most one holder left, the waiter (if any) wakes
    /// to find nobody can signal it.
    pub(super) fn close(&self) {
        if self.holders.fetch_sub(1, Ordering::AcqRel) - 1 <= 1 {
            let woken = self.state.lock().waiter.take();
            if let Some(t) = woken {
                task::wake(t);
            }
        }
    }
}

impl Default for Notification {
    fn default() -> Self {
        Self::new()
    }
}

/// What a user interrupt line signals: the notification (weak: the binding ends when the
/// notification does) and the bits.
struct Binding {
    target: Weak<Notification>,
    bits: u64,
}

/// The user interrupt lines' bindings.
static LINES: [IrqLock<Option<Binding>>; limits::USER_IRQ_LINES as usize] =
    [const { IrqLock::new("ipc::notification::LINES", None) }; limits::USER_IRQ_LINES as usize];

/// Binds user interrupt line `line` to `target`: each interrupt on it signals `bits`.
/// `-EINVAL` for a line out of range or no bits, `-EBUSY` if a live notification has it.
pub fn bind(line: u64, target: &Arc<Notification>, bits: u64) -> Result<(), i64> {
    let slot = usize::try_from(line)
        .ok()
        .and_then(|l| LINES.get(l))
        .ok_or(errno::EINVAL)?;
    if bits == 0 {
        return Err(errno::EINVAL);
    }
    let mut b = slot.lock();
    if b.as_ref().is_some_and(|b| b.target.strong_count() > 0) {
        return Err(errno::EBUSY);
    }
    // The binding counts as a holder for as long as the notification lives: an interrupt may
    // always come, so a waiter on it never gets -EPIPE.
    target.hold();
    *b = Some(Binding {
        target: Arc::downgrade(target),
        bits,
    });
    Ok(())
}

/// Interrupts delivered to user notifications since boot, per line.
static FIRED: [AtomicUsize; limits::USER_IRQ_LINES as usize] =
    [const { AtomicUsize::new(0) }; limits::USER_IRQ_LINES as usize];

/// The architecture layer's hook for an interrupt on user line `line` (interrupt context):
/// signals the bound notification, if any.
pub fn irq_fired(line: u8) {
    let Some(slot) = LINES.get(usize::from(line)) else {
        return;
    };
    let target = slot
        .lock()
        .as_ref()
        .and_then(|b| b.target.upgrade().map(|n| (n, b.bits)));
    if let Some((n, bits)) = target {
        FIRED[usize::from(line)].fetch_add(1, Ordering::Relaxed);
        n.signal(bits);
    }
}

/// Whether a live notification has user line `line`.
pub fn is_bound(line: u8) -> bool {
    LINES.get(usize::from(line)).is_some_and(|slot| {
        slot.lock()
            .as_ref()
            .is_some_and(|b| b.target.strong_count() > 0)
    })
}

/// Interrupts on user line `line` delivered to a notification since boot.
pub fn delivered(line: u8) -> usize {
    FIRED
        .get(usize::from(line))
        .map_or(0, |c| c.load(Ordering::Relaxed))
}
