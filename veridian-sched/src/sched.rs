//! [`NumaScheduler`]: per-CPU run queues with priorities, nearest-first work stealing,
//! least-loaded placement and load tracking.
//!
//! # Queues
//! Every online CPU has, for each [`Priority`] level:
//! - a **deque** ([`ChaseLev`], [`SchedConfig::deque_capacity`] slots, default
//!   [`DEFAULT_DEQUE_CAPACITY`]): tasks woken or spawned *on this CPU* whose affinity allows
//!   every online CPU ("unrestricted"). The owner pops the newest (cache-warm); idle CPUs steal
//!   the oldest, lock-free.
//! - a **FIFO** (a growable ring under a ticket lock): tasks that other CPUs enqueue here (remote
//!   wake-ups, placements), tasks whose affinity is restricted, and tasks requeued after their
//!   time slice. Thieves steal from it too, but under the lock and *only tasks whose affinity
//!   allows the thief*.
//!
//! And for each level one global **injector** (veridian-sync's bounded MPMC `ArrayQueue`,
//! [`SchedConfig::injector_capacity`]) takes unrestricted tasks when the local deque is full;
//! if it is full as well they go to the local FIFO. There is no LIFO slot.
//!
//! # Affinity
//! A task is only ever queued on a CPU its affinity allows. Deques and the injector hold only
//! unrestricted tasks, so any CPU may take from them; restricted tasks live in FIFOs, which a
//! thief filters under the lock. So a CPU never receives (by picking, stealing or from the
//! injector) a task whose affinity excludes it. This relies on [`Task::affinity`] not changing
//! while the task is queued (a changed affinity applies from its next enqueue).
//!
//! # Picking, priorities and fairness
//! [`LocalCpu::pick_next`] serves levels in strict order: real-time, then normal, then idle. At
//! each level it tries this CPU's queues, then the injector, then steals (below); a lower
//! level is only looked at when no task of a higher level could be found for this CPU. (So a
//! busy real-time load starves normal tasks, as `SCHED_RR` does on Linux without throttling.)
//!
//! Within a level the policy is round robin with a time slice ([`SchedConfig::slice_ns`]):
//! [`LocalCpu::should_preempt`] says when the running task has used its slice (or a higher
//! level has work here), and [`LocalCpu::requeue`] puts it at the *tail* of the FIFO. Picks
//! normally take the deque's newest task first, then the FIFO's head; every
//! [`FAIRNESS_INTERVAL`]-th pick instead takes the oldest task, alternately the FIFO's head and
//! the deque's top. So no queued task waits forever behind a stream of new wake-ups: the head of
//! each queue is served at least once every `2 × FAIRNESS_INTERVAL` picks.
//!
//! # Work stealing
//! A CPU that finds nothing of a level locally or in the injector tries the CPUs of
//! [`Topology::nearby_cpus`] in order (SMT siblings, own node, then other nodes by distance);
//! from the first victim with work it takes **half** of that queue (rounded up, at most
//! [`SchedConfig::max_steal_batch`]): it runs the first task and keeps the rest in its own
//! queues. Steals are counted per class (sibling, same node, remote node) in [`CpuStats`]. A
//! level whose global count of queued tasks is zero is skipped without touching any queue.
//!
//! # Load and placement
//! The load of a CPU is the number of tasks queued on it plus the one running on it; a node's
//! load is the sum over its CPUs. Counters go up on enqueue, move with steals, and go down on
//! [`LocalCpu::block`] and [`LocalCpu::exit`]; a task taken from the injector is counted from
//! then on. [`NumaScheduler::assign_thread`] picks the least-loaded node among those holding an
//! allowed CPU (load per CPU of the node, so nodes of different sizes compare fairly; ties to
//! the lower node id), then the least-loaded allowed CPU there; the [`Placement`] also names the
//! node the thread's memory should come from.
//!
//! # Contract with the caller
//! Every task returned by `pick_next` runs on that CPU until it is handed back through exactly
//! one of [`LocalCpu::requeue`] (still runnable), [`LocalCpu::block`] (waiting; later
//! [`LocalCpu::wake`] it) or [`LocalCpu::exit`]; [`LocalCpu::switch_next`] is `requeue`
//! followed by `pick_next` (a yield), and the task it returns is again one that
//! `pick_next` returned. The owner operations need the CPU's [`CpuGuard`].
//!
//! # Memory orderings
//! Queue hand-offs synchronise inside the queues (deque: see its module; FIFO: the lock;
//! injector: veridian-sync's sequence numbers). The load, queued and statistics counters are
//! `Relaxed`: they are figures for decisions and reports, never used to publish data. The
//! per-level queued count is incremented *before* a task becomes visible and decremented
//! *after* it is taken, so it never under-counts a queued task, which is what the
//! skip-empty-level shortcut needs.

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use veridian_sync::CachePadded;
use veridian_sync::lock::TicketMutex;
use veridian_sync::mpmc::ArrayQueue;

use crate::cpuset::{CpuSet, MAX_CPUS};
use crate::deque::{ChaseLev, IntoWord, Steal};
use crate::env::{Clock, CpuGuard};
use crate::fifo::Fifo;
use crate::topology::Topology;

/// Number of priority levels.
pub const LEVELS: usize = 3;

/// Default per-CPU deque slots per level: a few hundred runnable tasks per CPU before the
/// injector takes over; 2 KiB of slots per level and CPU.
pub const DEFAULT_DEQUE_CAPACITY: usize = 256;

/// Default injector slots per level: overflow is rare (a CPU with more than
/// `DEFAULT_DEQUE_CAPACITY` fresh tasks of one level), so a few deques' worth.
pub const DEFAULT_INJECTOR_CAPACITY: usize = 1024;

/// Default time slice, in nanoseconds of the [`Clock`], for every level: 10 ms (Linux's
/// `SCHED_RR` uses 100 ms; a shorter slice favours latency over throughput).
pub const DEFAULT_SLICE_NS: u64 = 10_000_000;

/// Upper bound of tasks moved by one steal (the batch lives in a stack array of this many
/// words while the victim's FIFO lock is released).
pub const MAX_STEAL_BATCH: usize = 32;

/// Most FIFO entries a thief looks at, under the victim's lock, for tasks it may run: bounds
/// the lock hold time when a FIFO is long and mostly holds tasks pinned elsewhere. A task
/// further back is not stolen by that thief (its own CPU still runs it).
pub const FIFO_STEAL_SCAN: usize = 256;

/// Every `FAIRNESS_INTERVAL`-th pick on a CPU takes the oldest queued task instead of the
/// newest (see "Picking, priorities and fairness" in the module docs). 8 keeps most picks
/// cache-friendly (LIFO) while bounding the wait of the oldest task; tokio uses 61 for its
/// global-queue check with the same reasoning.
pub const FAIRNESS_INTERVAL: u64 = 8;

/// Marker for "nothing running" in `PerCpu::running_level`.
const NOT_RUNNING: usize = LEVELS;

/// Scheduling class of a task; lower classes run only when no higher one is runnable here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Real-time: always before the others, round robin among themselves.
    RealTime = 0,
    /// Ordinary tasks.
    Normal = 1,
    /// Runs only when nothing else is runnable on the CPU.
    Idle = 2,
}

impl Priority {
    /// All levels, highest first.
    pub const ALL: [Priority; LEVELS] = [Priority::RealTime, Priority::Normal, Priority::Idle];

    /// The level index, 0 = highest.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What the scheduler reads from a task.
pub trait Task {
    /// The CPUs the task may run on. Must not change while the task is queued (see "Affinity"
    /// in the module docs); intersected with the online CPUs.
    fn affinity(&self) -> &CpuSet;
    /// The task's priority level. Read at enqueue.
    fn priority(&self) -> Priority;
}

/// Tuning of a [`NumaScheduler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedConfig {
    /// Slots of each per-CPU deque (rounded up to a power of two).
    pub deque_capacity: usize,
    /// Slots of each level's global injector (rounded up to a power of two).
    pub injector_capacity: usize,
    /// Time slice per level (index = [`Priority::index`]) in nanoseconds of the [`Clock`].
    pub slice_ns: [u64; LEVELS],
    /// Most tasks moved by one steal (clamped to `1..=MAX_STEAL_BATCH`).
    pub max_steal_batch: usize,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            deque_capacity: DEFAULT_DEQUE_CAPACITY,
            injector_capacity: DEFAULT_INJECTOR_CAPACITY,
            slice_ns: [DEFAULT_SLICE_NS; LEVELS],
            max_steal_batch: MAX_STEAL_BATCH,
        }
    }
}

/// Why a scheduler operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedError {
    /// The task's affinity contains no online CPU.
    NoAllowedCpu,
    /// The CPU index (of a guard or a target) is not online.
    CpuNotOnline {
        /// The index.
        cpu: usize,
    },
    /// The task's affinity excludes the target CPU.
    CpuNotAllowed {
        /// The index.
        cpu: usize,
    },
    /// `requeue`, `block` or `exit` without a task picked on this CPU.
    NothingRunning,
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoAllowedCpu => f.write_str("the task's affinity contains no online CPU"),
            Self::CpuNotOnline { cpu } => write!(f, "CPU {cpu} is not online"),
            Self::CpuNotAllowed { cpu } => write!(f, "the task's affinity excludes CPU {cpu}"),
            Self::NothingRunning => f.write_str("no task picked on this CPU is running"),
        }
    }
}

impl core::error::Error for SchedError {}

/// A refused enqueue: the reason and the task, given back.
pub struct EnqueueError<H> {
    /// Why.
    pub error: SchedError,
    /// The task that was not queued.
    pub task: H,
}

impl<H> fmt::Debug for EnqueueError<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnqueueError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<H> fmt::Display for EnqueueError<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// Where a thread should run and where its memory should come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The CPU to queue it on.
    pub cpu: usize,
    /// That CPU's node.
    pub node: usize,
    /// The node to allocate the thread's memory (stack, thread-local data) from: the node of
    /// the CPU it will run on, so its accesses stay local.
    pub memory_node: usize,
}

/// How far a steal reached, for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StealClass {
    Sibling,
    SameNode,
    RemoteNode,
}

/// One CPU's victims in steal order, with the class of each.
type StealOrder = Box<[(u16, StealClass)]>;

/// Counters of one CPU, as returned by [`NumaScheduler::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Tasks returned by `pick_next`.
    pub picks: u64,
    /// Steals (events) from an SMT sibling.
    pub steals_sibling: u64,
    /// Steals from another CPU of the same node (not a sibling).
    pub steals_same_node: u64,
    /// Steals from a CPU of another node.
    pub steals_remote_node: u64,
    /// Tasks moved by all steals (each steal moves one or more).
    pub tasks_stolen: u64,
    /// Tasks taken from the global injector.
    pub from_injector: u64,
    /// Tasks that exited on this CPU.
    pub exits: u64,
}

#[derive(Default)]
struct AtomicStats {
    picks: AtomicU64,
    steals: [AtomicU64; 3],
    tasks_stolen: AtomicU64,
    from_injector: AtomicU64,
    exits: AtomicU64,
}

/// Relaxed increment of a statistics counter.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// One CPU's queues and counters.
struct PerCpu<H: IntoWord> {
    deques: [ChaseLev<H>; LEVELS],
    fifos: [TicketMutex<Fifo<H>>; LEVELS],
    /// Length of each FIFO, written under its lock; read without it as a hint.
    fifo_len: [AtomicUsize; LEVELS],
    /// Queued here + running here.
    load: AtomicUsize,
    /// Picks so far (written only by the owner), for the fairness interval.
    picks: AtomicU64,
    /// Clock value when the running task was picked.
    slice_start: AtomicU64,
    /// Level of the running task, or `NOT_RUNNING`.
    running_level: AtomicUsize,
    stats: AtomicStats,
}

impl<H: IntoWord> PerCpu<H> {
    fn new(config: &SchedConfig) -> Self {
        Self {
            deques: core::array::from_fn(|_| ChaseLev::new(config.deque_capacity)),
            fifos: core::array::from_fn(|_| TicketMutex::new(Fifo::new())),
            fifo_len: Default::default(),
            load: AtomicUsize::new(0),
            picks: AtomicU64::new(0),
            slice_start: AtomicU64::new(0),
            running_level: AtomicUsize::new(NOT_RUNNING),
            stats: AtomicStats::default(),
        }
    }
}

/// The scheduler: run queues for every online CPU of a [`Topology`]. See the
/// [module docs](self).
///
/// `H` is the task handle stored in the queues (`Box<Thread>`, `Arc<Thread>`, `&'static
/// Thread`: anything [`IntoWord`] that dereferences to a [`Task`]); `C` the [`Clock`].
pub struct NumaScheduler<H: IntoWord, C> {
    topology: Topology,
    clock: C,
    config: SchedConfig,
    /// Indexed by CPU id, `0..=highest online CPU` (offline entries unused).
    cpus: Box<[CachePadded<PerCpu<H>>]>,
    /// Steal order of each CPU (indexed by CPU id), with each victim's class.
    steal_order: Box<[StealOrder]>,
    node_load: Box<[CachePadded<AtomicUsize>]>,
    injectors: [ArrayQueue<H>; LEVELS],
    /// Tasks queued anywhere (deques, FIFOs, injector), per level.
    queued: [CachePadded<AtomicUsize>; LEVELS],
}

impl<H, C> NumaScheduler<H, C>
where
    H: IntoWord + Deref,
    H::Target: Task,
    C: Clock,
{
    /// A scheduler for the CPUs of `topology`. Allocates every queue up front (about
    /// `LEVELS × deque_capacity` words per CPU plus the injectors); nothing on the scheduling
    /// paths allocates except FIFO growth.
    pub fn new(topology: Topology, clock: C, config: SchedConfig) -> Self {
        let highest = topology.cpus().iter().last().unwrap_or(0);
        let cpus = (0..=highest)
            .map(|_| CachePadded::new(PerCpu::new(&config)))
            .collect();
        let steal_order = (0..=highest)
            .map(|cpu| {
                let Ok(list) = topology.nearby_cpus(cpu) else {
                    return Box::default();
                };
                let siblings = topology.smt_siblings(cpu).unwrap_or_default();
                let node = topology.node_of(cpu);
                list.iter()
                    .map(|v| {
                        let class = if siblings.contains(v) {
                            StealClass::Sibling
                        } else if topology.node_of(v) == node {
                            StealClass::SameNode
                        } else {
                            StealClass::RemoteNode
                        };
                        (v as u16, class)
                    })
                    .collect::<Vec<_>>()
                    .into_boxed_slice()
            })
            .collect();
        let node_load = (0..topology.node_count())
            .map(|_| CachePadded::new(AtomicUsize::new(0)))
            .collect();
        let config = SchedConfig {
            max_steal_batch: config.max_steal_batch.clamp(1, MAX_STEAL_BATCH),
            ..config
        };
        Self {
            injectors: core::array::from_fn(|_| ArrayQueue::new(config.injector_capacity.max(2))),
            queued: Default::default(),
            topology,
            clock,
            config,
            cpus,
            steal_order,
            node_load,
        }
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The configuration in force (`max_steal_batch` clamped).
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The run queues of the guard's CPU.
    pub fn local<'a, G: CpuGuard>(
        &'a self,
        guard: &'a G,
    ) -> Result<LocalCpu<'a, H, C>, SchedError> {
        let cpu = guard.cpu();
        if !self.topology.cpus().contains(cpu) {
            return Err(SchedError::CpuNotOnline { cpu });
        }
        Ok(LocalCpu {
            sched: self,
            cpu,
            me: &self.cpus[cpu],
            _not_send: PhantomData,
        })
    }

    /// Load of `cpu` (queued + running), 0 for an offline CPU.
    pub fn cpu_load(&self, cpu: usize) -> usize {
        if self.topology.cpus().contains(cpu) {
            self.cpus[cpu].load.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Load of `node` (sum over its CPUs), 0 for an unknown node.
    pub fn node_load(&self, node: usize) -> usize {
        self.node_load
            .get(node)
            .map_or(0, |l| l.load(Ordering::Relaxed))
    }

    /// Tasks of `priority` queued anywhere (not counting running ones).
    pub fn queued(&self, priority: Priority) -> usize {
        self.queued[priority.index()].load(Ordering::Relaxed)
    }

    /// Counters of `cpu` (all zero for an offline CPU).
    pub fn stats(&self, cpu: usize) -> CpuStats {
        if !self.topology.cpus().contains(cpu) {
            return CpuStats::default();
        }
        let s = &self.cpus[cpu].stats;
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CpuStats {
            picks: r(&s.picks),
            steals_sibling: r(&s.steals[0]),
            steals_same_node: r(&s.steals[1]),
            steals_remote_node: r(&s.steals[2]),
            tasks_stolen: r(&s.tasks_stolen),
            from_injector: r(&s.from_injector),
            exits: r(&s.exits),
        }
    }

    /// Chooses where a thread with `affinity` should run: the least-loaded node among those
    /// with an allowed online CPU, then the least-loaded allowed CPU of that node (see "Load
    /// and placement" in the module docs). Does not change any load: enqueueing does.
    pub fn assign_thread(&self, affinity: &CpuSet) -> Result<Placement, SchedError> {
        let allowed = *affinity & *self.topology.cpus();
        if allowed.is_empty() {
            return Err(SchedError::NoAllowedCpu);
        }
        // Least load per CPU: compare load_a / cpus_a with load_b / cpus_b by cross-multiplying.
        let mut best: Option<(usize, usize, usize)> = None; // (node, load, cpus)
        for node in 0..self.topology.node_count() {
            let node_cpus = self.topology.node_cpus(node);
            if !node_cpus.intersects(&allowed) {
                continue;
            }
            let load = self.node_load(node);
            let n = node_cpus.count();
            let better = best.is_none_or(|(_, bl, bn)| {
                (load as u128) * (bn as u128) < (bl as u128) * (n as u128)
            });
            if better {
                best = Some((node, load, n));
            }
        }
        let Some((node, _, _)) = best else {
            return Err(SchedError::NoAllowedCpu);
        };
        let mut cpu_best: Option<(usize, usize)> = None;
        for cpu in (allowed & self.topology.node_cpus(node)).iter() {
            let load = self.cpu_load(cpu);
            if cpu_best.is_none_or(|(_, bl)| load < bl) {
                cpu_best = Some((cpu, load));
            }
        }
        let Some((cpu, _)) = cpu_best else {
            return Err(SchedError::NoAllowedCpu);
        };
        Ok(Placement {
            cpu,
            node,
            memory_node: node,
        })
    }

    /// The node a thread with `affinity` should take its memory from: the node
    /// [`assign_thread`](Self::assign_thread) would place it on.
    pub fn memory_node(&self, affinity: &CpuSet) -> Result<usize, SchedError> {
        self.assign_thread(affinity).map(|p| p.memory_node)
    }

    fn add_load(&self, cpu: usize, n: usize) {
        self.cpus[cpu].load.fetch_add(n, Ordering::Relaxed);
        if let Some(node) = self.topology.node_of(cpu) {
            self.node_load[node].fetch_add(n, Ordering::Relaxed);
        }
    }

    fn sub_load(&self, cpu: usize, n: usize) {
        self.cpus[cpu].load.fetch_sub(n, Ordering::Relaxed);
        if let Some(node) = self.topology.node_of(cpu) {
            self.node_load[node].fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Whether a task with this affinity may live in deques and the injector.
    fn unrestricted(&self, affinity: &CpuSet) -> bool {
        affinity.is_superset(self.topology.cpus())
    }

    /// Appends to `cpu`'s FIFO at `level`.
    fn fifo_push(&self, cpu: usize, level: usize, task: H) {
        let q = &self.cpus[cpu];
        let mut fifo = q.fifos[level].lock();
        fifo.push_back(task);
        q.fifo_len[level].store(fifo.len(), Ordering::Relaxed);
    }

    /// Takes the head of `cpu`'s FIFO at `level`.
    fn fifo_pop(&self, cpu: usize, level: usize) -> Option<H> {
        let q = &self.cpus[cpu];
        if q.fifo_len[level].load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut fifo = q.fifos[level].lock();
        let task = fifo.pop_front();
        q.fifo_len[level].store(fifo.len(), Ordering::Relaxed);
        task
    }
}

impl<H: IntoWord, C> fmt::Debug for NumaScheduler<H, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NumaScheduler")
            .field("topology", &self.topology)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The run queues of one CPU, for the holder of its [`CpuGuard`]: owner operations (enqueue
/// here, pick, requeue, block, exit). Not `Send`: it stays on the guard's thread.
pub struct LocalCpu<'a, H: IntoWord, C> {
    sched: &'a NumaScheduler<H, C>,
    cpu: usize,
    /// `sched.cpus[cpu]`, looked up (and bounds-checked) once.
    me: &'a PerCpu<H>,
    _not_send: PhantomData<*mut ()>,
}

impl<H, C> LocalCpu<'_, H, C>
where
    H: IntoWord + Deref,
    H::Target: Task,
    C: Clock,
{
    /// This CPU's index.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    fn me(&self) -> &PerCpu<H> {
        self.me
    }

    /// Queues a task that is not counted anywhere yet on `target` (validated by the caller).
    fn enqueue_at(&self, target: usize, task: H) {
        let s = self.sched;
        let level = task.priority().index();
        // Counted before the task becomes visible (see "Memory orderings").
        s.queued[level].fetch_add(1, Ordering::Relaxed);
        if target != self.cpu {
            s.add_load(target, 1);
            s.fifo_push(target, level, task);
            return;
        }
        s.add_load(self.cpu, 1);
        if !s.unrestricted(task.affinity()) {
            s.fifo_push(self.cpu, level, task);
            return;
        }
        // SAFETY: `LocalCpu` exists only for the holder of this CPU's guard, which makes this
        // thread the deque's only owner; `LocalCpu` is neither `Send` nor `Sync`.
        let Err(task) = (unsafe { self.me().deques[level].push(task) }) else {
            return;
        };
        // Deque full: overflow to the injector, where the task belongs to no CPU.
        match s.injectors[level].push(task) {
            Ok(()) => s.sub_load(self.cpu, 1),
            Err(task) => s.fifo_push(self.cpu, level, task),
        }
    }

    /// Checks that `cpu` is online and allowed for `task`.
    fn check_target(&self, cpu: usize, task: &H) -> Result<(), SchedError> {
        if !self.sched.topology.cpus().contains(cpu) {
            return Err(SchedError::CpuNotOnline { cpu });
        }
        if !task.affinity().contains(cpu) {
            return Err(SchedError::CpuNotAllowed { cpu });
        }
        Ok(())
    }

    /// Queues a new or woken task on `cpu` (this CPU: its deque or FIFO; another CPU: that
    /// CPU's FIFO). The embedder should then wake `cpu` (an IPI) if it is idle.
    pub fn enqueue_on(&self, cpu: usize, task: H) -> Result<(), EnqueueError<H>> {
        if let Err(error) = self.check_target(cpu, &task) {
            return Err(EnqueueError { error, task });
        }
        self.enqueue_at(cpu, task);
        Ok(())
    }

    /// Places a new task with [`NumaScheduler::assign_thread`] and queues it there.
    pub fn spawn(&self, task: H) -> Result<Placement, EnqueueError<H>> {
        match self.sched.assign_thread(task.affinity()) {
            Ok(p) => {
                self.enqueue_at(p.cpu, task);
                Ok(p)
            }
            Err(error) => Err(EnqueueError { error, task }),
        }
    }

    /// Queues a woken task: on this CPU if its affinity allows (the waker's cache likely holds
    /// what the wakee needs), otherwise where [`NumaScheduler::assign_thread`] says.
    pub fn wake(&self, task: H) -> Result<Placement, EnqueueError<H>> {
        if task.affinity().contains(self.cpu) {
            self.enqueue_at(self.cpu, task);
            let node = self.sched.topology.node_of(self.cpu).unwrap_or(0);
            return Ok(Placement {
                cpu: self.cpu,
                node,
                memory_node: node,
            });
        }
        self.spawn(task)
    }

    /// Picks the next task to run here, or `None` if no task this CPU may run is queued
    /// anywhere (as far as this CPU could see under concurrency). See the module docs for the
    /// order. Call it when no picked task is running here (after `requeue`, `block` or
    /// `exit`, or at start-up).
    pub fn pick_next(&self) -> Option<H> {
        let s = self.sched;
        let me = self.me();
        for level in 0..LEVELS {
            if s.queued[level].load(Ordering::Relaxed) == 0 {
                continue;
            }
            let task = self
                .take_local(level)
                .or_else(|| self.take_injector(level))
                .or_else(|| self.steal(level));
            if let Some(task) = task {
                s.queued[level].fetch_sub(1, Ordering::Relaxed);
                me.slice_start.store(s.clock.now_ns(), Ordering::Relaxed);
                me.running_level.store(level, Ordering::Relaxed);
                bump(&me.stats.picks, 1);
                return Some(task);
            }
        }
        None
    }

    /// This CPU's own queues at `level`, with the fairness rule.
    fn take_local(&self, level: usize) -> Option<H> {
        let me = self.me();
        // Relaxed load + store: only the owner writes `picks`.
        let n = me.picks.load(Ordering::Relaxed);
        me.picks.store(n.wrapping_add(1), Ordering::Relaxed);
        if n % FAIRNESS_INTERVAL == FAIRNESS_INTERVAL - 1 {
            let oldest = if (n / FAIRNESS_INTERVAL).is_multiple_of(2) {
                self.sched
                    .fifo_pop(self.cpu, level)
                    .or_else(|| self.steal_own(level))
            } else {
                self.steal_own(level)
                    .or_else(|| self.sched.fifo_pop(self.cpu, level))
            };
            if oldest.is_some() {
                return oldest;
            }
        }
        // SAFETY: this thread is the deque's owner (see `enqueue_at`).
        unsafe { me.deques[level].pop() }.or_else(|| self.sched.fifo_pop(self.cpu, level))
    }

    /// The oldest task of this CPU's own deque.
    fn steal_own(&self, level: usize) -> Option<H> {
        loop {
            match self.me().deques[level].steal() {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => core::hint::spin_loop(),
            }
        }
    }

    #[inline(never)]
    fn take_injector(&self, level: usize) -> Option<H> {
        let task = self.sched.injectors[level].pop()?;
        self.sched.add_load(self.cpu, 1);
        bump(&self.me().stats.from_injector, 1);
        Some(task)
    }

    /// Steals half of the first non-empty victim queue at `level`, in `nearby_cpus` order.
    /// Kept out of line: inlined, its loop's registers and stack frame would be paid by every
    /// `pick_next`, which usually finds work locally.
    #[inline(never)]
    fn steal(&self, level: usize) -> Option<H> {
        let s = self.sched;
        let me = self.me();
        for &(victim, class) in s.steal_order[self.cpu].iter() {
            let victim = usize::from(victim);
            let v = &s.cpus[victim];
            let mut got = None;
            if !v.deques[level].is_empty() {
                // SAFETY: this thread owns this CPU's deque (see `enqueue_at`); the victim's
                // deque is another CPU's (steal order never contains the thief).
                got = unsafe {
                    v.deques[level].steal_half_into(
                        &me.deques[level],
                        s.config.max_steal_batch,
                        |t| s.fifo_push(self.cpu, level, t),
                    )
                };
            }
            if got.is_none() && v.fifo_len[level].load(Ordering::Relaxed) > 0 {
                got = self.steal_fifo(victim, level);
            }
            if let Some((task, moved)) = got {
                let n = moved + 1;
                s.sub_load(victim, n);
                s.add_load(self.cpu, n);
                let idx = match class {
                    StealClass::Sibling => 0,
                    StealClass::SameNode => 1,
                    StealClass::RemoteNode => 2,
                };
                bump(&me.stats.steals[idx], 1);
                bump(&me.stats.tasks_stolen, n as u64);
                return Some(task);
            }
        }
        None
    }

    /// Takes up to half of `victim`'s FIFO at `level` (at most `max_steal_batch`), only tasks
    /// that may run here, from the front, looking at no more than [`FIFO_STEAL_SCAN`] entries;
    /// returns the first and the number of others moved to this CPU's FIFO.
    fn steal_fifo(&self, victim: usize, level: usize) -> Option<(H, usize)> {
        let s = self.sched;
        let v = &s.cpus[victim];
        let mut batch = [core::ptr::null_mut(); MAX_STEAL_BATCH];
        let mut taken = 0;
        {
            let mut fifo = v.fifos[level].lock();
            let want = fifo.len().div_ceil(2).min(s.config.max_steal_batch);
            let (mut i, mut scanned) = (0, 0);
            while taken < want && i < fifo.len() && scanned < FIFO_STEAL_SCAN {
                scanned += 1;
                if fifo.get(i).is_some_and(|t| t.affinity().contains(self.cpu)) {
                    if let Some(t) = fifo.remove(i) {
                        batch[taken] = t.into_word();
                        taken += 1;
                    }
                } else {
                    i += 1;
                }
            }
            v.fifo_len[level].store(fifo.len(), Ordering::Relaxed);
        }
        if taken == 0 {
            return None;
        }
        // SAFETY: each `batch[i]` for `i < taken` is `into_word` of a task taken out of the
        // FIFO above, turned back exactly once here.
        let first = unsafe { H::from_word(batch[0]) };
        if taken > 1 {
            let me = self.me();
            let mut fifo = me.fifos[level].lock();
            for &word in &batch[1..taken] {
                // SAFETY: as above.
                fifo.push_back(unsafe { H::from_word(word) });
            }
            me.fifo_len[level].store(fifo.len(), Ordering::Relaxed);
        }
        Some((first, taken - 1))
    }

    /// Whether the running task should give up the CPU: its time slice is used up, or a
    /// higher level has work in this CPU's queues or the injector.
    pub fn should_preempt(&self) -> bool {
        let me = self.me();
        let level = me.running_level.load(Ordering::Relaxed);
        if level >= LEVELS {
            return false;
        }
        let elapsed = self
            .sched
            .clock
            .now_ns()
            .saturating_sub(me.slice_start.load(Ordering::Relaxed));
        if elapsed >= self.sched.config.slice_ns[level] {
            return true;
        }
        (0..level).any(|higher| {
            !me.deques[higher].is_empty()
                || me.fifo_len[higher].load(Ordering::Relaxed) > 0
                || !self.sched.injectors[higher].is_empty()
        })
    }

    /// Hands back the running task, still runnable (time slice used up, or it yielded): it goes
    /// to the tail of this CPU's FIFO, or, if its affinity no longer allows this CPU, to where
    /// [`NumaScheduler::assign_thread`] says. Refused with [`SchedError::NothingRunning`] if no
    /// task picked here is running (so the load counters stay balanced).
    pub fn requeue(&self, task: H) -> Result<(), EnqueueError<H>> {
        let s = self.sched;
        let me = self.me();
        if me.running_level.load(Ordering::Relaxed) == NOT_RUNNING {
            return Err(EnqueueError {
                error: SchedError::NothingRunning,
                task,
            });
        }
        let level = task.priority().index();
        if task.affinity().contains(self.cpu) {
            // Stays counted on this CPU.
            s.queued[level].fetch_add(1, Ordering::Relaxed);
            s.fifo_push(self.cpu, level, task);
        } else {
            let p = match s.assign_thread(task.affinity()) {
                Ok(p) => p,
                Err(error) => return Err(EnqueueError { error, task }),
            };
            s.sub_load(self.cpu, 1);
            self.enqueue_at(p.cpu, task);
        }
        me.running_level.store(NOT_RUNNING, Ordering::Relaxed);
        Ok(())
    }

    /// The running task yields: [`LocalCpu::requeue`] of `current` and then
    /// [`LocalCpu::pick_next`], with the same result, in one step. Returns the task to run now:
    /// another one, `current` itself when nothing else this CPU may run is queued, or `None`
    /// when `current` went to another CPU (its affinity excludes this one) and nothing is left
    /// here. Errors as `requeue` (nothing changes then).
    ///
    /// The common case takes one lock: `current` may run here, no higher level has queued
    /// work, and this CPU's deque at `current`'s level is empty, so the next task is the head
    /// of this CPU's FIFO at that level (which `current` joins at the tail), as `pick_next`
    /// would find it after `requeue`.
    pub fn switch_next(&self, current: H) -> Result<Option<H>, EnqueueError<H>> {
        let s = self.sched;
        let me = self.me();
        let level = current.priority().index();
        if me.running_level.load(Ordering::Relaxed) == NOT_RUNNING
            || !current.affinity().contains(self.cpu)
            || s.queued[..level]
                .iter()
                .any(|q| q.load(Ordering::Relaxed) != 0)
            || !me.deques[level].is_empty()
        {
            return Self::switch_next_slow(s, self.cpu, me, current);
        }
        // The FIFO's length does not change (one task in, one out), nor does `fifo_len`.
        let next = me.fifos[level].lock().rotate(current);
        // As `pick_next` (the deque was empty, so the fairness turn picks the same task); the
        // queued count and this CPU's load are unchanged (one task in, one out).
        let n = me.picks.load(Ordering::Relaxed);
        me.picks.store(n.wrapping_add(1), Ordering::Relaxed);
        me.slice_start.store(s.clock.now_ns(), Ordering::Relaxed);
        me.running_level.store(level, Ordering::Relaxed);
        bump(&me.stats.picks, 1);
        Ok(Some(next))
    }

    /// `switch_next` off its one-lock path: `requeue`, then `pick_next`. Out of line, and
    /// given the handle's parts (in registers) rather than a reference to it, so that the
    /// common path need not keep the handle in memory for this call.
    #[cold]
    #[inline(never)]
    fn switch_next_slow(
        sched: &NumaScheduler<H, C>,
        cpu: usize,
        me: &PerCpu<H>,
        current: H,
    ) -> Result<Option<H>, EnqueueError<H>> {
        let local = LocalCpu {
            sched,
            cpu,
            me,
            _not_send: PhantomData,
        };
        local.requeue(current)?;
        Ok(local.pick_next())
    }

    /// Direct hand-off (IPC fast paths): the running task blocks and `next`, a blocked task
    /// (not queued anywhere) whose affinity allows this CPU, runs here now instead, without a
    /// queue operation; this CPU's load is unchanged and `next` starts a fresh time slice.
    /// [`SchedError::NothingRunning`] if no picked task is running, [`SchedError::NoAllowedCpu`]
    /// if `next`'s affinity excludes this CPU (nothing changes then).
    pub fn hand_off(&self, next: &H) -> Result<(), SchedError> {
        let me = self.me();
        if me.running_level.load(Ordering::Relaxed) == NOT_RUNNING {
            return Err(SchedError::NothingRunning);
        }
        if !next.affinity().contains(self.cpu) {
            return Err(SchedError::NoAllowedCpu);
        }
        me.running_level
            .store(next.priority().index(), Ordering::Relaxed);
        me.slice_start
            .store(self.sched.clock.now_ns(), Ordering::Relaxed);
        Ok(())
    }

    /// The running task blocks (it will come back through [`LocalCpu::wake`]): this CPU's
    /// load goes down by one. [`SchedError::NothingRunning`] if no picked task is running.
    pub fn block(&self) -> Result<(), SchedError> {
        self.leave()
    }

    /// The running task exits: this CPU's load goes down by one.
    /// [`SchedError::NothingRunning`] if no picked task is running.
    pub fn exit(&self) -> Result<(), SchedError> {
        self.leave()?;
        bump(&self.me().stats.exits, 1);
        Ok(())
    }

    fn leave(&self) -> Result<(), SchedError> {
        if self.me().running_level.swap(NOT_RUNNING, Ordering::Relaxed) == NOT_RUNNING {
            return Err(SchedError::NothingRunning);
        }
        self.sched.sub_load(self.cpu, 1);
        Ok(())
    }
}

impl<H: IntoWord, C> fmt::Debug for LocalCpu<'_, H, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCpu").field("cpu", &self.cpu).finish()
    }
}

/// Rejects a topology wider than the CPU index type of the steal order (cannot happen with
/// `MAX_CPUS = 256`; checked at compile time).
const _: () = assert!(MAX_CPUS <= u16::MAX as usize + 1);
