//! `cargo xtask bench`: boots the release kernel with `mode=bench` under QEMU TCG with
//! `-icount shift=0` (the guest TSC advances by one per instruction, so the figures are
//! deterministic instruction counts) and prints the kernel's `bench ...` lines as a table next
//! to the design guide's targets.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::kernel::{self, Profile};
use crate::qemu::{self, Boot, Machine, Vm};
use crate::tools::{self, Needs};

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

/// The design guide's target for a benchmark, if it has one.
fn target(name: &str) -> &'static str {
    match name {
        "sched_yield_round_trip" => "context switch < 500 ns (2 switches here)",
        "kalloc_free_64" => "memory allocation < 200 ns",
        "thread_yield_switch" => "context switch < 500 ns (stretch 300); goal <= 150 instructions",
        "null_syscall" => "system call < 100 ns (stretch 50); goal <= 50 instructions",
        "page_fault_anon" => "page fault < 10 us (stretch 5); goal <= 1000 instructions",
        "sched_yield_switch" => "context switch < 500 ns (stretch 300); goal <= 150 instructions",
        "ipc_call_reply" => "IPC < 1 us (stretch 500 ns); goal <= 600 instructions",
        _ => "",
    }
}

/// Runs the benchmark boot and prints the table; with `linux`, then the same rows from Linux
/// in the same emulator, side by side ([`crate::linux_bench`]).
pub fn bench(linux: bool) -> Result<ExitCode> {
    tools::ensure(Needs {
        qemu: true,
        iso: false,
        lints: false,
    })?;
    let linux = linux.then(crate::linux_bench::prepare).transpose()?;
    let elf = kernel::build(Profile::Release)?;
    let boot = Boot::Kernel {
        elf,
        cmdline: "mode=bench".into(),
    };
    let vm = Vm {
        machine: Machine::Numa,
        icount: true,
        cpu: "max",
    };
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
            target(&line.name)
        );
    }
    println!(
        "(QEMU TCG -icount shift=0: one unit = one guest instruction; a `rep` string \
         instruction counts once per iteration: `rep stosb` of 4 KiB is about 4100)"
    );
    match outcome.failure_reason() {
        None if !lines.is_empty() => match linux {
            Some(prepared) => crate::linux_bench::compare(&prepared, &lines, vm),
            None => Ok(ExitCode::SUCCESS),
        },
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
