//! The slice API's error handling, the dispatch controls and the `CpuOptimizer` registry.

use std::cmp::Ordering;

use veridian_simd::cpu::{self, CpuInfo, Cpuid, CpuidResult, CpuidSource, Features};
use veridian_simd::{
    Candidate, CpuOptimizer, Dispatcher, MemError, RegistryFull, Thresholds, Variant,
};

#[test]
fn copy_rejects_length_mismatch_without_writing() {
    let mut dst = [0u8; 4];
    let err = veridian_simd::copy(&mut dst, &[1, 2, 3]).unwrap_err();
    assert_eq!(err, MemError::LengthMismatch { dst: 4, src: 3 });
    assert_eq!(dst, [0; 4]);
    assert!(err.to_string().contains("4 bytes"));
    veridian_simd::copy(&mut dst, &[1, 2, 3, 4]).unwrap();
    assert_eq!(dst, [1, 2, 3, 4]);
}

#[test]
#[allow(clippy::reversed_empty_ranges)] // Deliberately reversed: the API must refuse it.
fn copy_within_rejects_bad_ranges_without_writing() {
    let mut buf: Vec<u8> = (0..10).collect();
    for (src, dest) in [
        (0..11, 0),
        (5..3, 0),
        (0..5, 6),
        (0..1, 11),
        (usize::MAX - 1..usize::MAX, 0),
    ] {
        let err = veridian_simd::copy_within(&mut buf, src.clone(), dest).unwrap_err();
        assert_eq!(err, MemError::OutOfBounds { src, dest, len: 10 });
        assert_eq!(buf, (0..10).collect::<Vec<u8>>());
    }
    veridian_simd::copy_within(&mut buf, 0..5, 5).unwrap();
    assert_eq!(buf, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    veridian_simd::copy_within(&mut buf, 10..10, 10).unwrap(); // empty at the end is fine
}

#[test]
fn fill_and_compare() {
    let mut buf = [0u8; 100];
    veridian_simd::fill(&mut buf[3..97], 0xAB);
    assert!(buf[3..97].iter().all(|&b| b == 0xAB) && buf[..3] == [0; 3] && buf[97..] == [0; 3]);
    assert_eq!(veridian_simd::compare(b"abc", b"abd"), Ordering::Less);
    assert_eq!(veridian_simd::compare(b"abc", b"ab"), Ordering::Greater);
    assert_eq!(veridian_simd::compare(b"", b""), Ordering::Equal);
    assert!(veridian_simd::equal(b"xyz", b"xyz") && !veridian_simd::equal(b"xyz", b"xy"));
}

#[test]
fn force_variant_installs_supported_and_refuses_unsupported() {
    let features = cpu::features();
    for v in Variant::ALL {
        match veridian_simd::force_variant(v) {
            Ok(()) => {
                assert!(v.is_supported_by(features));
                assert_eq!(veridian_simd::selected_variant(), v);
                assert_eq!(veridian_simd::routines().variant(), v);
                let mut dst = [0u8; 300];
                let src = [9u8; 300];
                veridian_simd::copy(&mut dst, &src).unwrap();
                assert_eq!(dst, src);
            }
            Err(e) => {
                assert!(!v.is_supported_by(features));
                assert_eq!(e.variant, v);
                assert!(!e.missing.is_empty());
                println!("force_variant({}) refused: {e}", v.name());
            }
        }
    }
    // Back to the best one.
    veridian_simd::force_variant(Variant::best_for(features)).unwrap();
}

#[test]
fn thresholds_follow_the_caches() {
    let mut info = CpuInfo::default();
    info.caches.l3 = 32 << 20;
    info.caches.l3_sharing = 16;
    let t = Thresholds::for_cpu(&info, 32);
    assert_eq!(t.non_temporal, (2 << 20) / 4 * 3);
    assert_eq!(t.rep_movsb, 4096); // 2048 * 32 / 16 without FSRM
    info.features = Features::FSRM;
    assert_eq!(Thresholds::for_cpu(&info, 64).rep_movsb, 2112);
    info.caches.l3 = 0;
    info.caches.l2 = 1 << 20;
    assert_eq!(
        Thresholds::for_cpu(&info, 64).non_temporal,
        (1 << 20) / 4 * 3
    );
    info.caches.l2 = 1024; // absurdly small: the floor holds
    assert_eq!(Thresholds::for_cpu(&info, 64).non_temporal, 0x4040);
}

fn add_one(x: u32) -> u32 {
    x + 1
}
fn add_two(x: u32) -> u32 {
    x + 2
}
fn add_three(x: u32) -> u32 {
    x + 3
}

#[test]
fn optimizer_picks_highest_priority_supported() {
    let mut opt: CpuOptimizer<fn(u32) -> u32, 3> = CpuOptimizer::new();
    assert!(opt.best().is_none());
    opt.register("portable", Features::NONE, 0, add_one)
        .unwrap();
    opt.register("avx2", Features::AVX2, 10, add_two).unwrap();
    opt.register("avx512", Features::AVX512_COPY, 20, add_three)
        .unwrap();
    assert_eq!(
        opt.register("extra", Features::NONE, 99, add_one),
        Err(RegistryFull { capacity: 3 })
    );
    assert_eq!(opt.select(Features::NONE).unwrap().name, "portable");
    assert_eq!(
        opt.select(Features::AVX2 | Features::SSE2).unwrap().name,
        "avx2"
    );
    assert_eq!(
        opt.select(Features::AVX512_COPY | Features::AVX2)
            .unwrap()
            .name,
        "avx512"
    );
    // AVX-512F alone is not the whole requirement.
    assert_eq!(
        opt.select(Features::AVX512F | Features::AVX2).unwrap().name,
        "avx2"
    );
    let best = opt.best().unwrap();
    let f = cpu::features();
    let want = if f.contains(Features::AVX512_COPY) {
        4
    } else if f.contains(Features::AVX2) {
        3
    } else {
        2
    };
    assert_eq!(best(1), want);
    assert_eq!(opt.candidates().count(), 3);
}

#[test]
fn optimizer_ties_go_to_the_first_registered_and_none_qualifies() {
    let mut opt: CpuOptimizer<fn(u32) -> u32, 4> = CpuOptimizer::default();
    opt.register("a", Features::NONE, 5, add_one).unwrap();
    opt.register("b", Features::NONE, 5, add_two).unwrap();
    assert_eq!(opt.select(Features::NONE).unwrap().name, "a");
    let mut strict: CpuOptimizer<fn(u32) -> u32, 1> = CpuOptimizer::new();
    strict
        .register("needs-avx2", Features::AVX2, 0, add_one)
        .unwrap();
    assert!(strict.select(Features::SSE2).is_none());
}

static DISPATCH: Dispatcher<fn(u32) -> u32, 2> = Dispatcher::new(CpuOptimizer::from_array([
    Candidate {
        name: "portable",
        required: Features::NONE,
        priority: 0,
        implementation: add_one,
    },
    Candidate {
        name: "avx2",
        required: Features::AVX2,
        priority: 1,
        implementation: add_two,
    },
]));

#[test]
fn dispatcher_resolves_once_and_agrees_with_select() {
    let f = DISPATCH.get().unwrap();
    let want = DISPATCH.table().select(cpu::features()).unwrap();
    assert_eq!(DISPATCH.chosen_name(), Some(want.name));
    assert_eq!(f(1), (want.implementation)(1));
    assert_eq!(DISPATCH.get().unwrap()(1), f(1));
}

/// A fake CPU: leaf values chosen per test; XCR0 as given.
struct FakeCpu {
    leaf1_ecx: u32,
    leaf7_ebx: u32,
    leaf7_edx: u32,
    xcr0: u64,
}

impl Cpuid for FakeCpu {
    fn cpuid(&self, leaf: u32, _subleaf: u32) -> CpuidResult {
        match leaf {
            // Max leaf 7, vendor "GenuineIntel".
            0 => CpuidResult {
                eax: 7,
                ebx: 0x756e_6547,
                edx: 0x4965_6e69,
                ecx: 0x6c65_746e,
            },
            1 => CpuidResult {
                eax: 0,
                ebx: 0,
                ecx: self.leaf1_ecx,
                edx: 1 << 26,
            },
            7 => CpuidResult {
                eax: 0,
                ebx: self.leaf7_ebx,
                ecx: 0,
                edx: self.leaf7_edx,
            },
            _ => CpuidResult::default(),
        }
    }
}

impl CpuidSource for FakeCpu {
    fn xcr0(&self) -> u64 {
        self.xcr0
    }
}

const OSXSAVE: u32 = 1 << 27;
const AVX: u32 = 1 << 28;
const AVX2: u32 = 1 << 5;
const ERMS: u32 = 1 << 9;
const AVX512F: u32 = 1 << 16;
const AVX512BW: u32 = 1 << 30;
const AVX512VL: u32 = 1 << 31;

#[test]
fn xcr0_gates_the_vector_features() {
    let all7 = AVX2 | ERMS | AVX512F | AVX512BW | AVX512VL;
    // Everything enabled.
    let f = cpu::detect_with(&FakeCpu {
        leaf1_ecx: OSXSAVE | AVX,
        leaf7_ebx: all7,
        leaf7_edx: 1 << 4,
        xcr0: 0xE7,
    })
    .features;
    assert!(f.contains(
        Features::AVX512_COPY | Features::AVX2 | Features::ERMS | Features::FSRM | Features::SSE2
    ));
    assert_eq!(Variant::best_for(f), Variant::Avx512);
    // The OS enabled AVX but not the AVX-512 state: AVX2 yes, AVX-512 no.
    let f = cpu::detect_with(&FakeCpu {
        leaf1_ecx: OSXSAVE | AVX,
        leaf7_ebx: all7,
        leaf7_edx: 0,
        xcr0: 0x7,
    })
    .features;
    assert!(f.contains(Features::AVX2) && !f.contains(Features::AVX512F));
    assert_eq!(Variant::best_for(f), Variant::Avx2);
    // No OSXSAVE: XGETBV must not run (it would #UD) and no AVX feature is reported.
    struct NoXgetbv(FakeCpu);
    impl Cpuid for NoXgetbv {
        fn cpuid(&self, leaf: u32, sub: u32) -> CpuidResult {
            self.0.cpuid(leaf, sub)
        }
    }
    impl CpuidSource for NoXgetbv {
        fn xcr0(&self) -> u64 {
            panic!("XGETBV executed without OSXSAVE")
        }
    }
    let f = cpu::detect_with(&NoXgetbv(FakeCpu {
        leaf1_ecx: AVX,
        leaf7_ebx: all7,
        leaf7_edx: 0,
        xcr0: 0,
    }))
    .features;
    assert!(
        !f.contains(Features::AVX) && !f.contains(Features::AVX2) && f.contains(Features::ERMS)
    );
    assert_eq!(Variant::best_for(f), Variant::Erms);
    // CPUID without AVX2 or ERMS: generic.
    let f = cpu::detect_with(&FakeCpu {
        leaf1_ecx: 0,
        leaf7_ebx: 0,
        leaf7_edx: 0,
        xcr0: 0,
    })
    .features;
    assert_eq!(Variant::best_for(f), Variant::Generic);
}

#[test]
fn native_detection_reports_caches_and_a_consistent_xcr0() {
    let info = cpu::cpu_info();
    println!("{info:?}");
    assert!(
        info.features.contains(Features::SSE2),
        "SSE2 is baseline on x86_64"
    );
    if info.features.contains(Features::AVX) {
        assert_eq!(info.xcr0 & cpu::XCR0_AVX_STATE, cpu::XCR0_AVX_STATE);
    }
    if info.features.contains(Features::AVX512F) {
        assert_eq!(info.xcr0 & cpu::XCR0_AVX512_STATE, cpu::XCR0_AVX512_STATE);
    }
    assert!(
        info.caches.l1d > 0 || info.caches.l2 > 0 || info.caches.l3 > 0,
        "no cache size at all"
    );
    assert_eq!(cpu::features(), info.features);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn detection_agrees_with_std() {
    let ours = cpu::features();
    let std_view = veridian_simd::hosted::std_detected_features();
    for (feature, name) in Features::ALL {
        if matches!(*name, "fsrm" | "osxsave") {
            continue; // No `is_x86_feature_detected!` name.
        }
        assert_eq!(
            ours.contains(*feature),
            std_view.contains(*feature),
            "feature {name}: ours {ours:?}, std {std_view:?}"
        );
    }
}
