//! `cargo xtask pgo <crate> [-- <criterion args>]`: profile-guided optimisation of a crate's
//! criterion benchmarks, measured before and after.
//!
//! 1. Runs the crate's benchmarks in the `release` profile, saving criterion baseline `pgo-before`.
//! 2. Builds them with `-Cprofile-generate` in profile `release-pgo-generate` (its own target
//!    subdirectory) and runs them once, which writes `.profraw` files.
//! 3. Merges those with `llvm-profdata` (from rustup's `llvm-tools` component, installed when
//!    missing) into one `.profdata`.
//! 4. Rebuilds with `-Cprofile-use` in profile `release-pgo-use` and runs the benchmarks again,
//!    saving baseline `pgo-after`.
//! 5. Prints, per benchmark, the median before and after and their ratio (after / before; below
//!    1.0 means PGO made it faster). Both runs are on the same machine in one session; on a
//!    shared machine ratios within ~10 % are noise.
//!
//! Extra words after `--` go to criterion (a filter such as `memcpy/veridian`, or
//! `--measurement-time 2`), so a long benchmark suite can be cut down.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::cmd;
use crate::error::{Error, Result};
use crate::workspace;

/// Where the profiles go.
fn pgo_dir() -> PathBuf {
    workspace::target_dir().join("pgo")
}

/// `llvm-profdata` from the active toolchain's `llvm-tools` component, installing it if needed.
fn llvm_profdata() -> Result<PathBuf> {
    let sysroot = cmd::capture(Command::new("rustc").args(["--print", "sysroot"]))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let host = cmd::capture(Command::new("rustc").args(["--print", "host-tuple"]))?;
    let host = String::from_utf8_lossy(&host.stdout).trim().to_owned();
    let tool = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(&host)
        .join("bin/llvm-profdata");
    if !tool.exists() {
        println!("xtask: llvm-profdata missing; installing the llvm-tools component");
        cmd::run_checked(Command::new("rustup").args(["component", "add", "llvm-tools"]))?;
    }
    if tool.exists() {
        Ok(tool)
    } else {
        Err(Error::Failed(format!(
            "llvm-profdata not found at {} (run `rustup component add llvm-tools`)",
            tool.display()
        )))
    }
}

/// `cargo bench -p <krate> --profile <profile>` with `rustflags`, criterion `args`.
fn bench(krate: &str, profile: &str, rustflags: Option<&str>, args: &[String]) -> Result<()> {
    let mut command = cmd::cargo();
    command.args([
        "bench",
        "-p",
        krate,
        "--bench",
        "*",
        "--profile",
        profile,
        "--",
    ]);
    command.args(args);
    if let Some(flags) = rustflags {
        command.env("RUSTFLAGS", flags);
    } else {
        command.env_remove("RUSTFLAGS");
    }
    cmd::run_checked(&mut command)
}

/// The median point estimate in a criterion `estimates.json`.
pub fn median_of(json: &str) -> Option<f64> {
    let at = json.find("\"median\"")?;
    let rest = &json[at..];
    let at = rest.find("\"point_estimate\"")?;
    let rest = rest[at + "\"point_estimate\"".len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Calls `visit` on every directory below `dir` whose name is one of `names` (not descending
/// into those).
fn find_dirs(dir: &Path, names: &[&str], mut visit: impl FnMut(&Path)) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            if path
                .file_name()
                .is_some_and(|n| names.iter().any(|name| n == *name))
            {
                visit(&path);
            } else {
                stack.push(path);
            }
        }
    }
}

/// Every `<id>/<baseline>/estimates.json` under `dir`, as id -> median.
pub fn medians(dir: &Path, baseline: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    find_dirs(dir, &[baseline], |path| {
        let est = path.join("estimates.json");
        if let (Ok(text), Some(parent)) = (fs::read_to_string(&est), path.parent())
            && let (Some(m), Ok(id)) = (median_of(&text), parent.strip_prefix(dir))
        {
            out.insert(id.display().to_string(), m);
        }
    });
    out
}

/// Deletes every saved criterion baseline called one of `names` under `dir` (so the table only
/// shows this run's benchmarks).
fn remove_baselines(dir: &Path, names: &[&str]) {
    find_dirs(dir, names, |path| {
        let _ = fs::remove_dir_all(path);
    });
}

/// Runs the whole procedure for `krate`.
pub fn pgo(krate: &str, criterion_args: &[String]) -> Result<ExitCode> {
    if !workspace::COMPONENT_CRATES.contains(&krate) {
        return Err(Error::Failed(format!(
            "`{krate}` is not one of the component crates: {}",
            workspace::COMPONENT_CRATES.join(", ")
        )));
    }
    let profdata = llvm_profdata()?;
    let dir = pgo_dir().join(krate);
    let raw = dir.join("raw");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&raw).map_err(|e| Error::Failed(format!("{}: {e}", raw.display())))?;
    let merged = dir.join("merged.profdata");
    let criterion = workspace::target_dir().join("criterion");
    remove_baselines(&criterion, &["pgo-before", "pgo-training", "pgo-after"]);

    let with = |name: &str| {
        let mut a = criterion_args.to_vec();
        a.extend([
            "--save-baseline".to_owned(),
            name.to_owned(),
            "--noplot".to_owned(),
        ]);
        a
    };
    println!("xtask: pgo 1/4: benchmarks as built today (release)");
    bench(krate, "release", None, &with("pgo-before"))?;
    println!("xtask: pgo 2/4: instrumented run (release-pgo-generate)");
    bench(
        krate,
        "release-pgo-generate",
        Some(&format!("-Cprofile-generate={}", raw.display())),
        &with("pgo-training"),
    )?;
    println!("xtask: pgo 3/4: merging profiles");
    let mut merge = Command::new(&profdata);
    merge.arg("merge").arg("-o").arg(&merged).arg(&raw);
    cmd::run_checked(&mut merge)?;
    println!("xtask: pgo 4/4: optimised run (release-pgo-use)");
    bench(
        krate,
        "release-pgo-use",
        Some(&format!("-Cprofile-use={}", merged.display())),
        &with("pgo-after"),
    )?;

    let before = medians(&criterion, "pgo-before");
    let after = medians(&criterion, "pgo-after");
    println!();
    println!(
        "{:<56} {:>14} {:>14} {:>8}",
        "benchmark", "before (ns)", "after (ns)", "ratio"
    );
    let mut rows = 0;
    for (id, b) in &before {
        if let Some(a) = after.get(id) {
            println!("{id:<56} {b:>14.2} {a:>14.2} {:>8.3}", a / b);
            rows += 1;
        }
    }
    println!("(ratio = after / before, median; below 1.0: faster with PGO)");
    if rows == 0 {
        return Err(Error::Failed(
            "no benchmark was measured both before and after".into(),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_median_is_read() {
        let json = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,
            "upper_bound":2.0},"point_estimate":1.5,"standard_error":0.1},
            "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":3.0,
            "upper_bound":4.0},"point_estimate":3.25e1,"standard_error":0.2}}"#;
        assert_eq!(median_of(json), Some(32.5));
        assert_eq!(median_of("{}"), None);
    }
}
