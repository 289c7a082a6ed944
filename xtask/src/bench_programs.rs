//! `cargo xtask bench-programs [--runs N] [--workload W] [--save]`: the allocator workloads of
//! `benches/` (package `veridian-benches`) under each global allocator, as whole processes.
//!
//! Builds the package's binaries in release (one per allocator, and the `bench-programs`
//! runner), then runs the runner with the given arguments. The runner parses and checks them
//! (its tests cover the parsing, medians and ratios), interleaves the allocators, pins
//! single-threaded workloads to CPU 0, measures wall, user and system time and peak RSS per
//! process, and with `--save` writes its tables into `docs/benchmarks/programs.md`.

use std::process::{Command, ExitCode};

use crate::cmd;
use crate::error::Result;
use crate::workspace;

/// The package that holds the workloads, the allocator binaries and the runner.
pub const PACKAGE: &str = "veridian-benches";

/// Builds the binaries and runs the runner with `args`; its exit status is ours.
pub fn bench_programs(args: &[String]) -> Result<ExitCode> {
    cmd::run_checked(cmd::cargo().args(["build", "--release", "-p", PACKAGE, "--bins"]))?;
    let runner = workspace::target_dir().join("release/bench-programs");
    let status = cmd::run(Command::new(runner).args(args))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
