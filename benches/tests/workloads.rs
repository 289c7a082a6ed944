//! Every workload at its tiny size: in this test process (system allocator) and through each
//! allocator's binary, which must all print the same checksum.

use std::process::Command;

use veridian_benches::workloads::{self, Size, WORKLOADS};

/// The four allocator binaries of this package, as cargo built them for this test.
const BINARIES: [(&str, &str); 4] = [
    ("veridian", env!("CARGO_BIN_EXE_alloc-veridian")),
    ("glibc", env!("CARGO_BIN_EXE_alloc-glibc")),
    ("mimalloc", env!("CARGO_BIN_EXE_alloc-mimalloc")),
    ("jemalloc", env!("CARGO_BIN_EXE_alloc-jemalloc")),
];

#[test]
fn every_allocator_prints_the_in_process_checksum() {
    for workload in WORKLOADS {
        let expected = (workload.run)(Size::Tiny);
        for (allocator, binary) in BINARIES {
            let output = Command::new(binary)
                .args([workload.name, "--tiny"])
                .output()
                .unwrap_or_else(|e| panic!("{binary}: {e}"));
            assert!(
                output.status.success(),
                "{allocator} {}: {output:?}",
                workload.name
            );
            let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
            assert_eq!(
                stdout.trim(),
                format!(
                    "{} checksum={expected:#018x} allocator={allocator}",
                    workload.name
                ),
                "{allocator} {}",
                workload.name
            );
        }
    }
}

#[test]
fn workloads_are_deterministic_and_not_trivially_zero() {
    for workload in WORKLOADS {
        let tiny = (workload.run)(Size::Tiny);
        assert_eq!((workload.run)(Size::Tiny), tiny, "{}", workload.name);
        assert_ne!(tiny, 0, "{}", workload.name);
    }
}

/// cache-scratch's checksum, computed independently: every thread ends each iteration with 8
/// bytes that were incremented `repetitions` times from zero.
#[test]
fn cache_scratch_counts_every_write() {
    let (iterations, repetitions) = (100u64, 10u64);
    let per_thread = iterations * 8 * (repetitions % 256);
    let expected = [per_thread, per_thread]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
            v.to_le_bytes().iter().fold(h, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        });
    assert_eq!(workloads::cache_scratch(Size::Tiny), expected);
}

#[test]
fn a_bad_command_line_is_refused() {
    let (_, binary) = BINARIES[0];
    for args in [&[][..], &["no-such-workload"][..], &["json", "--huge"][..]] {
        let status = Command::new(binary).args(args).status().expect("runs");
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}
