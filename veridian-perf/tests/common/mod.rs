//! Fake back-ends for the embedder traits: a CPUID table and an MSR map.
#![allow(dead_code, reason = "each test file uses part of the fakes")]

use std::cell::RefCell;
use std::collections::BTreeMap;

use veridian_perf::env::{Cpuid, CpuidResult, MsrAccess, MsrError};

/// Answers CPUID from a table; unknown leaves read as zeros (as leaves above the maximum do on
/// many CPUs).
#[derive(Clone, Debug, Default)]
pub struct FakeCpuid {
    pub leaves: BTreeMap<u32, CpuidResult>,
}

pub fn regs(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidResult {
    CpuidResult { eax, ebx, ecx, edx }
}

fn vendor_regs(max_leaf: u32, vendor: &[u8; 12]) -> CpuidResult {
    let w = |i: usize| u32::from_le_bytes([vendor[i], vendor[i + 1], vendor[i + 2], vendor[i + 3]]);
    regs(max_leaf, w(0), w(8), w(4))
}

impl FakeCpuid {
    pub fn set(mut self, leaf: u32, r: CpuidResult) -> Self {
        self.leaves.insert(leaf, r);
        self
    }

    /// An Intel CPU with leaf 0xA = (eax, ebx, ecx, edx); family 6.
    pub fn intel(eax: u32, ebx: u32, ecx: u32, edx: u32) -> Self {
        Self::default()
            .set(0, vendor_regs(0x16, b"GenuineIntel"))
            .set(1, regs(0x0006_06A6, 0, 0, 1 << 4))
            .set(0xA, regs(eax, ebx, ecx, edx))
            .set(0x8000_0000, regs(0x8000_0008, 0, 0, 0))
            .set(0x8000_0001, regs(0, 0, 0, 1 << 27))
            .set(0x8000_0007, regs(0, 0, 0, 1 << 8))
    }

    /// A well-formed Intel PMU of `version` with `gp` 48-bit counters and (v2+) 3 fixed
    /// 48-bit counters; every architectural event available (EBX = 0, length 7).
    pub fn intel_version(version: u32, gp: u32) -> Self {
        let eax = version | gp << 8 | 48 << 16 | 7 << 24;
        let edx = if version >= 2 { 3 | 48 << 5 } else { 0 };
        Self::intel(eax, 0, 0, edx)
    }

    /// An AMD CPU of `family` (extended family encoding for >= 0xF).
    pub fn amd(family: u32, core_ext: bool, v2: Option<u32>) -> Self {
        let fam_eax = if family >= 0xF {
            0xF << 8 | (family - 0xF) << 20
        } else {
            family << 8
        };
        let max_ext = if v2.is_some() {
            0x8000_0022
        } else {
            0x8000_001F
        };
        let mut c = Self::default()
            .set(0, vendor_regs(0x10, b"AuthenticAMD"))
            .set(1, regs(fam_eax, 0, 0, 1 << 4))
            .set(0x8000_0000, regs(max_ext, 0, 0, 0))
            .set(
                0x8000_0001,
                regs(0, 0, if core_ext { 1 << 23 } else { 0 }, 1 << 27),
            )
            .set(0x8000_0007, regs(0, 0, 0, 1 << 8));
        if let Some(n) = v2 {
            c = c.set(0x8000_0022, regs(1, n, 0, 0));
        }
        c
    }
}

impl Cpuid for FakeCpuid {
    fn cpuid(&self, leaf: u32, _subleaf: u32) -> CpuidResult {
        self.leaves.get(&leaf).copied().unwrap_or_default()
    }
}

/// How `RDPMC` indices map to counter MSRs in the fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmcMap {
    Intel,
    AmdLegacy,
    AmdCore,
}

/// MSRs as a map: only the MSRs created exist (others fail like a fault-catching back-end);
/// `ignore_writes` models QEMU TCG (writes vanish, reads return 0).
#[derive(Debug)]
pub struct FakeMsr {
    pub regs: RefCell<BTreeMap<u32, u64>>,
    pub pmc: PmcMap,
    pub ignore_writes: bool,
    pub log: RefCell<Vec<(u32, u64)>>,
}

impl FakeMsr {
    pub fn new(pmc: PmcMap, msrs: impl IntoIterator<Item = u32>) -> Self {
        Self {
            regs: RefCell::new(msrs.into_iter().map(|m| (m, 0)).collect()),
            pmc,
            ignore_writes: false,
            log: RefCell::new(Vec::new()),
        }
    }

    /// The MSRs of an Intel PMU with `gp` general and `fixed` fixed counters.
    pub fn intel(gp: u32, fixed: u32) -> Self {
        let mut m = Vec::new();
        for i in 0..gp {
            m.push(0x186 + i);
            m.push(0xC1 + i);
        }
        for i in 0..fixed {
            m.push(0x309 + i);
        }
        m.extend([0x38D, 0x38E, 0x38F, 0x390]);
        Self::new(PmcMap::Intel, m)
    }

    pub fn amd_legacy() -> Self {
        Self::new(PmcMap::AmdLegacy, (0..8).map(|i| 0xC001_0000 + i))
    }

    pub fn amd_core(n: u32, global: bool) -> Self {
        let mut m: Vec<u32> = (0..2 * n).map(|i| 0xC001_0200 + i).collect();
        if global {
            m.extend([0xC000_0300, 0xC000_0301, 0xC000_0302]);
        }
        Self::new(PmcMap::AmdCore, m)
    }

    pub fn get(&self, msr: u32) -> u64 {
        self.regs
            .borrow()
            .get(&msr)
            .copied()
            .unwrap_or_else(|| panic!("MSR {msr:#x} does not exist"))
    }

    pub fn put(&self, msr: u32, v: u64) {
        assert!(
            self.regs.borrow_mut().insert(msr, v).is_some(),
            "MSR {msr:#x} does not exist"
        );
    }

    fn pmc_msr(&self, index: u32) -> u32 {
        match self.pmc {
            PmcMap::Intel if index & (1 << 30) != 0 => 0x309 + (index & 0xFFFF),
            PmcMap::Intel => 0xC1 + index,
            PmcMap::AmdLegacy => 0xC001_0004 + index,
            PmcMap::AmdCore => 0xC001_0201 + 2 * index,
        }
    }
}

impl MsrAccess for FakeMsr {
    unsafe fn read_msr(&self, msr: u32) -> Result<u64, MsrError> {
        self.regs
            .borrow()
            .get(&msr)
            .copied()
            .ok_or(MsrError { register: msr })
    }

    unsafe fn write_msr(&self, msr: u32, value: u64) -> Result<(), MsrError> {
        let mut regs = self.regs.borrow_mut();
        let slot = regs.get_mut(&msr).ok_or(MsrError { register: msr })?;
        if !self.ignore_writes {
            *slot = value;
        }
        self.log.borrow_mut().push((msr, value));
        Ok(())
    }

    unsafe fn read_pmc(&self, index: u32) -> Result<u64, MsrError> {
        let msr = self.pmc_msr(index);
        self.regs
            .borrow()
            .get(&msr)
            .copied()
            .ok_or(MsrError { register: index })
    }
}
