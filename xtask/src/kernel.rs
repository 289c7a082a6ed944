//! Building the kernel image.

use std::path::PathBuf;

use crate::cmd;
use crate::error::{Error, Result};
use crate::workspace::{self, KERNEL_PACKAGE, KERNEL_TARGET};

/// Which cargo profile the kernel is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `dev`: debug assertions on (used by `test`).
    Debug,
    /// `release` (used by `run` and `iso` unless `--debug`).
    Release,
}

impl Profile {
    /// The directory name cargo uses for this profile.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Release => "release",
        }
    }
}

/// Where cargo puts the kernel ELF for `profile`.
pub fn elf_path(profile: Profile) -> PathBuf {
    workspace::target_dir()
        .join(KERNEL_TARGET)
        .join(profile.dir_name())
        .join(KERNEL_PACKAGE)
}

/// Builds the kernel and returns the path of its ELF image.
pub fn build(profile: Profile) -> Result<PathBuf> {
    build_with(profile, &[])
}

/// Builds the kernel with extra cargo features of `reference-kernel` (e.g. `lockdep`).
pub fn build_with(profile: Profile, features: &[&str]) -> Result<PathBuf> {
    let mut cargo = cmd::cargo();
    cargo.args(["build", "-p", KERNEL_PACKAGE, "--target", KERNEL_TARGET]);
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    if !features.is_empty() {
        cargo.arg("--features").arg(features.join(","));
    }
    cmd::run_checked(&mut cargo)?;
    let elf = elf_path(profile);
    if elf.is_file() {
        Ok(elf)
    } else {
        Err(Error::Failed(format!(
            "the kernel build succeeded but {} does not exist",
            workspace::display(&elf)
        )))
    }
}
