//! `cargo xtask test`: every check the project has, counted.
//!
//! Each step prints `xtask: [PASS] <step>` or `xtask: [FAIL] <step>: <reason>` and the run goes on
//! after a failure. Host unit tests and kernel tests count one each; every other step counts one.
//! The last line is `<N> passed, <M> failed`; the exit status is 0 iff M is 0.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::bench_report;
use crate::cmd;
use crate::disk;
use crate::error::{Error, Result};
use crate::foreign;
use crate::iso::{self, IsoOptions};
use crate::kernel::{self, Profile};
use crate::kernel_log::Verdict;
use crate::msrv;
use crate::net;
use crate::publish;
use crate::qemu::{self, Boot, Machine, Outcome, Vm};
use crate::tools::{self, Needs};
use crate::workspace::{
    self, COMPONENT_CRATES, KERNEL_PACKAGE, KERNEL_TARGET, PORTABLE_TARGETS, USER_MANIFEST,
};

/// Timeout for a whole kernel test-suite run.
const SUITE_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeout for the injected-hang self-check.
const HANG_TIMEOUT: Duration = Duration::from_secs(8);
/// The deliberately broken tests the kernel can inject (`ktest.inject=<kind>`).
const INJECTED_KINDS: [&str; 4] = ["fail", "panic", "fault", "hang"];
/// Crates with loom models, and the model test targets (`tests/<name>.rs`, `#![cfg(loom)]`).
const LOOM_MODELS: &[(&str, &[&str])] = &[
    (
        "veridian-sync",
        &["loom_stack", "loom_queues", "loom_seqlock", "loom_locks"],
    ),
    ("veridian-perf", &["loom_ring"]),
    ("veridian-sched", &["loom_deque"]),
    ("veridian-io", &["loom_ring"]),
];
/// A bare-metal binary with no global allocator using the allocation-free parts of the crates.
const NO_ALLOC_CONSUMER: &str = "xtask/no-alloc-consumer/Cargo.toml";
/// The GRUB entry that runs the test suite.
const GRUB_TEST_ENTRY: usize = 1;

/// Passed and failed counts.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) passed: usize,
    pub(crate) failed: usize,
}

impl Tally {
    pub(crate) fn pass(&mut self, step: &str) {
        println!("xtask: [PASS] {step}");
        self.passed += 1;
    }

    pub(crate) fn fail(&mut self, step: &str, reason: &str) {
        println!("xtask: [FAIL] {step}: {reason}");
        self.failed += 1;
    }

    /// Counts a step by its result; only Ctrl-C stops the run.
    pub(crate) fn step(&mut self, step: &str, result: Result<()>) -> Result<()> {
        match result {
            Ok(()) => self.pass(step),
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(Error::Failed(reason)) => self.fail(step, &reason),
        }
        Ok(())
    }
}

/// Runs the `test` command.
pub fn test() -> Result<ExitCode> {
    let mut tally = Tally::default();

    tally.step("tool checks", tools::ensure(Needs::ALL))?;
    tally.step(
        "cargo fmt --all --check",
        cargo(&["fmt", "--all", "--check"]),
    )?;
    tally.step(
        "clippy (host, workspace, all targets)",
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The benches and hosted back-ends need each crate's `std` feature, which the step above
    // does not turn on, so they were never linted.
    tally.step(
        "clippy (host, workspace, all targets, all features: benches, hosted back-ends)",
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    for package in std::iter::once(KERNEL_PACKAGE).chain(COMPONENT_CRATES) {
        tally.step(
            &format!("clippy {package} ({KERNEL_TARGET})"),
            cargo(&[
                "clippy",
                "-p",
                package,
                "--target",
                KERNEL_TARGET,
                "--",
                "-D",
                "warnings",
            ]),
        )?;
    }
    user_program_lints(&mut tally)?;
    for package in COMPONENT_CRATES {
        for (features, what) in [
            (None, "default features"),
            (Some("--all-features"), "all features"),
        ] {
            let mut command = cmd::cargo();
            command
                .args(["doc", "-p", package, "--no-deps"])
                .args(features)
                .env("RUSTDOCFLAGS", "-D warnings");
            tally.step(
                &format!("RUSTDOCFLAGS=\"-D warnings\" cargo doc -p {package} ({what})"),
                succeeded(&mut command),
            )?;
        }
    }
    host_tests(&mut tally)?;
    counted_tests(
        &mut tally,
        "veridian-simd as the process's memcpy (export-mem-symbols)",
        cmd::cargo().args([
            "test",
            "-p",
            "veridian-simd",
            "--features",
            "export-mem-symbols",
            "--test",
            "export",
        ]),
    )?;
    counted_tests(
        &mut tally,
        "veridian-sync lock validator (lockdep feature)",
        cmd::cargo().args(["test", "-p", "veridian-sync", "--features", "lockdep"]),
    )?;
    loom_tests(&mut tally)?;
    let packages = publish_checks(&mut tally)?;
    foreign_kernels(&mut tally, packages.as_deref())?;
    for package in COMPONENT_CRATES {
        tally.step(
            &format!("build {package} ({KERNEL_TARGET})"),
            cargo(&["build", "-p", package, "--target", KERNEL_TARGET]),
        )?;
        tally.step(
            &format!("build {package} ({KERNEL_TARGET}, --no-default-features)"),
            cargo(&[
                "build",
                "-p",
                package,
                "--target",
                KERNEL_TARGET,
                "--no-default-features",
            ]),
        )?;
    }
    portable_builds(&mut tally)?;
    for package in COMPONENT_CRATES {
        let version = msrv::stated(package).unwrap_or_else(|_| "?".into());
        tally.step(
            &format!("{package} builds with its MSRV, Rust {version}"),
            msrv::check(package),
        )?;
    }
    // Building an rlib links nothing: only a binary without a `#[global_allocator]` proves that
    // the allocation-free parts do not pull in the `alloc` crate.
    tally.step(
        &format!("no-alloc consumer links ({KERNEL_TARGET}, no global allocator)"),
        cargo(&[
            "build",
            "--manifest-path",
            NO_ALLOC_CONSUMER,
            "--target",
            KERNEL_TARGET,
        ]),
    )?;

    let suite = "kernel test suite (QEMU, PVH -kernel)";
    // The lock validator (veridian-sync's `lockdep`) is on in the kernel the suites boot: any
    // report it prints fails the run.
    match kernel::build_with(Profile::Debug, &["lockdep"]) {
        Ok(elf) => {
            kernel_suite(&mut tally, suite, &elf)?;
            machine_suite(&mut tally, &elf, Machine::Single.into(), "-smp 1")?;
            machine_suite(
                &mut tally,
                &elf,
                Machine::Flat.into(),
                "-smp 4, no NUMA options",
            )?;
            // CPUs without ERMS (memcpy/memset pick the AVX2 variant for every size) and
            // without AVX (SSE2 and the generic variants; FXSAVE-sized state).
            // The ERMS-less run also uses an asymmetric NUMA distance table (ACPI allows one).
            for (cpu, machine, what) in [
                (
                    "max,-erms",
                    Machine::NumaAsymmetric,
                    "-cpu max,-erms (no ERMS), asymmetric NUMA distances",
                ),
                ("qemu64", Machine::Numa, "-cpu qemu64 (no AVX, no XSAVE)"),
            ] {
                let vm = Vm {
                    cpu,
                    ..machine.into()
                };
                machine_suite(&mut tally, &elf, vm, what)?;
            }
            bad_disk_check(&mut tally, &elf)?;
            polled_disk_check(&mut tally, &elf)?;
            network_check(&mut tally)?;
            for kind in INJECTED_KINDS {
                self_check(&mut tally, &elf, kind)?;
            }
        }
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(Error::Failed(reason)) => {
            tally.fail(suite, &format!("the kernel did not build: {reason}"));
            tally.fail(BAD_DISK_STEP, "no kernel to boot");
            tally.fail(POLLED_DISK_STEP, "no kernel to boot");
            network_check(&mut tally)?;
            for kind in INJECTED_KINDS {
                tally.fail(&self_check_name(kind), "no kernel to boot");
            }
        }
    }
    grub_suite(&mut tally)?;
    tally.step(
        "kernel benchmarks (release, mode=bench, -icount shift=0) within 10 % of \
         docs/benchmarks/kernel-results.json",
        bench_report::regression_check(),
    )?;

    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `cargo <args>`; a non-zero exit is a failure.
/// Every component crate, with default features and without, for each of
/// [`PORTABLE_TARGETS`] (the target installed with rustup first when missing).
fn portable_builds(tally: &mut Tally) -> Result<()> {
    for target in PORTABLE_TARGETS {
        let installed = tools::ensure_rust_target(target);
        let missing = installed.as_ref().err().map(|e| e.to_string());
        tally.step(&format!("Rust target {target} installed"), installed)?;
        for package in COMPONENT_CRATES {
            for features in [None, Some("--no-default-features")] {
                let step = format!(
                    "build {package} ({target}{})",
                    features.map_or(String::new(), |f| format!(", {f}"))
                );
                let result = match &missing {
                    // One clear failure for the target above, not one per crate.
                    Some(reason) => Err(Error::Failed(format!("target missing: {reason}"))),
                    None => {
                        let mut args = vec!["build", "-p", package, "--target", target];
                        args.extend(features);
                        cargo(&args)
                    }
                };
                tally.step(&step, result)?;
            }
        }
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    succeeded(cmd::cargo().args(args))
}

/// Runs `command`; a non-zero exit is a failure.
fn succeeded(command: &mut std::process::Command) -> Result<()> {
    let status = cmd::run(command)?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed(cmd::describe_status(status)))
    }
}

/// `cargo fmt --check` and clippy (`-D warnings`, for [`KERNEL_TARGET`]) on the user programs'
/// workspace, which the main workspace's steps do not cover.
fn user_program_lints(tally: &mut Tally) -> Result<()> {
    tally.step(
        "cargo fmt --all --check (user programs)",
        cargo(&["fmt", "--all", "--check", "--manifest-path", USER_MANIFEST]),
    )?;
    tally.step(
        &format!("clippy user programs ({KERNEL_TARGET})"),
        cargo(&[
            "clippy",
            "--manifest-path",
            USER_MANIFEST,
            "--workspace",
            "--target",
            KERNEL_TARGET,
            "--",
            "-D",
            "warnings",
        ]),
    )
}

/// `cargo test --workspace` on the host, counting its tests.
fn host_tests(tally: &mut Tally) -> Result<()> {
    counted_tests(
        tally,
        "cargo test --workspace",
        cmd::cargo().args(["test", "--workspace"]),
    )
}

/// The loom model checks: every `tests/loom_*.rs` of the crates that have them, built with
/// `--cfg loom` in release mode (debug-mode loom is tens of times slower) in a target directory
/// of their own, so the cfg change does not rebuild the normal one.
fn loom_tests(tally: &mut Tally) -> Result<()> {
    for (package, tests) in LOOM_MODELS {
        let mut command = cmd::cargo();
        command
            .args(["test", "--release", "-p", package])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", workspace::target_dir().join("loom"));
        for test in *tests {
            command.args(["--test", test]);
        }
        counted_tests(tally, &format!("loom models ({package})"), &mut command)?;
    }
    Ok(())
}

/// `cargo publish --workspace --dry-run`, then each packaged crate's test suites (one step each;
/// see `publish.rs`). Returns the unpacked packages (`None` if unpacking failed).
fn publish_checks(tally: &mut Tally) -> Result<Option<Vec<publish::Unpacked>>> {
    tally.step("cargo publish --workspace --dry-run", publish::dry_run())?;
    match publish::unpack_all() {
        Ok(packages) => {
            for package in &packages {
                tally.step(
                    &format!("packaged {} (tests built, run with std)", package.name),
                    publish::test_unpacked(package, &packages),
                )?;
            }
            Ok(Some(packages))
        }
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(Error::Failed(reason)) => {
            tally.fail("unpacking the packaged crates", &reason);
            Ok(None)
        }
    }
}

/// One step per foreign-kernel example (see `foreign.rs`): built against the packaged crates,
/// booted in QEMU.
fn foreign_kernels(tally: &mut Tally, packages: Option<&[publish::Unpacked]>) -> Result<()> {
    for (name, krate) in foreign::EXAMPLES {
        let result = match packages {
            Some(packages) => foreign::check(name, krate, packages),
            None => Err(Error::Failed("no packaged crates to build against".into())),
        };
        tally.step(&foreign::step_name(krate), result)?;
    }
    Ok(())
}

/// Runs a `cargo test` command, counting the tests it reports: each passed test counts one,
/// each failed test one failure, and a failure with no failed test (a build error) one failure.
fn counted_tests(tally: &mut Tally, step: &str, command: &mut std::process::Command) -> Result<()> {
    let (mut passed, mut failed) = (0, 0);
    let status = cmd::run_lines(command, |line| {
        if let Some((p, f)) = parse_test_result(line) {
            passed += p;
            failed += f;
        }
    })?;
    tally.passed += passed;
    if status.success() && failed == 0 {
        println!("xtask: [PASS] {step}: {passed} tests passed");
    } else if failed > 0 {
        tally.failed += failed;
        println!("xtask: [FAIL] {step}: {failed} test(s) failed, {passed} passed");
    } else {
        tally.failed += 1;
        println!(
            "xtask: [FAIL] {step}: {} with no failed test reported (a build error?)",
            cmd::describe_status(status)
        );
    }
    Ok(())
}

/// Parses libtest's `test result: ok. X passed; Y failed; ...` line into (X, Y).
fn parse_test_result(line: &str) -> Option<(usize, usize)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut fields = counts.split(';').map(str::trim);
    let passed = fields.next()?.strip_suffix(" passed")?.parse().ok()?;
    let failed = fields.next()?.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

/// Prints the kernel tests of `verdict` one by one, then their counts.
pub fn print_suite(verdict: &Verdict) {
    for name in &verdict.passed {
        println!("xtask: [PASS] ktest {name}");
    }
    for test in &verdict.skipped {
        println!("xtask: [SKIP] ktest {}: {}", test.name, test.reason);
    }
    for test in &verdict.failed {
        println!("xtask: [FAIL] ktest {}: {}", test.name, test.reason);
    }
    println!(
        "xtask: kernel tests: {} passed, {} failed, {} skipped",
        verdict.passed.len(),
        verdict.failed.len(),
        verdict.skipped.len()
    );
}

/// Why the suite failed, in one line, or `None` if it passed.
pub fn suite_failure(verdict: &Verdict) -> Option<String> {
    if verdict.ok() {
        return None;
    }
    let mut parts = Vec::new();
    if !verdict.failed.is_empty() {
        let names: Vec<&str> = verdict.failed.iter().map(|t| t.name.as_str()).collect();
        parts.push(format!(
            "{} kernel test(s) failed: {}",
            names.len(),
            names.join(", ")
        ));
    }
    parts.extend(verdict.problem_line());
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Boots the test suite; `Err` only for Ctrl-C (other errors are returned as the reason).
fn boot(
    boot: &Boot,
    machine: impl Into<Vm>,
    timeout: Duration,
) -> Result<std::result::Result<Outcome, String>> {
    match qemu::run(boot, machine, timeout) {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(Error::Failed(reason)) => Ok(Err(reason)),
    }
}

/// `vm` with the test disk attached, the image written afresh (its block tests need the known
/// contents; the GRUB boot and the harness self-checks run without it, so the disk-less path
/// stays tested: the block tests skip there).
fn with_disk(vm: Vm) -> std::result::Result<Vm, String> {
    disk::create()
        .map(|_| Vm { disk: true, ..vm })
        .map_err(|e| format!("test disk: {e}"))
}

/// Step 7: the kernel's own tests, one count each, plus one failure if the run is inconsistent.
fn kernel_suite(tally: &mut Tally, step: &str, elf: &Path) -> Result<()> {
    let kernel = Boot::Kernel {
        elf: elf.to_path_buf(),
        cmdline: "mode=test".into(),
    };
    let outcome = match with_disk(Machine::Numa.into()).map(|vm| boot(&kernel, vm, SUITE_TIMEOUT)) {
        Ok(result) => match result? {
            Ok(outcome) => outcome,
            Err(reason) => {
                tally.fail(step, &reason);
                return Ok(());
            }
        },
        Err(reason) => {
            tally.fail(step, &reason);
            return Ok(());
        }
    };
    let verdict = outcome.log.judge(&outcome.exit());
    print_suite(&verdict);
    tally.passed += verdict.passed.len();
    tally.failed += verdict.failed.len();
    match verdict.problem_line() {
        Some(problems) => tally.fail(step, &problems),
        None => println!(
            "xtask: {step}: {} passed, {} failed",
            verdict.passed.len(),
            verdict.failed.len()
        ),
    }
    Ok(())
}

/// The kernel suite again on another machine shape: one step, passed when every test passed.
fn machine_suite(tally: &mut Tally, elf: &Path, machine: Vm, what: &str) -> Result<()> {
    let step = format!("kernel test suite (QEMU, PVH, {what})");
    let kernel = Boot::Kernel {
        elf: elf.to_path_buf(),
        cmdline: "mode=test".into(),
    };
    let outcome = match with_disk(machine).map(|vm| boot(&kernel, vm, SUITE_TIMEOUT)) {
        Ok(result) => match result? {
            Ok(outcome) => outcome,
            Err(reason) => {
                tally.fail(&step, &reason);
                return Ok(());
            }
        },
        Err(reason) => {
            tally.fail(&step, &reason);
            return Ok(());
        }
    };
    let verdict = outcome.log.judge(&outcome.exit());
    match suite_failure(&verdict) {
        None => tally.pass(&format!(
            "{step}: {} kernel tests passed",
            verdict.passed.len()
        )),
        Some(reason) => tally.fail(&step, &reason),
    }
    Ok(())
}

/// The network step's name.
const NETWORK_STEP: &str = "network (mode=serve, release kernel, 1 CPU, 2 virtio-net NICs): \
     10 000 UDP echoes, 64 MiB to the TCP sink and from the generator checked, malformed \
     frames on NIC 1, then echoes again on both";

const BAD_DISK_STEP: &str =
    "virtio-blk device with an 8-entry queue is refused, the kernel goes on";

/// Boots on one CPU with the test disk behind a device whose request queue (8 entries) is
/// smaller than the driver's: the kernel must refuse it with its message and run the block
/// tests as skipped.
fn bad_disk_check(tally: &mut Tally, elf: &Path) -> Result<()> {
    disk_step(tally, elf, BAD_DISK_STEP, ",queue-size=8", judge_bad_disk)
}

/// Boots `elf` on one CPU with `mode=test ktest.filter=virtio_blk` and the test disk behind a
/// device with `device_options`; `judge` decides step `step` from the serial log and verdict.
fn disk_step(
    tally: &mut Tally,
    elf: &Path,
    step: &str,
    device_options: &str,
    judge: fn(&[String], &Verdict) -> std::result::Result<(), String>,
) -> Result<()> {
    if let Err(e) = disk::create() {
        tally.fail(step, &format!("test disk: {e}"));
        return Ok(());
    }
    let kernel = Boot::Kernel {
        elf: elf.to_path_buf(),
        cmdline: "mode=test ktest.filter=virtio_blk".into(),
    };
    let mut command = qemu::command(&kernel, Machine::Single);
    command.args(disk::qemu_args(&disk::path(), device_options));
    let outcome = qemu::run_command(command, SUITE_TIMEOUT, false)?;
    let verdict = outcome.log.judge(&outcome.exit());
    match judge(&outcome.serial, &verdict) {
        Ok(()) => tally.pass(step),
        Err(problem) => tally.fail(step, &problem),
    }
    Ok(())
}

/// The network step: the release kernel in `mode=serve` against xtask's client (`net::check`).
fn network_check(tally: &mut Tally) -> Result<()> {
    let release = match kernel::build(Profile::Release) {
        Ok(elf) => elf,
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(Error::Failed(reason)) => {
            tally.fail(
                NETWORK_STEP,
                &format!("the release kernel did not build: {reason}"),
            );
            return Ok(());
        }
    };
    match net::check(&release)? {
        Ok(summary) => {
            println!("xtask: network: {summary}");
            tally.pass(NETWORK_STEP);
        }
        Err(problem) => tally.fail(NETWORK_STEP, &problem),
    }
    Ok(())
}

/// The bad-disk run must print the refusal and report every block test skipped, none failed.
fn judge_bad_disk(serial: &[String], verdict: &Verdict) -> std::result::Result<(), String> {
    const REFUSAL: &str = "refused: it offers a request queue of 8 entries";
    if !serial.iter().any(|l| l.contains(REFUSAL)) {
        return Err(format!("no line saying \"{REFUSAL}\""));
    }
    if let Some(problems) = verdict.problem_line() {
        return Err(problems);
    }
    if !verdict.failed.is_empty() || !verdict.passed.is_empty() {
        return Err(format!(
            "the block tests should all skip: {} passed, {} failed",
            verdict.passed.len(),
            verdict.failed.len()
        ));
    }
    if verdict.skipped.is_empty() {
        return Err("no block test ran".into());
    }
    Ok(())
}

const POLLED_DISK_STEP: &str =
    "virtio-blk device without MSI-X is served by polling (block tests pass)";

/// Boots on one CPU with the test disk behind a device without MSI-X (`vectors=0`): the kernel
/// must say it polls, pass the block tests and skip only the interrupt test.
fn polled_disk_check(tally: &mut Tally, elf: &Path) -> Result<()> {
    disk_step(
        tally,
        elf,
        POLLED_DISK_STEP,
        ",vectors=0",
        judge_polled_disk,
    )
}

/// The polled-disk run must print that it polls, pass its block tests and skip exactly the
/// interrupt test.
fn judge_polled_disk(serial: &[String], verdict: &Verdict) -> std::result::Result<(), String> {
    const POLLING: &str = "no completion interrupt (no MSI-X capability); polling";
    const INTERRUPT_TEST: &str = "virtio_blk_completions_by_interrupt";
    if !serial.iter().any(|l| l.contains(POLLING)) {
        return Err(format!("no line saying \"{POLLING}\""));
    }
    if let Some(problems) = verdict.problem_line() {
        return Err(problems);
    }
    if !verdict.failed.is_empty() {
        return Err(format!("{} block tests failed", verdict.failed.len()));
    }
    if verdict.passed.is_empty() {
        return Err("no block test passed".into());
    }
    if verdict.skipped.len() != 1 || verdict.skipped[0].name != INTERRUPT_TEST {
        return Err(format!(
            "only {INTERRUPT_TEST} should skip, skipped: {:?}",
            verdict.skipped.iter().map(|t| &t.name).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

fn self_check_name(kind: &str) -> String {
    format!("harness self-check: injected {kind} is detected")
}

/// Step 8: a deliberately broken test must make the run fail, and be the one blamed.
fn self_check(tally: &mut Tally, elf: &Path, kind: &str) -> Result<()> {
    let step = self_check_name(kind);
    let hang = kind == "hang";
    println!("xtask: {step} (a failure is expected below)");
    let kernel = Boot::Kernel {
        elf: elf.to_path_buf(),
        cmdline: format!("mode=test ktest.filter=injected ktest.inject={kind}"),
    };
    let timeout = if hang { HANG_TIMEOUT } else { SUITE_TIMEOUT };
    let outcome = match boot(&kernel, Machine::Numa, timeout)? {
        Ok(outcome) => outcome,
        Err(reason) => {
            tally.fail(&step, &reason);
            return Ok(());
        }
    };
    let verdict = outcome.log.judge(&outcome.exit());
    match judge_self_check(&verdict, outcome.timed_out(), kind) {
        Ok(how) => tally.pass(&format!("{step} ({how})")),
        Err(problem) => tally.fail(&step, &problem),
    }
    Ok(())
}

/// Whether a self-check run with test `injected_<kind>` was judged as it must be: a failure
/// blaming exactly that test (for `hang`: the test running at the timeout; for the others: a
/// failure reported without a timeout). `Ok` says how it was detected, `Err` what went wrong.
fn judge_self_check(
    verdict: &Verdict,
    timed_out: bool,
    kind: &str,
) -> std::result::Result<String, String> {
    let expected = format!("injected_{kind}");
    let Some(how) = suite_failure(verdict) else {
        return Err("the run was judged a success".into());
    };
    let blamed = verdict.blamed();
    let problem = if kind == "hang" {
        if !timed_out {
            Some("the run did not time out".to_owned())
        } else if verdict.unfinished.as_deref() != Some(expected.as_str()) || blamed.len() != 1 {
            Some(format!(
                "expected `{expected}` alone to be running at the timeout, but blamed [{}]",
                blamed.join(", ")
            ))
        } else {
            None
        }
    } else if timed_out {
        Some("the run timed out instead of reporting the failure".to_owned())
    } else if blamed != [expected.as_str()] {
        Some(format!(
            "blamed [{}] instead of `{expected}`",
            blamed.join(", ")
        ))
    } else {
        None
    };
    match problem {
        None => Ok(how),
        Some(problem) => Err(format!("{problem} (verdict: {how})")),
    }
}

/// Step 9: the suite again, booted through GRUB from the BIOS ISO; one step.
fn grub_suite(tally: &mut Tally) -> Result<()> {
    let step = "kernel test suite through GRUB (BIOS, -cdrom)";
    let options = IsoOptions {
        profile: Profile::Debug,
        default_entry: GRUB_TEST_ENTRY,
        extra_cmdline: Vec::new(),
    };
    let iso = match iso::build(&options) {
        Ok(iso) => iso,
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(Error::Failed(reason)) => {
            tally.fail(step, &format!("no ISO: {reason}"));
            return Ok(());
        }
    };
    let cdrom = Boot::Cdrom { iso, uefi: false };
    let outcome = match boot(&cdrom, Machine::Numa, SUITE_TIMEOUT)? {
        Ok(outcome) => outcome,
        Err(reason) => {
            tally.fail(step, &reason);
            return Ok(());
        }
    };
    let verdict = outcome.log.judge(&outcome.exit());
    match suite_failure(&verdict) {
        None => tally.pass(&format!(
            "{step}: {} kernel tests passed",
            verdict.passed.len()
        )),
        Some(reason) => tally.fail(
            step,
            &format!("{reason} ({} kernel tests passed)", verdict.passed.len()),
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_log::{Exit, KernelLog};

    #[test]
    fn libtest_result_lines_are_parsed() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some((12, 0))
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some((3, 2))
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
        assert_eq!(parse_test_result("test result: weird"), None);
    }

    fn verdict(lines: &[&str], exit: &Exit) -> Verdict {
        let mut log = KernelLog::new();
        for line in lines {
            log.feed(line);
        }
        log.judge(exit)
    }

    const INJECTED_FAIL: [&str; 5] = [
        "Veridian reference kernel",
        "ktest plan 1",
        "ktest start injected_fail",
        "ktest fail injected_fail: deliberate",
        "ktest summary 0 passed, 1 failed",
    ];

    #[test]
    fn self_check_accepts_the_injected_failure() {
        let v = verdict(&INJECTED_FAIL, &Exit::Failure);
        assert_eq!(
            judge_self_check(&v, false, "fail").as_deref(),
            Ok("1 kernel test(s) failed: injected_fail")
        );
        // The wrong test blamed, or a timeout, is a harness failure.
        assert!(judge_self_check(&v, false, "panic").is_err());
        assert!(judge_self_check(&v, true, "fail").is_err());
    }

    #[test]
    fn bad_disk_needs_the_refusal_and_only_skips() {
        let refused = "  virtio:   blk 00:03.0 refused: it offers a request queue of 8 entries, \
                       the driver needs 16"
            .to_string();
        let skipped = [
            "Veridian reference kernel",
            "ktest plan 1",
            "ktest start virtio_blk_reads_match_the_image",
            "ktest skip virtio_blk_reads_match_the_image: no usable virtio-blk disk",
            "ktest summary 0 passed, 0 failed, 1 skipped",
        ];
        let v = verdict(&skipped, &Exit::Success);
        assert_eq!(judge_bad_disk(std::slice::from_ref(&refused), &v), Ok(()));
        assert!(
            judge_bad_disk(&[], &v)
                .unwrap_err()
                .contains("no line saying")
        );
        let passed = [
            "Veridian reference kernel",
            "ktest plan 1",
            "ktest start virtio_blk_reads_match_the_image",
            "ktest pass virtio_blk_reads_match_the_image",
            "ktest summary 1 passed, 0 failed",
        ];
        let v = verdict(&passed, &Exit::Success);
        assert!(judge_bad_disk(std::slice::from_ref(&refused), &v).is_err());
    }

    #[test]
    fn polled_disk_needs_the_polling_line_passes_and_only_the_interrupt_skip() {
        let polling = "  virtio:   blk 00:03.0: no completion interrupt (no MSI-X capability); \
                       polling"
            .to_string();
        let good = [
            "Veridian reference kernel",
            "ktest plan 2",
            "ktest start virtio_blk_reads_match_the_image",
            "ktest pass virtio_blk_reads_match_the_image",
            "ktest start virtio_blk_completions_by_interrupt",
            "ktest skip virtio_blk_completions_by_interrupt: the disk has no MSI-X interrupt",
            "ktest summary 1 passed, 0 failed, 1 skipped",
        ];
        let v = verdict(&good, &Exit::Success);
        assert_eq!(
            judge_polled_disk(std::slice::from_ref(&polling), &v),
            Ok(())
        );
        assert!(
            judge_polled_disk(&[], &v)
                .unwrap_err()
                .contains("no line saying")
        );
        let all_skipped = [
            "Veridian reference kernel",
            "ktest plan 2",
            "ktest start virtio_blk_reads_match_the_image",
            "ktest skip virtio_blk_reads_match_the_image: no usable virtio-blk disk",
            "ktest start virtio_blk_completions_by_interrupt",
            "ktest skip virtio_blk_completions_by_interrupt: the disk has no MSI-X interrupt",
            "ktest summary 0 passed, 0 failed, 2 skipped",
        ];
        let v = verdict(&all_skipped, &Exit::Success);
        assert!(judge_polled_disk(std::slice::from_ref(&polling), &v).is_err());
        let failed = [
            "Veridian reference kernel",
            "ktest plan 1",
            "ktest start virtio_blk_reads_match_the_image",
            "ktest fail virtio_blk_reads_match_the_image: panicked: byte 3",
            "ktest summary 0 passed, 1 failed",
        ];
        let v = verdict(&failed, &Exit::Failure);
        assert!(judge_polled_disk(std::slice::from_ref(&polling), &v).is_err());
    }

    #[test]
    fn self_check_rejects_a_passing_run() {
        let v = verdict(
            &[
                "Veridian reference kernel",
                "ktest plan 1",
                "ktest start injected_fail",
                "ktest pass injected_fail",
                "ktest summary 1 passed, 0 failed",
            ],
            &Exit::Success,
        );
        assert_eq!(
            judge_self_check(&v, false, "fail"),
            Err("the run was judged a success".into())
        );
    }

    #[test]
    fn self_check_for_hang_needs_a_timeout_in_that_test() {
        let lines = [
            "Veridian reference kernel",
            "ktest plan 1",
            "ktest start injected_hang",
        ];
        let timed_out = verdict(&lines, &Exit::Abnormal("timed out after 8 s".into()));
        assert!(judge_self_check(&timed_out, true, "hang").is_ok());
        assert!(judge_self_check(&timed_out, false, "hang").is_err());
        let nothing_running = verdict(&lines[..2], &Exit::Abnormal("timed out after 8 s".into()));
        assert!(judge_self_check(&nothing_running, true, "hang").is_err());
    }

    #[test]
    fn suite_failure_lists_failed_tests_and_problems() {
        let mut log = KernelLog::new();
        for line in [
            "Veridian reference kernel",
            "ktest plan 2",
            "ktest start a",
            "ktest fail a: boom",
            "ktest start b",
        ] {
            log.feed(line);
        }
        let verdict = log.judge(&Exit::Abnormal("timed out after 120 s".into()));
        assert_eq!(
            suite_failure(&verdict).as_deref(),
            Some(
                "1 kernel test(s) failed: a; timed out after 120 s while running test `b`; \
                 no `ktest summary` line"
            )
        );
    }
}
