//! What the validator tells the embedder: one [`Report`] per distinct problem, with the lock
//! names and the call sites involved, and a `Display` that reads as one line of English.

use core::fmt;
use core::panic::Location;

use super::{MAX_CHAIN, MAX_CLASSES, MAX_HELD};

/// A call site: where a lock was taken, or where a check ran (`#[track_caller]` locations).
pub type Site = &'static Location<'static>;

/// One recorded dependency: lock class `taken` was acquired at `site` while `held` was held
/// (by the same context, at the same interrupt depth). The first site that recorded it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency {
    /// The class that was already held.
    pub held: &'static str,
    /// The class that was acquired while `held` was held.
    pub taken: &'static str,
    /// Where `taken` was acquired (the site that recorded this dependency).
    pub site: Site,
}

/// The existing chain of dependencies that a new acquisition closes into a cycle: from the lock
/// being taken back to the lock being held (`lock -> ... -> held`), shortest first found.
///
/// Holds the first [`MAX_CHAIN`] dependencies; [`Chain::len`] is the full length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    edges: [Option<Dependency>; MAX_CHAIN],
    len: usize,
}

impl Chain {
    /// An empty chain.
    #[cfg_attr(
        not(feature = "lockdep"),
        allow(dead_code, reason = "used by the validator")
    )]
    pub(crate) const fn new() -> Self {
        Self {
            edges: [None; MAX_CHAIN],
            len: 0,
        }
    }

    /// Appends a dependency (kept if there is room; always counted).
    #[cfg_attr(
        not(feature = "lockdep"),
        allow(dead_code, reason = "used by the validator")
    )]
    pub(crate) fn push(&mut self, edge: Dependency) {
        if let Some(slot) = self.edges.get_mut(self.len) {
            *slot = Some(edge);
        }
        self.len += 1;
    }

    /// The dependencies kept, in order from the lock being taken to the lock being held.
    pub fn edges(&self) -> impl Iterator<Item = &Dependency> + '_ {
        self.edges.iter().flatten()
    }

    /// Number of dependencies in the whole chain (may exceed the number kept).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the chain is empty (never, in a report).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A problem the validator found. Each is reported once: order inversions once per pair of
/// classes, the per-class problems once per class, the capacity problems once in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "rare, built on the stack without allocation (the chain is kept inline)"
)]
pub enum Report {
    /// `lock` was being taken at `site` while `held` was held (taken at `held_site`), but the
    /// existing dependencies already say `lock -> ... -> held` (`chain`): two contexts following
    /// the two orders can deadlock (ABBA, or a longer cycle).
    OrderInversion {
        /// The class being acquired.
        lock: &'static str,
        /// Where it was being acquired.
        site: Site,
        /// The class held at that moment.
        held: &'static str,
        /// Where the held lock had been acquired.
        held_site: Site,
        /// The recorded dependencies from `lock` back to `held`.
        chain: Chain,
    },
    /// `lock` is taken in an interrupt handler (at `irq_site`) and also held with interrupts
    /// enabled (taken at `enabled_site`): an interrupt arriving while it is held with interrupts
    /// enabled, on the holder's CPU, spins forever in the handler. Use an interrupt-safe lock.
    IrqUnsafe {
        /// The class.
        lock: &'static str,
        /// Where it was taken with an interrupt depth above 0.
        irq_site: Site,
        /// Where it was taken, and then held, with interrupts enabled.
        enabled_site: Site,
    },
    /// `lock` was being taken at `site` by a context that already holds a lock of the same
    /// class (taken at `held_site`) at the same interrupt depth: a deadlock on a spin lock if it
    /// is the same lock, and an order that the validator cannot check if it is another instance.
    Recursive {
        /// The class.
        lock: &'static str,
        /// The second acquisition.
        site: Site,
        /// The acquisition still held.
        held_site: Site,
    },
    /// `lock` (taken at `held_site`) was still held when the context switched
    /// ([`assert_no_locks_held`](super::assert_no_locks_held) at `switch_site`).
    HeldAcrossSwitch {
        /// The class.
        lock: &'static str,
        /// Where it was taken.
        held_site: Site,
        /// Where the switch was checked.
        switch_site: Site,
    },
    /// The class table ([`MAX_CLASSES`]) is full: `lock` (first taken at `site`) and any later
    /// new class are not checked.
    TooManyClasses {
        /// The first class that did not fit.
        lock: &'static str,
        /// Where it was taken.
        site: Site,
    },
    /// A context held more than [`MAX_HELD`] locks at once: the acquisition of `lock` at `site`
    /// (and any other beyond the limit) is not tracked.
    TooManyHeld {
        /// The first lock that did not fit.
        lock: &'static str,
        /// Where it was taken.
        site: Site,
    },
}

impl Report {
    /// Whether the report names the lock class `name` (in any role, including the chain).
    pub fn involves(&self, name: &str) -> bool {
        match self {
            Report::OrderInversion {
                lock, held, chain, ..
            } => {
                *lock == name
                    || *held == name
                    || chain.edges().any(|e| e.held == name || e.taken == name)
            }
            Report::IrqUnsafe { lock, .. }
            | Report::Recursive { lock, .. }
            | Report::HeldAcrossSwitch { lock, .. }
            | Report::TooManyClasses { lock, .. }
            | Report::TooManyHeld { lock, .. } => *lock == name,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::OrderInversion {
                lock,
                site,
                held,
                held_site,
                chain,
            } => {
                write!(
                    f,
                    "lockdep: lock order inversion: \"{lock}\" taken at {site} while holding \
                     \"{held}\" (taken at {held_site}), but "
                )?;
                for (i, edge) in chain.edges().enumerate() {
                    if i > 0 {
                        f.write_str(", and ")?;
                    }
                    write!(
                        f,
                        "\"{}\" was taken at {} while holding \"{}\"",
                        edge.taken, edge.site, edge.held
                    )?;
                }
                let kept = chain.edges().count();
                if chain.len() > kept {
                    write!(f, ", and {} more dependencies", chain.len() - kept)?;
                }
                Ok(())
            }
            Report::IrqUnsafe {
                lock,
                irq_site,
                enabled_site,
            } => write!(
                f,
                "lockdep: interrupt-unsafe lock \"{lock}\" taken in an interrupt handler at \
                 {irq_site}; it is held with interrupts enabled at {enabled_site}"
            ),
            Report::Recursive {
                lock,
                site,
                held_site,
            } => write!(
                f,
                "lockdep: recursive locking: \"{lock}\" taken at {site} while a lock of the same \
                 class is held (taken at {held_site})"
            ),
            Report::HeldAcrossSwitch {
                lock,
                held_site,
                switch_site,
            } => write!(
                f,
                "lockdep: lock \"{lock}\" (taken at {held_site}) held across a context switch \
                 at {switch_site}"
            ),
            Report::TooManyClasses { lock, site } => write!(
                f,
                "lockdep: more than {MAX_CLASSES} lock classes: \"{lock}\" (taken at {site}) and \
                 later new classes are not checked"
            ),
            Report::TooManyHeld { lock, site } => write!(
                f,
                "lockdep: more than {MAX_HELD} locks held at once: \"{lock}\" taken at {site} \
                 is not tracked"
            ),
        }
    }
}
