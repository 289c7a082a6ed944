//! `cargo xtask bench`: boots the release kernel with `mode=bench` under QEMU TCG with
//! `-icount shift=0` (the guest TSC advances by one per instruction, so the figures are
//! deterministic instruction counts) and prints the kernel's `bench ...` lines as a table next
//! to the design guide's targets; `bench_report` writes them as JSON, Markdown and SVG.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use crate::bench_report::{self, Results};
use crate::disk;
use crate::error::{Error, Result};
use crate::kernel::{self, Profile};
use crate::qemu::{self, Boot, Machine, Vm};
use crate::tools::{self, Needs};
use crate::workspace;

/// Timeout of the benchmark boot (icount makes the guest slower than plain TCG).
const BENCH_TIMEOUT: Duration = Duration::from_secs(300);

/// One `bench <name> key=value ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchLine {
    /// Benchmark name.
    pub name: String,
    /// Its fields (`what` without quotes).
    pub fields: BTreeMap<String, String>,
}

/// Parses a kernel `bench` line; `None` for any other line.
pub fn parse_line(line: &str) -> Option<BenchLine> {
    let rest = line.trim().strip_prefix("bench ")?;
    let (name, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut fields = BTreeMap::new();
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(' ').unwrap_or((after, ""))
        };
        fields.insert(key.to_owned(), value.to_owned());
        rest = next;
    }
    Some(BenchLine {
        name: name.to_owned(),
        fields,
    })
}

/// Options of `cargo xtask bench`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `--save`: also copy the report to `docs/benchmarks/` (the committed baseline).
    pub save: bool,
    /// `--check`: compare with the committed baseline, as `cargo xtask test` does.
    pub check: bool,
    /// `--linux`: then the same rows from Linux in the same emulator, side by side
    /// ([`crate::linux_bench`]).
    pub linux: bool,
}

/// Runs the benchmark boot, prints the table and writes the report (see `bench_report`).
pub fn bench(options: Options) -> Result<ExitCode> {
    // Before the Veridian boot: fetching and building what the Linux run needs may fail.
    let linux = options
        .linux
        .then(crate::linux_bench::prepare)
        .transpose()?;
    let (results, lines) = measure_lines()?;
    let files = bench_report::write(&results, &bench_report::results_dir())?;
    for file in &files {
        println!("xtask: wrote {}", workspace::display(file));
    }
    if options.check {
        bench_report::check_against(&results, &bench_report::baseline_path())?;
    }
    if options.save {
        for file in bench_report::save(&files)? {
            println!("xtask: saved {}", workspace::display(&file));
        }
    }
    match linux {
        Some(prepared) => crate::linux_bench::compare(&prepared, &lines, VM),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The benchmark machine: the two-node machine, `-cpu max`, the TSC counting instructions.
const VM: Vm = Vm {
    machine: Machine::Numa,
    icount: true,
    cpu: "max",
    // The test disk, for `blk_read_4k_batch1`.
    disk: true,
    // Two NICs on one link, for `net_udp_echo`.
    nic_pair: true,
};

/// Builds the release kernel, boots it with `mode=bench`, prints the table and returns the
/// rows; a run that failed or printed no row is an error.
pub fn measure() -> Result<Results> {
    measure_lines().map(|(results, _)| results)
}

/// [`measure`], with the parsed lines as the kernel printed them.
fn measure_lines() -> Result<(Results, Vec<BenchLine>)> {
    tools::ensure(Needs::QEMU)?;
    let elf = kernel::build(Profile::Release)?;
    disk::create()?;
    let boot = Boot::Kernel {
        elf,
        cmdline: "mode=bench".into(),
    };
    let vm = VM;
    let outcome = qemu::run(&boot, vm, BENCH_TIMEOUT)?;
    let lines: Vec<BenchLine> = outcome
        .serial
        .iter()
        .filter_map(|l| parse_line(l))
        .collect();
    println!();
    println!(
        "{:<24} {:>8} {:>10} {:>10} {:>10}  target (design guide, in ns)",
        "benchmark (instructions)", "count", "min", "median", "p99"
    );
    for line in &lines {
        let get = |k: &str| line.fields.get(k).map_or("-", String::as_str);
        if line.fields.contains_key("value") {
            println!("{:<24} {:>8} {:>10}", line.name, "", get("value"));
            continue;
        }
        println!(
            "{:<24} {:>8} {:>10} {:>10} {:>10}  {}",
            line.name,
            get("count"),
            get("min"),
            get("median"),
            get("p99"),
            bench_report::target_text(&line.name)
        );
    }
    println!(
        "(QEMU TCG -icount shift=0: one unit = one guest instruction; a `rep` string \
         instruction counts once per iteration: `rep stosb` of 4 KiB is about 4100)"
    );
    match outcome.failure_reason() {
        None if !lines.is_empty() => {
            Results::new(&qemu::command(&boot, vm), vm.cpu, &lines).map(|r| (r, lines))
        }
        None => Err(Error::Failed("the kernel printed no bench lines".into())),
        Some(reason) => Err(Error::Failed(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_are_parsed() {
        let l = parse_line(
            "bench kalloc_free_64 unit=tsc count=10 min=1 median=2 p99=3 max=4 overhead=5 \
             what=\"kernel heap, 64 B\"",
        )
        .expect("a bench line");
        assert_eq!(l.name, "kalloc_free_64");
        assert_eq!(l.fields["median"], "2");
        assert_eq!(l.fields["what"], "kernel heap, 64 B");
        assert_eq!(parse_line("ktest pass x"), None);
        assert_eq!(
            parse_line("bench timing_overhead unit=tsc value=48")
                .expect("line")
                .fields["value"],
            "48"
        );
        assert_eq!(parse_line("bench broken what=\"unterminated"), None);
    }
}
