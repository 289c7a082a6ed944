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

impl Topology {
    /// A single node holding CPUs `0..cpus`, no SMT: what a machine without SRAT looks like.
    pub fn uniform(cpus: usize) -> Result<Self, TopologyError> {
        let mut b = TopologyBuilder::new(1);
        for cpu in 0..cpus {
            b.cpu(cpu, 0);
        }
        b.build()
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
        let mut b = TopologyBuilder::new(nodes);
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
        b.build()
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
    pub fn new(nodes: usize) -> Self {
        let mut b = Self {
            nodes: nodes.min(MAX_NODES),
            cpu_node: [NONE; MAX_CPUS],
            cpu_core: [None; MAX_CPUS],
            distance: [[0; MAX_NODES]; MAX_NODES],
            given: [[false; MAX_NODES]; MAX_NODES],
            symmetry: Symmetry::RequireSymmetric,
            error: None,
        };
        if nodes > MAX_NODES {
            b.error = Some(TopologyError::NodeOutOfRange { node: nodes - 1 });
        }
        b
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

    /// Validates and builds the topology.
    #[allow(
        clippy::needless_range_loop,
        reason = "node and CPU ids index several tables"
    )]
    pub fn build(&self) -> Result<Topology, TopologyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let n = self.nodes;
        let mut distance = [[0u8; MAX_NODES]; MAX_NODES];
        for from in 0..n {
            for to in 0..n {
                let given = self.given[from][to];
                let d = self.distance[from][to];
                if from == to {
                    if given && d != LOCAL_DISTANCE {
                        return Err(TopologyError::LocalDistanceNot10 {
                            node: from,
                            distance: d,
                        });
                    }
                    distance[from][to] = LOCAL_DISTANCE;
                } else {
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
                    distance[from][to] = d;
                }
            }
        }
        if self.symmetry == Symmetry::RequireSymmetric {
            for a in 0..n {
                for b in a + 1..n {
                    let (ab, ba) = (distance[a][b], distance[b][a]);
                    if ab != ba {
                        return Err(TopologyError::Asymmetric { a, b, ab, ba });
                    }
                }
            }
        }
        let mut online = CpuSet::empty();
        let mut node_cpus = [CpuSet::empty(); MAX_NODES];
        let mut cpu_core = [None; MAX_CPUS];
        for cpu in 0..MAX_CPUS {
            let node = self.cpu_node[cpu];
            if node != NONE {
                // `cpu < MAX_CPUS`, so the inserts cannot fail.
                let _ = online.insert(cpu);
                let _ = node_cpus[usize::from(node)].insert(cpu);
                cpu_core[cpu] = self.cpu_core[cpu];
            }
        }
        if online.is_empty() {
            return Err(TopologyError::NoCpus);
        }
        Ok(Topology {
            online,
            node_count: n,
            cpu_node: self.cpu_node,
            cpu_core,
            node_cpus,
            distance,
        })
    }
}
