//! The validator's state and checks (compiled only with the `lockdep` feature).
//!
//! All state is in `static` arrays of atomics, sized by the constants in the parent module, so
//! nothing allocates and nothing waits:
//!
//! - the environment: written once by `install`, then read-only;
//! - the class table: slots claimed with a compare-exchange and published with a Release store
//!   of their state; a slot's name never changes afterwards;
//! - the dependency graph: an adjacency bit matrix (`fetch_or`), the site that first recorded
//!   each edge, and a bit matrix of pairs already reported;
//! - one held-lock stack per context, written only by that context (see `Busy`).
//!
//! A context's operations run under its `busy` flag: an interrupt handler (or a lock taken by
//! `LockdepEnv::report`) that finds the flag set is not tracked at all. That makes every
//! operation on a held stack atomic with respect to the interrupts of its own CPU, at the price
//! of an occasional untracked acquisition, and it also covers a task that is migrated in the
//! middle of a check (it keeps the old CPU's flag set until it finishes, so nobody else writes
//! that stack meanwhile).
//!
//! Cross-CPU races can at worst delay a report or, in a tight race between two first
//! registrations of one name, split that name into two classes; they never corrupt the tables.

use core::cell::UnsafeCell;
use core::panic::Location;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64};
use core::sync::atomic::{AtomicUsize, Ordering};

use super::report::{Chain, Dependency, Report, Site};
use super::{LockdepEnv, MAX_CLASSES, MAX_CONTEXTS, MAX_HELD};

const _: () = assert!(
    MAX_CLASSES < u16::MAX as usize - 1,
    "class ids are cached in a u16"
);
const _: () = assert!(MAX_CONTEXTS <= u16::MAX as usize, "`Held::ctx` is a u16");
const _: () = assert!(MAX_HELD <= u16::MAX as usize, "`Held::index` is a u16");

// ---- Environment ----

/// Slot states, shared by the environment cell and the class table.
const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// The installed environment: written once (`FREE -> WRITING -> READY`), then read-only.
struct EnvCell {
    state: AtomicU8,
    env: UnsafeCell<Option<&'static dyn LockdepEnv>>,
}

// SAFETY: `env` is written only by the one `install` that moved `state` from FREE to WRITING,
// before its Release store of READY; it is read only after an Acquire load saw READY, and never
// written again. The value itself (`&dyn LockdepEnv`, `LockdepEnv: Sync`) may be shared.
unsafe impl Sync for EnvCell {}

static ENV: EnvCell = EnvCell {
    state: AtomicU8::new(FREE),
    env: UnsafeCell::new(None),
};

pub(super) fn install(env: &'static dyn LockdepEnv) -> bool {
    // Acquire/Relaxed: claiming the cell publishes nothing; the Release below does.
    if ENV
        .state
        .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    // SAFETY: we moved the state out of FREE, so we are the only writer, and no reader looks
    // before the READY store below.
    unsafe { *ENV.env.get() = Some(env) };
    ENV.state.store(READY, Ordering::Release);
    true
}

#[inline]
fn env() -> Option<&'static dyn LockdepEnv> {
    if ENV.state.load(Ordering::Acquire) == READY {
        // SAFETY: READY was stored (Release) after the only write, which our Acquire load
        // therefore sees; nothing writes the cell afterwards.
        unsafe { *ENV.env.get() }
    } else {
        None
    }
}

// ---- Sites ----

fn site_ptr(site: Site) -> *mut Location<'static> {
    ptr::from_ref(site).cast_mut()
}

fn load_site(cell: &AtomicPtr<Location<'static>>) -> Option<Site> {
    let p = cell.load(Ordering::SeqCst);
    // SAFETY: the only values ever stored in these cells are null and `site_ptr` of a
    // `&'static Location<'static>`, which is never written through and lives forever.
    unsafe { p.cast_const().as_ref() }
}

// ---- Reports ----

static REPORT_COUNT: AtomicU64 = AtomicU64::new(0);
static TOO_MANY_CLASSES_REPORTED: AtomicBool = AtomicBool::new(false);
static TOO_MANY_HELD_REPORTED: AtomicBool = AtomicBool::new(false);

fn report(env: &dyn LockdepEnv, report: Report) {
    // Relaxed: a statistic.
    REPORT_COUNT.fetch_add(1, Ordering::Relaxed);
    env.report(&report);
}

pub(super) fn reports() -> u64 {
    REPORT_COUNT.load(Ordering::Relaxed)
}

// ---- Classes ----

/// Bits of `ClassSlot::reported`: per-class problems already reported.
const REPORTED_IRQ_UNSAFE: u8 = 1 << 0;
const REPORTED_RECURSIVE: u8 = 1 << 1;
const REPORTED_HELD_ACROSS_SWITCH: u8 = 1 << 2;

struct ClassSlot {
    state: AtomicU8,
    name_ptr: AtomicPtr<u8>,
    name_len: AtomicUsize,
    /// First site that took the class with an interrupt depth above 0.
    irq_site: AtomicPtr<Location<'static>>,
    /// First site that held the class with interrupts enabled.
    enabled_site: AtomicPtr<Location<'static>>,
    reported: AtomicU8,
}

impl ClassSlot {
    const fn new() -> Self {
        Self {
            state: AtomicU8::new(FREE),
            name_ptr: AtomicPtr::new(ptr::null_mut()),
            name_len: AtomicUsize::new(0),
            irq_site: AtomicPtr::new(ptr::null_mut()),
            enabled_site: AtomicPtr::new(ptr::null_mut()),
            reported: AtomicU8::new(0),
        }
    }

    /// The class's name; `None` until the slot is READY.
    fn name(&self) -> Option<&'static str> {
        if self.state.load(Ordering::Acquire) != READY {
            return None;
        }
        let p = self.name_ptr.load(Ordering::Relaxed);
        let len = self.name_len.load(Ordering::Relaxed);
        // SAFETY: `p` and `len` were written from one `&'static str` before the Release store
        // of READY that our Acquire load saw, and are never written again; a `&'static str`'s
        // bytes are valid UTF-8 and live (unmodified) forever.
        Some(unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(p, len)) })
    }

    /// Marks `bit` reported; true if this call was the first.
    fn first_report(&self, bit: u8) -> bool {
        self.reported.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }
}

static CLASSES: [ClassSlot; MAX_CLASSES] = [const { ClassSlot::new() }; MAX_CLASSES];

fn class_name(class: usize) -> &'static str {
    // Ids handed out are READY slots (see `register`), so the name is always there.
    CLASSES[class].name().unwrap_or("?")
}

/// The per-instance part of a lock class: its name and a cache of its id.
pub(crate) struct ClassKey {
    name: &'static str,
    /// 0: not looked up yet; `UNTRACKED`: the table was full; otherwise the id + 1.
    id: AtomicU16,
}

const UNTRACKED: u16 = u16::MAX;

impl ClassKey {
    pub(crate) const fn new(name: &'static str) -> Self {
        Self {
            name,
            id: AtomicU16::new(0),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
}

/// The class id of `key`, registering its name on first use.
fn class_of(env: &dyn LockdepEnv, key: &ClassKey, site: Site) -> Option<usize> {
    // Acquire: pairs with the Release store below, which followed the slot's READY.
    match key.id.load(Ordering::Acquire) {
        0 => {}
        UNTRACKED => return None,
        id => return Some(usize::from(id) - 1),
    }
    match register(key.name) {
        Some(class) => {
            // `class < MAX_CLASSES < u16::MAX - 1` (const assertion above).
            key.id.store(class as u16 + 1, Ordering::Release);
            Some(class)
        }
        None => {
            key.id.store(UNTRACKED, Ordering::Relaxed);
            if !TOO_MANY_CLASSES_REPORTED.swap(true, Ordering::Relaxed) {
                report(
                    env,
                    Report::TooManyClasses {
                        lock: key.name,
                        site,
                    },
                );
            }
            None
        }
    }
}

/// Finds the class named `name`, or claims a free slot for it; `None` if the table is full.
///
/// Slots being written by someone else are skipped rather than waited for (the writer may be
/// the code this interrupt handler interrupted), so two contexts registering one name at the
/// same moment can create two classes for it; lookups then find the first.
fn register(name: &'static str) -> Option<usize> {
    for (class, slot) in CLASSES.iter().enumerate() {
        let mut state = slot.state.load(Ordering::Acquire);
        if state == FREE {
            match slot
                .state
                .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    slot.name_ptr
                        .store(name.as_ptr().cast_mut(), Ordering::Relaxed);
                    slot.name_len.store(name.len(), Ordering::Relaxed);
                    // Release: publishes the name to every reader that sees READY.
                    slot.state.store(READY, Ordering::Release);
                    return Some(class);
                }
                Err(now) => state = now,
            }
        }
        if state == READY
            && let Some(existing) = slot.name()
            && (ptr::eq(existing, name) || existing == name)
        {
            return Some(class);
        }
    }
    None
}

// ---- Dependency graph ----

const WORDS: usize = MAX_CLASSES.div_ceil(64);

fn bit(class: usize) -> (usize, u64) {
    (class / 64, 1 << (class % 64))
}

struct Graph {
    /// `edges[a]` bit `b`: `b` was taken while `a` was held (same context, same depth).
    edges: [[AtomicU64; WORDS]; MAX_CLASSES],
    /// The site that first recorded `a -> b` (stored before the edge bit is set).
    sites: [[AtomicPtr<Location<'static>>; MAX_CLASSES]; MAX_CLASSES],
    /// `reported[min(a, b)]` bit `max(a, b)`: an inversion between `a` and `b` was reported.
    reported: [[AtomicU64; WORDS]; MAX_CLASSES],
}

static GRAPH: Graph = Graph {
    edges: [const { [const { AtomicU64::new(0) }; WORDS] }; MAX_CLASSES],
    sites: [const { [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CLASSES] }; MAX_CLASSES],
    reported: [const { [const { AtomicU64::new(0) }; WORDS] }; MAX_CLASSES],
};

/// Records `held -> taken` and, if the edge is new, reports a cycle it closes.
///
/// SeqCst on the graph: two contexts adding `a -> b` and `b -> a` at the same moment each set
/// their edge before searching for the other's, so at least one of them sees the cycle.
fn add_edge(env: &dyn LockdepEnv, held: usize, held_site: Site, taken: usize, site: Site) {
    let (word, mask) = bit(taken);
    let row = &GRAPH.edges[held];
    if row[word].load(Ordering::SeqCst) & mask != 0 {
        return; // known dependency, checked when it was recorded
    }
    // The site goes in before the bit, so whoever sees the bit finds a site.
    let _ = GRAPH.sites[held][taken].compare_exchange(
        ptr::null_mut(),
        site_ptr(site),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    if row[word].fetch_or(mask, Ordering::SeqCst) & mask != 0 {
        return; // someone else recorded it just now, and checks it
    }
    let Some(chain) = find_path(taken, held, site) else {
        return;
    };
    let (low, high) = (held.min(taken), held.max(taken));
    let (word, mask) = bit(high);
    if GRAPH.reported[low][word].fetch_or(mask, Ordering::Relaxed) & mask != 0 {
        return;
    }
    report(
        env,
        Report::OrderInversion {
            lock: class_name(taken),
            site,
            held: class_name(held),
            held_site,
            chain,
        },
    );
}

/// Breadth-first search for a path `from -> ... -> to`; returns it as a chain of dependencies.
/// `fallback` stands in for an edge site that cannot be missing (see `add_edge`).
fn find_path(from: usize, to: usize, fallback: Site) -> Option<Chain> {
    const NONE: u16 = u16::MAX;
    let mut visited = [0u64; WORDS];
    let mut parent = [NONE; MAX_CLASSES];
    let mut queue = [0u16; MAX_CLASSES];
    let (w, m) = bit(from);
    visited[w] |= m;
    queue[0] = from as u16;
    let (mut head, mut tail) = (0, 1);
    let mut found = false;
    'search: while head < tail {
        let node = usize::from(queue[head]);
        head += 1;
        for (word, cell) in GRAPH.edges[node].iter().enumerate() {
            let mut next = cell.load(Ordering::SeqCst) & !visited[word];
            while next != 0 {
                let class = word * 64 + next.trailing_zeros() as usize;
                next &= next - 1;
                if class >= MAX_CLASSES {
                    break;
                }
                visited[word] |= 1 << (class % 64);
                parent[class] = node as u16;
                if class == to {
                    found = true;
                    break 'search;
                }
                // Each class is queued at most once (visited), so `tail < MAX_CLASSES`.
                queue[tail] = class as u16;
                tail += 1;
            }
        }
    }
    if !found {
        return None;
    }
    // Walk back from `to`, then emit the edges in order `from -> ... -> to`.
    let mut path = [0u16; MAX_CLASSES];
    let mut len = 0;
    let mut node = to;
    while node != from && len < MAX_CLASSES {
        path[len] = node as u16;
        len += 1;
        node = usize::from(parent[node]);
    }
    let mut chain = Chain::new();
    let mut prev = from;
    for &next in path[..len].iter().rev() {
        let next = usize::from(next);
        chain.push(Dependency {
            held: class_name(prev),
            taken: class_name(next),
            site: load_site(&GRAPH.sites[prev][next]).unwrap_or(fallback),
        });
        prev = next;
    }
    Some(chain)
}

// ---- Interrupt usage ----

/// Records that `class` is taken in an interrupt handler at `site`.
fn mark_irq_use(env: &dyn LockdepEnv, class: usize, site: Site) {
    let slot = &CLASSES[class];
    // SeqCst: against a concurrent `mark_enabled_use` of the same class (each stores its site,
    // then looks for the other's; at least one sees both).
    let _ = slot.irq_site.compare_exchange(
        ptr::null_mut(),
        site_ptr(site),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    if let Some(enabled_site) = load_site(&slot.enabled_site)
        && slot.first_report(REPORTED_IRQ_UNSAFE)
    {
        report(
            env,
            Report::IrqUnsafe {
                lock: class_name(class),
                irq_site: site,
                enabled_site,
            },
        );
    }
}

/// Records that `class` is held with interrupts enabled, taken at `site`.
fn mark_enabled_use(env: &dyn LockdepEnv, class: usize, site: Site) {
    let slot = &CLASSES[class];
    let _ = slot.enabled_site.compare_exchange(
        ptr::null_mut(),
        site_ptr(site),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    if let Some(irq_site) = load_site(&slot.irq_site)
        && slot.first_report(REPORTED_IRQ_UNSAFE)
    {
        report(
            env,
            Report::IrqUnsafe {
                lock: class_name(class),
                irq_site,
                enabled_site: site,
            },
        );
    }
}

// ---- Held-lock stacks ----

/// `Entry::meta` of a free entry.
const EMPTY: u32 = 0;

/// Packs a held entry: class id + 1 in the low half, the interrupt depth (saturated) in the
/// high half. Never `EMPTY`.
fn meta(class: usize, depth: u32) -> u32 {
    (class as u32 + 1) | (depth.min(0xffff) << 16)
}

fn meta_class(meta: u32) -> usize {
    (meta & 0xffff) as usize - 1
}

fn meta_depth(meta: u32) -> u32 {
    meta >> 16
}

struct Entry {
    meta: AtomicU32,
    site: AtomicPtr<Location<'static>>,
}

struct Context {
    /// Set while one of the context's operations runs (see the module documentation).
    busy: AtomicBool,
    /// Entries in use are `entries[..len]` (some may be `EMPTY` after out-of-order releases).
    len: AtomicUsize,
    entries: [Entry; MAX_HELD],
}

static CONTEXTS: [Context; MAX_CONTEXTS] = [const {
    Context {
        busy: AtomicBool::new(false),
        len: AtomicUsize::new(0),
        entries: [const {
            Entry {
                meta: AtomicU32::new(EMPTY),
                site: AtomicPtr::new(ptr::null_mut()),
            }
        }; MAX_HELD],
    }
}; MAX_CONTEXTS];

/// A context's `busy` flag, held for the length of one operation.
struct Busy(&'static Context);

impl Busy {
    /// Enters `ctx`; `None` if an operation of this context is already running (we are an
    /// interrupt handler or `report` callback inside it).
    fn enter(ctx: &'static Context) -> Option<Self> {
        // Acquire/Release: orders this operation's accesses to the stack after the previous
        // operation's, also when that one ran on another CPU (a migrated task).
        (!ctx.busy.swap(true, Ordering::Acquire)).then_some(Self(ctx))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

impl Context {
    fn live(&self) -> impl Iterator<Item = (u32, &Entry)> + '_ {
        let len = self.len.load(Ordering::Relaxed).min(MAX_HELD);
        self.entries[..len].iter().filter_map(|entry| {
            let meta = entry.meta.load(Ordering::Relaxed);
            (meta != EMPTY).then_some((meta, entry))
        })
    }

    /// Drops trailing empty entries. Only the owning context, inside `Busy`.
    fn trim(&self) {
        let mut len = self.len.load(Ordering::Relaxed).min(MAX_HELD);
        while len > 0 && self.entries[len - 1].meta.load(Ordering::Relaxed) == EMPTY {
            len -= 1;
        }
        self.len.store(len, Ordering::Relaxed);
    }
}

/// The environment's [`LockdepEnv::pin`], undone on drop.
struct Pinned {
    env: &'static dyn LockdepEnv,
    state: u64,
}

impl Pinned {
    fn new(env: &'static dyn LockdepEnv) -> Self {
        Self {
            env,
            state: env.pin(),
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.env.unpin(self.state);
    }
}

fn current_context(env: &dyn LockdepEnv) -> Option<(usize, &'static Context)> {
    let index = env.context();
    CONTEXTS.get(index).map(|ctx| (index, ctx))
}

// ---- Hooks called by the locks ----

/// An acquisition checked by `before_lock`, to be recorded by `after_lock`.
pub(crate) struct Pending {
    class: usize,
    site: Site,
}

/// A tracked held lock: where its entry is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    ctx: u16,
    index: u16,
    meta: u32,
}

/// Before a blocking acquisition: the recursion, order and interrupt-context checks (before
/// the lock is taken, so a report comes out before the deadlock it predicts).
pub(crate) fn before_lock(key: &ClassKey, site: Site) -> Option<Pending> {
    let env = env()?;
    // Pinned: a task migrated between reading its context and checking it would check
    // another CPU's held locks (a false report: found with the kernel's stress test).
    let _pinned = Pinned::new(env);
    let (_, ctx) = current_context(env)?;
    let _busy = Busy::enter(ctx)?;
    let class = class_of(env, key, site)?;
    let depth = env.interrupt_depth();
    let packed_depth = depth.min(0xffff);
    for (meta, entry) in ctx.live() {
        if meta_depth(meta) != packed_depth {
            continue; // another interrupt level: not a dependency
        }
        let Some(held_site) = load_site(&entry.site) else {
            continue;
        };
        let held = meta_class(meta);
        if held == class {
            if CLASSES[class].first_report(REPORTED_RECURSIVE) {
                report(
                    env,
                    Report::Recursive {
                        lock: class_name(class),
                        site,
                        held_site,
                    },
                );
            }
        } else {
            add_edge(env, held, held_site, class, site);
        }
    }
    if depth > 0 {
        mark_irq_use(env, class, site);
    }
    Some(Pending { class, site })
}

/// After a blocking acquisition checked by `before_lock`: records the lock as held.
pub(crate) fn after_lock(pending: Option<Pending>) -> Option<Held> {
    let pending = pending?;
    push(env()?, pending.class, pending.site)
}

/// After a successful `try_lock`: records the lock as held. A `try_lock` cannot deadlock, so
/// it adds no dependency and is not checked for recursion (as Linux); its interrupt usage is
/// recorded and checked like a blocking acquisition's.
pub(crate) fn after_try_lock(key: &ClassKey, site: Site) -> Option<Held> {
    let env = env()?;
    let _pinned = Pinned::new(env);
    let class = {
        let (_, ctx) = current_context(env)?;
        let _busy = Busy::enter(ctx)?;
        let class = class_of(env, key, site)?;
        if env.interrupt_depth() > 0 {
            mark_irq_use(env, class, site);
        }
        class
    };
    push(env, class, site)
}

fn push(env: &'static dyn LockdepEnv, class: usize, site: Site) -> Option<Held> {
    let _pinned = Pinned::new(env);
    // The context is asked again: a task may have been migrated before the lock was taken.
    let (index, ctx) = current_context(env)?;
    let _busy = Busy::enter(ctx)?;
    if env.interrupts_enabled() {
        mark_enabled_use(env, class, site);
    }
    let len = ctx.len.load(Ordering::Relaxed);
    let Some(entry) = ctx.entries.get(len) else {
        if !TOO_MANY_HELD_REPORTED.swap(true, Ordering::Relaxed) {
            report(
                env,
                Report::TooManyHeld {
                    lock: class_name(class),
                    site,
                },
            );
        }
        return None;
    };
    let meta = meta(class, env.interrupt_depth());
    entry.site.store(site_ptr(site), Ordering::Relaxed);
    entry.meta.store(meta, Ordering::Relaxed);
    ctx.len.store(len + 1, Ordering::Relaxed);
    Some(Held {
        ctx: index as u16,
        index: len as u16,
        meta,
    })
}

/// When a tracked lock is released (before the raw unlock).
pub(crate) fn release(held: Held) {
    let Some(env) = env() else { return };
    let _pinned = Pinned::new(env);
    let ctx = &CONTEXTS[usize::from(held.ctx)];
    let entry = &ctx.entries[usize::from(held.index)];
    // A compare-exchange, not a store: if the lock is released in another context (it was
    // held across a switch), this clears the entry only if it is still this lock's, and leaves
    // the stack's length to its owner.
    let _ = entry
        .meta
        .compare_exchange(held.meta, EMPTY, Ordering::Relaxed, Ordering::Relaxed);
    if env.context() == usize::from(held.ctx)
        && let Some(_busy) = Busy::enter(ctx)
    {
        ctx.trim();
    }
}

pub(crate) fn assert_no_locks_held(site: Site) {
    let Some(env) = env() else { return };
    let _pinned = Pinned::new(env);
    let Some((_, ctx)) = current_context(env) else {
        return;
    };
    let Some(_busy) = Busy::enter(ctx) else {
        return;
    };
    for (meta, entry) in ctx.live() {
        let class = meta_class(meta);
        if meta_depth(meta) == 0
            && let Some(held_site) = load_site(&entry.site)
            && CLASSES[class].first_report(REPORTED_HELD_ACROSS_SWITCH)
        {
            report(
                env,
                Report::HeldAcrossSwitch {
                    lock: class_name(class),
                    held_site,
                    switch_site: site,
                },
            );
        }
    }
}

pub(crate) fn held_count() -> usize {
    let Some(env) = env() else { return 0 };
    let _pinned = Pinned::new(env);
    current_context(env).map_or(0, |(_, ctx)| ctx.live().count())
}

/// Forgets every lock held by context `index` (for an embedder whose context is going away,
/// such as a hosted thread that exits). Must be called by that context.
#[cfg_attr(
    not(feature = "std"),
    allow(dead_code, reason = "used by the hosted back-end")
)]
pub(crate) fn forget_context(index: usize) {
    let Some(ctx) = CONTEXTS.get(index) else {
        return;
    };
    let Some(_busy) = Busy::enter(ctx) else {
        return;
    };
    for entry in &ctx.entries {
        entry.meta.store(EMPTY, Ordering::Relaxed);
    }
    ctx.len.store(0, Ordering::Relaxed);
}
