//! [`Topology`]: NUMA nodes, the CPUs of each node, SMT siblings and the node distance matrix,
//! and the work-stealing order derived from them ([`Topology::nearby_cpus`]).
//!
//! # What it does
//! A topology is built either by hand with [`TopologyBuilder`] or from the firmware's view that
//! the kernel hands over ([`Topology::from_firmware`]): one [`CpuAffinity`] per processor (what
//! an ACPI SRAT Processor Local (x2)APIC Affinity entry says, with the APIC id already mapped to
//! a logical CPU index) and optionally a [`DistanceTable`] (the ACPI SLIT matrix). Parsing the
//! ACPI tables themselves is the kernel's job; this module only takes plain data.
//!
//! Distances follow SLIT semantics: a node's distance to itself is [`LOCAL_DISTANCE`] (10),
//! other entries are relative to it (20 = twice the latency), 0..=9 are invalid and
//! [`UNREACHABLE`] (255) means no path.
//!
//! # What it relies on
//! Nothing but `core`: every table is a fixed array ([`MAX_CPUS`] CPUs, [`MAX_NODES`] nodes;
//! about 7 KiB per topology, builders included), so a kernel can build one before it has a
//! heap.
//!
//! # What it guarantees
//! A [`Topology`] exists only after validation. Each check has its own [`TopologyError`]: a CPU
//! in two nodes, an index out of range, a node id beyond the distance table, a missing distance,
//! a local distance other than 10, a distance below 10 between different nodes, and an
//! asymmetric matrix unless [`Symmetry::AllowAsymmetric`] was chosen. Every online CPU belongs
//! to exactly one node; nodes without CPUs (memory-only nodes) are allowed.

use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use crate::cpuset::{CpuOutOfRange, CpuSet, MAX_CPUS};

/// The number of NUMA nodes a [`Topology`] can describe: node ids `0..MAX_NODES`.
///
/// 64 covers large multi-socket machines with sub-NUMA clustering; the distance matrix is
/// `MAX_NODES²` bytes (4 KiB).
pub const MAX_NODES: usize = 64;

/// SLIT distance of a node to itself.
pub const LOCAL_DISTANCE: u8 = 10;

/// SLIT distance meaning "no path between these nodes".
pub const UNREACHABLE: u8 = 255;

/// The distance assumed between different nodes when the firmware gives no SLIT: Linux's
/// `REMOTE_DISTANCE`, so all remote nodes are equally far.
pub const DEFAULT_REMOTE_DISTANCE: u8 = 20;

/// Marker for "no node assigned" / "no distance given" in the fixed tables.
const NONE: u8 = u8::MAX;

/// Whether an asymmetric distance matrix is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Symmetry {
    /// `distance(a, b) == distance(b, a)` is required (the usual case; ACPI allows asymmetry
    /// but almost no firmware reports it, so an asymmetric table usually means a parse error).
    #[default]
    RequireSymmetric,
    /// Asymmetric matrices are accepted; steal order uses the distance *from* the thief's node
    /// *to* the victim's node.
    AllowAsymmetric,
}

/// Why a topology was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyError {
    /// A CPU index `>= MAX_CPUS`.
    CpuOutOfRange {
        /// The index.
        cpu: usize,
    },
    /// A node id `>= MAX_NODES`.
    NodeOutOfRange {
        /// The node id.
        node: usize,
    },
    /// A node id that the distance table (or the declared node count) does not cover.
    UnknownNode {
        /// The node id.
        node: usize,
        /// Number of nodes known.
        nodes: usize,
    },
    /// One CPU was given two different nodes.
    CpuInTwoNodes {
        /// The CPU.
        cpu: usize,
        /// The node it was first given.
        first: usize,
        /// The node it was then given.
        second: usize,
    },
    /// A distance between two known nodes was never given.
    MissingDistance {
        /// Row.
        from: usize,
        /// Column.
        to: usize,
    },
    /// A node's distance to itself is not [`LOCAL_DISTANCE`].
    LocalDistanceNot10 {
        /// The node.
        node: usize,
        /// The distance given.
        distance: u8,
    },
    /// A distance between different nodes is below [`LOCAL_DISTANCE`] (SLIT reserves 0..=9).
    InvalidDistance {
        /// Row.
        from: usize,
        /// Column.
        to: usize,
        /// The distance given.
        distance: u8,
    },
    /// `distance(a, b) != distance(b, a)` while [`Symmetry::RequireSymmetric`].
    Asymmetric {
        /// One node.
        a: usize,
        /// The other node.
        b: usize,
        /// `distance(a, b)`.
        ab: u8,
        /// `distance(b, a)`.
        ba: u8,
    },
    /// The distance table's entry count is not `localities²`.
    TableSize {
        /// `localities²`.
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// No CPU at all.
    NoCpus,
    /// A CPU index was asked about that is not in the topology.
    CpuNotPresent {
        /// The index.
        cpu: usize,
    },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CpuOutOfRange { cpu } => {
                write!(f, "CPU {cpu} is out of range (at most {MAX_CPUS} CPUs)")
            }
            Self::NodeOutOfRange { node } => {
                write!(f, "node {node} is out of range (at most {MAX_NODES} nodes)")
            }
            Self::UnknownNode { node, nodes } => {
                write!(
                    f,
                    "node {node} is unknown (the distance table has {nodes} nodes)"
                )
            }
            Self::CpuInTwoNodes { cpu, first, second } => {
                write!(
                    f,
                    "CPU {cpu} is listed in node {first} and in node {second}"
                )
            }
            Self::MissingDistance { from, to } => {
                write!(f, "no distance given from node {from} to node {to}")
            }
            Self::LocalDistanceNot10 { node, distance } => write!(
                f,
                "node {node}'s distance to itself is {distance}, SLIT requires {LOCAL_DISTANCE}"
            ),
            Self::InvalidDistance { from, to, distance } => write!(
                f,
                "distance {distance} from node {from} to node {to} is below {LOCAL_DISTANCE} (reserved)"
            ),
            Self::Asymmetric { a, b, ab, ba } => write!(
                f,
                "distance matrix is asymmetric: {a}->{b} is {ab} but {b}->{a} is {ba}"
            ),
            Self::TableSize { expected, got } => {
                write!(f, "distance table has {got} entries, expected {expected}")
            }
            Self::NoCpus => f.write_str("the topology has no CPU"),
            Self::CpuNotPresent { cpu } => write!(f, "CPU {cpu} is not in the topology"),
        }
    }
}

impl core::error::Error for TopologyError {}

impl From<CpuOutOfRange> for TopologyError {
    fn from(e: CpuOutOfRange) -> Self {
        Self::CpuOutOfRange { cpu: e.cpu }
    }
}

/// One processor as the firmware describes it (an ACPI SRAT processor affinity entry, with the
/// APIC id already mapped to a logical CPU index by the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuAffinity {
    /// Logical CPU index, `< MAX_CPUS`.
    pub cpu: usize,
    /// Proximity domain (= node id, the row/column of the [`DistanceTable`]).
    pub node: u32,
    /// Physical core id, for SMT siblings: CPUs of one node with the same `Some(core)` are
    /// hyper-threads of one core. `None`: a core of its own. (From CPUID leaf 0xB/0x1F or the
    /// MADT order; the SRAT does not say.)
    pub core: Option<u32>,
}

/// A SLIT-style distance matrix, row-major: `entries[from * localities + to]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistanceTable<'a> {
    /// Number of localities (nodes); the table is `localities²` entries.
    pub localities: usize,
    /// The matrix.
    pub entries: &'a [u8],
}

/// Writes "no node" and "no core id" for every CPU into the two per-CPU tables, element by
/// element (no temporary array).
///
/// # Safety
/// Both pointers are valid for writes (they may point to uninitialised memory).
unsafe fn init_cpu_tables(cpu_node: *mut [u8; MAX_CPUS], cpu_core: *mut [Option<u32>; MAX_CPUS]) {
    // SAFETY: the caller guarantees both tables are writable; `u8` has no invalid values.
    unsafe {
        cpu_node.cast::<u8>().write_bytes(NONE, MAX_CPUS);
        let core = cpu_core.cast::<Option<u32>>();
        for i in 0..MAX_CPUS {
            core.add(i).write(None);
        }
    }
}

/// A list of CPUs in a chosen order (the steal order of [`Topology::nearby_cpus`]), in a fixed
/// array.
#[derive(Clone)]
pub struct CpuList {
    cpus: [u16; MAX_CPUS],
    len: usize,
}

impl CpuList {
    const fn new() -> Self {
        Self {
            cpus: [0; MAX_CPUS],
            len: 0,
        }
    }

    fn push(&mut self, cpu: usize) {
        // `len < MAX_CPUS`: callers push each CPU of a `CpuSet` at most once.
        self.cpus[self.len] = cpu as u16;
        self.len += 1;
    }

    /// Number of CPUs.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The CPUs as indices.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.cpus[..self.len].iter().map(|&c| usize::from(c))
    }

    /// The CPUs as `u16` indices.
    pub fn as_slice(&self) -> &[u16] {
        &self.cpus[..self.len]
    }
}

impl fmt::Debug for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// A validated machine topology. See the [module docs](self).
///
/// ```
/// use veridian_sched::{TopologyBuilder, Symmetry};
///
/// // Two nodes of two cores with two hyper-threads each: CPUs 0/1 and 2/3 on node 0.
/// let mut b = TopologyBuilder::new(2);
/// for cpu in 0..8 {
///     b.cpu(cpu, cpu / 4).core(cpu, (cpu / 2) as u32);
/// }
/// b.distance(0, 1, 21).distance(1, 0, 21);
/// let topo = b.build().unwrap();
/// let order: Vec<usize> = topo.nearby_cpus(0).unwrap().iter().collect();
/// assert_eq!(order, [1, 2, 3, 4, 5, 6, 7]); // sibling, same node, then node 1
/// assert_eq!(topo.distance(0, 1), Some(21));
/// ```
#[derive(Clone)]
pub struct Topology {
    online: CpuSet,
    node_count: usize,
    cpu_node: [u8; MAX_CPUS],
    /// Core id per CPU; CPUs with `Some` equal core ids on one node are SMT siblings.
    cpu_core: [Option<u32>; MAX_CPUS],
    node_cpus: [CpuSet; MAX_NODES],
    distance: [[u8; MAX_NODES]; MAX_NODES],
}

/// # Large values
///
/// A `Topology` is about 8 KiB and a [`TopologyBuilder`] about 10 KiB (fixed arrays, no
/// allocation). Returned by value they pass through the stack, which a small kernel stack may
/// not afford; every constructor therefore also comes in place (into a `MaybeUninit` the caller
/// put wherever it likes, a `static` for instance) and, with feature `alloc`, boxed. None of
/// the in-place or boxed versions creates a temporary of either type on the stack.
impl Topology {
    /// A single node holding CPUs `0..cpus`, no SMT: what a machine without SRAT looks like.
    pub fn uniform(cpus: usize) -> Result<Self, TopologyError> {
        let mut slot = MaybeUninit::uninit();
        Self::uniform_in_place(cpus, &mut slot)?;
        // SAFETY: `uniform_in_place` returned `Ok`, so it initialised the slot.
        Ok(unsafe { slot.assume_init() })
    }

    /// [`uniform`](Self::uniform), written into `slot` (no 8 KiB value on the stack); on error
    /// `slot` is left as it was.
    pub fn uniform_in_place(
        cpus: usize,
        slot: &mut MaybeUninit<Self>,
    ) -> Result<&mut Self, TopologyError> {
        if cpus == 0 {
            return Err(TopologyError::NoCpus);
        }
        if cpus > MAX_CPUS {
            return Err(TopologyError::CpuOutOfRange { cpu: MAX_CPUS });
        }
        let topology = Self::empty_in_place(slot, 1);
        topology.distance[0][0] = LOCAL_DISTANCE;
        for cpu in 0..cpus {
            // `cpu < cpus <= MAX_CPUS`: the inserts cannot fail.
            let _ = topology.online.insert(cpu);
            let _ = topology.node_cpus[0].insert(cpu);
            topology.cpu_node[cpu] = 0;
        }
        Ok(topology)
    }

    /// [`uniform`](Self::uniform), on the heap (no 8 KiB value on the stack).
    #[cfg(feature = "alloc")]
    pub fn uniform_boxed(cpus: usize) -> Result<Box<Self>, TopologyError> {
        let mut slot = Box::new_uninit();
        Self::uniform_in_place(cpus, &mut slot)?;
        // SAFETY: `uniform_in_place` returned `Ok`, so it initialised the box.
        Ok(unsafe { slot.assume_init() })
    }

    /// Writes a topology of `node_count` nodes, no CPUs, all distances 0, into `slot` field by
    /// field (no temporary of the whole value), and returns it for the caller to fill.
    fn empty_in_place(slot: &mut MaybeUninit<Self>, node_count: usize) -> &mut Self {
        let p = slot.as_mut_ptr();
        // SAFETY: every field of `*p` is written through a raw pointer to it before the slot is
        // treated as initialised; the arrays are written element by element (all-zero bytes are
        // valid `u8`s, and `None`/`CpuSet::empty()` are written as values).
        unsafe {
            addr_of_mut!((*p).online).write(CpuSet::empty());
            addr_of_mut!((*p).node_count).write(node_count);
            init_cpu_tables(addr_of_mut!((*p).cpu_node), addr_of_mut!((*p).cpu_core));
            let sets = addr_of_mut!((*p).node_cpus).cast::<CpuSet>();
            for i in 0..MAX_NODES {
                sets.add(i).write(CpuSet::empty());
            }
            addr_of_mut!((*p).distance)
                .cast::<u8>()
                .write_bytes(0, MAX_NODES * MAX_NODES);
            slot.assume_init_mut()
        }
    }

    /// Builds the topology from the firmware's processor affinities and distance table.
    ///
    /// Without a table every node present is [`DEFAULT_REMOTE_DISTANCE`] from every other
    /// (node ids then only need to be `< MAX_NODES`). With one, node ids must be `<
    /// localities`, and every entry is checked as described in the [module docs](self).
    pub fn from_firmware(
        cpus: &[CpuAffinity],
        distances: Option<DistanceTable<'_>>,
        symmetry: Symmetry,
    ) -> Result<Self, TopologyError> {
        let mut builder = MaybeUninit::uninit();
        Self::firmware_builder(cpus, distances, symmetry, &mut builder)?.build()
    }

    /// [`from_firmware`](Self::from_firmware), written into `slot`, with `scratch` as the
    /// builder's room (both wherever the caller likes: no 8 or 10 KiB value on the stack). On
    /// error `slot` is left as it was; `scratch` holds nothing to drop either way.
    pub fn from_firmware_in_place<'t>(
        cpus: &[CpuAffinity],
        distances: Option<DistanceTable<'_>>,
        symmetry: Symmetry,
        scratch: &mut MaybeUninit<TopologyBuilder>,
        slot: &'t mut MaybeUninit<Self>,
    ) -> Result<&'t mut Self, TopologyError> {
        Self::firmware_builder(cpus, distances, symmetry, scratch)?.build_in_place(slot)
    }

    /// [`from_firmware`](Self::from_firmware), on the heap (the builder too): no 8 or 10 KiB
    /// value on the stack.
    #[cfg(feature = "alloc")]
    pub fn from_firmware_boxed(
        cpus: &[CpuAffinity],
        distances: Option<DistanceTable<'_>>,
        symmetry: Symmetry,
    ) -> Result<Box<Self>, TopologyError> {
        let mut scratch = Box::new_uninit();
        Self::firmware_builder(cpus, distances, symmetry, &mut scratch)?.build_boxed()
    }

    /// The builder `from_firmware` validates, set up in `scratch`.
    fn firmware_builder<'b>(
        cpus: &[CpuAffinity],
        distances: Option<DistanceTable<'_>>,
        symmetry: Symmetry,
        scratch: &'b mut MaybeUninit<TopologyBuilder>,
    ) -> Result<&'b mut TopologyBuilder, TopologyError> {
        let nodes = match distances {
            Some(t) => {
                if t.localities > MAX_NODES {
                    return Err(TopologyError::NodeOutOfRange {
                        node: t.localities - 1,
                    });
                }
                let expected = t.localities * t.localities;
                if t.entries.len() != expected {
                    return Err(TopologyError::TableSize {
                        expected,
                        got: t.entries.len(),
                    });
                }
                t.localities
            }
            None => {
                let mut max = 0usize;
                for c in cpus {
                    let node = c.node as usize;
                    if node >= MAX_NODES {
                        return Err(TopologyError::NodeOutOfRange { node });
                    }
                    max = max.max(node + 1);
                }
                max
            }
        };
        let b = TopologyBuilder::init_in_place(scratch, nodes);
        b.symmetry(symmetry);
        for c in cpus {
            b.cpu(c.cpu, c.node as usize);
            if let Some(core) = c.core {
                b.core(c.cpu, core);
            }
        }
        match distances {
            Some(t) => {
                for from in 0..nodes {
                    for to in 0..nodes {
                        b.distance(from, to, t.entries[from * nodes + to]);
                    }
                }
            }
            None => {
                for from in 0..nodes {
                    for to in 0..nodes {
                        if from != to {
                            b.distance(from, to, DEFAULT_REMOTE_DISTANCE);
                        }
                    }
                }
            }
        }
        Ok(b)
    }

    /// The online CPUs (those given a node).
    pub const fn cpus(&self) -> &CpuSet {
        &self.online
    }

    /// Number of online CPUs.
    pub const fn cpu_count(&self) -> usize {
        self.online.count()
    }

    /// Number of nodes (ids `0..node_count()`; some may have no CPU).
    pub const fn node_count(&self) -> usize {
        self.node_count
    }

    /// The node of `cpu`, or `None` if it is not online.
    pub const fn node_of(&self, cpu: usize) -> Option<usize> {
        if self.online.contains(cpu) {
            Some(self.cpu_node[cpu] as usize)
        } else {
            None
        }
    }

    /// The CPUs of `node` (empty for an unknown node).
    pub fn node_cpus(&self, node: usize) -> CpuSet {
        if node < self.node_count {
            self.node_cpus[node]
        } else {
            CpuSet::empty()
        }
    }

    /// The SLIT distance from node `from` to node `to`, or `None` for an unknown node.
    pub const fn distance(&self, from: usize, to: usize) -> Option<u8> {
        if from < self.node_count && to < self.node_count {
            Some(self.distance[from][to])
        } else {
            None
        }
    }

    /// `cpu`'s SMT siblings (the other hardware threads of its core), without `cpu` itself.
    pub fn smt_siblings(&self, cpu: usize) -> Result<CpuSet, TopologyError> {
        let node = self
            .node_of(cpu)
            .ok_or(TopologyError::CpuNotPresent { cpu })?;
        let mut set = CpuSet::empty();
        if let Some(core) = self.cpu_core[cpu] {
            for other in self.node_cpus[node].iter() {
                if other != cpu && self.cpu_core[other] == Some(core) {
                    // `other` comes from a `CpuSet`, so it is in range.
                    let _ = set.insert(other);
                }
            }
        }
        Ok(set)
    }

    /// The order in which `cpu` should try other CPUs as work-stealing victims: its SMT
    /// siblings, then the rest of its node, then the other nodes by increasing distance from
    /// `cpu`'s node (ties by node id). `cpu` itself is not in the list.
    ///
    /// Within each group the CPUs are rotated to start just above `cpu` (wrapping around), so
    /// that idle CPUs of one node do not all try the same victim first.
    #[allow(
        clippy::needless_range_loop,
        reason = "node ids index several tables at once"
    )]
    pub fn nearby_cpus(&self, cpu: usize) -> Result<CpuList, TopologyError> {
        let node = self
            .node_of(cpu)
            .ok_or(TopologyError::CpuNotPresent { cpu })?;
        let siblings = self.smt_siblings(cpu)?;
        let mut list = CpuList::new();
        let push_group = |list: &mut CpuList, set: &CpuSet| {
            // Rotation: CPUs above `cpu` first, then those below.
            for c in set.iter().filter(|&c| c > cpu) {
                list.push(c);
            }
            for c in set.iter().filter(|&c| c < cpu) {
                list.push(c);
            }
        };
        push_group(&mut list, &siblings);
        let mut own = self.node_cpus[node] - siblings;
        // `cpu` is online, so in range.
        let _ = own.remove(cpu);
        push_group(&mut list, &own);

        // Other nodes by (distance, id): a selection sort over at most MAX_NODES nodes, without
        // allocating.
        let mut done = [false; MAX_NODES];
        done[node] = true;
        loop {
            let mut best: Option<(u8, usize)> = None;
            for other in 0..self.node_count {
                if done[other] {
                    continue;
                }
                let d = self.distance[node][other];
                if best.is_none_or(|(bd, _)| d < bd) {
                    best = Some((d, other));
                }
            }
            let Some((_, other)) = best else { break };
            done[other] = true;
            let set = self.node_cpus[other];
            push_group(&mut list, &set);
        }
        Ok(list)
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Topology");
        s.field("cpus", &self.online);
        s.field("nodes", &&self.node_cpus[..self.node_count]);
        let rows: [&[u8]; MAX_NODES] = core::array::from_fn(|i| &self.distance[i][..]);
        s.field(
            "distance",
            &DistanceRows(&rows[..self.node_count], self.node_count),
        );
        s.finish()
    }
}

/// Debug helper: the distance rows cut to the node count.
struct DistanceRows<'a>(&'a [&'a [u8]], usize);

impl fmt::Debug for DistanceRows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| &r[..self.1]))
            .finish()
    }
}

/// Builds a [`Topology`] by hand; all checks happen in [`TopologyBuilder::build`].
///
/// Setters record the first error they meet (an index out of range, a CPU moved to a second
/// node) and `build` reports it, so calls can be chained without handling a `Result` each.
/// Local distances default to 10; every other distance between the declared nodes must be
/// given (or use [`TopologyBuilder::uniform_remote`]).
#[derive(Clone)]
pub struct TopologyBuilder {
    nodes: usize,
    cpu_node: [u8; MAX_CPUS],
    cpu_core: [Option<u32>; MAX_CPUS],
    distance: [[u8; MAX_NODES]; MAX_NODES],
    given: [[bool; MAX_NODES]; MAX_NODES],
    symmetry: Symmetry,
    error: Option<TopologyError>,
}

impl TopologyBuilder {
    /// A builder for `nodes` nodes (ids `0..nodes`); `nodes > MAX_NODES` is reported by `build`.
    /// About 10 KiB by value: see [`init_in_place`](Self::init_in_place) and
    /// [`boxed`](Self::boxed) for a small stack.
    pub fn new(nodes: usize) -> Self {
        let mut slot = MaybeUninit::uninit();
        Self::init_in_place(&mut slot, nodes);
        // SAFETY: `init_in_place` initialised every field.
        unsafe { slot.assume_init() }
    }

    /// [`new`](Self::new), written into `slot` field by field (no 10 KiB value on the stack).
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use veridian_sched::{Topology, TopologyBuilder};
    ///
    /// // Both could as well be `static`s, or parts of a larger structure.
    /// let mut builder = MaybeUninit::uninit();
    /// let mut topology = MaybeUninit::<Topology>::uninit();
    /// let b = TopologyBuilder::init_in_place(&mut builder, 2);
    /// b.cpu(0, 0).cpu(1, 1).uniform_remote(20);
    /// let topology = b.build_in_place(&mut topology).unwrap();
    /// assert_eq!(topology.distance(0, 1), Some(20));
    /// ```
    pub fn init_in_place(slot: &mut MaybeUninit<Self>, nodes: usize) -> &mut Self {
        let p = slot.as_mut_ptr();
        // SAFETY: every field of `*p` is written through a raw pointer to it before the slot is
        // treated as initialised; the arrays element by element or as bytes valid for their
        // element type (`u8`, and `bool` 0 = `false`).
        unsafe {
            addr_of_mut!((*p).nodes).write(nodes.min(MAX_NODES));
            init_cpu_tables(addr_of_mut!((*p).cpu_node), addr_of_mut!((*p).cpu_core));
            addr_of_mut!((*p).distance)
                .cast::<u8>()
                .write_bytes(0, MAX_NODES * MAX_NODES);
            addr_of_mut!((*p).given)
                .cast::<bool>()
                .write_bytes(0, MAX_NODES * MAX_NODES);
            addr_of_mut!((*p).symmetry).write(Symmetry::RequireSymmetric);
            addr_of_mut!((*p).error).write(if nodes > MAX_NODES {
                Some(TopologyError::NodeOutOfRange { node: nodes - 1 })
            } else {
                None
            });
            slot.assume_init_mut()
        }
    }

    /// [`new`](Self::new), on the heap (no 10 KiB value on the stack).
    #[cfg(feature = "alloc")]
    pub fn boxed(nodes: usize) -> Box<Self> {
        let mut slot = Box::new_uninit();
        Self::init_in_place(&mut slot, nodes);
        // SAFETY: `init_in_place` initialised every field.
        unsafe { slot.assume_init() }
    }

    fn fail(&mut self, e: TopologyError) -> &mut Self {
        self.error.get_or_insert(e);
        self
    }

    /// Whether an asymmetric distance matrix is accepted (default: no).
    pub fn symmetry(&mut self, symmetry: Symmetry) -> &mut Self {
        self.symmetry = symmetry;
        self
    }

    /// Puts `cpu` on `node`.
    pub fn cpu(&mut self, cpu: usize, node: usize) -> &mut Self {
        if cpu >= MAX_CPUS {
            return self.fail(TopologyError::CpuOutOfRange { cpu });
        }
        if node >= MAX_NODES {
            return self.fail(TopologyError::NodeOutOfRange { node });
        }
        if node >= self.nodes {
            return self.fail(TopologyError::UnknownNode {
                node,
                nodes: self.nodes,
            });
        }
        let old = self.cpu_node[cpu];
        if old != NONE && usize::from(old) != node {
            return self.fail(TopologyError::CpuInTwoNodes {
                cpu,
                first: usize::from(old),
                second: node,
            });
        }
        self.cpu_node[cpu] = node as u8;
        self
    }

    /// Gives `cpu` the physical core id `core` (CPUs of one node with equal core ids are SMT
    /// siblings).
    pub fn core(&mut self, cpu: usize, core: u32) -> &mut Self {
        if cpu >= MAX_CPUS {
            return self.fail(TopologyError::CpuOutOfRange { cpu });
        }
        self.cpu_core[cpu] = Some(core);
        self
    }

    /// Sets the distance from node `from` to node `to` (one direction).
    pub fn distance(&mut self, from: usize, to: usize, distance: u8) -> &mut Self {
        for node in [from, to] {
            if node >= MAX_NODES {
                return self.fail(TopologyError::NodeOutOfRange { node });
            }
            if node >= self.nodes {
                return self.fail(TopologyError::UnknownNode {
                    node,
                    nodes: self.nodes,
                });
            }
        }
        self.distance[from][to] = distance;
        self.given[from][to] = true;
        self
    }

    /// Sets every distance between different nodes to `distance`.
    pub fn uniform_remote(&mut self, distance: u8) -> &mut Self {
        for from in 0..self.nodes {
            for to in 0..self.nodes {
                if from != to {
                    self.distance(from, to, distance);
                }
            }
        }
        self
    }

    /// Validates and builds the topology (about 8 KiB by value: see
    /// [`build_in_place`](Self::build_in_place) and [`build_boxed`](Self::build_boxed) for a
    /// small stack).
    pub fn build(&self) -> Result<Topology, TopologyError> {
        let mut slot = MaybeUninit::uninit();
        self.build_in_place(&mut slot)?;
        // SAFETY: `build_in_place` returned `Ok`, so it initialised the slot.
        Ok(unsafe { slot.assume_init() })
    }

    /// [`build`](Self::build), on the heap (no 8 KiB value on the stack).
    #[cfg(feature = "alloc")]
    pub fn build_boxed(&self) -> Result<Box<Topology>, TopologyError> {
        let mut slot = Box::new_uninit();
        self.build_in_place(&mut slot)?;
        // SAFETY: `build_in_place` returned `Ok`, so it initialised the box.
        Ok(unsafe { slot.assume_init() })
    }

    /// The validated distance from `from` to `to` (both `< nodes`): 10 on the diagonal.
    fn checked_distance(&self, from: usize, to: usize) -> Result<u8, TopologyError> {
        let given = self.given[from][to];
        let d = self.distance[from][to];
        if from == to {
            if given && d != LOCAL_DISTANCE {
                return Err(TopologyError::LocalDistanceNot10 {
                    node: from,
                    distance: d,
                });
            }
            return Ok(LOCAL_DISTANCE);
        }
        if !given {
            return Err(TopologyError::MissingDistance { from, to });
        }
        if d < LOCAL_DISTANCE {
            return Err(TopologyError::InvalidDistance {
                from,
                to,
                distance: d,
            });
        }
        Ok(d)
    }

    /// Validates, then writes the topology into `slot` (no 8 KiB value on the stack). On
    /// error `slot` is left as it was.
    pub fn build_in_place<'t>(
        &self,
        slot: &'t mut MaybeUninit<Topology>,
    ) -> Result<&'t mut Topology, TopologyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let n = self.nodes;
        // Every check before the slot is touched.
        for from in 0..n {
            for to in 0..n {
                self.checked_distance(from, to)?;
            }
        }
        if self.symmetry == Symmetry::RequireSymmetric {
            for a in 0..n {
                for b in a + 1..n {
                    let (ab, ba) = (self.checked_distance(a, b)?, self.checked_distance(b, a)?);
                    if ab != ba {
                        return Err(TopologyError::Asymmetric { a, b, ab, ba });
                    }
                }
            }
        }
        if self.cpu_node.iter().all(|&node| node == NONE) {
            return Err(TopologyError::NoCpus);
        }
        let topology = Topology::empty_in_place(slot, n);
        for from in 0..n {
            for to in 0..n {
                // Checked above.
                topology.distance[from][to] = self.checked_distance(from, to)?;
            }
        }
        for (cpu, &node) in self.cpu_node.iter().enumerate() {
            if node != NONE {
                // `cpu < MAX_CPUS`, so the inserts cannot fail.
                let _ = topology.online.insert(cpu);
                let _ = topology.node_cpus[usize::from(node)].insert(cpu);
                topology.cpu_node[cpu] = node;
                topology.cpu_core[cpu] = self.cpu_core[cpu];
            }
        }
        Ok(topology)
    }
}
