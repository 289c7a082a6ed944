//! PMU detection and programming against fake CPUID/MSR back-ends: Intel versions 1–5, AMD
//! legacy / core extension / PerfMonV2, no PMU, and malformed CPUID values.

mod common;

use common::{FakeCpuid, FakeMsr, PmcMap};
use veridian_perf::arch::NativeCpuid;
use veridian_perf::pmu::{
    Counter, Event, Layout, MAX_GROUP, Malformed, NoPmuReason, Pmu, PmuError, counter_delta, detect,
};

const ALL: [Event; 4] = Event::ALL;
const EN_USR_OS: u64 = 1 << 22 | 1 << 16 | 1 << 17;

fn intel_pmu(version: u32, gp: u32) -> Pmu<FakeMsr> {
    let cpuid = FakeCpuid::intel_version(version, gp);
    let fixed = if version >= 2 { 3 } else { 0 };
    Pmu::new(FakeMsr::intel(gp, fixed), &cpuid).expect("well-formed Intel PMU")
}

#[test]
fn intel_versions_1_to_5_detect() {
    for version in 1..=5 {
        let info = detect(&FakeCpuid::intel_version(version, 4)).unwrap();
        assert_eq!(
            info.layout,
            Layout::IntelArch {
                version: version as u8
            }
        );
        assert_eq!(info.general_counters, 4);
        assert_eq!(info.general_width, 48);
        if version == 1 {
            assert_eq!(
                (info.fixed_mask, info.fixed_width),
                (0, 0),
                "v1 has no fixed counters"
            );
            assert!(!info.has_global_ctrl());
        } else {
            assert_eq!((info.fixed_mask, info.fixed_width), (0b111, 48));
            assert!(info.has_global_ctrl());
        }
        for e in ALL {
            assert!(info.supports(e), "v{version} {e}");
        }
    }
}

#[test]
fn intel_v1_programs_general_counters_and_reads_sequentially() {
    let mut pmu = intel_pmu(1, 4);
    let g = pmu.open_group(&ALL).unwrap();
    let counters: Vec<_> = g.slots().map(|(_, c)| c).collect();
    assert_eq!(counters, [0, 1, 2, 3].map(Counter::General));
    pmu.start(&g).unwrap();
    let m = pmu.msr();
    assert_eq!(m.get(0x186), 0x3C | EN_USR_OS);
    assert_eq!(m.get(0x187), 0xC0 | EN_USR_OS);
    assert_eq!(m.get(0x188), 0x412E | EN_USR_OS);
    assert_eq!(m.get(0x189), 0xC5 | EN_USR_OS);
    assert!(
        m.log.borrow().iter().all(|&(msr, _)| msr != 0x38F),
        "v1 has no GLOBAL_CTRL"
    );
    for (i, v) in [10u64, 20, 30, 40].into_iter().enumerate() {
        m.put(0xC1 + i as u32, v);
    }
    let r = pmu.read(&g).unwrap();
    assert!(!r.simultaneous());
    assert_eq!(
        r.iter().map(|(_, v)| v).collect::<Vec<_>>(),
        [10, 20, 30, 40]
    );
    assert_eq!(
        pmu.read_rdpmc(&g)
            .unwrap()
            .iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>(),
        [10, 20, 30, 40]
    );
    pmu.stop(&g).unwrap();
    for i in 0..4 {
        assert_eq!(pmu.msr().get(0x186 + i) & (1 << 22), 0, "EN cleared");
    }
    assert_eq!(
        pmu.read(&g).unwrap().get(Event::CacheMisses),
        Some(30),
        "counts survive stop"
    );
}

#[test]
fn intel_v2_to_v5_use_fixed_counters_and_global_ctrl() {
    for version in 2..=5 {
        let mut pmu = intel_pmu(version, 4);
        let g = pmu.open_group(&ALL).unwrap();
        let counters: Vec<_> = g.slots().map(|(_, c)| c).collect();
        assert_eq!(
            counters,
            [
                Counter::Fixed(1),
                Counter::Fixed(0),
                Counter::General(0),
                Counter::General(1)
            ],
            "v{version}"
        );
        pmu.start(&g).unwrap();
        let m = pmu.msr();
        assert_eq!(m.get(0x38D), 0x33, "fixed 0 and 1: OS|USR");
        assert_eq!(
            m.get(0x38F),
            0b11 | 0b11 << 32,
            "GLOBAL_CTRL: PMC0,1 and FIXED0,1"
        );
        assert_eq!(m.get(0x186), 0x412E | EN_USR_OS);
        assert_eq!(m.get(0x187), 0xC5 | EN_USR_OS);
        m.put(0x309, 1000); // instructions
        m.put(0x30A, 2000); // cycles
        m.put(0xC1, 3);
        m.put(0xC2, 4);
        let r = pmu.read(&g).unwrap();
        assert!(r.simultaneous());
        assert_eq!(
            (
                r.get(Event::Cycles),
                r.get(Event::Instructions),
                r.get(Event::CacheMisses),
                r.get(Event::BranchMisses)
            ),
            (Some(2000), Some(1000), Some(3), Some(4))
        );
        assert_eq!(pmu.read_rdpmc(&g).unwrap(), r);
        // The read froze the group (GLOBAL_CTRL cleared) and restored it.
        let log = pmu.msr().log.borrow().clone();
        let globals: Vec<u64> = log
            .iter()
            .filter(|&&(m, _)| m == 0x38F)
            .map(|&(_, v)| v)
            .collect();
        assert_eq!(globals[globals.len() - 2..], [0, 0b11 | 0b11 << 32]);
        assert_eq!(pmu.msr().get(0x38F), 0b11 | 0b11 << 32);
        pmu.close_group(g).unwrap();
        assert_eq!(pmu.msr().get(0x38F), 0);
        assert_eq!(pmu.msr().get(0x38D), 0);
        // Counters are free again.
        pmu.open_group(&ALL).unwrap();
    }
}

#[test]
fn intel_v5_fixed_counter_bitmap() {
    // EDX reports no fixed counters by count, ECX's bitmap says 0 and 1 exist.
    let cpuid = FakeCpuid::intel(5 | 2 << 8 | 48 << 16 | 7 << 24, 0, 0b11, 48 << 5);
    let info = detect(&cpuid).unwrap();
    assert_eq!(info.fixed_mask, 0b11);
    let mut pmu = Pmu::new(FakeMsr::intel(2, 2), &cpuid).unwrap();
    let g = pmu
        .open_group(&[Event::Instructions, Event::Cycles])
        .unwrap();
    assert_eq!(
        g.slots().map(|(_, c)| c).collect::<Vec<_>>(),
        [Counter::Fixed(0), Counter::Fixed(1)]
    );
    // Before v5 the same ECX is ignored.
    let v4 = FakeCpuid::intel(4 | 2 << 8 | 48 << 16 | 7 << 24, 0, 0b11, 48 << 5);
    assert_eq!(detect(&v4).unwrap().fixed_mask, 0);
}

#[test]
fn intel_ebx_masks_events() {
    // EBX bit 4 (LLC misses) set: not available; fixed counters still count cycles even with
    // EBX bit 0 set.
    let cpuid = FakeCpuid::intel(2 | 4 << 8 | 48 << 16 | 7 << 24, 1 << 4 | 1, 0, 3 | 48 << 5);
    let info = detect(&cpuid).unwrap();
    assert!(!info.supports(Event::CacheMisses));
    assert!(info.supports(Event::Cycles), "fixed counter 1");
    let mut pmu = Pmu::new(FakeMsr::intel(4, 3), &cpuid).unwrap();
    assert_eq!(
        pmu.open_group(&[Event::CacheMisses]),
        Err(PmuError::EventUnavailable(Event::CacheMisses))
    );
    // A second cycles event cannot fall back to a general counter (EBX masked it).
    pmu.open_group(&[Event::Cycles]).unwrap();
    assert_eq!(
        pmu.open_group(&[Event::Cycles]),
        Err(PmuError::NoFreeCounter(Event::Cycles))
    );
    // An EBX vector of length 2 leaves only cycles and instructions.
    let short = FakeCpuid::intel(1 | 4 << 8 | 48 << 16 | 2 << 24, 0, 0, 0);
    let info = detect(&short).unwrap();
    assert!(info.supports(Event::Instructions) && !info.supports(Event::BranchMisses));
}

#[test]
fn group_limits() {
    let mut pmu = intel_pmu(1, 2);
    assert_eq!(pmu.open_group(&[]), Err(PmuError::BadGroupSize(0)));
    assert_eq!(
        pmu.open_group(&[Event::Cycles; MAX_GROUP + 1]),
        Err(PmuError::BadGroupSize(MAX_GROUP + 1))
    );
    assert_eq!(
        pmu.open_group(&[Event::Cycles, Event::Instructions, Event::BranchMisses]),
        Err(PmuError::NoFreeCounter(Event::BranchMisses))
    );
    // A failed open reserves nothing.
    let g = pmu
        .open_group(&[Event::Cycles, Event::Instructions])
        .unwrap();
    assert_eq!(
        pmu.open_group(&[Event::Cycles]),
        Err(PmuError::NoFreeCounter(Event::Cycles))
    );
    pmu.close_group(g).unwrap();
    assert_eq!(pmu.start(&g), Err(PmuError::ForeignGroup), "closed group");
    assert_eq!(pmu.read(&g), Err(PmuError::ForeignGroup));
}

#[test]
fn readings_are_masked_to_the_counter_width() {
    let mut pmu = intel_pmu(2, 2);
    let g = pmu.open_group(&[Event::BranchMisses]).unwrap();
    pmu.msr().put(0xC1, u64::MAX);
    assert_eq!(
        pmu.read(&g).unwrap().get(Event::BranchMisses),
        Some((1 << 48) - 1)
    );
    assert_eq!(counter_delta((1 << 48) - 10, 5, 48), 15, "wrapped once");
    assert_eq!(counter_delta(5, 15, 64), 10);
}

#[test]
fn amd_legacy_layout_and_family_encodings() {
    for (family, cache, branch) in [(0x10, 0x077E, 0xC5), (0x19, 0x0964, 0xC3)] {
        let cpuid = FakeCpuid::amd(family, false, None);
        let info = detect(&cpuid).unwrap();
        assert_eq!(
            (info.layout, info.general_counters, info.general_width),
            (Layout::AmdLegacy, 4, 48)
        );
        assert_eq!(info.family, family);
        let mut pmu = Pmu::new(FakeMsr::amd_legacy(), &cpuid).unwrap();
        let g = pmu.open_group(&ALL).unwrap();
        pmu.start(&g).unwrap();
        let m = pmu.msr();
        assert_eq!(m.get(0xC001_0000), 0x76 | EN_USR_OS);
        assert_eq!(m.get(0xC001_0001), 0xC0 | EN_USR_OS);
        assert_eq!(m.get(0xC001_0002), cache | EN_USR_OS);
        assert_eq!(m.get(0xC001_0003), branch | EN_USR_OS);
        m.put(0xC001_0006, 77);
        let r = pmu.read(&g).unwrap();
        assert!(!r.simultaneous());
        assert_eq!(r.get(Event::CacheMisses), Some(77));
        assert_eq!(pmu.read_rdpmc(&g).unwrap(), r);
        pmu.stop(&g).unwrap();
        assert_eq!(pmu.msr().get(0xC001_0000) & (1 << 22), 0);
    }
}

#[test]
fn amd_core_extension_interleaves_ctl_and_ctr() {
    let cpuid = FakeCpuid::amd(0x17, true, None);
    let info = detect(&cpuid).unwrap();
    assert_eq!((info.layout, info.general_counters), (Layout::AmdCore, 6));
    let mut pmu = Pmu::new(FakeMsr::amd_core(6, false), &cpuid).unwrap();
    let g = pmu
        .open_group(&[Event::Instructions, Event::Cycles])
        .unwrap();
    pmu.start(&g).unwrap();
    assert_eq!(pmu.msr().get(0xC001_0200), 0xC0 | EN_USR_OS);
    assert_eq!(pmu.msr().get(0xC001_0202), 0x76 | EN_USR_OS);
    pmu.msr().put(0xC001_0203, 1 << 50 | 9);
    let r = pmu.read_rdpmc(&g).unwrap();
    assert_eq!(r.get(Event::Cycles), Some(9), "masked to 48 bits");
    assert!(!r.simultaneous());
}

#[test]
fn amd_perfmon_v2_global_control() {
    let cpuid = FakeCpuid::amd(0x19, true, Some(5));
    let info = detect(&cpuid).unwrap();
    assert_eq!(
        (info.layout, info.general_counters),
        (Layout::AmdPerfMonV2, 5)
    );
    let mut pmu = Pmu::new(FakeMsr::amd_core(5, true), &cpuid).unwrap();
    let g = pmu.open_group(&ALL).unwrap();
    pmu.start(&g).unwrap();
    assert_eq!(pmu.msr().get(0xC000_0301), 0b1111);
    pmu.msr().put(0xC001_0201, 123);
    let r = pmu.read(&g).unwrap();
    assert!(r.simultaneous());
    assert_eq!(r.get(Event::Cycles), Some(123));
    assert_eq!(
        pmu.msr().get(0xC000_0301),
        0b1111,
        "restored after the frozen read"
    );
    // Only five counters.
    assert_eq!(
        pmu.open_group(&[Event::Cycles, Event::Cycles]),
        Err(PmuError::NoFreeCounter(Event::Cycles))
    );
    pmu.close_group(g).unwrap();
    assert_eq!(pmu.msr().get(0xC000_0301), 0);
}

#[test]
fn no_pmu_is_detected() {
    // Version 0: QEMU TCG, VMs without a virtual PMU.
    let v0 = FakeCpuid::intel(0, 0, 0, 0);
    assert_eq!(detect(&v0), Err(PmuError::NoPmu(NoPmuReason::VersionZero)));
    assert_eq!(
        Pmu::new(FakeMsr::intel(0, 0), &v0).map(|_| ()),
        Err(PmuError::NoPmu(NoPmuReason::VersionZero))
    );
    // Max basic leaf below 0xA.
    let old = FakeCpuid::intel_version(2, 4).set(0, FakeCpuid::intel(0, 0, 0, 0).leaves[&0]);
    let mut old = old;
    old.leaves.get_mut(&0).unwrap().eax = 7;
    assert_eq!(
        detect(&old),
        Err(PmuError::NoPmu(NoPmuReason::NoPerfmonLeaf))
    );
    // Unknown vendor.
    let other = FakeCpuid::default().set(0, common::regs(0xD, 0x1234, 0x5678, 0x9ABC));
    assert_eq!(
        detect(&other),
        Err(PmuError::NoPmu(NoPmuReason::UnknownVendor))
    );
    // CPUID claims counters but the MSRs ignore writes (TCG's AMD legacy case).
    let mut tcg = FakeMsr::amd_legacy();
    tcg.ignore_writes = true;
    assert_eq!(
        Pmu::new(tcg, &FakeCpuid::amd(0xF, false, None)).map(|_| ()),
        Err(PmuError::NoPmu(NoPmuReason::ProbeFailed {
            msr: 0xC001_0004
        }))
    );
    // ... or fault (a fix-up back-end turns that into Err).
    assert_eq!(
        Pmu::new(
            FakeMsr::new(PmcMap::Intel, []),
            &FakeCpuid::intel_version(3, 4)
        )
        .map(|_| ()),
        Err(PmuError::NoPmu(NoPmuReason::ProbeFailed { msr: 0xC1 }))
    );
    // The error says what happened.
    let text = PmuError::NoPmu(NoPmuReason::VersionZero).to_string();
    assert!(text.contains("no PMU"), "{text}");
}

#[test]
fn probe_restores_the_counter() {
    let cpuid = FakeCpuid::intel_version(2, 4);
    let msr = FakeMsr::intel(4, 3);
    msr.put(0xC1, 4242);
    let pmu = Pmu::new(msr, &cpuid).unwrap();
    assert_eq!(pmu.msr().get(0xC1), 4242);
}

#[test]
fn malformed_cpuid_is_rejected() {
    let m = |eax: u32, ecx: u32, edx: u32| detect(&FakeCpuid::intel(eax, 0, ecx, edx));
    let bad = |x| Err(PmuError::Malformed(x));
    assert_eq!(
        m(2 | 4 << 8 | 7 << 24, 0, 3 | 48 << 5),
        bad(Malformed::GeneralWidth(0)),
        "zero width"
    );
    assert_eq!(
        m(2 | 4 << 8 | 16 << 16, 0, 3 | 48 << 5),
        bad(Malformed::GeneralWidth(16))
    );
    assert_eq!(
        m(2 | 4 << 8 | 200 << 16, 0, 3 | 48 << 5),
        bad(Malformed::GeneralWidth(200)),
        "absurd width"
    );
    assert_eq!(
        m(2 | 48 << 16, 0, 3 | 48 << 5),
        bad(Malformed::NoGeneralCounters)
    );
    assert_eq!(
        m(2 | 9 << 8 | 48 << 16, 0, 0),
        bad(Malformed::TooManyGeneralCounters {
            reported: 9,
            max: 8
        }),
        "more counters than MSRs"
    );
    assert_eq!(
        m(2 | 255 << 8 | 48 << 16, 0, 0),
        bad(Malformed::TooManyGeneralCounters {
            reported: 255,
            max: 8
        })
    );
    assert_eq!(
        m(2 | 4 << 8 | 48 << 16, 0, 3),
        bad(Malformed::FixedWidth(0)),
        "zero-width fixed"
    );
    assert_eq!(
        m(2 | 4 << 8 | 48 << 16, 0, 3 | 99 << 5),
        bad(Malformed::FixedWidth(99))
    );
    assert_eq!(
        m(2 | 4 << 8 | 48 << 16, 0, 20 | 48 << 5),
        bad(Malformed::TooManyFixedCounters {
            reported: 20,
            max: 16
        })
    );
    assert_eq!(
        m(5 | 4 << 8 | 48 << 16, 1 << 20, 3 | 48 << 5),
        bad(Malformed::TooManyFixedCounters {
            reported: 21,
            max: 16
        }),
        "v5 bitmap past the MSRs"
    );
    // Zero fixed counters with a zero width is fine (no fixed counters at all).
    assert_eq!(m(2 | 4 << 8 | 48 << 16, 0, 0).unwrap().fixed_mask, 0);
    // AMD PerfMonV2.
    let amd = |core, n| detect(&FakeCpuid::amd(0x19, core, Some(n)));
    assert_eq!(amd(true, 0), bad(Malformed::NoGeneralCounters));
    assert_eq!(
        amd(true, 7),
        bad(Malformed::TooManyGeneralCounters {
            reported: 7,
            max: 6
        })
    );
    assert_eq!(amd(false, 4), bad(Malformed::PerfMonV2WithoutCoreExtension));
    // Nothing was touched: detection reads CPUID only, so no MSR back-end is involved.
}

#[test]
#[cfg_attr(
    miri,
    ignore = "reads this machine's CPUID and PMU with inline assembly, which Miri cannot run"
)]
fn this_machine_is_either_a_pmu_or_cleanly_none() {
    match detect(&NativeCpuid) {
        Ok(info) => assert!(info.general_counters > 0 && (32..=64).contains(&info.general_width)),
        Err(e) => assert!(matches!(e, PmuError::NoPmu(_)), "unexpected {e:?}"),
    }
}

/// Overflow sampling on Intel (version 4): the counter starts at `-period` with the interrupt
/// bit set and is enabled globally; a counter still below the wrap is not reported; after the
/// wrap it is re-armed and its overflow status cleared; stopping frees the counter.
#[test]
fn intel_overflow_sampling_arms_detects_and_rearms() {
    let mut pmu = intel_pmu(4, 4);
    assert_eq!(
        pmu.max_period(),
        (1 << 31) - 1,
        "legacy PMC writes sign-extend bit 31"
    );
    assert_eq!(
        pmu.start_sampling(Event::Instructions, 0),
        Err(PmuError::BadPeriod(0))
    );
    assert_eq!(
        pmu.start_sampling(Event::Instructions, 1 << 31),
        Err(PmuError::BadPeriod(1 << 31))
    );
    let s = pmu.start_sampling(Event::Instructions, 1000).unwrap();
    assert_eq!(s.counter(), Counter::General(0));
    let m = pmu.msr();
    assert_eq!(
        m.get(0x186),
        0xC0 | EN_USR_OS | 1 << 20,
        "event select with INT"
    );
    assert_eq!(
        m.get(0xC1),
        (1 << 48) - 1000,
        "counter at -period (48 bits)"
    );
    assert_eq!(m.get(0x38F) & 1, 1, "enabled in GLOBAL_CTRL");
    // Counting, not yet wrapped: not this counter's interrupt.
    m.put(0xC1, (1 << 48) - 10);
    assert_eq!(pmu.overflowed(&s), Ok(false));
    assert!(m.log.borrow().iter().all(|&(msr, _)| msr != 0x390));
    // Wrapped: reported, re-armed, status cleared.
    m.put(0xC1, 3);
    assert_eq!(pmu.overflowed(&s), Ok(true));
    assert_eq!(m.get(0xC1), (1 << 48) - 1000);
    assert_eq!(m.get(0x390), 1, "overflow bit 0 cleared through OVF_CTRL");
    // The counter is taken while sampling: a group gets the next one.
    let g = pmu.open_group(&[Event::CacheMisses]).unwrap();
    assert_eq!(g.slots().next().map(|(_, c)| c), Some(Counter::General(1)));
    pmu.stop_sampling(s).unwrap();
    let m = pmu.msr();
    assert_eq!(m.get(0x186), 0, "event select cleared");
    assert_eq!(m.get(0x38F) & 1, 0, "disabled in GLOBAL_CTRL");
    assert_eq!(
        pmu.stop_sampling(s),
        Err(PmuError::ForeignGroup),
        "stopped twice"
    );
    assert_eq!(pmu.overflowed(&s), Err(PmuError::ForeignGroup));
}

/// AMD: PerfMonV2 clears the overflow through its status-clear MSR; legacy counters have no
/// global MSRs at all; all counters taken is `NoFreeCounter`.
#[test]
fn amd_overflow_sampling() {
    let mut pmu = Pmu::new(
        FakeMsr::amd_core(6, true),
        &FakeCpuid::amd(0x19, true, Some(6)),
    )
    .expect("PerfMonV2 PMU");
    assert_eq!(pmu.max_period(), (1 << 47) - 1);
    let s = pmu.start_sampling(Event::Cycles, 1 << 40).unwrap();
    let m = pmu.msr();
    assert_eq!(m.get(0xC001_0200) & (1 << 20 | 1 << 22), 1 << 20 | 1 << 22);
    assert_eq!(m.get(0xC001_0201), (1 << 48) - (1 << 40));
    m.put(0xC001_0201, 0);
    assert_eq!(pmu.overflowed(&s), Ok(true));
    assert_eq!(m.get(0xC000_0302), 1, "status cleared");
    assert_eq!(m.get(0xC001_0201), (1 << 48) - (1 << 40), "re-armed");

    let mut legacy =
        Pmu::new(FakeMsr::amd_legacy(), &FakeCpuid::amd(0x10, false, None)).expect("legacy PMU");
    let mut taken = Vec::new();
    for _ in 0..4 {
        taken.push(legacy.start_sampling(Event::Cycles, 100).unwrap());
    }
    assert_eq!(
        legacy.start_sampling(Event::Cycles, 100),
        Err(PmuError::NoFreeCounter(Event::Cycles))
    );
    legacy.msr().put(0xC001_0005, 7);
    assert_eq!(legacy.overflowed(&taken[1]), Ok(true));
    assert_eq!(legacy.overflowed(&taken[0]), Ok(false));
    assert_eq!(legacy.msr().get(0xC001_0005), (1 << 48) - 100);
}
