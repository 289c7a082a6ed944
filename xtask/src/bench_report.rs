//! The kernel benchmark report of `cargo xtask bench`: the rows as JSON, a Markdown table and
//! an SVG bar chart (`target/bench/kernel-results.{json,md,svg}`, copied to `docs/benchmarks/`
//! by `--save`), the design guide's targets and our instruction goals per row, and the
//! regression check of `cargo xtask test` against the committed JSON.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bench::BenchLine;
use crate::cmd;
use crate::error::{Error, Result};
use crate::workspace;

/// The file names' common stem.
const STEM: &str = "kernel-results";
/// Where the committed baseline lives, relative to the workspace root.
pub const BASELINE_DIR: &str = "docs/benchmarks";
/// How much worse than the baseline a figure may be, in percent, before the check fails.
pub const LIMIT_PERCENT: u64 = 10;
/// What the figures are, for the JSON and the Markdown.
const UNITS: &str = "guest TSC ticks under QEMU TCG -icount shift=0: one per guest instruction \
                     (a rep string instruction counts once per iteration)";

/// A row's design-guide target and our instruction goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goal {
    /// The row's name.
    pub name: &'static str,
    /// The design guide's target for what the row measures (a time on hardware).
    pub target: &'static str,
    /// Our goal in instructions (the row's median must not exceed it), if we set one.
    pub instructions: Option<u64>,
}

/// The rows that have a target or a goal; any other row is shown without one.
pub const GOALS: [Goal; 10] = [
    Goal {
        name: "kalloc_free_64",
        target: "memory allocation < 200 ns (stretch 100)",
        instructions: Some(30),
    },
    Goal {
        name: "sched_yield_round_trip",
        target: "context switch < 500 ns (2 switches here)",
        instructions: None,
    },
    Goal {
        name: "thread_yield_switch",
        target: "context switch < 500 ns (stretch 300)",
        instructions: Some(150),
    },
    Goal {
        name: "null_syscall",
        target: "system call < 100 ns (stretch 50)",
        instructions: Some(50),
    },
    Goal {
        name: "sched_yield_switch",
        target: "context switch < 500 ns (stretch 300)",
        instructions: Some(150),
    },
    Goal {
        name: "ipc_call_reply",
        target: "IPC < 1 us (stretch 500 ns)",
        instructions: Some(600),
    },
    Goal {
        name: "ipc_call_reply_cross_cpu",
        target: "IPC < 1 us (stretch 500 ns); all CPUs' instructions counted",
        instructions: None,
    },
    Goal {
        name: "channel_msg_b1",
        target: "IPC < 1 us (stretch 500 ns); a message and its echo",
        instructions: None,
    },
    Goal {
        name: "channel_msg_b32",
        target: "IPC < 1 us (stretch 500 ns); per message, batches of 32",
        instructions: None,
    },
    Goal {
        name: "page_fault_anon",
        target: "page fault < 10 us (stretch 5)",
        instructions: Some(1000),
    },
];

/// Rows whose figures differ from run to run even under icount, with the reason: the
/// regression check shows them but does not judge them.
pub const NOT_CHECKED: [(&str, &str); 5] = [
    (
        "ipc_call_reply_cross_cpu",
        "two CPUs take turns in QEMU's one TCG thread, so the instructions between the reads vary",
    ),
    (
        "blk_read_4k_batch1",
        "counts the polling loop while QEMU serves the request on another host thread",
    ),
    (
        "blk_read_4k_batch32",
        "counts the polling loop while QEMU serves the requests on another host thread",
    ),
    (
        "net_udp_echo",
        "counts the polling loop while QEMU moves the frames between the NICs on its main loop",
    ),
    (
        "suite_total",
        "the whole suite, the cross-CPU and device rows included",
    ),
];

/// Why row `name` is not judged by the regression check, if it is one of [`NOT_CHECKED`].
pub fn not_checked(name: &str) -> Option<&'static str> {
    NOT_CHECKED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// The target and goal of row `name`, if it has one.
pub fn goal(name: &str) -> Option<&'static Goal> {
    GOALS.iter().find(|g| g.name == name)
}

/// Row `name`'s target and goal in one line for the console table (empty without one).
pub fn target_text(name: &str) -> String {
    match goal(name) {
        None => String::new(),
        Some(Goal {
            target,
            instructions: None,
            ..
        }) => (*target).to_owned(),
        Some(Goal {
            target,
            instructions: Some(n),
            ..
        }) => format!("{target}; goal <= {n} instructions"),
    }
}

/// One `bench` line of the kernel: a distribution (`count`..`max`) or a single `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The benchmark's name.
    pub name: String,
    /// The unit the kernel printed (`tsc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Smallest sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    /// Median sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<u64>,
    /// 99th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<u64>,
    /// Largest sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// The timing loop's own cost, already subtracted from every sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<u64>,
    /// A single reading (rows without a distribution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// What one sample is, in the kernel's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// Why the kernel could not measure the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Row {
    /// The row of a parsed `bench` line; a numeric field that is not a number is an error.
    pub fn from_line(line: &BenchLine) -> std::result::Result<Self, String> {
        let number = |key: &str| -> std::result::Result<Option<u64>, String> {
            line.fields
                .get(key)
                .map(|text| {
                    text.parse().map_err(|_| {
                        format!("bench {}: {key}={text} is not a whole number", line.name)
                    })
                })
                .transpose()
        };
        let text = |key: &str| line.fields.get(key).cloned();
        Ok(Self {
            name: line.name.clone(),
            unit: text("unit"),
            count: number("count")?,
            min: number("min")?,
            median: number("median")?,
            p99: number("p99")?,
            max: number("max")?,
            overhead: number("overhead")?,
            value: number("value")?,
            what: text("what"),
            error: text("error"),
        })
    }

    /// The figure the report shows and the check compares: the median, or the single value.
    pub fn figure(&self) -> Option<u64> {
        self.median.or(self.value)
    }
}

/// One benchmark run: how it was made and its rows, in the kernel's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    /// What the figures are.
    pub units: String,
    /// The commit the kernel was built from (`-dirty` when tracked files outside `docs/`
    /// differed from it), if git could say.
    pub commit: Option<String>,
    /// The QEMU command line (paths relative to the workspace root).
    pub qemu_command: String,
    /// QEMU's version line, if it printed one.
    pub qemu_version: Option<String>,
    /// QEMU's `-cpu` model.
    pub cpu_model: String,
    /// The rows.
    pub rows: Vec<Row>,
}

impl Results {
    /// The results of a run of `qemu` (its command line) on CPU model `cpu` that printed
    /// `lines`; the commit and QEMU's version are asked of git and QEMU.
    pub fn new(qemu: &Command, cpu: &str, lines: &[BenchLine]) -> Result<Self> {
        let root = workspace::root();
        let qemu_command = cmd::show(qemu).replace(&format!("{}/", root.display()), "");
        let rows = lines
            .iter()
            .map(Row::from_line)
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self {
            units: UNITS.to_owned(),
            commit: git_commit(&root),
            qemu_command,
            qemu_version: first_line_of(Command::new(qemu.get_program()).arg("--version")),
            cpu_model: cpu.to_owned(),
            rows,
        })
    }

    /// The results as pretty-printed JSON (with a final newline).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        text
    }

    /// Results read back from [`Results::to_json`]'s format.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The row named `name`.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }
}

/// `git rev-parse --short=12 HEAD`, with `-dirty` when tracked files outside `docs/` differ
/// from it; `None` if git cannot say.
fn git_commit(root: &Path) -> Option<String> {
    let commit = first_line_of(Command::new("git").arg("-C").arg(root).args([
        "rev-parse",
        "--short=12",
        "HEAD",
    ]))?;
    let status = cmd::capture(Command::new("git").arg("-C").arg(root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!docs",
    ]))
    .ok()
    .filter(|o| o.status.success())?;
    Some(if status.stdout.is_empty() {
        commit
    } else {
        format!("{commit}-dirty")
    })
}

/// The first line `command` prints on success.
fn first_line_of(command: &mut Command) -> Option<String> {
    let output = cmd::capture(command).ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .next()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
}

/// Where `cargo xtask bench` writes its files: `target/bench`.
pub fn results_dir() -> PathBuf {
    workspace::target_dir().join("bench")
}

/// The committed baseline: `docs/benchmarks/kernel-results.json`.
pub fn baseline_path() -> PathBuf {
    workspace::root()
        .join(BASELINE_DIR)
        .join(format!("{STEM}.json"))
}

/// Writes `kernel-results.{json,md,svg}` into `dir` (created when missing); returns the paths.
pub fn write(results: &Results, dir: &Path) -> Result<[PathBuf; 3]> {
    fs::create_dir_all(dir)
        .map_err(|e| Error::Failed(format!("cannot create {}: {e}", dir.display())))?;
    let [json, md, svg] = ["json", "md", "svg"].map(|ext| dir.join(format!("{STEM}.{ext}")));
    write_file(&json, &results.to_json())?;
    write_file(&md, &markdown(results))?;
    chart(results, &svg)?;
    Ok([json, md, svg])
}

/// Copies the files [`write`] wrote into `docs/benchmarks/`; returns the copies' paths.
pub fn save(files: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let dir = workspace::root().join(BASELINE_DIR);
    files
        .iter()
        .map(|file| {
            let to = dir.join(file.file_name().unwrap_or_default());
            fs::copy(file, &to).map_err(|e| {
                Error::Failed(format!(
                    "cannot copy {} to {}: {e}",
                    file.display(),
                    to.display()
                ))
            })?;
            Ok(to)
        })
        .collect()
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text)
        .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))
}

/// Whether a row met its instruction goal: `None` without a goal or a figure.
fn verdict(row: &Row) -> Option<bool> {
    let goal = goal(&row.name)?.instructions?;
    Some(row.figure()? <= goal)
}

/// The Markdown report: how the figures were made, then one table row per benchmark.
pub fn markdown(results: &Results) -> String {
    let mut md = String::from("# Veridian kernel benchmarks\n\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench` (`--save` copies it to `{BASELINE_DIR}/`). Kernel \
         commit `{}`; {}.",
        results.commit.as_deref().unwrap_or("unknown"),
        results
            .qemu_version
            .as_deref()
            .unwrap_or("QEMU (version unknown)"),
    );
    let _ = writeln!(
        md,
        "\nEvery figure is {UNITS}. Rows with a median are distributions over many iterations \
         (min, median, p99); rows without one are single readings (shown as the median)."
    );
    let _ = writeln!(md, "\n```sh\n{}\n```\n", results.qemu_command);
    md.push_str(
        "| row | median | min | p99 | design-guide target | instruction goal | goal |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let show = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    for row in &results.rows {
        let goal = goal(&row.name);
        let figure = match (&row.error, row.figure()) {
            (Some(error), _) => format!("error: {error}"),
            (None, n) => show(n),
        };
        let _ = writeln!(
            md,
            "| `{}` | {figure} | {} | {} | {} | {} | {} |",
            row.name,
            show(row.min),
            show(row.p99),
            goal.map_or("", |g| g.target),
            goal.and_then(|g| g.instructions)
                .map_or_else(String::new, |n| format!("<= {n}")),
            match verdict(row) {
                Some(true) => "met",
                Some(false) => "missed",
                None => "",
            },
        );
    }
    let judged: Vec<(&str, bool)> = results
        .rows
        .iter()
        .filter_map(|r| Some((r.name.as_str(), verdict(r)?)))
        .collect();
    let met: Vec<&str> = judged.iter().filter(|j| j.1).map(|j| j.0).collect();
    let _ = writeln!(
        md,
        "\nInstruction goals met: {} of {}{}.",
        met.len(),
        judged.len(),
        if met.is_empty() {
            String::new()
        } else {
            format!(" ({})", met.join(", "))
        }
    );
    md
}

/// Bar colours: goal met, goal missed, no goal; the goal marker.
const MET: RGBColor = RGBColor(46, 139, 87);
const MISSED: RGBColor = RGBColor(200, 60, 60);
const NO_GOAL: RGBColor = RGBColor(70, 110, 180);
const GOAL_MARK: RGBColor = RGBColor(0, 0, 0);

/// Draws every row's median (or single value) as a horizontal bar on a logarithmic axis, with
/// its instruction goal as a black mark, into the SVG file `path`.
pub fn chart(results: &Results, path: &Path) -> Result<()> {
    draw(results, path).map_err(|e| Error::Failed(format!("cannot draw {}: {e}", path.display())))
}

fn draw(results: &Results, path: &Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let rows = &results.rows;
    let n = rows.len().max(1);
    let height = 120 + 32 * u32::try_from(n)?;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let largest = rows
        .iter()
        .filter_map(|r| r.figure().max(goal(&r.name).and_then(|g| g.instructions)))
        .max()
        .unwrap_or(1);
    let x_end = (largest as f64 * 3.0).max(10.0);
    let last = i32::try_from(n)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Veridian kernel benchmarks: median instructions (QEMU -icount shift=0, log scale)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(190)
        // One segment per row (a segmented range has one more segment than its end).
        .build_cartesian_2d(
            (1.0..x_end).log_scale(),
            (0..(last - 1).max(1)).into_segmented(),
        )?;
    // The first row at the top: row `i` is segment `last - 1 - i`.
    let row_of = |segment: i32| usize::try_from(last - 1 - segment).ok();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(s) => row_of(*s)
                .and_then(|i| rows.get(i))
                .map_or_else(String::new, |r| r.name.clone()),
            _ => String::new(),
        })
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("instructions (guest TSC ticks)")
        .draw()?;
    let band = |i: usize| -> std::result::Result<
        (SegmentValue<i32>, SegmentValue<i32>),
        std::num::TryFromIntError,
    > {
        let segment = last - 1 - i32::try_from(i)?;
        Ok((
            SegmentValue::Exact(segment),
            SegmentValue::Exact(segment + 1),
        ))
    };
    for (colour, label, wanted) in [
        (MET, "median, goal met", Some(true)),
        (MISSED, "median, goal missed", Some(false)),
        (NO_GOAL, "median, no instruction goal", None),
    ] {
        let mut bars = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let (Some(figure), true) = (row.figure(), verdict(row) == wanted) else {
                continue;
            };
            let (low, high) = band(i)?;
            let mut bar =
                Rectangle::new([(1.0, low), (figure.max(1) as f64, high)], colour.filled());
            bar.set_margin(6, 6, 0, 0);
            bars.push(bar);
        }
        chart
            .draw_series(bars)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
    }
    let mut marks = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if let Some(goal) = goal(&row.name).and_then(|g| g.instructions) {
            let (low, high) = band(i)?;
            marks.push(PathElement::new(
                [(goal as f64, low), (goal as f64, high)],
                GOAL_MARK.stroke_width(3),
            ));
        }
    }
    chart
        .draw_series(marks)?
        .label("instruction goal")
        .legend(|(x, y)| {
            PathElement::new([(x + 7, y - 6), (x + 7, y + 6)], GOAL_MARK.stroke_width(3))
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The regression check's findings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// One line per row: its figure against the baseline's, new rows included.
    pub lines: Vec<String>,
    /// One line per failure: a figure more than [`LIMIT_PERCENT`] worse, or a baseline row
    /// the run did not print (or printed without a figure).
    pub failures: Vec<String>,
}

/// Compares `run` with `baseline` row by row.
pub fn compare(baseline: &Results, run: &Results) -> Comparison {
    let mut out = Comparison::default();
    for row in &run.rows {
        let name = &row.name;
        let now = row
            .figure()
            .map_or_else(|| "no figure".to_owned(), |n| n.to_string());
        if let Some(why) = not_checked(name) {
            out.lines
                .push(format!("{name}: {now} (not checked: {why})"));
            continue;
        }
        let Some(base) = baseline.row(name) else {
            out.lines
                .push(format!("{name}: {now} (new: not in the baseline)"));
            continue;
        };
        match (base.figure(), row.figure()) {
            (None, _) => out.lines.push(format!(
                "{name}: {now} (the baseline has no figure: not compared)"
            )),
            (Some(b), None) => {
                let why = row.error.as_deref().unwrap_or("no median or value");
                out.failures.push(format!(
                    "{name}: no figure in this run ({why}); baseline {b}"
                ));
            }
            (Some(b), Some(n)) => {
                let change = if b == 0 {
                    String::new()
                } else {
                    format!(", {:+.1} %", (n as f64 - b as f64) * 100.0 / b as f64)
                };
                let line = format!("{name}: {n} (baseline {b}{change})");
                if u128::from(n) * 100 > u128::from(b) * u128::from(100 + LIMIT_PERCENT) {
                    out.failures.push(format!(
                        "{line}: more than {LIMIT_PERCENT} % above the baseline"
                    ));
                } else {
                    out.lines.push(line);
                }
            }
        }
    }
    for base in &baseline.rows {
        if run.row(&base.name).is_none() && not_checked(&base.name).is_none() {
            out.failures.push(format!(
                "{}: in the baseline but not printed by this run",
                base.name
            ));
        }
    }
    out
}

/// Compares `run` with the committed baseline file at `path`: prints every row's comparison
/// and fails naming the rows more than [`LIMIT_PERCENT`] worse or missing.
pub fn check_against(run: &Results, path: &Path) -> Result<()> {
    let shown = workspace::display(path);
    let text = fs::read_to_string(path).map_err(|e| {
        Error::Failed(format!(
            "no baseline to compare with ({shown}: {e}); `cargo xtask bench --save` writes it"
        ))
    })?;
    let baseline = Results::from_json(&text).map_err(|e| {
        Error::Failed(format!(
            "{shown} is not a benchmark results file ({e}); `cargo xtask bench --save` rewrites it"
        ))
    })?;
    if baseline.qemu_command != run.qemu_command || baseline.qemu_version != run.qemu_version {
        println!(
            "xtask: note: the baseline was measured with another QEMU command or version: {} ({})",
            baseline.qemu_command,
            baseline
                .qemu_version
                .as_deref()
                .unwrap_or("version unknown")
        );
    }
    let comparison = compare(&baseline, run);
    println!(
        "xtask: against {shown} (commit {}):",
        baseline.commit.as_deref().unwrap_or("unknown")
    );
    for line in comparison.lines.iter().chain(&comparison.failures) {
        println!("  {line}");
    }
    if comparison.failures.is_empty() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "{} against {shown}: {}; if the change is intended, run `cargo xtask bench --save` and \
         commit {BASELINE_DIR}/",
        if comparison.failures.len() == 1 {
            "1 benchmark row regressed or is missing".to_owned()
        } else {
            format!(
                "{} benchmark rows regressed or are missing",
                comparison.failures.len()
            )
        },
        comparison.failures.join("; ")
    )))
}

/// The regression step of `cargo xtask test` (and `cargo xtask bench --check`): one benchmark
/// boot as `cargo xtask bench` does it, its table, and the comparison with the committed
/// `docs/benchmarks/kernel-results.json`.
pub fn regression_check() -> Result<()> {
    let run = crate::bench::measure()?;
    check_against(&run, &baseline_path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::parse_line;

    fn results(lines: &[&str]) -> Results {
        Results {
            units: UNITS.into(),
            commit: Some("0123456789ab".into()),
            qemu_command: "qemu-system-x86_64 -icount shift=0".into(),
            qemu_version: Some("QEMU emulator version 7.2.0".into()),
            cpu_model: "max".into(),
            rows: lines
                .iter()
                .map(|l| Row::from_line(&parse_line(l).expect("a bench line")).expect("a row"))
                .collect(),
        }
    }

    const BASELINE: [&str; 4] = [
        "bench timing_overhead unit=tsc value=3",
        "bench null_syscall unit=tsc count=10 min=50 median=50 p99=50 max=60 overhead=3 \
         what=\"getpid round trip from ring 3\"",
        "bench ipc_call_reply unit=tsc count=10 min=1280 median=1285 p99=1290 max=1603 overhead=3",
        "bench boot_to_banner unit=tsc value=1000000 what=\"entry to banner\"",
    ];

    #[test]
    fn rows_keep_every_field() {
        let r = &results(&BASELINE).rows;
        assert_eq!(r[0].value, Some(3));
        assert_eq!(r[0].figure(), Some(3));
        assert_eq!(
            (
                r[1].count,
                r[1].min,
                r[1].median,
                r[1].p99,
                r[1].max,
                r[1].overhead
            ),
            (Some(10), Some(50), Some(50), Some(50), Some(60), Some(3))
        );
        assert_eq!(r[1].unit.as_deref(), Some("tsc"));
        assert_eq!(r[1].what.as_deref(), Some("getpid round trip from ring 3"));
        let bad = parse_line("bench x unit=tsc median=12z").expect("line");
        assert_eq!(
            Row::from_line(&bad),
            Err("bench x: median=12z is not a whole number".into())
        );
        let error =
            Row::from_line(&parse_line("bench y error=\"no memory\"").expect("line")).expect("row");
        assert_eq!(
            (error.figure(), error.error.as_deref()),
            (None, Some("no memory"))
        );
    }

    #[test]
    fn json_round_trip() {
        let r = results(&BASELINE);
        let json = r.to_json();
        assert_eq!(Results::from_json(&json), Ok(r.clone()));
        // Absent fields are left out, not written as null.
        assert!(!json.contains(": null"));
        assert!(json.contains("\"median\": 1285"));
    }

    #[test]
    fn malformed_json_is_a_clear_error() {
        for text in ["", "{", "[]", "{\"rows\": 3}", "{\"units\": \"x\"}"] {
            assert!(Results::from_json(text).is_err(), "{text:?}");
        }
        let dir = temp_dir("malformed");
        let path = dir.join("kernel-results.json");
        fs::write(&path, "{ not json").expect("write");
        let Err(Error::Failed(message)) = check_against(&results(&BASELINE), &path) else {
            panic!("a malformed baseline must fail the check");
        };
        assert!(
            message.contains("is not a benchmark results file"),
            "{message}"
        );
        assert!(message.contains("cargo xtask bench --save"), "{message}");
        let Err(Error::Failed(message)) =
            check_against(&results(&BASELINE), &dir.join("absent.json"))
        else {
            panic!("a missing baseline must fail the check");
        };
        assert!(message.contains("no baseline"), "{message}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn identical_and_slightly_worse_runs_pass() {
        let base = results(&BASELINE);
        let same = compare(&base, &base);
        assert!(same.failures.is_empty());
        assert_eq!(same.lines.len(), 4);
        // 1285 * 1.10 = 1413.5: 1413 passes, 1414 does not.
        let mut run = base.clone();
        run.rows[2].median = Some(1413);
        run.rows[3].value = Some(900_000);
        let c = compare(&base, &run);
        assert_eq!(c.failures, Vec::<String>::new());
        assert!(
            c.lines
                .contains(&"ipc_call_reply: 1413 (baseline 1285, +10.0 %)".to_owned())
        );
        assert!(
            c.lines
                .contains(&"boot_to_banner: 900000 (baseline 1000000, -10.0 %)".to_owned())
        );
        let path = temp_dir("pass").join("kernel-results.json");
        fs::write(&path, base.to_json()).expect("write");
        assert!(check_against(&run, &path).is_ok());
        let _ = fs::remove_dir_all(path.parent().expect("dir"));
    }

    /// Rows that are not deterministic are shown, never judged, and may be absent.
    #[test]
    fn rows_that_vary_are_not_judged() {
        let mut lines: Vec<&str> = BASELINE.to_vec();
        lines.push("bench ipc_call_reply_cross_cpu unit=tsc count=4 min=7 median=100 p99=9 max=9 overhead=3");
        let base = results(&lines);
        let mut run = results(&BASELINE);
        let c = compare(&base, &run);
        assert_eq!(c.failures, Vec::<String>::new(), "absent from the run");
        run = results(&lines);
        run.rows.last_mut().expect("row").median = Some(1000);
        let c = compare(&base, &run);
        assert_eq!(c.failures, Vec::<String>::new(), "10 times worse");
        assert!(
            c.lines
                .iter()
                .any(|l| l.starts_with("ipc_call_reply_cross_cpu: 1000 (not checked: ")),
            "{:?}",
            c.lines
        );
    }

    #[test]
    fn more_than_ten_percent_worse_fails() {
        let base = results(&BASELINE);
        let mut run = base.clone();
        run.rows[2].median = Some(1414);
        run.rows[3].value = Some(2_000_000);
        let c = compare(&base, &run);
        assert_eq!(
            c.failures,
            [
                "ipc_call_reply: 1414 (baseline 1285, +10.0 %): more than 10 % above the baseline",
                "boot_to_banner: 2000000 (baseline 1000000, +100.0 %): more than 10 % above the \
                 baseline",
            ]
        );
        let path = temp_dir("worse").join("kernel-results.json");
        fs::write(&path, base.to_json()).expect("write");
        let Err(Error::Failed(message)) = check_against(&run, &path) else {
            panic!("a regression must fail the check");
        };
        assert!(
            message.starts_with("2 benchmark rows regressed"),
            "{message}"
        );
        assert!(message.contains("ipc_call_reply: 1414"), "{message}");
        assert!(
            message.contains("run `cargo xtask bench --save`"),
            "{message}"
        );
        let _ = fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn a_new_row_is_reported_not_failed() {
        let base = results(&BASELINE);
        let mut lines = BASELINE.to_vec();
        lines.push("bench channel_msg unit=tsc count=4 min=7 median=8 p99=9 max=9 overhead=3");
        let c = compare(&base, &results(&lines));
        assert!(c.failures.is_empty());
        assert!(
            c.lines
                .contains(&"channel_msg: 8 (new: not in the baseline)".to_owned())
        );
    }

    #[test]
    fn a_missing_row_fails_naming_it() {
        let base = results(&BASELINE);
        let run = results(&BASELINE[..2]);
        let c = compare(&base, &run);
        assert_eq!(
            c.failures,
            [
                "ipc_call_reply: in the baseline but not printed by this run",
                "boot_to_banner: in the baseline but not printed by this run",
            ]
        );
        let mut errored = base.clone();
        errored.rows[1] =
            Row::from_line(&parse_line("bench null_syscall error=\"cannot spawn\"").expect("line"))
                .expect("row");
        assert_eq!(
            compare(&base, &errored).failures,
            ["null_syscall: no figure in this run (cannot spawn); baseline 50"]
        );
    }

    #[test]
    fn markdown_shows_targets_goals_and_verdicts() {
        let md = markdown(&results(&BASELINE));
        assert!(md.contains(
            "| `null_syscall` | 50 | 50 | 50 | system call < 100 ns (stretch 50) | <= 50 | met |"
        ));
        assert!(md.contains(
            "| `ipc_call_reply` | 1285 | 1280 | 1290 | IPC < 1 us (stretch 500 ns) | <= 600 | missed |"
        ));
        assert!(md.contains("| `boot_to_banner` | 1000000 | - | - |  |  |  |"));
        assert!(md.contains("Instruction goals met: 1 of 2 (null_syscall)."));
        assert!(md.contains("qemu-system-x86_64 -icount shift=0"));
    }

    #[test]
    fn goals_are_data() {
        assert_eq!(
            goal("ipc_call_reply").and_then(|g| g.instructions),
            Some(600)
        );
        assert_eq!(
            goal("kalloc_free_64").and_then(|g| g.instructions),
            Some(30)
        );
        assert_eq!(goal("boot_to_banner"), None);
        assert_eq!(
            target_text("null_syscall"),
            "system call < 100 ns (stretch 50); goal <= 50 instructions"
        );
        assert_eq!(target_text("frame_alloc_free_4k"), "");
    }

    #[test]
    fn the_svg_is_written_and_names_every_row() {
        let dir = temp_dir("svg");
        let mut lines = BASELINE.to_vec();
        lines.push("bench page_fault_anon unit=tsc count=4 min=4540 median=4604 p99=9 max=9");
        lines.push("bench broken error=\"no memory\"");
        let r = results(&lines);
        let [json, md, svg] = write(&r, &dir).expect("written");
        let text = fs::read_to_string(&svg).expect("an SVG file");
        assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(80)]);
        for row in &r.rows {
            assert!(
                text.lines().any(|l| l.trim() == row.name),
                "{} not named",
                row.name
            );
        }
        assert!(text.contains("instruction goal"));
        assert_eq!(
            Results::from_json(&fs::read_to_string(json).expect("json")),
            Ok(r.clone())
        );
        assert!(
            fs::read_to_string(md)
                .expect("md")
                .contains("`broken` | error: no memory")
        );
        let _ = fs::remove_dir_all(dir);
    }

    /// A fresh directory for one test.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xtask-bench-report-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
