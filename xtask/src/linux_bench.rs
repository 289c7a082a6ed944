//! `cargo xtask bench --linux`: the rows of Veridian's `mode=bench` that Linux also has,
//! measured on Debian's distribution kernel in the same emulator, side by side.
//!
//! The kernel is Debian's `linux-image-amd64` (its current dependency, e.g.
//! `linux-image-6.1.0-57-amd64`), fetched once with `apt-get download` into `target/linux/`; only
//! `boot/vmlinuz-*` and `boot/config-*` are taken out of the package. The benchmark program is
//! `xtask/linux/bench.c`, built with `gcc -static -O2` and run as `/init` of a newc initramfs
//! (written with the `cpio` crate). It prints `bench <name> ...` lines in the format and with the
//! names of the kernel's own (same timing, overhead subtraction, warm-up, sample count and
//! quantiles), describes the kernel it runs on in `linux-bench key="value"` lines, and powers
//! the machine off. QEMU gets the same machine, CPU and `-icount shift=0` as the Veridian boot.

use std::fs;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use crate::bench::{BenchLine, parse_line};
use crate::cmd;
use crate::error::{Error, Result};
use crate::qemu::{self, Boot, Vm};
use crate::tools::{self, Requirement};
use crate::workspace;

/// The rows both kernels print, in the order of the table.
pub const ROWS: [&str; 5] = [
    "null_syscall",
    "sched_yield_switch",
    "ipc_call_reply",
    "page_fault_anon",
    "kalloc_free_64",
];

/// Linux's command line. No `mitigations=` word: the kernel's default (`auto`) is measured;
/// the program prints what the kernel chose (`vulnerability.*` lines). `maxcpus=1`: under
/// `-icount` this kernel hangs at "x86: Booting SMP configuration" when it starts the other
/// CPUs (no progress in 600 s; without `-icount` the same machine boots all four), so only
/// CPU 0 is brought up. The machine keeps its 4 CPUs and 2 nodes, and every benchmark process
/// is pinned to CPU 0, as Veridian's are.
pub const CMDLINE: &str = "console=ttyS0 quiet panic=-1 maxcpus=1";

/// The Debian metapackage whose dependency is the current kernel image package.
const METAPACKAGE: &str = "linux-image-amd64";
/// The benchmark program's source, relative to the workspace root.
const SOURCE: &str = "xtask/linux/bench.c";
/// glibc's static library (package `libc6-dev`), needed by `gcc -static`.
const LIBC_A: &str = "/usr/lib/x86_64-linux-gnu/libc.a";
/// Linux under TCG with `-icount shift=0` boots in a minute or two on a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(600);
/// The program's last line before it powers the machine off.
const DONE: &str = "done";

/// What the Linux boot needs, ready before the Veridian boot starts.
#[derive(Debug)]
pub struct Prepared {
    /// The kernel image (`target/linux/vmlinuz-<version>`).
    kernel: PathBuf,
    /// The initramfs with the benchmark program as `/init`.
    initramfs: PathBuf,
}

/// Fetches the kernel (once), builds the benchmark program and writes the initramfs.
pub fn prepare() -> Result<Prepared> {
    tools::ensure_requirements(vec![
        Requirement {
            what: "gcc",
            present: || cmd::find_program("gcc").is_some(),
            packages: &["gcc"],
        },
        Requirement {
            what: LIBC_A,
            present: || Path::new(LIBC_A).is_file(),
            packages: &["libc6-dev"],
        },
    ])?;
    let dir = workspace::target_dir().join("linux");
    fs::create_dir_all(&dir).map_err(|e| io_error(&dir, &e))?;
    let kernel = kernel_image(&dir)?;

    let init = dir.join("init");
    cmd::run_checked(
        Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-Wextra", "-o"])
            .arg(&init)
            .arg(workspace::root().join(SOURCE)),
    )?;
    let program = fs::read(&init).map_err(|e| io_error(&init, &e))?;
    let initramfs = dir.join("initramfs.cpio");
    let archive = initramfs_archive(&program).map_err(|e| io_error(&initramfs, &e))?;
    fs::write(&initramfs, archive).map_err(|e| io_error(&initramfs, &e))?;
    Ok(Prepared { kernel, initramfs })
}

fn io_error(path: &Path, err: &io::Error) -> Error {
    Error::Failed(format!("{}: {err}", workspace::display(path)))
}

/// The kernel image in `dir`: the cached one, or Debian's current one fetched now.
fn kernel_image(dir: &Path) -> Result<PathBuf> {
    if let Some(cached) = cached_kernel(dir)? {
        println!(
            "xtask: Linux kernel {} (cached; delete it to fetch Debian's current one)",
            workspace::display(&cached)
        );
        return Ok(cached);
    }
    for program in ["apt-get", "apt-cache", "dpkg-deb", "tar"] {
        if cmd::find_program(program).is_none() {
            return Err(Error::Failed(format!(
                "{program} is missing, so Debian's kernel cannot be fetched: put an x86_64 \
                 Linux kernel image at {}/vmlinuz-<version> (on Debian: `apt-get download \
                 linux-image-<version>-amd64` and `dpkg-deb -x` it)",
                workspace::display(dir)
            )));
        }
    }
    let depends = cmd::capture(Command::new("apt-cache").args(["depends", METAPACKAGE]))?;
    let package = image_package(&String::from_utf8_lossy(&depends.stdout)).ok_or_else(|| {
        Error::Failed(format!(
            "`apt-cache depends {METAPACKAGE}` names no kernel image package; run \
             `sudo apt-get update` and try again"
        ))
    })?;
    cmd::run_checked(
        Command::new("apt-get")
            .args(["download", &package])
            .current_dir(dir),
    )?;
    let deb = fs::read_dir(dir)
        .map_err(|e| io_error(dir, &e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .ok_or_else(|| Error::Failed(format!("apt-get download {package} left no .deb")))?;

    // Only the image and its configuration, not the 400 MB of modules `dpkg-deb -x` unpacks.
    let mut unpack = Command::new("dpkg-deb");
    unpack
        .arg("--fsys-tarfile")
        .arg(&deb)
        .stdout(Stdio::piped());
    println!(
        "xtask: $ {} | tar -x boot/vmlinuz-* boot/config-*",
        cmd::show(&unpack)
    );
    let mut unpack_child = unpack
        .spawn()
        .map_err(|e| Error::Failed(format!("cannot run dpkg-deb: {e}")))?;
    let tarfile = unpack_child
        .stdout
        .take()
        .ok_or("dpkg-deb's output is not a pipe")?;
    let tar = Command::new("tar")
        .args(["-x", "--strip-components=2", "--wildcards", "-C"])
        .arg(dir)
        .args(["./boot/vmlinuz-*", "./boot/config-*"])
        .stdin(tarfile)
        .status()
        .map_err(|e| Error::Failed(format!("cannot run tar: {e}")))?;
    let unpacked = unpack_child
        .wait()
        .map_err(|e| Error::Failed(format!("cannot wait for dpkg-deb: {e}")))?;
    if !(tar.success() && unpacked.success()) {
        return Err(Error::Failed(format!(
            "unpacking {} failed (dpkg-deb: {}, tar: {})",
            workspace::display(&deb),
            cmd::describe_status(unpacked),
            cmd::describe_status(tar)
        )));
    }
    fs::remove_file(&deb).map_err(|e| io_error(&deb, &e))?;
    cached_kernel(dir)?.ok_or_else(|| {
        Error::Failed(format!(
            "{} has no boot/vmlinuz-*",
            workspace::display(&deb)
        ))
    })
}

/// The newest (by name) `vmlinuz-*` in `dir`.
fn cached_kernel(dir: &Path) -> Result<Option<PathBuf>> {
    let mut images: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| io_error(dir, &e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    images.sort();
    Ok(images.pop())
}

/// The kernel image package in `apt-cache depends linux-image-amd64`'s output
/// (`  Depends: linux-image-6.1.0-57-amd64`).
pub fn image_package(depends: &str) -> Option<String> {
    depends.lines().find_map(|line| {
        let package = line.trim().strip_prefix("Depends:")?.trim();
        (package.starts_with("linux-image-") && package.ends_with("-amd64"))
            .then(|| package.to_owned())
    })
}

/// The initramfs: `/dev/console` (so the kernel gives `/init` a console), mount points for
/// `/proc` and `/sys`, and `program` as `/init`.
pub fn initramfs_archive(program: &[u8]) -> io::Result<Vec<u8>> {
    use cpio::NewcBuilder;
    /// Directory, character device and regular file type bits of `st_mode`.
    const DIR: u32 = 0o040_000;
    const CHAR: u32 = 0o020_000;
    const FILE: u32 = 0o100_000;
    let entries: [(NewcBuilder, &[u8]); 5] = [
        (NewcBuilder::new("dev").mode(DIR | 0o755).nlink(2), &[]),
        (
            NewcBuilder::new("dev/console")
                .mode(CHAR | 0o600)
                .rdev_major(5)
                .rdev_minor(1),
            &[],
        ),
        (NewcBuilder::new("proc").mode(DIR | 0o555).nlink(2), &[]),
        (NewcBuilder::new("sys").mode(DIR | 0o555).nlink(2), &[]),
        (NewcBuilder::new("init").mode(FILE | 0o755), program),
    ];
    let entries = entries
        .into_iter()
        .map(|(builder, data)| (builder, Cursor::new(data)));
    Ok(cpio::write_cpio(entries, Cursor::new(Vec::new()))?.into_inner())
}

/// A `linux-bench key="value"` line (`linux-bench done` has an empty value).
pub fn parse_info(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix("linux-bench ")?;
    let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((key.to_owned(), value.to_owned()))
}

/// Boots Linux with the benchmark program on `vm` (the Veridian benchmark boot's machine) and
/// prints its rows next to `veridian`'s.
pub fn compare(prepared: &Prepared, veridian: &[BenchLine], vm: Vm) -> Result<ExitCode> {
    let boot = Boot::Kernel {
        elf: prepared.kernel.clone(),
        cmdline: CMDLINE.into(),
    };
    let mut qemu = qemu::command(&boot, vm);
    qemu.arg("-initrd").arg(&prepared.initramfs);
    let outcome = qemu::run_command(qemu, TIMEOUT, true)?;
    let linux: Vec<BenchLine> = outcome
        .serial
        .iter()
        .filter_map(|l| parse_line(l))
        .collect();
    let info: Vec<(String, String)> = outcome
        .serial
        .iter()
        .filter_map(|l| parse_info(l))
        .collect();

    println!();
    let value = |key: &str| {
        info.iter()
            .find(|(k, _)| k == key)
            .map_or("(not reported)", |(_, v)| v.as_str())
    };
    println!(
        "Linux {} ({}), command line `{}`",
        value("kernel"),
        workspace::display(&prepared.kernel),
        value("cmdline")
    );
    println!(
        "memory auto-init: {}; ERMS: {} (clear_page_erms: rep stosb)",
        value("mem_auto_init"),
        value("erms")
    );
    let mitigations: Vec<String> = info
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("vulnerability.")?;
            (v != "Not affected").then(|| format!("{name}: {v}"))
        })
        .collect();
    println!(
        "mitigations (kernel default), every vulnerability not `Not affected`: {}",
        if mitigations.is_empty() {
            "none".to_owned()
        } else {
            mitigations.join("; ")
        }
    );
    println!();
    let rows = side_by_side(veridian, &linux);
    print!("{}", render(&rows));
    for row in &rows {
        println!(
            "  {}: Veridian: {}; Linux: {}",
            row.name, row.veridian_what, row.linux_what
        );
    }
    println!(
        "(medians of instructions under QEMU TCG -icount shift=0, the same machine for both; \
         ratio above 1: Linux runs more instructions)"
    );

    let mut problems = Vec::new();
    if outcome.timed_out() {
        problems.push(format!(
            "the Linux boot timed out after {} s",
            TIMEOUT.as_secs()
        ));
    } else if !info.iter().any(|(k, _)| k == DONE) {
        problems.push(format!(
            "the benchmark program did not finish (no `linux-bench {DONE}`); last serial line: {}",
            outcome.serial.last().map_or("(none)", String::as_str)
        ));
    }
    if let Some((_, v)) = info.iter().find(|(k, _)| k == "error") {
        problems.push(format!("the benchmark program: {v}"));
    }
    let incomplete: Vec<&str> = rows
        .iter()
        .filter(|r| r.ratio().is_none())
        .map(|r| r.name)
        .collect();
    if !incomplete.is_empty() {
        problems.push(format!(
            "rows without two medians: {}",
            incomplete.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Failed(problems.join("; ")))
    }
}

/// One row of the side-by-side table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The benchmark's name (the same on both kernels).
    pub name: &'static str,
    /// Veridian's median, or why there is none.
    pub veridian: std::result::Result<u64, String>,
    /// Linux's median, or why there is none.
    pub linux: std::result::Result<u64, String>,
    /// What Veridian's iteration is (its `what` field).
    pub veridian_what: String,
    /// What Linux's iteration is.
    pub linux_what: String,
}

impl Row {
    /// Linux's median over Veridian's, when both exist and Veridian's is not 0.
    pub fn ratio(&self) -> Option<f64> {
        match (&self.veridian, &self.linux) {
            (Ok(v), Ok(l)) if *v > 0 => Some(*l as f64 / *v as f64),
            _ => None,
        }
    }
}

/// The median of row `name` in `lines`: its value, or why there is none.
fn median(lines: &[BenchLine], name: &str) -> (std::result::Result<u64, String>, String) {
    let Some(line) = lines.iter().find(|l| l.name == name) else {
        return (Err("missing".into()), String::new());
    };
    let what = line.fields.get("what").cloned().unwrap_or_default();
    if let Some(error) = line.fields.get("error") {
        return (Err(format!("error: {error}")), what);
    }
    let value = line
        .fields
        .get("median")
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| "no median".to_owned());
    (value, what)
}

/// The table's rows: every name of [`ROWS`], with what each kernel printed for it.
pub fn side_by_side(veridian: &[BenchLine], linux: &[BenchLine]) -> Vec<Row> {
    ROWS.iter()
        .map(|&name| {
            let (veridian, veridian_what) = median(veridian, name);
            let (linux, linux_what) = median(linux, name);
            Row {
                name,
                veridian,
                linux,
                veridian_what,
                linux_what,
            }
        })
        .collect()
}

/// The table as text, one line per row after a header.
pub fn render(rows: &[Row]) -> String {
    let cell = |value: &std::result::Result<u64, String>| match value {
        Ok(v) => v.to_string(),
        Err(why) => why.clone(),
    };
    let mut out = format!(
        "{:<20} {:>15} {:>15} {:>15}\n",
        "row (median)", "Veridian", "Linux", "Linux/Veridian"
    );
    for row in rows {
        let ratio = row.ratio().map_or("-".to_owned(), |r| format!("{r:.2}"));
        out.push_str(&format!(
            "{:<20} {:>15} {:>15} {:>15}\n",
            row.name,
            cell(&row.veridian),
            cell(&row.linux),
            ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_image_package_is_read_from_apt_cache() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            image_package(out).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(image_package("linux-image-amd64\n"), None);
        assert_eq!(image_package("  Depends: firmware-linux\n"), None);
    }

    #[test]
    fn the_initramfs_holds_the_console_the_mount_points_and_init() {
        let archive = initramfs_archive(b"\x7fELF program").expect("archive");
        let mut rest: &[u8] = &archive;
        let mut seen = Vec::new();
        loop {
            let mut reader = cpio::NewcReader::new(rest).expect("an entry");
            if reader.entry().is_trailer() {
                break;
            }
            let entry = reader.entry();
            let (name, mode) = (entry.name().to_owned(), entry.mode());
            let rdev = (entry.rdev_major(), entry.rdev_minor());
            let mut data = Vec::new();
            reader.read_to_end(&mut data).expect("data");
            seen.push((name, mode, rdev, data));
            rest = reader.finish().expect("next");
        }
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "proc", "sys", "init"]);
        assert_eq!(seen[0].1, 0o040_755);
        assert_eq!((seen[1].1, seen[1].2), (0o020_600, (5, 1)));
        assert_eq!(seen[4].1, 0o100_755);
        assert_eq!(seen[4].3, b"\x7fELF program");
        // newc: every header starts with the magic, and the archive is 4-byte aligned.
        assert!(archive.starts_with(b"070701"));
        assert_eq!(archive.len() % 4, 0);
    }

    #[test]
    fn info_lines_are_parsed() {
        assert_eq!(
            parse_info("linux-bench kernel=\"6.1.0-57-amd64 #1 SMP\"\r"),
            Some(("kernel".into(), "6.1.0-57-amd64 #1 SMP".into()))
        );
        assert_eq!(
            parse_info("linux-bench done"),
            Some(("done".into(), String::new()))
        );
        assert_eq!(parse_info("bench null_syscall unit=tsc"), None);
    }

    fn line(text: &str) -> BenchLine {
        parse_line(text).expect("a bench line")
    }

    #[test]
    fn rows_pair_medians_by_name() {
        let veridian = [
            line("bench null_syscall unit=tsc count=10 min=50 median=50 p99=50 what=\"getpid\""),
            line("bench ipc_call_reply unit=tsc count=10 min=1 median=1285 p99=1"),
            line("bench page_fault_anon unit=tsc count=10 min=1 median=0 p99=1"),
            line("bench thread_yield_switch unit=tsc count=10 min=1 median=395 p99=1"),
        ];
        let linux = [
            line("bench null_syscall unit=tsc count=10 min=1 median=175 p99=1 what=\"getppid\""),
            line("bench ipc_call_reply unit=tsc count=10 min=1 median=2570 p99=1"),
            line("bench page_fault_anon unit=tsc count=10 min=1 median=9 p99=1"),
            line("bench sched_yield_switch error=\"not one CPU\""),
        ];
        let rows = side_by_side(&veridian, &linux);
        assert_eq!(
            rows.iter().map(|r| r.name).collect::<Vec<_>>(),
            ROWS.to_vec()
        );
        assert_eq!((&rows[0].veridian, &rows[0].linux), (&Ok(50), &Ok(175)));
        assert_eq!(rows[0].ratio(), Some(3.5));
        assert_eq!(
            (rows[0].veridian_what.as_str(), rows[0].linux_what.as_str()),
            ("getpid", "getppid")
        );
        assert_eq!(rows[1].veridian, Err("missing".into()));
        assert_eq!(rows[1].linux, Err("error: not one CPU".into()));
        assert_eq!(rows[2].ratio(), Some(2.0));
        // A Veridian median of 0 gives no ratio; a row neither printed is missing on both.
        assert_eq!(rows[3].ratio(), None);
        assert_eq!(rows[4].linux, Err("missing".into()));

        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 1 + ROWS.len());
        assert!(lines[0].starts_with("row (median)"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["null_syscall", "50", "175", "3.50"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "sched_yield_switch",
                "missing",
                "error:",
                "not",
                "one",
                "CPU",
                "-"
            ]
        );
        assert_eq!(
            lines[4].split_whitespace().collect::<Vec<_>>(),
            ["page_fault_anon", "0", "9", "-"]
        );
    }
}
