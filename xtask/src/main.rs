//! `cargo xtask`: builds, boots, images and tests the Veridian workspace.
//!
//! ```text
//! cargo xtask run [--iso] [--uefi] [--entry N] [--timeout SECS] [--debug] [--machine M] [-- WORDS...]
//! cargo xtask iso [--debug] [--entry N] [-- WORDS...]
//! cargo xtask test
//! ```
//!
//! See `xtask/README.md` and `cargo xtask --help`. This file parses the arguments and dispatches;
//! each concern lives in its own module.

mod bench;
mod bench_programs;
mod bench_report;
mod cmd;
mod disk;
mod error;
mod extra;
mod foreign;
mod interrupt;
mod iso;
mod kernel;
mod kernel_log;
mod linux_bench;
mod msrv;
mod net;
mod pgo;
mod profile;
mod publish;
mod qemu;
mod ratios;
mod run;
mod test;
mod tools;
mod workspace;

use std::process::ExitCode;
use std::time::Duration;

use error::Error;
use kernel::Profile;

const USAGE: &str = "\
Usage: cargo xtask <COMMAND> [OPTIONS]

Commands:
  run    Build the kernel (release) and boot it in QEMU (TCG), streaming its serial log.
         Exits 0 when the kernel reports success, 124 on timeout, 130 on Ctrl-C, 1 otherwise.
  iso    Build the kernel (release) and a GRUB ISO: target/veridian.iso
         (menu entries: 0 \"Veridian\" mode=run, 1 \"Veridian tests\" mode=test).
  bench  `bench [--save | --check] [--linux]`: build the kernel (release) and boot it with mode=bench
         under `-icount shift=0`: its own benchmarks (boot, heap, frames, yields, system call,
         page fault, IPC) as deterministic instruction counts, printed as a table and written
         to target/bench/kernel-results.{json,md,svg} (table and bar chart against the goals).
         --save also copies the three files to docs/benchmarks/ (the baseline `test` checks);
         --check compares the run with that baseline as `test` does (fails on a row more than
         10 % worse or missing). --linux then boots Debian's kernel (fetched once into
         target/linux with apt-get) in the same emulator with a static C program as /init and
         prints the rows both kernels have side by side (medians and the ratio).
  pgo    `pgo <crate> [-- <criterion args>]`: the crate's benchmarks before and after
         profile-guided optimisation (instrumented run, llvm-profdata merge, rebuild), with
         the after/before ratio of each.
  profile
         `profile [--icount] [--timeout SECS] [-- WORKLOAD]`: boot the kernel (release) with
         mode=profile: WORKLOAD (bench (default), threads or user:<program>) runs under the
         sampling profiler (APIC timer, 1 kHz per CPU); the folded stacks it writes on COM2
         are symbolised from the kernel (and user program) ELF into target/profile/flame.svg
         (inferno) and target/profile/folded.txt; prints the top 20 functions by self samples.
         --icount runs under `-icount shift=0` as `bench` does (default timeout 300 s).
  bench-programs
         `bench-programs [--runs N] [--workload W[,W...]] [--save]`: build `benches/`
         (veridian-benches) in release and run its allocator workloads (larson, xmalloc,
         cache-scratch, json, compiler) under veridian-alloc, glibc, mimalloc and jemalloc, one
         binary per global allocator, N times each (default 5), interleaved; single-threaded
         workloads pinned to CPU 0. Prints each allocator's median and min..max wall time,
         user and system time, peak RSS, and veridian's ratios to each peer; --save writes the
         tables into docs/benchmarks/programs.md.
  bench-ratios
         `bench-ratios [--baselines a,b,c] [--ours NAME] [FILTER...]`: from criterion's saved estimates
         (target/criterion), each group's `veridian` median, each peer's median and the ratio
         ours / peer; with several baselines (`cargo bench -- --save-baseline a`), each run's
         ratio and the spread over the runs; --ours picks our implementation (default
         `veridian`). FILTER words keep ids containing one of them.
  publish-check
         `cargo publish --workspace --dry-run`, then each component crate's package unpacked
         and its test suites built (default features) and run (`--features std`) against the
         unpacked packages of its sibling dependencies, as crates.io would serve them.
  foreign-kernels
         `foreign-kernels [NAME...]`: package the component crates (as publish-check does),
         then build each foreign-kernel example (xtask/foreign-kernels/NAME: alloc, sync,
         sched, io, perf, simd; all without names) against its packaged crate for
         x86_64-unknown-none and boot it in QEMU; pass = isa-debug-exit 0x10 (status 33).
  msrv   Build each component crate with the toolchain of its stated `rust-version`
         (installed with rustup when missing): for x86_64-unknown-none, and for the host
         with all features.
  test   Everything: tool checks, fmt, clippy, host tests, bare-metal builds, the kernel test
         suite in QEMU (PVH), harness self-checks, the suite again through GRUB, and the
         kernel benchmarks against docs/benchmarks/kernel-results.json (+10 % fails).
         Ends with the line `<N> passed, <M> failed`; exits 0 iff M is 0.
  check-extra
         `check-extra [--quick] [--only fuzz,miri,sanitizers,matrix]`: the nightly and long
         checks: every cargo-fuzz target (300 s each; --quick: 30 s), Miri on every crate's
         hosted tests, ThreadSanitizer and AddressSanitizer, and the kernel suite booted on a
         matrix of machine shapes (--quick: a sample), printed as a table. Installs the nightly
         toolchain (miri, rust-src) and cargo-fuzz when missing. A finding fails the command
         and prints its reproducer. Ends with `<N> passed, <M> failed`.
  net    `net [--runs N] [--mib M] [--echoes E] [--check]`: boot the kernel (release) with mode=serve
         and a virtio-net NIC on QEMU's user network (ports forwarded from 127.0.0.1 only),
         then time from here E UDP echo round trips (default 2000) and N transfers (default 5)
         of M MiB (default 32) to the kernel's TCP sink and from its generator, each checked
         (hash, byte for byte); prints the medians: net_udp_echo (us), net_tcp_rx and
         net_tcp_tx (MB/s). Wall-clock figures, bounded by TCG. --check instead runs the
         network step of `test` (correctness, with malformed frames on a second NIC).
  help   Print this help.

Options for run:
  --iso            Boot target/veridian.iso through GRUB (-cdrom) instead of -kernel (PVH).
  --uefi           Boot the ISO through UEFI firmware (OVMF); implies --iso.
  --entry N        With --iso: the GRUB entry to boot (0 = mode=run, 1 = mode=test). Default 0.
  --timeout SECS   Kill QEMU after SECS seconds (default 60).
  --debug          Use the debug kernel instead of the release one.
  --machine M      numa (default: 4 CPUs on 2 NUMA nodes, 128 MiB each, distance 20),
                   flat (4 CPUs, no NUMA options) or single (1 CPU).
  -- WORDS...      Extra kernel command-line words (default `mode=run`), e.g.
                   `cargo xtask run -- mode=test ktest.filter=alloc`. With --iso they are
                   appended to every GRUB entry's command line.

Options for iso:
  --debug          Use the debug kernel.
  --entry N        The entry GRUB boots by default (default 0).
  -- WORDS...      Extra words appended to every entry's kernel command line.

Environment: the tools xtask needs (the x86_64-unknown-none target, QEMU, GRUB, xorriso, mtools,
rustfmt, clippy) are checked first; missing packages are installed with apt-get when running as
root on Debian/Ubuntu, otherwise the exact command to run is printed.
";

/// Default timeout of `profile` (the bench workload under the sampler, or under icount).
const PROFILE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default timeout of `run`.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// Boot the GRUB ISO.
    pub iso: bool,
    /// Boot the ISO through UEFI.
    pub uefi: bool,
    /// The GRUB entry to boot.
    pub entry: usize,
    /// When to give up.
    pub timeout: Duration,
    /// The kernel's profile.
    pub profile: Profile,
    /// Extra kernel command-line words.
    pub extra: Vec<String>,
    /// The virtual machine's CPUs and NUMA layout.
    pub machine: qemu::Machine,
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cmd {
    Run(RunArgs),
    Iso(iso::IsoOptions),
    Test,
    PublishCheck,
    Msrv,
    Bench(bench::Options),
    Pgo(String, Vec<String>),
    Profile(profile::Options),
    BenchRatios(Vec<String>, String, Vec<String>),
    BenchPrograms(Vec<String>),
    CheckExtra(extra::Options),
    Net(net::Options),
    ForeignKernels(Vec<String>),
    Help,
}

fn parse(args: &[String]) -> Result<Cmd, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("no command given".into());
    };
    if command == "pgo" {
        let (krate, extra) = match rest.split_first() {
            Some((krate, extra)) if !krate.starts_with('-') => (krate.clone(), extra),
            _ => {
                return Err(
                    "`pgo` needs a crate name, e.g. `cargo xtask pgo veridian-simd`".into(),
                );
            }
        };
        let extra = match extra.split_first() {
            None => Vec::new(),
            Some((dashes, words)) if dashes == "--" => words.to_vec(),
            Some((word, _)) => {
                return Err(format!(
                    "pgo: unexpected `{word}` (criterion arguments go after `--`)"
                ));
            }
        };
        return Ok(Cmd::Pgo(krate, extra));
    }
    if command == "foreign-kernels" {
        if let Some(option) = rest.iter().find(|word| word.starts_with('-')) {
            return Err(format!("foreign-kernels: unknown option `{option}`"));
        }
        return Ok(Cmd::ForeignKernels(rest.to_vec()));
    }
    if command == "profile" {
        let mut options = profile::Options {
            workload: "bench".into(),
            icount: false,
            timeout: PROFILE_TIMEOUT,
        };
        let mut words = rest.iter();
        while let Some(word) = words.next() {
            match word.as_str() {
                "--icount" => options.icount = true,
                "--timeout" => {
                    let secs = words.next().ok_or("--timeout needs a number of seconds")?;
                    let secs: u64 = secs
                        .parse()
                        .map_err(|_| format!("--timeout: `{secs}` is not a number of seconds"))?;
                    options.timeout = Duration::from_secs(secs);
                }
                "--" => {
                    let workload: Vec<&String> = words.by_ref().collect();
                    match workload.as_slice() {
                        [w] => options.workload = (*w).clone(),
                        _ => {
                            return Err(
                                "profile: one workload after `--`: bench, threads or user:<program>"
                                    .into(),
                            );
                        }
                    }
                }
                "-h" | "--help" => return Ok(Cmd::Help),
                other => return Err(format!("profile: unexpected `{other}`")),
            }
        }
        return Ok(Cmd::Profile(options));
    }
    if command == "check-extra" {
        let mut options = extra::Options {
            quick: false,
            only: Vec::new(),
        };
        let mut words = rest.iter();
        while let Some(word) = words.next() {
            let list = if let Some(list) = word.strip_prefix("--only=") {
                list
            } else if word == "--only" {
                words
                    .next()
                    .ok_or("--only needs a comma-separated list of parts")?
            } else if word == "--quick" {
                options.quick = true;
                continue;
            } else if word == "-h" || word == "--help" {
                return Ok(Cmd::Help);
            } else {
                return Err(format!("check-extra: unexpected `{word}`"));
            };
            for part in list.split(',').filter(|p| !p.is_empty()) {
                if !extra::PARTS.contains(&part) {
                    return Err(format!(
                        "check-extra: unknown part `{part}` (expected {})",
                        extra::PARTS.join(", ")
                    ));
                }
                options.only.push(part.to_owned());
            }
        }
        return Ok(Cmd::CheckExtra(options));
    }
    if command == "bench" {
        let mut options = bench::Options::default();
        for word in rest {
            match word.as_str() {
                "--save" => options.save = true,
                "--check" => options.check = true,
                "--linux" => options.linux = true,
                "-h" | "--help" => return Ok(Cmd::Help),
                _ => return Err(format!("bench: unexpected `{word}`")),
            }
        }
        if options.save && options.check {
            return Err("bench: --save and --check exclude each other".into());
        }
        return Ok(Cmd::Bench(options));
    }
    if command == "net" {
        let mut options = net::Options::default();
        let mut words = rest.iter();
        while let Some(word) = words.next() {
            let mut number = |name: &str| -> Result<u64, String> {
                words
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|&v| v > 0)
                    .ok_or(format!("net: {name} needs a positive number"))
            };
            match word.as_str() {
                "--runs" => options.runs = number("--runs")? as usize,
                "--mib" => options.mib = number("--mib")?,
                "--echoes" => options.echoes = number("--echoes")? as usize,
                "--check" => options.check = true,
                "-h" | "--help" => return Ok(Cmd::Help),
                _ => return Err(format!("net: unexpected `{word}`")),
            }
        }
        return Ok(Cmd::Net(options));
    }
    if command == "bench-programs" {
        // The runner parses (and tests) its own arguments; only help is answered here.
        if rest.iter().any(|w| w == "-h" || w == "--help") {
            return Ok(Cmd::Help);
        }
        return Ok(Cmd::BenchPrograms(rest.to_vec()));
    }
    if command == "bench-ratios" {
        let mut baselines = Vec::new();
        let mut filters = Vec::new();
        let mut ours = ratios::OURS.to_owned();
        let mut words = rest.iter();
        while let Some(word) = words.next() {
            if let Some(list) = word.strip_prefix("--baselines=") {
                baselines.extend(list.split(',').map(str::to_owned));
            } else if word == "--baselines" {
                let list = words
                    .next()
                    .ok_or("--baselines needs a comma-separated list of names")?;
                baselines.extend(list.split(',').map(str::to_owned));
            } else if let Some(name) = word.strip_prefix("--ours=") {
                name.clone_into(&mut ours);
            } else if word == "--ours" {
                ours = words
                    .next()
                    .ok_or("--ours needs an implementation name")?
                    .clone();
            } else if word.starts_with('-') {
                return Err(format!("bench-ratios: unknown option `{word}`"));
            } else {
                filters.push(word.clone());
            }
        }
        baselines.retain(|b| !b.is_empty());
        return Ok(Cmd::BenchRatios(baselines, ours, filters));
    }
    let mut run = RunArgs {
        iso: false,
        uefi: false,
        entry: 0,
        timeout: RUN_TIMEOUT,
        profile: Profile::Release,
        extra: Vec::new(),
        machine: qemu::Machine::Numa,
    };
    let mut entry_given = false;
    let (options, extra) = match rest.iter().position(|arg| arg == "--") {
        Some(pos) => (&rest[..pos], rest[pos + 1..].to_vec()),
        None => (rest, Vec::new()),
    };
    run.extra = extra;

    let mut options = options.iter();
    while let Some(option) = options.next() {
        // Accept both `--name value` and `--name=value`.
        let (name, inline_value) = match option.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (option.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline_value
                .clone()
                .or_else(|| options.next().cloned())
                .ok_or_else(|| format!("{name} needs a value ({what})"))
        };
        let allowed: &[&str] = match command.as_str() {
            "run" => &[
                "--iso",
                "--uefi",
                "--entry",
                "--timeout",
                "--debug",
                "--machine",
            ],
            "iso" => &["--entry", "--debug"],
            _ => &[],
        };
        match name {
            "-h" | "--help" => return Ok(Cmd::Help),
            _ if !allowed.contains(&name) => {
                return Err(format!("unknown option `{option}` for `{command}`"));
            }
            "--iso" | "--uefi" | "--debug" if inline_value.is_some() => {
                return Err(format!("{name} takes no value"));
            }
            "--iso" => run.iso = true,
            "--uefi" => run.uefi = true,
            "--debug" => run.profile = Profile::Debug,
            "--entry" => {
                let text = value("an entry number")?;
                run.entry = text
                    .parse()
                    .ok()
                    .filter(|entry| *entry < iso::ENTRIES.len())
                    .ok_or_else(|| {
                        format!(
                            "--entry {text}: must be 0..={} (see --help)",
                            iso::ENTRIES.len() - 1
                        )
                    })?;
                entry_given = true;
            }
            "--machine" => {
                let text = value("numa, flat, single or numa-asymmetric")?;
                run.machine = qemu::Machine::ALL
                    .iter()
                    .find(|(name, _)| *name == text)
                    .map(|&(_, m)| m)
                    .ok_or_else(|| {
                        format!("--machine {text}: expected numa, flat, single or numa-asymmetric")
                    })?;
            }
            "--timeout" => {
                let text = value("seconds")?;
                let secs: u64 = text.parse().ok().filter(|secs| *secs > 0).ok_or_else(|| {
                    format!("--timeout {text}: expected a positive whole number of seconds")
                })?;
                run.timeout = Duration::from_secs(secs);
            }
            _ => unreachable!("every allowed option is handled"),
        }
    }

    match command.as_str() {
        "-h" | "--help" | "help" => Ok(Cmd::Help),
        "run" => {
            if entry_given && !(run.iso || run.uefi) {
                return Err("--entry needs --iso".into());
            }
            Ok(Cmd::Run(run))
        }
        "iso" => Ok(Cmd::Iso(iso::IsoOptions {
            profile: run.profile,
            default_entry: run.entry,
            extra_cmdline: run.extra,
        })),
        "test" if !run.extra.is_empty() => Err("`test` takes no arguments".into()),
        "test" => Ok(Cmd::Test),
        "publish-check" if !run.extra.is_empty() => {
            Err("`publish-check` takes no arguments".into())
        }
        "publish-check" => Ok(Cmd::PublishCheck),
        "msrv" if !run.extra.is_empty() => Err("`msrv` takes no arguments".into()),
        "msrv" => Ok(Cmd::Msrv),
        other => Err(format!("unknown command `{other}`")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("xtask: {message} (see `cargo xtask --help`)");
            return ExitCode::from(2);
        }
    };
    interrupt::install();
    let result = match command {
        Cmd::Help => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(args) => run::run(&args),
        Cmd::Iso(options) => tools::ensure(tools::Needs {
            iso: true,
            ..tools::Needs::default()
        })
        .and_then(|()| iso::build(&options))
        .map(|_| ExitCode::SUCCESS),
        Cmd::Test => test::test(),
        Cmd::Bench(options) => bench::bench(options),
        Cmd::PublishCheck => publish::publish_check().map(|()| ExitCode::SUCCESS),
        Cmd::Msrv => workspace::COMPONENT_CRATES
            .iter()
            .try_for_each(|package| msrv::check(package))
            .map(|()| ExitCode::SUCCESS),
        Cmd::Pgo(krate, extra) => pgo::pgo(&krate, &extra),
        Cmd::Profile(options) => profile::profile(&options),
        Cmd::BenchRatios(baselines, ours, filters) => {
            ratios::bench_ratios(&baselines, &ours, &filters)
        }
        Cmd::CheckExtra(options) => extra::check_extra(&options),
        Cmd::Net(options) => net::bench(options),
        Cmd::ForeignKernels(names) => foreign::run(&names).map(|()| ExitCode::SUCCESS),
        Cmd::BenchPrograms(args) => bench_programs::bench_programs(&args),
    };
    match result {
        Ok(code) => code,
        Err(Error::Interrupted) => {
            eprintln!("xtask: interrupted (Ctrl-C)");
            ExitCode::from(130)
        }
        Err(Error::Failed(message)) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Cmd, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    #[test]
    fn profile_options() {
        let Ok(Cmd::Profile(o)) = parse_str("profile") else {
            panic!("profile parses")
        };
        assert_eq!((o.workload.as_str(), o.icount), ("bench", false));
        assert_eq!(o.timeout, PROFILE_TIMEOUT);
        let Ok(Cmd::Profile(o)) = parse_str("profile --icount --timeout 9 -- user:hello") else {
            panic!("profile parses")
        };
        assert_eq!((o.workload.as_str(), o.icount), ("user:hello", true));
        assert_eq!(o.timeout, Duration::from_secs(9));
        assert!(parse_str("profile -- a b").is_err());
        assert!(parse_str("profile --timeout x").is_err());
        assert!(parse_str("profile threads").is_err());
    }

    #[test]
    fn foreign_kernels_take_names_only() {
        let Ok(Cmd::ForeignKernels(names)) = parse_str("foreign-kernels alloc simd") else {
            panic!("foreign-kernels parses")
        };
        assert_eq!(names, ["alloc", "simd"]);
        assert!(parse_str("foreign-kernels --all").is_err());
    }

    #[test]
    fn run_defaults() {
        let Ok(Cmd::Run(args)) = parse_str("run") else {
            panic!("run parses")
        };
        assert_eq!(
            args,
            RunArgs {
                iso: false,
                uefi: false,
                entry: 0,
                timeout: RUN_TIMEOUT,
                profile: Profile::Release,
                extra: vec![],
                machine: qemu::Machine::Numa,
            }
        );
    }

    #[test]
    fn run_with_everything() {
        let Ok(Cmd::Run(args)) =
            parse_str("run --iso --uefi --entry 1 --timeout=5 --debug -- ktest.filter=a x=--y")
        else {
            panic!("run parses")
        };
        assert!(args.iso && args.uefi);
        assert_eq!(args.entry, 1);
        assert_eq!(args.timeout, Duration::from_secs(5));
        assert_eq!(args.profile, Profile::Debug);
        assert_eq!(args.extra, ["ktest.filter=a", "x=--y"]);
    }

    #[test]
    fn iso_options() {
        assert_eq!(
            parse_str("iso --entry=1 -- foo"),
            Ok(Cmd::Iso(iso::IsoOptions {
                profile: Profile::Release,
                default_entry: 1,
                extra_cmdline: vec!["foo".into()],
            }))
        );
    }

    #[test]
    fn check_extra_options() {
        assert_eq!(
            parse_str("check-extra --quick --only=fuzz,matrix"),
            Ok(Cmd::CheckExtra(extra::Options {
                quick: true,
                only: vec!["fuzz".into(), "matrix".into()],
            }))
        );
        assert_eq!(
            parse_str("check-extra"),
            Ok(Cmd::CheckExtra(extra::Options {
                quick: false,
                only: vec![],
            }))
        );
    }

    #[test]
    fn bench_options() {
        assert_eq!(
            parse_str("bench"),
            Ok(Cmd::Bench(bench::Options::default()))
        );
        assert_eq!(
            parse_str("bench --save"),
            Ok(Cmd::Bench(bench::Options {
                save: true,
                ..bench::Options::default()
            }))
        );
        assert_eq!(
            parse_str("bench --check"),
            Ok(Cmd::Bench(bench::Options {
                check: true,
                ..bench::Options::default()
            }))
        );
        assert_eq!(
            parse_str("bench --linux --save"),
            Ok(Cmd::Bench(bench::Options {
                save: true,
                check: false,
                linux: true
            }))
        );
        assert!(parse_str("bench --linux=1").is_err());
    }

    #[test]
    fn bench_programs_hands_its_arguments_to_the_runner() {
        assert_eq!(
            parse_str("bench-programs --runs 3 --workload json --save"),
            Ok(Cmd::BenchPrograms(
                ["--runs", "3", "--workload", "json", "--save"]
                    .map(String::from)
                    .to_vec()
            ))
        );
        assert_eq!(
            parse_str("bench-programs"),
            Ok(Cmd::BenchPrograms(Vec::new()))
        );
        assert_eq!(parse_str("bench-programs --runs 2 -h"), Ok(Cmd::Help));
    }

    #[test]
    fn help_everywhere() {
        for line in [
            "help",
            "--help",
            "-h",
            "run --help",
            "test -h",
            "iso --debug --help",
        ] {
            assert_eq!(parse_str(line), Ok(Cmd::Help), "{line}");
        }
    }

    #[test]
    fn bad_arguments_are_rejected() {
        for line in [
            "",
            "boot",
            "run --frobnicate",
            "run --timeout",
            "run --iso=yes",
            "run --timeout 0",
            "run --timeout abc",
            "run --entry 1",
            "run --iso --entry 2",
            "iso --iso",
            "test --debug",
            "test -- x",
            "publish-check --debug",
            "check-extra --fast",
            "check-extra --only fuzz,lint",
            "check-extra --only",
            "bench --linux-typo",
            "bench --save --check",
            "bench --linux=yes",
            "bench --debug",
            "run --linux",
        ] {
            assert!(parse_str(line).is_err(), "`{line}` should be rejected");
        }
    }
}
