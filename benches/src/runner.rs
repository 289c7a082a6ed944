//! The program benchmark runner (`bench-programs`, run by `cargo xtask bench-programs`): each
//! workload under each allocator's binary, whole-process wall, user and system time and peak
//! RSS, medians and ratios.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::workloads::{self, Workload};

/// The global allocators, each with its own binary `alloc-<name>`; the first is ours.
pub const ALLOCATORS: [&str; 4] = ["veridian", "glibc", "mimalloc", "jemalloc"];

/// Runs per workload and allocator when `--runs` is not given.
pub const DEFAULT_RUNS: usize = 5;

/// The command line of the runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Runs per workload and allocator.
    pub runs: usize,
    /// The workloads to run (all when the command line names none).
    pub workloads: Vec<&'static str>,
    /// Write the tables into `docs/benchmarks/programs.md`.
    pub save: bool,
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run the benchmarks.
    Run(Options),
    /// Print the usage.
    Help,
}

/// The usage text.
pub const USAGE: &str = "\
Usage: bench-programs [--runs N] [--workload W[,W...]]... [--save]
  --runs N       runs per workload and allocator (default 5), interleaved across allocators
  --workload W   only these workloads (repeatable, or comma-separated)
  --save         write the tables into docs/benchmarks/programs.md (between its markers)";

/// Parses the runner's arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut options = Options {
        runs: DEFAULT_RUNS,
        workloads: Vec::new(),
        save: false,
    };
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (word.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| words.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "--runs" => {
                let text = value()?;
                options.runs = match text.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--runs: `{text}` is not a positive number")),
                };
            }
            "--workload" => {
                for part in value()?.split(',').filter(|p| !p.is_empty()) {
                    let Some(w) = workloads::find(part) else {
                        return Err(format!(
                            "unknown workload `{part}` (expected {})",
                            workloads::names()
                        ));
                    };
                    if !options.workloads.contains(&w.name) {
                        options.workloads.push(w.name);
                    }
                }
            }
            "--save" if inline.is_none() => options.save = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            _ => return Err(format!("unexpected argument `{word}`")),
        }
    }
    if options.workloads.is_empty() {
        options.workloads = workloads::WORKLOADS.iter().map(|w| w.name).collect();
    }
    Ok(Parsed::Run(options))
}

/// The median of `values` (the mean of the two middle ones for an even count); `NaN` when
/// there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The smallest and largest of `values` (`NaN`s when there are none).
pub fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::NAN, f64::NAN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// `ours / theirs`, or `NaN` when `theirs` is zero.
pub fn ratio(ours: f64, theirs: f64) -> f64 {
    if theirs == 0.0 {
        f64::NAN
    } else {
        ours / theirs
    }
}

/// One run of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Wall time from spawn to exit, seconds.
    pub wall: f64,
    /// User CPU time, seconds.
    pub user: f64,
    /// System CPU time, seconds.
    pub sys: f64,
    /// Peak resident set size, MiB (`ru_maxrss`).
    pub rss_mib: f64,
}

/// The order in which run `run` visits the allocators: all of them, each run starting one
/// further along (so no allocator always runs first or last, and runs of one allocator never
/// follow each other back to back except across a run boundary).
pub fn run_order(run: usize) -> [usize; ALLOCATORS.len()] {
    core::array::from_fn(|i| (run + i) % ALLOCATORS.len())
}

/// The binary of `allocator`, next to the runner's own executable.
pub fn binary(dir: &Path, allocator: &str) -> PathBuf {
    dir.join(format!("alloc-{allocator}"))
}

/// Runs `binary workload [extra]`, pinned to CPU 0 when `pin`; returns its resource use and
/// the checksum it printed.
pub fn measure(
    binary: &Path,
    workload: &str,
    extra: &[&str],
    pin: bool,
) -> Result<(Sample, String), String> {
    use std::os::unix::process::CommandExt as _;

    let mut command = Command::new(binary);
    command
        .arg(workload)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if pin {
        // SAFETY: the closure runs in the child between fork and exec; it only builds a CPU
        // set on its stack and makes one system call (async-signal-safe), and allocates nothing.
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut output = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut output)
        .map_err(|e| format!("reading {}'s output: {e}", binary.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (std's `Child` reaps only in `wait`, which
    // we never call), and both out-pointers point to live locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    if reaped != pid {
        return Err(format!(
            "wait4 on {}: {}",
            binary.display(),
            std::io::Error::last_os_error()
        ));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "`{} {workload}` failed (wait status {status:#x})",
            binary.display()
        ));
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let checksum = output
        .split_whitespace()
        .find_map(|w| w.strip_prefix("checksum="))
        .ok_or_else(|| {
            format!(
                "`{} {workload}` printed no checksum: {output:?}",
                binary.display()
            )
        })?
        .to_owned();
    Ok((
        Sample {
            wall: wall.as_secs_f64(),
            user: seconds(usage.ru_utime),
            sys: seconds(usage.ru_stime),
            // Linux reports ru_maxrss in KiB.
            rss_mib: usage.ru_maxrss as f64 / 1024.0,
        },
        checksum,
    ))
}

/// All runs of one workload: `samples[a]` are allocator `ALLOCATORS[a]`'s runs.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadResult {
    /// The workload.
    pub name: &'static str,
    /// Whether the runs were pinned to CPU 0.
    pub pinned: bool,
    /// The checksum every run printed.
    pub checksum: String,
    /// Each allocator's runs, in [`ALLOCATORS`] order.
    pub samples: [Vec<Sample>; ALLOCATORS.len()],
}

impl WorkloadResult {
    /// The median of one measure over allocator `a`'s runs.
    pub fn median_of(&self, a: usize, field: fn(&Sample) -> f64) -> f64 {
        median(&self.samples[a].iter().map(field).collect::<Vec<_>>())
    }

    /// The extremes of one measure over allocator `a`'s runs.
    pub fn min_max_of(&self, a: usize, field: fn(&Sample) -> f64) -> (f64, f64) {
        min_max(&self.samples[a].iter().map(field).collect::<Vec<_>>())
    }

    /// Ours (`ALLOCATORS[0]`) over each peer, for the median of one measure.
    pub fn ratios(&self, field: fn(&Sample) -> f64) -> [f64; ALLOCATORS.len() - 1] {
        let ours = self.median_of(0, field);
        core::array::from_fn(|i| ratio(ours, self.median_of(i + 1, field)))
    }
}

/// Runs every chosen workload `runs` times under every allocator, interleaved; checks that all
/// runs print the same checksum. `dir` holds the `alloc-*` binaries.
pub fn run_all(dir: &Path, options: &Options) -> Result<Vec<WorkloadResult>, String> {
    // One untimed tiny run per binary first, so that no measured run loads a binary cold.
    for allocator in ALLOCATORS {
        measure(
            &binary(dir, allocator),
            options.workloads[0],
            &["--tiny"],
            false,
        )?;
    }
    let mut results = Vec::new();
    for &name in &options.workloads {
        let workload: Workload = workloads::find(name).ok_or(format!("no workload {name}"))?;
        let pinned = workload.threads == 1;
        let mut result = WorkloadResult {
            name: workload.name,
            pinned,
            checksum: String::new(),
            samples: Default::default(),
        };
        for run in 0..options.runs {
            for a in run_order(run) {
                let (sample, checksum) = measure(&binary(dir, ALLOCATORS[a]), name, &[], pinned)?;
                if result.checksum.is_empty() {
                    result.checksum = checksum;
                } else if result.checksum != checksum {
                    return Err(format!(
                        "{name}: {} printed checksum {checksum}, an earlier run {}",
                        ALLOCATORS[a], result.checksum
                    ));
                }
                eprintln!(
                    "  {name} run {}/{} {:<9} wall {:.3} s  user {:.3} s  sys {:.3} s  peak RSS {:.1} MiB",
                    run + 1,
                    options.runs,
                    ALLOCATORS[a],
                    sample.wall,
                    sample.user,
                    sample.sys,
                    sample.rss_mib
                );
                result.samples[a].push(sample);
            }
        }
        print!("{}", text_report(&result));
        results.push(result);
    }
    Ok(results)
}

fn wall(s: &Sample) -> f64 {
    s.wall
}
fn user(s: &Sample) -> f64 {
    s.user
}
fn sys(s: &Sample) -> f64 {
    s.sys
}
fn rss(s: &Sample) -> f64 {
    s.rss_mib
}

/// A ratio with two decimals and an `x`, or `n/a` when it is not a number (a peer's median
/// of zero, e.g. a system time below the clock's resolution).
fn show_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}x")
    } else {
        "n/a".into()
    }
}

/// The ratio line of a workload: wall, system time and peak RSS of ours over each peer.
fn ratio_line(result: &WorkloadResult) -> String {
    let (w, s, r) = (result.ratios(wall), result.ratios(sys), result.ratios(rss));
    let mut line = String::new();
    for (i, peer) in ALLOCATORS[1..].iter().enumerate() {
        let _ = write!(
            line,
            "{}veridian/{peer} {} (sys {}, RSS {})",
            if i == 0 { "" } else { "; " },
            show_ratio(w[i]),
            show_ratio(s[i]),
            show_ratio(r[i])
        );
    }
    line
}

/// The plain-text report of one workload (what the runner prints).
pub fn text_report(result: &WorkloadResult) -> String {
    let runs = result.samples[0].len();
    let mut out = format!(
        "\n{} ({}), {runs} runs each, checksum {}\n  {:<9} {:>24} {:>8} {:>8} {:>14}\n",
        result.name,
        if result.pinned {
            "pinned to CPU 0"
        } else {
            "not pinned"
        },
        result.checksum,
        "allocator",
        "wall s median (min..max)",
        "user s",
        "sys s",
        "peak RSS MiB"
    );
    for (a, allocator) in ALLOCATORS.iter().enumerate() {
        let (lo, hi) = result.min_max_of(a, wall);
        let _ = writeln!(
            out,
            "  {allocator:<9} {:>7.3} ({lo:.3}..{hi:.3}) {:>8.3} {:>8.3} {:>14.1}",
            result.median_of(a, wall),
            result.median_of(a, user),
            result.median_of(a, sys),
            result.median_of(a, rss),
        );
    }
    let _ = writeln!(out, "  wall-time medians: {}", ratio_line(result));
    out
}

/// The markdown tables of a whole run (what `--save` writes).
pub fn markdown_report(results: &[WorkloadResult], command: &str, machine: &str) -> String {
    let runs = results.first().map_or(0, |r| r.samples[0].len());
    let mut out = format!(
        "Command: `{command}`; {machine}; {runs} runs per workload and allocator, interleaved; \
         medians, wall time as min..max over the runs; peak RSS is `ru_maxrss`.\n\n\
         | workload | allocator | wall s (min..max) | user s | sys s | peak RSS MiB |\n\
         |---|---|---|---|---|---|\n"
    );
    for result in results {
        for (a, allocator) in ALLOCATORS.iter().enumerate() {
            let (lo, hi) = result.min_max_of(a, wall);
            let _ = writeln!(
                out,
                "| {}{} | {allocator} | {:.3} ({lo:.3}..{hi:.3}) | {:.3} | {:.3} | {:.1} |",
                result.name,
                if result.pinned { " (1 CPU)" } else { "" },
                result.median_of(a, wall),
                result.median_of(a, user),
                result.median_of(a, sys),
                result.median_of(a, rss),
            );
        }
    }
    out.push_str(
        "\nRatios of medians, veridian over each peer (below 1: veridian is faster or smaller):\n\n\
         | workload | wall /glibc | /mimalloc | /jemalloc | sys /glibc | /mimalloc | /jemalloc | RSS /glibc | /mimalloc | /jemalloc |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for result in results {
        let _ = write!(out, "| {} ", result.name);
        for field in [wall as fn(&Sample) -> f64, sys, rss] {
            for r in result.ratios(field) {
                let shown = if r.is_finite() {
                    format!("{r:.2}")
                } else {
                    "n/a".into()
                };
                let _ = write!(out, "| {shown} ");
            }
        }
        out.push_str("|\n");
    }
    out
}

/// The markers between which `--save` writes its tables in `docs/benchmarks/programs.md`.
pub const BEGIN_MARKER: &str =
    "<!-- bench-programs: begin (written by `cargo xtask bench-programs --save`) -->";
/// See [`BEGIN_MARKER`].
pub const END_MARKER: &str = "<!-- bench-programs: end -->";

/// `document` with the text between the markers replaced by `tables` (the markers appended at
/// the end when the document has none).
pub fn replace_section(document: &str, tables: &str) -> String {
    let section = format!("{BEGIN_MARKER}\n{tables}{END_MARKER}\n");
    match (document.find(BEGIN_MARKER), document.find(END_MARKER)) {
        (Some(begin), Some(end)) if begin < end => {
            let after = &document[end + END_MARKER.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{section}{after}", &document[..begin])
        }
        _ => {
            let mut out = document.to_owned();
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
            }
            out.push_str(&section);
            out
        }
    }
}

/// The machine in a few words: CPU model and the number of CPUs this process may use.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    fn options(words: &[&str]) -> Options {
        match parse(&args(words)) {
            Ok(Parsed::Run(options)) => options,
            other => panic!("{words:?}: {other:?}"),
        }
    }

    #[test]
    fn arguments_are_parsed() {
        let all: Vec<_> = workloads::WORKLOADS.iter().map(|w| w.name).collect();
        assert_eq!(
            options(&[]),
            Options {
                runs: DEFAULT_RUNS,
                workloads: all.clone(),
                save: false
            }
        );
        let o = options(&["--runs", "3", "--workload", "json", "--save"]);
        assert_eq!((o.runs, o.workloads, o.save), (3, vec!["json"], true));
        let o = options(&["--runs=7", "--workload=larson,json", "--workload", "larson"]);
        assert_eq!(
            (o.runs, o.workloads, o.save),
            (7, vec!["larson", "json"], false)
        );
        assert_eq!(parse(&args(&["--help"])), Ok(Parsed::Help));
        for bad in [
            &["--runs"][..],
            &["--runs", "0"],
            &["--runs", "x"],
            &["--workload", "nope"],
            &["--save=yes"],
            &["json"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn medians_extremes_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0]), 5.0);
        assert!(median(&[]).is_nan());
        assert_eq!(min_max(&[2.0, 9.0, -1.0]), (-1.0, 9.0));
        assert_eq!(ratio(3.0, 2.0), 1.5);
        assert!(ratio(1.0, 0.0).is_nan());
    }

    #[test]
    fn runs_interleave_the_allocators() {
        assert_eq!(run_order(0), [0, 1, 2, 3]);
        assert_eq!(run_order(1), [1, 2, 3, 0]);
        assert_eq!(run_order(5), [1, 2, 3, 0]);
        for run in 0..8 {
            let mut order = run_order(run);
            order.sort_unstable();
            assert_eq!(order, [0, 1, 2, 3]);
        }
    }

    fn sample(wall: f64, sys: f64, rss: f64) -> Sample {
        Sample {
            wall,
            user: wall / 2.0,
            sys,
            rss_mib: rss,
        }
    }

    #[test]
    fn ratios_are_ours_over_each_peer_of_the_medians() {
        let result = WorkloadResult {
            name: "json",
            pinned: true,
            checksum: "0x1".into(),
            samples: [
                vec![
                    sample(3.0, 1.0, 10.0),
                    sample(1.0, 1.0, 10.0),
                    sample(2.0, 1.0, 10.0),
                ],
                vec![sample(1.0, 0.5, 20.0); 3],
                vec![sample(4.0, 2.0, 5.0); 3],
                vec![sample(2.0, 1.0, 10.0); 3],
            ],
        };
        assert_eq!(result.median_of(0, |s| s.wall), 2.0);
        assert_eq!(result.min_max_of(0, |s| s.wall), (1.0, 3.0));
        assert_eq!(result.ratios(|s| s.wall), [2.0, 0.5, 1.0]);
        assert_eq!(result.ratios(|s| s.sys), [2.0, 0.5, 1.0]);
        assert_eq!(result.ratios(|s| s.rss_mib), [0.5, 2.0, 1.0]);
        let text = text_report(&result);
        assert!(
            text.contains("veridian/glibc 2.00x (sys 2.00x, RSS 0.50x)"),
            "{text}"
        );
        let md = markdown_report(std::slice::from_ref(&result), "cmd", "machine");
        assert!(
            md.contains(
                "| json (1 CPU) | veridian | 2.000 (1.000..3.000) | 1.000 | 1.000 | 10.0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| json | 2.00 | 0.50 | 1.00 | 2.00 | 0.50 | 1.00 | 0.50 | 2.00 | 1.00 |"),
            "{md}"
        );
    }

    #[test]
    fn saving_replaces_only_the_marked_section() {
        let fresh = replace_section("# Title\n", "table 1\n");
        assert_eq!(
            fresh,
            format!("# Title\n\n{BEGIN_MARKER}\ntable 1\n{END_MARKER}\n")
        );
        let doc = format!("{fresh}\n## Analysis\ntext\n");
        let again = replace_section(&doc, "table 2\n");
        assert_eq!(
            again,
            format!("# Title\n\n{BEGIN_MARKER}\ntable 2\n{END_MARKER}\n\n## Analysis\ntext\n")
        );
    }

    #[test]
    fn a_measured_process_reports_its_times_and_checksum() {
        let dir = std::env::temp_dir().join(format!("bench-programs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("alloc-fake");
        // Burns a little CPU and memory, then prints a checksum line.
        std::fs::write(
            &script,
            "#!/bin/sh\nhead -c 20000000 /dev/zero | tail -c 1 >/dev/null\necho \"$1 checksum=0xabc allocator=fake\"\n",
        )
        .unwrap();
        let mut perms = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).unwrap();
        let (sample, checksum) = measure(&binary(&dir, "fake"), "json", &[], true).unwrap();
        assert_eq!(checksum, "0xabc");
        assert!(sample.wall > 0.0 && sample.rss_mib > 0.0, "{sample:?}");
        assert!(sample.user + sample.sys <= sample.wall * 2.5, "{sample:?}");
        std::fs::write(&script, "#!/bin/sh\nexit 3\n").unwrap();
        assert!(measure(&script, "json", &[], false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
