//! `cargo xtask check-extra [--quick] [--only PARTS]`: the robustness checks that need the
//! nightly toolchain or a long time, kept apart from `test`:
//!
//! 1. **fuzz**: every cargo-fuzz target of the repository (`<crate>/fuzz`, see [`FUZZ`]) for a
//!    bounded time, its committed seeds plus the corpus kept in `target/fuzz-corpus`;
//! 2. **miri**: every component crate's hosted tests under Miri ([`MIRI`]);
//! 3. **sanitizers**: ThreadSanitizer on the concurrent tests of sync, sched, io and alloc, and
//!    AddressSanitizer on the allocator's tests ([`SANITIZERS`]; `-Zbuild-std`);
//! 4. **matrix**: the kernel's test suite (`mode=test`) booted on many machine shapes under TCG
//!    ([`matrix_shapes`]), printed as a table.
//!
//! `--quick` (what CI runs) gives each fuzz target [`FUZZ_SECS_QUICK`] seconds, boots only
//! the shapes marked quick and leaves the sanitizers out (unless `--only` names them). A finding fails the command and prints its reproducer: the crash
//! input (path and base64) with the command that replays it, the Miri or sanitizer command, or
//! the QEMU command line with the end of the serial log. Missing tools (the nightly toolchain
//! with `miri` and `rust-src`, cargo-fuzz) are installed with rustup and cargo.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::error::{Error, Result, check_interrupt};
use crate::kernel::{self, Profile};
use crate::qemu;
use crate::test::{Tally, suite_failure};
use crate::workspace;

/// The fuzz workspaces (`<dir>/fuzz`) and their targets.
pub const FUZZ: &[(&str, &[&str])] = &[
    (
        "reference-kernel",
        &[
            "pvh",
            "multiboot2",
            "acpi_tables",
            "acpi_memory",
            "elf",
            "syscall_args",
        ],
    ),
    ("veridian-alloc", &["heap", "buddy"]),
    ("veridian-io", &["ring"]),
    ("veridian-simd", &["mem", "btree"]),
];
/// Seconds per fuzz target with `--quick`.
pub const FUZZ_SECS_QUICK: u64 = 30;
/// Seconds per fuzz target without `--quick`.
const FUZZ_SECS_FULL: u64 = 300;
/// libFuzzer's limit for one input: a slower one is reported as a finding (a hang).
const FUZZ_INPUT_TIMEOUT_SECS: u64 = 30;

/// One crate's tests under Miri.
pub struct MiriRun {
    /// The package.
    pub package: &'static str,
    /// Its test targets run under Miri: `lib` for the unit tests, else `tests/<name>.rs`;
    /// `--quick` runs the first `quick` of them.
    pub targets: &'static [&'static str],
    /// How many of `targets` `--quick` runs: Miri interprets every instruction, and on the
    /// loaded 2-core CI machine one proptest suite takes minutes, so the fastest target comes
    /// first and `--quick` runs it alone, unless a second one adds a concurrent stress test
    /// within about a minute.
    pub quick: usize,
    /// Extra `MIRIFLAGS` (besides [`MIRI_FLAGS`]), with the reason beside them.
    pub flags: &'static str,
}

/// `MIRIFLAGS` of every run: proptest saves failing cases relative to the working directory
/// (`getcwd`), and the hosted clocks read the time, which Miri's isolation forbids.
const MIRI_FLAGS: &str = "-Zmiri-disable-isolation";
/// proptest cases per property under Miri (tests that set no count of their own).
const MIRI_PROPTEST_CASES: &str = "8";

/// Miri on every component crate's hosted tests (the `std` feature). Each crate's test targets
/// that Miri can run in minutes; the others, and single tests Miri cannot run (inline
/// assembly such as RDTSC or the context switch, FFI such as mmap, `perf_event_open` and
/// io_uring, stress runs sized for native speed), are left out here or marked
/// `#[cfg_attr(miri, ignore = "...")]` in the crates, and say why.
pub const MIRI: &[MiriRun] = &[
    // The integration suites map hundreds of MiB through MmapPages and run stress loops: the
    // unit tests use small heaps on the system allocator, the buddy and frame suites small
    // regions. Strict provenance: the allocator derives every pointer from the region and
    // direct-map pointers it is given (the integer-address variants a kernel uses,
    // `add_region_addr` and `FrameAllocator::new`, are tested natively only).
    MiriRun {
        package: "veridian-alloc",
        targets: &["lib", "buddy", "frame"],
        quick: 1,
        flags: "-Zmiri-strict-provenance",
    },
    // crossbeam-epoch (the Treiber stack's reclamation) is rejected by Stacked Borrows, a known
    // upstream issue of crossbeam-epoch; it passes under Tree Borrows. The stress tests shrink
    // under Miri (`cfg!(miri)`).
    MiriRun {
        package: "veridian-sync",
        targets: &[
            "lib", "stack", "queues", "seqlock", "locks", "counter", "mutex",
        ],
        quick: 1,
        flags: "-Zmiri-tree-borrows",
    },
    // `green` switches stacks with inline assembly; `simulation` runs 100k tasks. The crate has
    // no unit tests, so `topology` comes first. `deque`'s thread stress and `sched_model`'s
    // cases are sized down under Miri (`cfg!(miri)`); `--quick` runs `deque` too (the
    // Chase-Lev deque with two thieves: 71 s under Miri on the loaded machine). Strict
    // provenance: the deque's slots are `AtomicPtr<()>` and `IntoWord` words `*mut ()`, so
    // boxed and `Arc` tasks keep their provenance (no integer-to-pointer cast).
    MiriRun {
        package: "veridian-sched",
        targets: &["topology", "deque", "lib", "cpuset", "sched", "sched_model"],
        quick: 2,
        flags: "-Zmiri-strict-provenance",
    },
    // `linux_files` and `send_file` drive io_uring and splice through FFI. `ring`'s two-thread
    // transfers are sized down under Miri (`cfg!(miri)`).
    MiriRun {
        package: "veridian-io",
        targets: &["lib", "loopback", "pool", "batch_processor", "ring"],
        quick: 1,
        flags: "",
    },
    // `clock` and `linux` read the TSC and open perf events. The crate has no unit tests, so
    // `pmu` (the PMU code on fake MSR/CPUID back-ends) comes first.
    MiriRun {
        package: "veridian-perf",
        targets: &["pmu", "lib", "histogram", "profiler"],
        quick: 1,
        flags: "",
    },
    // `exhaustive` (every length x every misalignment) and `proptests` are sized for native
    // speed; `export` links the exported mem symbols.
    MiriRun {
        package: "veridian-simd",
        targets: &["lib", "thresholds", "api", "btree"],
        quick: 1,
        flags: "",
    },
];

/// One sanitizer run: `cargo test` of `package` with `-Zsanitizer=<sanitizer>`.
pub struct SanitizerRun {
    /// `thread` or `address`.
    pub sanitizer: &'static str,
    /// The package.
    pub package: &'static str,
    /// Test targets: `lib` for the unit tests, else `tests/<name>.rs`; `--quick` runs the first
    /// [`SANITIZER_QUICK_TARGETS`] (the fastest come first).
    pub tests: &'static [&'static str],
}

/// How many of each run's targets `--quick` runs: under ThreadSanitizer the lock and queue
/// stress tests take minutes each on the loaded 2-core CI machine.
const SANITIZER_QUICK_TARGETS: usize = 1;

/// `VERIDIAN_STRESS_DIVISOR` of the sanitizer runs: the stress tests that read it (veridian-sync's
/// `tests/common`) run 1/100 of their native iterations, never fewer than under Miri. At full
/// size `seqlock` and `stack` did not finish in 20 minutes under ThreadSanitizer.
const SANITIZER_STRESS_DIVISOR: &str = "100";

/// ThreadSanitizer on the tests that run threads against the concurrent structures, and
/// AddressSanitizer on every allocator test.
pub const SANITIZERS: &[SanitizerRun] = &[
    SanitizerRun {
        sanitizer: "thread",
        package: "veridian-sync",
        tests: &["counter", "mutex", "locks", "stack", "queues", "seqlock"],
    },
    SanitizerRun {
        sanitizer: "thread",
        package: "veridian-sched",
        tests: &["deque", "simulation"],
    },
    SanitizerRun {
        sanitizer: "thread",
        package: "veridian-io",
        tests: &["ring", "pool"],
    },
    SanitizerRun {
        sanitizer: "thread",
        package: "veridian-alloc",
        tests: &["stress", "pool", "global"],
    },
    SanitizerRun {
        sanitizer: "address",
        package: "veridian-alloc",
        tests: &[
            "lib",
            "buddy",
            "frame",
            "heap_model",
            "stress",
            "pool",
            "global",
        ],
    },
];

/// The parts, in the order they run.
pub const PARTS: [&str; 4] = ["fuzz", "miri", "sanitizers", "matrix"];

/// Options of `check-extra`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The CI-sized run.
    pub quick: bool,
    /// Only these parts (all when empty).
    pub only: Vec<String>,
}

/// Runs `check-extra`.
pub fn check_extra(options: &Options) -> Result<ExitCode> {
    let started = Instant::now();
    let wanted = |part: &str| options.only.is_empty() || options.only.iter().any(|p| p == part);
    let mut tally = Tally::default();
    tally.step("nightly toolchain with miri and rust-src", ensure_nightly())?;
    if wanted("fuzz") {
        let secs = if options.quick {
            FUZZ_SECS_QUICK
        } else {
            FUZZ_SECS_FULL
        };
        tally.step("cargo-fuzz", ensure_cargo_fuzz())?;
        fuzz(&mut tally, secs)?;
    }
    if wanted("miri") {
        for run in MIRI {
            miri(&mut tally, run, options.quick)?;
        }
    }
    // The sanitizers rebuild the standard library twice (`-Zbuild-std`), which alone takes
    // most of CI's half hour on a fresh 2-core machine: they run in the full mode, or with
    // `--only sanitizers` (also with `--quick`).
    if wanted("sanitizers") && (!options.quick || !options.only.is_empty()) {
        for run in SANITIZERS {
            sanitizer(&mut tally, run, options.quick)?;
        }
    } else if wanted("sanitizers") {
        println!(
            "xtask: sanitizers skipped with --quick (run: cargo xtask check-extra --only sanitizers)"
        );
    }
    if wanted("matrix") {
        matrix(&mut tally, options.quick)?;
    }
    println!(
        "xtask: check-extra{} took {} s",
        if options.quick { " --quick" } else { "" },
        started.elapsed().as_secs()
    );
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo +nightly ...` in the workspace root, free of the environment the outer (stable)
/// cargo set for xtask, so rustup's proxy picks the nightly toolchain.
fn nightly_cargo() -> Command {
    let mut command = Command::new("cargo");
    command
        .arg("+nightly")
        .current_dir(workspace::root())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    command
}

/// The nightly toolchain with the `miri` and `rust-src` components (rustup installs what is
/// missing; `-Zbuild-std` needs `rust-src`).
fn ensure_nightly() -> Result<()> {
    if cmd::find_program("rustup").is_none() {
        return Err(
            "rustup is needed for the nightly toolchain (Miri, sanitizers, fuzzing)".into(),
        );
    }
    let has_miri = cmd::capture(nightly_cargo().args(["miri", "--version"]))
        .is_ok_and(|out| out.status.success());
    let sysroot = cmd::capture(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let has_src = sysroot.is_some_and(|s| s.join("lib/rustlib/src/rust/library").is_dir());
    if has_miri && has_src {
        return Ok(());
    }
    println!("xtask: the nightly toolchain, miri or rust-src is missing: installing with rustup");
    cmd::run_checked(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
        "--component",
        "miri,rust-src",
    ]))
}

/// cargo-fuzz (`cargo install cargo-fuzz --locked` when missing).
fn ensure_cargo_fuzz() -> Result<()> {
    if cmd::capture(nightly_cargo().args(["fuzz", "--version"])).is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    println!("xtask: cargo-fuzz is missing: installing it with cargo");
    cmd::run_checked(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// Runs `command` with stdout and stderr merged into one pipe; returns whether it succeeded and
/// its lines. Lines for which `echo` is true are printed as they come.
fn run_merged(mut command: Command, echo: impl Fn(&str) -> bool) -> Result<(bool, Vec<String>)> {
    println!("xtask: $ {}", cmd::show(&command));
    let (reader, writer) =
        std::io::pipe().map_err(|err| Error::Failed(format!("cannot make a pipe: {err}")))?;
    let writer2 = writer
        .try_clone()
        .map_err(|err| Error::Failed(format!("cannot make a pipe: {err}")))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(|err| Error::Failed(format!("cannot run `{}`: {err}", cmd::show(&command))))?;
    // The parent's copies of the write end (held by the command) must be gone before reading
    // to the end.
    drop(command);
    let mut lines = Vec::new();
    cmd::for_each_line(reader, |line| {
        if echo(line) {
            println!("{line}");
        }
        lines.push(line.to_owned());
    });
    let status = child
        .wait()
        .map_err(|err| Error::Failed(format!("cannot wait for a child: {err}")))?;
    check_interrupt()?;
    Ok((status.success(), lines))
}

/// Prints the last `n` of `lines` (the context of a failure).
fn print_tail(lines: &[String], n: usize) {
    for line in &lines[lines.len().saturating_sub(n)..] {
        println!("    {line}");
    }
}

/// Builds and runs every fuzz target for `secs` seconds.
fn fuzz(tally: &mut Tally, secs: u64) -> Result<()> {
    let target = workspace::target_dir();
    for (krate, targets) in FUZZ {
        let dir = workspace::root().join(krate).join("fuzz");
        let step = format!("fuzz targets of {krate} build");
        let mut build = nightly_cargo();
        build
            .current_dir(&dir)
            .args(["fuzz", "build", "--target-dir"]);
        build.arg(target.join("fuzz"));
        let (ok, lines) = run_merged(build, |l| {
            l.starts_with("error") || l.starts_with("warning")
        })?;
        if !ok {
            print_tail(&lines, 30);
            tally.fail(&step, "cargo fuzz build failed (output above)");
            continue;
        }
        for name in *targets {
            fuzz_one(tally, krate, &dir, name, secs)?;
        }
    }
    Ok(())
}

/// One fuzz target: the committed seeds and the kept corpus, `secs` seconds.
fn fuzz_one(tally: &mut Tally, krate: &str, dir: &Path, name: &str, secs: u64) -> Result<()> {
    let target = workspace::target_dir();
    let corpus = target.join("fuzz-corpus").join(krate).join(name);
    let artifacts = target.join("fuzz-artifacts").join(krate).join(name);
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d)
            .map_err(|err| Error::Failed(format!("cannot create {}: {err}", d.display())))?;
    }
    let seeds = dir.join("seeds").join(name);
    let mut run = nightly_cargo();
    run.current_dir(dir)
        .args(["fuzz", "run", "--target-dir"])
        .arg(target.join("fuzz"))
        .arg(name)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={FUZZ_INPUT_TIMEOUT_SECS}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1");
    let (ok, lines) = run_merged(run, |l| {
        l.starts_with("Done ") || l.contains("ERROR") || l.starts_with("thread '")
    })?;
    let step = format!("fuzz {krate}/{name} ({secs} s)");
    let execs = lines
        .iter()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map(|n| n.trim().to_owned());
    if ok {
        tally.pass(&format!(
            "{step}: {} executions, no finding",
            execs.as_deref().unwrap_or("?")
        ));
        return Ok(());
    }
    print_tail(&lines, 40);
    let unit = lines.iter().find_map(|l| {
        l.split_once("Test unit written to ")
            .map(|(_, p)| p.trim().to_owned())
    });
    let base64 = lines.iter().find_map(|l| l.strip_prefix("Base64: "));
    if let Some(base64) = base64 {
        println!("xtask: crash input (base64): {base64}");
    }
    let reason = match &unit {
        Some(path) => {
            println!(
                "xtask: reproduce: (cd {} && cargo +nightly fuzz run {name} {path})",
                workspace::display(dir)
            );
            format!(
                "finding after {} executions, input {path}",
                execs.as_deref().unwrap_or("?")
            )
        }
        None => "the fuzzer failed without writing an input (output above)".into(),
    };
    tally.fail(&step, &reason);
    Ok(())
}

/// One crate's tests under Miri.
fn miri(tally: &mut Tally, run: &MiriRun, quick: bool) -> Result<()> {
    let flags = format!("{MIRI_FLAGS} {}", run.flags).trim().to_owned();
    let mut command = nightly_cargo();
    command
        .args(["miri", "test", "-p", run.package, "--features", "std"])
        .env("MIRIFLAGS", &flags)
        .env("PROPTEST_CASES", MIRI_PROPTEST_CASES);
    let targets = if quick {
        &run.targets[..run.quick.min(run.targets.len())]
    } else {
        run.targets
    };
    let step = format!("miri {} ({flags}; {})", run.package, targets.join(", "));
    for target in targets {
        match *target {
            "lib" => command.arg("--lib"),
            test => command.args(["--test", test]),
        };
    }
    let shown = format!(
        "MIRIFLAGS='{flags}' PROPTEST_CASES={MIRI_PROPTEST_CASES} {}",
        cmd::show(&command)
    );
    let (ok, lines) = run_merged(command, |l| {
        l.starts_with("test result") || l.starts_with("error") || l.contains("FAILED")
    })?;
    let (passed, ignored) = (
        libtest_total(&lines, "passed"),
        libtest_total(&lines, "ignored"),
    );
    if ok {
        tally.pass(&format!(
            "{step}: {passed} tests passed, {ignored} ignored under Miri"
        ));
    } else {
        print_tail(&lines, 40);
        println!("xtask: reproduce: {shown}");
        tally.fail(
            &step,
            "Miri found a problem or a test failed (output above)",
        );
    }
    Ok(())
}

/// The sum of [`libtest_count`] over every summary line of `lines`.
fn libtest_total(lines: &[String], what: &str) -> usize {
    lines.iter().filter_map(|l| libtest_count(l, what)).sum()
}

/// The number before `what` in a libtest summary line (`test result: ok. 5 passed; ...`).
fn libtest_count(line: &str, what: &str) -> Option<usize> {
    let rest = line.strip_prefix("test result: ")?;
    rest.split([';', '.'])
        .map(str::trim)
        .find_map(|part| part.strip_suffix(what)?.trim().parse().ok())
}

/// ThreadSanitizer's options: report every race and fail the test binary on the first report.
/// In both, an allocation too large for the sanitizer's allocator fails (null) instead of
/// aborting the test binary: tests such as veridian-io's `pool` ask for 2^50 bytes to check the
/// out-of-memory error.
const TSAN_OPTIONS: &str = "halt_on_error=1:allocator_may_return_null=1";
/// AddressSanitizer's options: leaks are reported too.
const ASAN_OPTIONS: &str = "detect_leaks=1:allocator_may_return_null=1";

/// One sanitizer run.
fn sanitizer(tally: &mut Tally, run: &SanitizerRun, quick: bool) -> Result<()> {
    let host = "x86_64-unknown-linux-gnu";
    let target = workspace::target_dir().join(format!("sanitizer-{}", run.sanitizer));
    let mut command = nightly_cargo();
    command
        .args(["test", "-Zbuild-std", "--target", host, "-p", run.package])
        .args(["--features", "std"])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", format!("-Zsanitizer={}", run.sanitizer))
        .env("RUSTDOCFLAGS", format!("-Zsanitizer={}", run.sanitizer))
        .env("TSAN_OPTIONS", TSAN_OPTIONS)
        .env("ASAN_OPTIONS", ASAN_OPTIONS)
        .env("VERIDIAN_STRESS_DIVISOR", SANITIZER_STRESS_DIVISOR);
    let tests = if quick {
        &run.tests[..SANITIZER_QUICK_TARGETS.min(run.tests.len())]
    } else {
        run.tests
    };
    for test in tests {
        match *test {
            "lib" => command.arg("--lib"),
            test => command.args(["--test", test]),
        };
    }
    let tests = tests.join(", ");
    let step = format!(
        "{}Sanitizer {} ({tests})",
        title(run.sanitizer),
        run.package
    );
    let shown = format!(
        "RUSTFLAGS=-Zsanitizer={} VERIDIAN_STRESS_DIVISOR={SANITIZER_STRESS_DIVISOR} \
         TSAN_OPTIONS={TSAN_OPTIONS} ASAN_OPTIONS={ASAN_OPTIONS} {}",
        run.sanitizer,
        cmd::show(&command)
    );
    let (ok, lines) = run_merged(command, |l| {
        l.starts_with("test result") || l.contains("Sanitizer") || l.starts_with("error")
    })?;
    let passed = libtest_total(&lines, "passed");
    if ok {
        tally.pass(&format!("{step}: {passed} tests, no report"));
    } else {
        print_tail(&lines, 60);
        println!("xtask: reproduce: {shown}");
        tally.fail(&step, "a sanitizer report or a failing test (output above)");
    }
    Ok(())
}

fn title(sanitizer: &str) -> &'static str {
    match sanitizer {
        "thread" => "Thread",
        _ => "Address",
    }
}

/// One machine shape of the boot matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// `q35` or `pc`.
    pub machine: &'static str,
    /// Whether the firmware provides ACPI tables (`pc` only may go without).
    pub acpi: bool,
    /// QEMU's `-cpu` model.
    pub cpu: &'static str,
    /// CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub mem_mib: u64,
    /// NUMA nodes: (CPUs `first..=last` or none, MiB of memory); empty = no NUMA options.
    pub nodes: &'static [(Option<(u32, u32)>, u64)],
    /// Part of the `--quick` sample.
    pub quick: bool,
}

impl Shape {
    /// A short description for the table.
    pub fn name(&self) -> String {
        let mut name = format!(
            "{}{} -cpu {} -smp {} -m {}",
            self.machine,
            if self.acpi { "" } else { ",acpi=off" },
            self.cpu,
            self.cpus,
            mib(self.mem_mib)
        );
        if !self.nodes.is_empty() {
            let nodes: Vec<String> = self
                .nodes
                .iter()
                .map(|(cpus, mem)| {
                    let cpus = cpus.map_or("-".into(), |(a, b)| {
                        if a == b {
                            format!("{a}")
                        } else {
                            format!("{a}-{b}")
                        }
                    });
                    format!("[cpus {cpus}, {}]", mib(*mem))
                })
                .collect();
            name.push_str(&format!(" numa {}", nodes.join(" ")));
        }
        name
    }

    /// QEMU's machine options for this shape.
    pub fn args(&self) -> Vec<String> {
        let machine = if self.acpi {
            self.machine.to_owned()
        } else {
            format!("{},acpi=off", self.machine)
        };
        let mut args: Vec<String> = [
            "-machine",
            &machine,
            "-cpu",
            self.cpu,
            "-smp",
            &self.cpus.to_string(),
            "-m",
            &format!("{}M", self.mem_mib),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (i, (cpus, mem)) in self.nodes.iter().enumerate() {
            let mut node = format!("node,nodeid={i}");
            if let Some((a, b)) = cpus {
                node.push_str(&format!(",cpus={a}-{b}"));
            }
            if *mem > 0 {
                args.push("-object".into());
                args.push(format!("memory-backend-ram,id=mem{i},size={mem}M"));
                node.push_str(&format!(",memdev=mem{i}"));
            }
            args.push("-numa".into());
            args.push(node);
        }
        args
    }
}

fn mib(mib: u64) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

/// The boot matrix: memory from 32 MiB to 6 GiB, 1/2/3/4/8 CPUs, q35 and pc (with and without
/// ACPI), `-cpu max`, `qemu64`, a named Intel and AMD model, and 1-3 NUMA nodes including a
/// node without CPUs and one without memory. TCG only.
pub fn matrix_shapes() -> Vec<Shape> {
    let base = Shape {
        machine: "q35",
        acpi: true,
        cpu: "max",
        cpus: 2,
        mem_mib: 256,
        nodes: &[],
        quick: false,
    };
    let mut shapes = Vec::new();
    for (mem_mib, quick) in [
        (32, true),
        (64, false),
        (512, false),
        (2048, false),
        (6144, false),
    ] {
        shapes.push(Shape {
            mem_mib,
            cpus: if mem_mib == 32 { 1 } else { 2 },
            quick,
            ..base.clone()
        });
    }
    for (cpus, quick) in [(1, false), (3, false), (4, false), (8, false)] {
        shapes.push(Shape {
            cpus,
            quick,
            ..base.clone()
        });
    }
    for (machine, acpi, cpus, quick) in [
        ("pc", true, 4, false),
        ("pc", false, 2, true),
        ("pc", false, 1, false),
    ] {
        shapes.push(Shape {
            machine,
            acpi,
            cpus,
            quick,
            ..base.clone()
        });
    }
    for (cpu, machine) in [
        ("qemu64", "q35"),
        ("Cascadelake-Server", "q35"),
        ("EPYC", "pc"),
    ] {
        shapes.push(Shape {
            cpu,
            machine,
            cpus: 4,
            ..base.clone()
        });
    }
    shapes.extend([
        Shape {
            cpus: 2,
            nodes: &[(Some((0, 1)), 256)],
            ..base.clone()
        },
        Shape {
            cpus: 3,
            mem_mib: 384,
            nodes: &[
                (Some((0, 0)), 128),
                (Some((1, 1)), 128),
                (Some((2, 2)), 128),
            ],
            cpu: "EPYC",
            ..base.clone()
        },
        // A node with memory and no CPUs.
        Shape {
            cpus: 4,
            mem_mib: 384,
            nodes: &[(Some((0, 1)), 128), (Some((2, 3)), 128), (None, 128)],
            cpu: "Cascadelake-Server",
            ..base.clone()
        },
        Shape {
            cpus: 2,
            mem_mib: 384,
            nodes: &[(Some((0, 0)), 128), (Some((1, 1)), 128), (None, 128)],
            cpu: "EPYC",
            quick: true,
            ..base.clone()
        },
        // A node with CPUs and no memory.
        Shape {
            cpus: 4,
            nodes: &[(Some((0, 1)), 256), (Some((2, 3)), 0)],
            ..base.clone()
        },
        Shape {
            cpus: 2,
            nodes: &[(Some((0, 0)), 256), (Some((1, 1)), 0)],
            quick: true,
            ..base.clone()
        },
        Shape {
            machine: "pc",
            cpus: 4,
            mem_mib: 1024,
            nodes: &[(Some((0, 1)), 512), (Some((2, 3)), 512)],
            ..base.clone()
        },
    ]);
    shapes
}

/// How long one boot of the suite may take: TCG runs every virtual CPU on the host's 2 cores,
/// and the suite's thread and fuzzing tests scale with the CPUs (measured on the loaded 2-core
/// CI machine: 56 s for 1 CPU, 82 s for 2, over 300 s for 4).
fn matrix_timeout(shape: &Shape) -> Duration {
    Duration::from_secs(150 + 75 * u64::from(shape.cpus))
}

/// Boots the kernel suite on every shape (the quick ones with `quick`), prints the table.
fn matrix(tally: &mut Tally, quick: bool) -> Result<()> {
    let elf = match kernel::build_with(Profile::Debug, &["lockdep"]) {
        Ok(elf) => elf,
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(Error::Failed(reason)) => {
            tally.fail(
                "boot matrix",
                &format!("the kernel did not build: {reason}"),
            );
            return Ok(());
        }
    };
    let mut rows = Vec::new();
    for shape in matrix_shapes().into_iter().filter(|s| s.quick || !quick) {
        let name = shape.name();
        let qemu = qemu::kernel_command(&shape.args(), &elf, "mode=test");
        let shown = cmd::show(&qemu);
        println!("xtask: boot matrix: {name}");
        let started = Instant::now();
        let result = match qemu::run_command(qemu, matrix_timeout(&shape), false) {
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(Error::Failed(reason)) => Err((reason, Vec::new())),
            Ok(outcome) => {
                let verdict = outcome.log.judge(&outcome.exit());
                match suite_failure(&verdict) {
                    None => Ok(format!("{} tests passed", verdict.passed.len())),
                    Some(reason) => Err((reason, outcome.serial)),
                }
            }
        };
        let secs = started.elapsed().as_secs();
        let step = format!("boot matrix: {name}");
        match &result {
            Ok(summary) => tally.pass(&format!("{step}: {summary} in {secs} s")),
            Err((reason, serial)) => {
                print_tail(serial, 25);
                println!("xtask: reproduce: {shown}");
                tally.fail(&step, reason);
            }
        }
        rows.push((name, result.map_err(|(reason, _)| reason), secs));
    }
    println!("xtask: boot matrix ({} shapes, TCG, mode=test)", rows.len());
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(5).max(5);
    println!("| {:width$} | result | time |", "shape");
    println!("|{}|--------|------|", "-".repeat(width + 2));
    for (name, result, secs) in &rows {
        let result = match result {
            Ok(summary) => format!("PASS ({summary})"),
            Err(reason) => format!("FAIL: {reason}"),
        };
        println!("| {name:width$} | {result} | {secs} s |");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_counts() {
        let line = "test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out";
        assert_eq!(libtest_count(line, "passed"), Some(12));
        assert_eq!(libtest_count(line, "ignored"), Some(3));
        assert_eq!(libtest_count("running 3 tests", "passed"), None);
    }

    #[test]
    fn matrix_covers_the_axes() {
        let shapes = matrix_shapes();
        let cpus: Vec<u32> = shapes.iter().map(|s| s.cpus).collect();
        for n in [1, 2, 3, 4, 8] {
            assert!(cpus.contains(&n), "{n} CPUs");
        }
        assert!(shapes.iter().any(|s| s.mem_mib == 32));
        assert!(shapes.iter().any(|s| s.mem_mib == 6144));
        assert!(shapes.iter().any(|s| s.machine == "pc" && !s.acpi));
        assert!(shapes.iter().any(|s| s.nodes.len() == 3));
        assert!(shapes.iter().any(|s| s.nodes.iter().any(|n| n.0.is_none())));
        assert!(shapes.iter().any(|s| s.nodes.iter().any(|n| n.1 == 0)));
        assert!(shapes.iter().all(|s| s.acpi || s.nodes.is_empty()));
        let quick: Vec<&Shape> = shapes.iter().filter(|s| s.quick).collect();
        assert!(quick.len() >= 4);
        // The sample keeps the small machine, no ACPI, a CPU-less and a memory-less node.
        assert!(quick.iter().any(|s| s.mem_mib == 32));
        assert!(quick.iter().any(|s| !s.acpi));
        assert!(quick.iter().any(|s| s.nodes.iter().any(|n| n.0.is_none())));
        assert!(quick.iter().any(|s| s.nodes.iter().any(|n| n.1 == 0)));
        for s in &shapes {
            if !s.nodes.is_empty() {
                let mem: u64 = s.nodes.iter().map(|n| n.1).sum();
                assert_eq!(
                    mem,
                    s.mem_mib,
                    "{}: node memory must add up to -m",
                    s.name()
                );
            }
        }
    }

    #[test]
    fn shape_arguments() {
        let shape = Shape {
            machine: "pc",
            acpi: true,
            cpu: "EPYC",
            cpus: 4,
            mem_mib: 256,
            nodes: &[(Some((0, 1)), 256), (Some((2, 3)), 0)],
            quick: false,
        };
        assert_eq!(
            shape.args().join(" "),
            "-machine pc -cpu EPYC -smp 4 -m 256M -object memory-backend-ram,id=mem0,size=256M \
             -numa node,nodeid=0,cpus=0-1,memdev=mem0 -numa node,nodeid=1,cpus=2-3"
        );
        assert_eq!(
            shape.name(),
            "pc -cpu EPYC -smp 4 -m 256M numa [cpus 0-1, 256M] [cpus 2-3, 0M]"
        );
    }
}
