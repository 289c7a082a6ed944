//! The foreign-kernel examples (`xtask/foreign-kernels/<name>`): for each component crate a
//! tiny kernel that depends on that crate alone, built for `x86_64-unknown-none` and booted in
//! QEMU, passing when it exits through `isa-debug-exit` with 0x10 (QEMU status 33).
//!
//! Each example is a workspace of its own that names its crate as an outsider would
//! (`veridian-alloc = "0.1.0"`, resolved to the workspace copy by a `[patch.crates-io]` in its
//! manifest). Here it is built against the *packaged* crate instead: the unpacked packages of
//! `publish-check` (`target/publish-check/<name>-<version>`) replace the crate and every
//! sibling it depends on through `--config patch.crates-io.<name>.path=...`, which takes
//! precedence over the manifest's patch. Each build is `cargo fmt --check`, `cargo clippy -D
//! warnings` and `cargo build` (debug) in `target/foreign-kernels`, then one QEMU boot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmd;
use crate::error::{Error, Result};
use crate::publish::{self, Unpacked};
use crate::qemu;
use crate::workspace::{self, KERNEL_TARGET};

/// Each example's directory under [`EXAMPLES_DIR`] and the one crate it depends on.
pub const EXAMPLES: [(&str, &str); 6] = [
    ("alloc", "veridian-alloc"),
    ("sync", "veridian-sync"),
    ("sched", "veridian-sched"),
    ("io", "veridian-io"),
    ("perf", "veridian-perf"),
    ("simd", "veridian-simd"),
];

/// Where the examples live, relative to the workspace root.
const EXAMPLES_DIR: &str = "xtask/foreign-kernels";

/// A boot takes well under a second under TCG; the limit only catches a hang.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The machine: what the brief of every example assumes (one CPU, 128 MiB).
const MACHINE: [&str; 6] = ["-machine", "q35", "-cpu", "max", "-m", "128M"];

/// The step name `cargo xtask test` prints for the example of `krate`.
pub fn step_name(krate: &str) -> String {
    format!("foreign kernel on the packaged {krate} alone ({KERNEL_TARGET}, booted in QEMU)")
}

/// The target directory all examples share (their dependencies are built once).
fn target_dir() -> PathBuf {
    workspace::target_dir().join("foreign-kernels")
}

/// Lints and builds the example in `name` against `packages` (the crate and its sibling
/// dependencies as packaged); returns the kernel ELF.
pub fn build(name: &str, krate: &'static str, packages: &[Unpacked]) -> Result<PathBuf> {
    let manifest = workspace::root()
        .join(EXAMPLES_DIR)
        .join(name)
        .join("Cargo.toml");
    let patches = publish::patches_for(vec![krate], packages, krate)?;
    cmd::run_checked(
        cmd::cargo()
            .args(["fmt", "--check", "--manifest-path"])
            .arg(&manifest),
    )?;
    for action in [
        &["clippy", "--target", KERNEL_TARGET, "--", "-D", "warnings"][..],
        &["build", "--target", KERNEL_TARGET],
    ] {
        let mut command = cmd::cargo();
        command
            .env("CARGO_TARGET_DIR", target_dir())
            .arg(action[0])
            .arg("--manifest-path")
            .arg(&manifest);
        for patch in &patches {
            command.args(["--config", patch]);
        }
        command.args(&action[1..]);
        cmd::run_checked(&mut command)?;
    }
    Ok(target_dir()
        .join(KERNEL_TARGET)
        .join("debug")
        .join(format!("foreign-{name}")))
}

/// Boots `elf`; `Ok` when it reports success through `isa-debug-exit`.
pub fn boot(elf: &Path) -> Result<()> {
    let machine: Vec<String> = MACHINE.iter().map(|s| (*s).to_owned()).collect();
    let outcome = qemu::run_command(qemu::kernel_command(&machine, elf, ""), BOOT_TIMEOUT, true)?;
    match outcome.failure_reason() {
        None => Ok(()),
        Some(reason) => Err(Error::Failed(reason)),
    }
}

/// Builds and boots the example in `name`.
pub fn check(name: &str, krate: &'static str, packages: &[Unpacked]) -> Result<()> {
    boot(&build(name, krate, packages)?)
}

/// `cargo xtask foreign-kernels [NAME...]`: packages the crates, then builds and boots the
/// named examples (all without names); fails if any fails.
pub fn run(names: &[String]) -> Result<()> {
    for name in names {
        if !EXAMPLES.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = EXAMPLES.iter().map(|(n, _)| *n).collect();
            return Err(Error::Failed(format!(
                "no example `{name}` (known: {})",
                known.join(", ")
            )));
        }
    }
    let packages = publish::unpack_all()?;
    let mut failed = Vec::new();
    for (name, krate) in EXAMPLES {
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        let step = step_name(krate);
        match check(name, krate, &packages) {
            Ok(()) => println!("xtask: [PASS] {step}"),
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(Error::Failed(reason)) => {
                println!("xtask: [FAIL] {step}: {reason}");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "foreign kernels failed: {}",
            failed.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every component crate with code a kernel calls has an example, and each example's
    /// manifest depends on exactly its crate.
    #[test]
    fn each_example_depends_on_its_crate_alone() {
        for (name, krate) in EXAMPLES {
            assert!(workspace::COMPONENT_CRATES.contains(&krate));
            let path = workspace::root()
                .join(EXAMPLES_DIR)
                .join(name)
                .join("Cargo.toml");
            let manifest = std::fs::read_to_string(&path).unwrap();
            let dependencies: Vec<&str> = manifest
                .split("[dependencies]")
                .nth(1)
                .unwrap()
                .lines()
                .skip(1)
                .take_while(|line| !line.starts_with('['))
                .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
                .collect();
            assert_eq!(dependencies.len(), 1, "{name}: {dependencies:?}");
            assert!(
                dependencies[0].starts_with(&format!("{krate} = ")),
                "{name}: {dependencies:?}"
            );
        }
    }
}
