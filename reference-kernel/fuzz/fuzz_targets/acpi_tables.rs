//! ACPI tables and the MP configuration table from bytes. The first input byte picks the
//! parser (MADT, SRAT, SLIT and MCFG, MP table, or the first three ACPI ones combined into a
//! `Platform`); the rest is the table (checksum and length are the input's business: the fuzzer
//! learns them from the seeds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_kernel::acpi::{Madt, Mcfg, Platform, Sdt, Slit, Srat, mptable};
use reference_kernel_fuzz::check_platform;

const PHYS: u64 = 0x7fe_0000;

fuzz_target!(|data: &[u8]| {
    let Some((&which, table)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(sdt) = Sdt::from_bytes(PHYS, table, None) {
                let madt = Madt::parse(&sdt);
                let srat = Srat::parse(&sdt).map(Some);
                let slit = Slit::parse(&sdt).map(Some);
                if let Ok(mcfg) = Mcfg::parse(&sdt) {
                    for r in mcfg.regions() {
                        let (start, end) = r.phys_range();
                        assert!(start < end && r.first_bus <= r.last_bus);
                        assert!(mcfg.region_for(r.segment, r.last_bus).is_some());
                    }
                }
                if let Ok(madt) = madt {
                    check_platform(&Platform::new(madt, srat, slit));
                }
            }
        }
        1 => {
            // Three tables back to back, each found by its own length field.
            let mut rest = table;
            let mut next = || {
                let sdt = Sdt::from_bytes(PHYS, rest, None).ok()?;
                rest = &rest[sdt.bytes().len()..];
                Some(sdt)
            };
            let (Some(a), Some(b), Some(c)) = (next(), next(), next()) else {
                return;
            };
            if let Ok(madt) = Madt::parse(&a) {
                check_platform(&Platform::new(
                    madt,
                    Srat::parse(&b).map(Some),
                    Slit::parse(&c).map(Some),
                ));
            }
        }
        _ => {
            if let Ok(p) = mptable::platform_from_config(PHYS, table) {
                check_platform(&p);
            }
        }
    }
});
