//! The machine's CPUs and NUMA topology, combined from the MADT, SRAT and SLIT.
//!
//! Proximity domains are mapped to dense node indices `0..node_count()` in increasing
//! domain order (QEMU's `-numa node,nodeid=N` becomes domain `N`, so node `N`).
//!
//! Policy:
//!
//! * The MADT is required ([`Platform::from_tables`] fails without it).
//! * SRAT absent or rejected, or SLIT rejected: a single node 0 holding every CPU, with no
//!   memory ranges (node 0 is then "all memory" from the boot memory map), distance 10;
//!   [`Platform::numa_fallback`] gives the reason to print. The SRAT is rejected if it is
//!   malformed, names an APIC id the MADT lacks (unless the MADT list was truncated), puts
//!   one CPU in two domains, has overlapping memory ranges, more than [`MAX_NODES`]
//!   domains, or no enabled entry. The SLIT is rejected if it is malformed or lacks a row
//!   for a domain the SRAT uses.
//! * SLIT absent (with a valid SRAT): the nodes are kept, distances are 10 local and 20
//!   remote ([`DistanceSource::Default`]).
//! * MADT CPUs the SRAT does not mention are put on node 0 and counted
//!   ([`NumaInfo::cpus_without_affinity`]).

use core::fmt;

use super::madt::Madt;
use super::sdt::AcpiTables;
use super::slit::{LOCAL_DISTANCE, Slit};
use super::srat::Srat;
use super::{AcpiError, FixedVec, MAX_CPUS, MAX_MEMORY_RANGES, MAX_NODES, PhysMemory, Signature};

/// Distance between different nodes when there is no SLIT.
pub const DEFAULT_REMOTE_DISTANCE: u8 = 20;

/// A CPU with its NUMA node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformCpu {
    /// The local (x2)APIC id.
    pub apic_id: u32,
    /// The ACPI processor UID.
    pub acpi_uid: u32,
    /// Usable now (MADT enabled flag).
    pub enabled: bool,
    /// May be brought online later (MADT online-capable flag).
    pub online_capable: bool,
    /// Dense node index (`0..node_count()`).
    pub node: usize,
}

/// A memory range of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeMemory {
    /// Dense node index.
    pub node: usize,
    /// Physical base address.
    pub base: u64,
    /// Length in bytes (non-zero).
    pub length: u64,
    /// Hot-pluggable memory (may be absent now).
    pub hot_pluggable: bool,
    /// Non-volatile memory.
    pub non_volatile: bool,
}

impl NodeMemory {
    /// One past the last address of the range.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.length)
    }
}

/// Where the node distances came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistanceSource {
    /// One node only (no NUMA information, or it was rejected).
    SingleNode,
    /// The SLIT.
    Slit,
    /// No SLIT: 10 local, 20 remote.
    Default,
}

/// The NUMA part of a [`Platform`]: nodes, their memory, distances, and each MADT CPU's
/// node.
#[derive(Debug, Clone)]
pub struct NumaInfo {
    node_count: usize,
    domains: [u32; MAX_NODES],
    cpu_nodes: [u8; MAX_CPUS],
    memory: FixedVec<NodeMemory, MAX_MEMORY_RANGES>,
    distances: [[u8; MAX_NODES]; MAX_NODES],
    source: DistanceSource,
    symmetric: bool,
    cpus_without_affinity: usize,
    fallback: Option<AcpiError>,
}

impl NumaInfo {
    /// A single node 0 holding everything, because of `reason`.
    pub fn single_node(reason: AcpiError) -> Self {
        let mut distances = [[0; MAX_NODES]; MAX_NODES];
        distances[0][0] = LOCAL_DISTANCE;
        Self {
            node_count: 1,
            domains: [0; MAX_NODES],
            cpu_nodes: [0; MAX_CPUS],
            memory: FixedVec::new(NodeMemory::default()),
            distances,
            source: DistanceSource::SingleNode,
            symmetric: true,
            cpus_without_affinity: 0,
            fallback: Some(reason),
        }
    }

    /// Combines the MADT's CPUs with an SRAT and optional SLIT; any inconsistency is an
    /// error (see the [module documentation](self) for the rules).
    pub fn build(madt: &Madt, srat: &Srat, slit: Option<&Slit<'_>>) -> Result<Self, AcpiError> {
        // Distinct proximity domains, sorted, become the dense node indices.
        let mut domains = [0u32; MAX_NODES];
        let mut node_count = 0usize;
        let all_domains = srat
            .cpus()
            .iter()
            .map(|c| c.proximity_domain)
            .chain(srat.memory().iter().map(|m| m.proximity_domain));
        for domain in all_domains {
            let known = domains.get(..node_count).unwrap_or(&[]);
            if let Err(pos) = known.binary_search(&domain) {
                if node_count >= MAX_NODES {
                    return Err(AcpiError::TooManyNodes { max: MAX_NODES });
                }
                domains.copy_within(pos..node_count, pos + 1);
                domains[pos] = domain;
                node_count += 1;
            }
        }
        if node_count == 0 {
            return Err(AcpiError::SratEmpty);
        }
        let known = domains.get(..node_count).unwrap_or(&[]);
        let node_of = |domain: u32| known.binary_search(&domain).unwrap_or(0);

        // CPUs: every SRAT CPU must be a MADT CPU, in one domain only.
        let madt_cpus = madt.cpus();
        let mut assigned: [Option<u32>; MAX_CPUS] = [None; MAX_CPUS];
        for cpu in srat.cpus() {
            let Some(index) = madt_cpus.iter().position(|c| c.apic_id == cpu.apic_id) else {
                if madt.dropped_cpus() > 0 {
                    continue;
                }
                return Err(AcpiError::SratUnknownApicId {
                    apic_id: cpu.apic_id,
                    proximity_domain: cpu.proximity_domain,
                });
            };
            let Some(slot) = assigned.get_mut(index) else {
                continue;
            };
            match *slot {
                Some(first) if first != cpu.proximity_domain => {
                    return Err(AcpiError::SratConflictingCpu {
                        apic_id: cpu.apic_id,
                        first,
                        second: cpu.proximity_domain,
                    });
                }
                _ => *slot = Some(cpu.proximity_domain),
            }
        }
        let mut cpu_nodes = [0u8; MAX_CPUS];
        let mut cpus_without_affinity = 0;
        for ((node, domain), cpu) in cpu_nodes.iter_mut().zip(&assigned).zip(madt_cpus) {
            match domain {
                Some(d) => *node = node_of(*d) as u8,
                None if cpu.present() => cpus_without_affinity += 1,
                None => {}
            }
        }

        // Memory: no two enabled ranges may overlap; kept sorted by base.
        let mut memory = FixedVec::new(NodeMemory::default());
        for (i, a) in srat.memory().iter().enumerate() {
            for b in srat.memory().iter().skip(i + 1) {
                if a.base < b.end() && b.base < a.end() {
                    return Err(AcpiError::OverlappingMemory {
                        first_base: a.base,
                        first_length: a.length,
                        first_domain: a.proximity_domain,
                        second_base: b.base,
                        second_length: b.length,
                        second_domain: b.proximity_domain,
                    });
                }
            }
            // Cannot overflow: the SRAT holds at most MAX_MEMORY_RANGES ranges.
            memory.push(NodeMemory {
                node: node_of(a.proximity_domain),
                base: a.base,
                length: a.length,
                hot_pluggable: a.hot_pluggable,
                non_volatile: a.non_volatile,
            });
        }
        memory.as_mut_slice().sort_unstable_by_key(|m| m.base);

        // Distances between the used domains.
        let mut distances = [[0u8; MAX_NODES]; MAX_NODES];
        let source = if slit.is_some() {
            DistanceSource::Slit
        } else {
            DistanceSource::Default
        };
        for (i, &from) in known.iter().enumerate() {
            for (j, &to) in known.iter().enumerate() {
                let d = match slit {
                    Some(slit) => {
                        let missing = |domain: u32| AcpiError::SlitMissingDomain {
                            proximity_domain: domain,
                            localities: slit.localities(),
                        };
                        let f = usize::try_from(from).map_err(|_| missing(from))?;
                        let t = usize::try_from(to).map_err(|_| missing(to))?;
                        if f >= slit.localities() {
                            return Err(missing(from));
                        }
                        slit.distance(f, t).ok_or(missing(to))?
                    }
                    None if i == j => LOCAL_DISTANCE,
                    None => DEFAULT_REMOTE_DISTANCE,
                };
                distances[i][j] = d;
            }
        }
        let symmetric = (0..node_count).all(|i| (0..i).all(|j| distances[i][j] == distances[j][i]));

        Ok(Self {
            node_count,
            domains,
            cpu_nodes,
            memory,
            distances,
            source,
            symmetric,
            cpus_without_affinity,
            fallback: None,
        })
    }

    /// The number of nodes (at least 1).
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    /// The ACPI proximity domain of node `node`.
    pub fn proximity_domain(&self, node: usize) -> Option<u32> {
        self.domains.get(..self.node_count)?.get(node).copied()
    }

    /// The node of a proximity domain.
    pub fn node_of_domain(&self, domain: u32) -> Option<usize> {
        self.domains
            .get(..self.node_count)?
            .binary_search(&domain)
            .ok()
    }

    /// The node of the `index`-th MADT CPU ([`Madt::cpus`] order).
    pub fn cpu_node(&self, index: usize) -> usize {
        self.cpu_nodes.get(index).map_or(0, |&n| usize::from(n))
    }

    /// Every enabled SRAT memory range, sorted by base address (empty for a single-node
    /// fallback: node 0 then owns all memory).
    pub fn memory_ranges(&self) -> &[NodeMemory] {
        self.memory.as_slice()
    }

    /// The distance from node `from` to node `to` (10 = local), or `None` if either node
    /// does not exist.
    pub fn distance(&self, from: usize, to: usize) -> Option<u8> {
        if from >= self.node_count || to >= self.node_count {
            return None;
        }
        self.distances.get(from)?.get(to).copied()
    }

    /// Where the distances came from.
    pub fn distance_source(&self) -> DistanceSource {
        self.source
    }

    /// Whether the distances between the nodes in use are symmetric (asymmetry is
    /// allowed, only reported).
    pub fn distances_symmetric(&self) -> bool {
        self.symmetric
    }

    /// Present MADT CPUs the SRAT did not assign (placed on node 0).
    pub fn cpus_without_affinity(&self) -> usize {
        self.cpus_without_affinity
    }

    /// Why NUMA information is not used (single-node fallback), if so.
    pub fn fallback(&self) -> Option<&AcpiError> {
        self.fallback.as_ref()
    }
}

/// The machine as the kernel needs it: the MADT (interrupt controllers, CPUs) and the NUMA
/// topology.
#[derive(Debug, Clone)]
pub struct Platform {
    madt: Madt,
    numa: NumaInfo,
}

impl Platform {
    /// Reads the MADT (required), SRAT and SLIT from `tables` and combines them.
    ///
    /// Fails only if the MADT is missing or invalid; SRAT/SLIT problems lead to the
    /// single-node fallback ([`numa_fallback`](Self::numa_fallback)).
    pub fn from_tables<M: PhysMemory + ?Sized>(
        tables: &AcpiTables<'_, M>,
    ) -> Result<Self, AcpiError> {
        let madt = tables.madt()?;
        let srat = tables.srat();
        let slit = tables.slit();
        Ok(Self::new(madt, srat, slit))
    }

    /// Reads everything starting from the RSDP at `rsdp_phys`.
    pub fn from_rsdp<M: PhysMemory + ?Sized>(mem: &M, rsdp_phys: u64) -> Result<Self, AcpiError> {
        Self::from_tables(&AcpiTables::new(mem, rsdp_phys)?)
    }

    /// Combines a MADT with the results of looking up and parsing the SRAT and SLIT
    /// (`Ok(None)` = table absent).
    pub fn new(
        madt: Madt,
        srat: Result<Option<Srat>, AcpiError>,
        slit: Result<Option<Slit<'_>>, AcpiError>,
    ) -> Self {
        let numa = match (srat, slit) {
            (Err(e), _) => NumaInfo::single_node(e),
            (Ok(None), _) => NumaInfo::single_node(AcpiError::TableMissing {
                sig: Signature::SRAT,
            }),
            (Ok(Some(_)), Err(e)) => NumaInfo::single_node(e),
            (Ok(Some(srat)), Ok(slit)) => {
                NumaInfo::build(&madt, &srat, slit.as_ref()).unwrap_or_else(NumaInfo::single_node)
            }
        };
        Self { madt, numa }
    }

    /// The MADT (local APIC address, I/O APICs, overrides, NMIs, raw CPU entries).
    pub fn madt(&self) -> &Madt {
        &self.madt
    }

    /// The NUMA topology.
    pub fn numa(&self) -> &NumaInfo {
        &self.numa
    }

    /// Every CPU the MADT lists as present (enabled or online capable), with its node, in
    /// MADT order (the boot CPU is usually first).
    pub fn cpus(&self) -> impl Iterator<Item = PlatformCpu> + '_ {
        self.madt
            .cpus()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.present())
            .map(|(i, c)| PlatformCpu {
                apic_id: c.apic_id,
                acpi_uid: c.acpi_uid,
                enabled: c.enabled,
                online_capable: c.online_capable,
                node: self.numa.cpu_node(i),
            })
    }

    /// The CPUs usable now, with their node.
    pub fn enabled_cpus(&self) -> impl Iterator<Item = PlatformCpu> + '_ {
        self.cpus().filter(|c| c.enabled)
    }

    /// The number of CPUs usable now.
    pub fn enabled_cpu_count(&self) -> usize {
        self.enabled_cpus().count()
    }

    /// The CPU with local APIC id `apic_id`, if present.
    pub fn cpu_by_apic_id(&self, apic_id: u32) -> Option<PlatformCpu> {
        self.cpus().find(|c| c.apic_id == apic_id)
    }

    /// The number of NUMA nodes (at least 1).
    pub fn node_count(&self) -> usize {
        self.numa.node_count()
    }

    /// The number of enabled CPUs on `node`.
    pub fn cpus_on_node(&self, node: usize) -> usize {
        self.enabled_cpus().filter(|c| c.node == node).count()
    }

    /// All SRAT memory ranges, sorted by base (empty in the single-node fallback).
    pub fn memory_ranges(&self) -> &[NodeMemory] {
        self.numa.memory_ranges()
    }

    /// The memory ranges of `node`.
    pub fn node_memory(&self, node: usize) -> impl Iterator<Item = &NodeMemory> + '_ {
        self.memory_ranges().iter().filter(move |m| m.node == node)
    }

    /// Total bytes of the non-hot-pluggable memory ranges of `node`.
    pub fn node_memory_bytes(&self, node: usize) -> u64 {
        self.node_memory(node)
            .filter(|m| !m.hot_pluggable)
            .fold(0u64, |acc, m| acc.saturating_add(m.length))
    }

    /// The node owning physical address `phys` per the SRAT (`None` if no range covers
    /// it; in the single-node fallback always `Some(0)`).
    pub fn node_of_address(&self, phys: u64) -> Option<usize> {
        if self.numa.fallback().is_some() {
            return Some(0);
        }
        self.memory_ranges()
            .iter()
            .find(|m| m.base <= phys && phys < m.end())
            .map(|m| m.node)
    }

    /// The distance between two nodes (10 = local), `None` for a node that does not exist.
    pub fn distance(&self, from: usize, to: usize) -> Option<u8> {
        self.numa.distance(from, to)
    }

    /// Why the topology fell back to a single node (SRAT absent, SRAT or SLIT rejected);
    /// `None` when the SRAT was used.
    pub fn numa_fallback(&self) -> Option<&AcpiError> {
        self.numa.fallback()
    }
}

/// `"4 CPUs, 2 NUMA nodes"`.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus = self.enabled_cpu_count();
        let nodes = self.node_count();
        write!(
            f,
            "{cpus} CPU{}, {nodes} NUMA node{}",
            if cpus == 1 { "" } else { "s" },
            if nodes == 1 { "" } else { "s" }
        )
    }
}
