//! Shared-memory channels between two processes: a pair of veridian-io SPSC rings
//! ([`SharedRing`]) in one shared-memory object both map, and a notification per side for
//! sleeping and waking.
//!
//! Messages are [`Item`]s (four words) written straight into the peer's ring: no system call
//! and no copy through the kernel per message. A side sleeps only when it cannot go on (its
//! receive ring empty, or its send ring full): it raises its `sleeping` flag, checks the ring
//! again, and waits on its notification; the other side signals that notification only when
//! it finds the flag raised after publishing (a full fence on both sides orders the flag and
//! the ring counters, so a wake-up is never lost). A stream of messages to a peer that keeps
//! up therefore costs no system call at all, and a batch costs at most one signal.
//!
//! The creator ([`Channel::create`]) gets side 0 and the three handles to give the peer
//! (`spawn_with_handles`), which opens side 1 with [`Channel::open`]. When the peer process
//! ends, a wait fails with `EPIPE` (nobody else holds the notification).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering, fence};

use veridian_io::ring::{Consumer, Producer, SharedRing};

use crate::errno::Errno;
use crate::sys;

/// One message.
pub type Item = [u64; 4];
/// Slots per ring.
pub const SLOTS: usize = 256;

/// A side's flag, on a cache line of its own.
#[repr(C, align(64))]
struct Flag(AtomicU32);

/// The shared memory's layout: the ring from side 0 to side 1, the ring back, and the two
/// sides' `sleeping` flags. Zeroed memory is an idle channel.
#[repr(C)]
struct Page {
    rings: [SharedRing<Item, SLOTS>; 2],
    sleeping: [Flag; 2],
}

/// One side of a channel.
pub struct Channel {
    tx: Producer<Item>,
    rx: Consumer<Item>,
    page: NonNull<Page>,
    side: usize,
    /// Our notification (the peer signals it).
    mine: u64,
    /// The peer's notification.
    peer: u64,
    /// Signals sent to the peer (for tests and benchmarks).
    pub signals: u64,
    /// Times this side slept.
    pub sleeps: u64,
}

impl Channel {
    /// A new channel; this process is side 0. Returns it and the handles the peer opens side 1
    /// with, in order: the memory, the peer's notification, this side's notification.
    pub fn create() -> Result<(Channel, [u64; 3]), Errno> {
        let memory = sys::shm(core::mem::size_of::<Page>() as u64)?;
        let mine = sys::notification()?;
        let peer = sys::notification()?;
        let channel = Self::open(memory, mine, peer, 0)?;
        Ok((channel, [memory, peer, mine]))
    }

    /// Opens side `side` (0 or 1) of the channel in shared-memory object `memory`, waiting on
    /// notification `mine` and signalling `peer`.
    pub fn open(memory: u64, mine: u64, peer: u64, side: usize) -> Result<Channel, Errno> {
        if side > 1 {
            return Err(Errno::EINVAL);
        }
        let address = sys::map(memory)?;
        let page = NonNull::new(address as *mut Page).ok_or(Errno::EFAULT)?;
        let base = page.as_ptr();
        // SAFETY: `map` returned a mapping of the whole object (at least `size_of::<Page>()`
        // bytes, page-aligned), zeroed at creation (an idle channel) or written only through
        // ring ends; it stays mapped for the life of the process (never unmapped here). This
        // side takes the producer of ring `side` and the consumer of the other ring; the peer
        // takes the opposite ends.
        let (tx, rx) = unsafe {
            (
                SharedRing::producer(NonNull::new_unchecked(&raw mut (*base).rings[side])),
                SharedRing::consumer(NonNull::new_unchecked(&raw mut (*base).rings[1 - side])),
            )
        };
        Ok(Channel {
            tx,
            rx,
            page,
            side,
            mine,
            peer,
            signals: 0,
            sleeps: 0,
        })
    }

    fn flag(&self, side: usize) -> &AtomicU32 {
        // SAFETY: the page stays mapped (see `open`); the flags are only accessed atomically.
        unsafe { &(*self.page.as_ptr()).sleeping[side].0 }
    }

    /// After publishing (a push or a pop): wakes the peer if it sleeps.
    fn wake_peer(&mut self) {
        // Orders our counter store before the flag load (the peer orders its flag store
        // before its counter load): one of us sees the other.
        fence(Ordering::SeqCst);
        let flag = self.flag(1 - self.side);
        if flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::AcqRel) != 0 {
            self.signals += 1;
            let _ = sys::signal(self.peer, 1);
        }
    }

    /// Sleeps until `ready` holds (checked after raising our flag, so a peer that makes it
    /// true afterwards wakes us).
    fn sleep_until(&mut self, mut ready: impl FnMut(&mut Self) -> bool) -> Result<(), Errno> {
        loop {
            self.flag(self.side).store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if ready(self) {
                self.flag(self.side).store(0, Ordering::Relaxed);
                return Ok(());
            }
            self.sleeps += 1;
            sys::wait_notify(self.mine)?;
        }
    }

    /// Sends every item of `items` (in order), sleeping while the ring is full; the peer is
    /// signalled at most once per batch that fits.
    pub fn send(&mut self, items: &[Item]) -> Result<(), Errno> {
        let mut sent = 0;
        while sent < items.len() {
            let n = self.tx.push_slice(&items[sent..]);
            if n > 0 {
                sent += n;
                self.wake_peer();
                continue;
            }
            self.sleep_until(|c| c.tx.free() > 0)?;
        }
        Ok(())
    }

    /// Receives at least one and at most `max` items, in order, into `f`, sleeping while none
    /// is there; how many.
    pub fn recv(&mut self, max: usize, f: impl FnMut(Item)) -> Result<usize, Errno> {
        let mut f = f;
        loop {
            let n = self.rx.pop_batch(max, &mut f);
            if n > 0 {
                self.wake_peer();
                return Ok(n);
            }
            self.sleep_until(|c| !c.rx.is_empty())?;
        }
    }
}
