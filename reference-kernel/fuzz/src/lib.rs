//! Helpers shared by the fuzz targets: a fake physical memory built from the fuzzer's bytes and
//! the checks every parsed [`BootInfo`] must pass.

use reference_kernel::acpi::{MAX_NODES, Platform};
use reference_kernel::physmem::{PhysRange, plan_frames};
use reference_kernel::{
    BootInfo, MAX_CMDLINE, MAX_MEMORY_REGIONS, MAX_MODULES, MemoryKind, PhysMemory,
};

/// Physical memory made of a few non-overlapping byte ranges; everything else is unreadable.
#[derive(Default)]
pub struct FakeMemory<'a> {
    chunks: Vec<(u64, &'a [u8])>,
}

impl<'a> FakeMemory<'a> {
    /// `bytes` readable at physical address `base`.
    pub fn with(mut self, base: u64, bytes: &'a [u8]) -> Self {
        self.chunks.push((base, bytes));
        self
    }
}

impl PhysMemory for FakeMemory<'_> {
    fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
        self.chunks.iter().find_map(|&(base, bytes)| {
            let off = usize::try_from(phys.checked_sub(base)?).ok()?;
            bytes.get(off..off.checked_add(len)?)
        })
    }
}

/// Splits `data` into `(header, rest)` where `header` is the first `N` bytes (zero-padded).
pub fn take<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = data.len().min(N);
    head[..n].copy_from_slice(&data[..n]);
    (head, &data[n..])
}

/// What every successfully parsed boot information must satisfy, whatever the input: bounded
/// tables, regions that do not wrap, a command line within its limit, and a frame plan whose
/// ranges are page-aligned, sorted, disjoint and inside usable RAM.
pub fn check_boot_info(info: &BootInfo) {
    let map = info.memory_map();
    assert!(map.len() <= MAX_MEMORY_REGIONS);
    for r in map {
        assert!(r.start.checked_add(r.len).is_some(), "region wraps: {r:?}");
    }
    assert!(info.cmdline().len() <= MAX_CMDLINE);
    assert!(info.modules().len() <= MAX_MODULES);
    let _ = info.usable_bytes();
    let _ = info.bootloader_name();
    let _ = info.rsdp();
    let reserved: Vec<PhysRange> = info
        .boot_data()
        .iter()
        .map(|r| PhysRange::from_len(r.start, r.len))
        .collect();
    let plan = plan_frames(map, &reserved, u64::MAX);
    let mut last_end = 0;
    for r in plan.ranges() {
        assert!(
            !r.is_empty() && r.start % 4096 == 0 && r.end % 4096 == 0,
            "{r:?}"
        );
        assert!(
            r.start >= last_end,
            "ranges not sorted/disjoint: {:?}",
            plan.ranges()
        );
        last_end = r.end;
        assert!(
            map.iter()
                .any(|m| m.kind == MemoryKind::Usable && m.start <= r.start && r.end <= m.end()),
            "{r:?} outside usable RAM"
        );
        assert!(
            reserved
                .iter()
                .all(|b| b.end <= r.start || r.end <= b.start),
            "{r:?} overlaps boot data"
        );
    }
}

/// What every [`Platform`] built from any tables must satisfy: 1..=`MAX_NODES` nodes, every CPU
/// and memory range on an existing node, a distance for every pair of nodes, memory ranges
/// sorted and non-empty.
pub fn check_platform(p: &Platform) {
    let nodes = p.node_count();
    assert!((1..=MAX_NODES).contains(&nodes), "{nodes} nodes");
    for cpu in p.cpus() {
        assert!(cpu.node < nodes, "{cpu:?} on node {} of {nodes}", cpu.node);
    }
    let numa = p.numa();
    let mut last = 0;
    for m in numa.memory_ranges() {
        assert!(m.node < nodes && m.length > 0 && m.base >= last, "{m:?}");
        last = m.base;
    }
    for from in 0..nodes {
        for to in 0..nodes {
            assert!(
                numa.distance(from, to).is_some(),
                "no distance {from}->{to}"
            );
        }
    }
    let _ = (
        p.enabled_cpu_count(),
        p.madt().io_apics(),
        p.madt().isa_irq_to_gsi(0),
    );
}
