//! The minimum supported Rust version of each component crate, checked with that toolchain.
//!
//! Each crate states its MSRV in its own `Cargo.toml` (`rust-version = "1.xx"`). The check
//! installs that toolchain with rustup when it is missing (minimal profile, plus the
//! `x86_64-unknown-none` target), then builds the crate with it twice: for
//! `x86_64-unknown-none` with default features (what a kernel builds) and for the host with
//! all features (so that code behind a feature cannot need a newer compiler unnoticed). Cargo
//! is not told to ignore `rust-version`, so a dependency that needs a newer Rust fails too.
//! The builds use `target/msrv`, apart from the normal builds.

use std::process::Command;

use crate::cmd;
use crate::error::{Error, Result};
use crate::workspace::{self, KERNEL_TARGET};

/// The `rust-version` that `package`'s manifest states.
pub fn stated(package: &str) -> Result<String> {
    let path = workspace::root().join(package).join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|err| Error::Failed(format!("cannot read {}: {err}", path.display())))?;
    parse_rust_version(&text).ok_or_else(|| {
        Error::Failed(format!(
            "{package}/Cargo.toml states no `rust-version = \"1.xx\"` of its own"
        ))
    })
}

/// Builds `package` with the toolchain of its stated MSRV (installed if missing).
pub fn check(package: &str) -> Result<()> {
    let version = stated(package)?;
    install(&version)?;
    let target_dir = workspace::target_dir().join("msrv");
    for args in [&["--target", KERNEL_TARGET][..], &["--all-features"][..]] {
        let mut build = Command::new("rustup");
        build
            .current_dir(workspace::root())
            .args(["run", &version, "cargo", "build", "-p", package])
            .args(args)
            .env("CARGO_TARGET_DIR", &target_dir)
            // Set by the `cargo run` that started us, for the newer toolchain: let the one
            // rustup runs choose its own.
            .env_remove("CARGO")
            .env_remove("RUSTC")
            .env_remove("RUSTDOC")
            .env_remove("RUSTUP_TOOLCHAIN");
        cmd::run_checked(&mut build)?;
    }
    Ok(())
}

/// `rustup toolchain install <version> --profile minimal --target x86_64-unknown-none`, which
/// does nothing for what is already there.
fn install(version: &str) -> Result<()> {
    if cmd::find_program("rustup").is_none() {
        return Err(Error::Failed(format!(
            "rustup is needed to install Rust {version} (https://rustup.rs)"
        )));
    }
    cmd::run_checked(Command::new("rustup").args([
        "toolchain",
        "install",
        version,
        "--profile",
        "minimal",
        "--target",
        KERNEL_TARGET,
    ]))
}

/// `rust-version = "…"` of the `[package]` table (not one inherited from the workspace).
fn parse_rust_version(manifest: &str) -> Option<String> {
    workspace::manifest_string(manifest, "package", "rust-version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_package_rust_version() {
        let manifest = "\
[package]
name = \"veridian-sync\"
# comment
rust-version = \"1.88\"

[workspace.package]
rust-version = \"1.95\"
";
        assert_eq!(parse_rust_version(manifest).as_deref(), Some("1.88"));
    }

    #[test]
    fn an_inherited_rust_version_is_not_a_stated_one() {
        let manifest = "[package]\nname = \"x\"\nrust-version.workspace = true\n";
        assert_eq!(parse_rust_version(manifest), None);
    }

    #[test]
    fn every_component_crate_states_its_msrv() {
        for package in crate::workspace::COMPONENT_CRATES {
            let version = stated(package).unwrap();
            assert!(version.starts_with("1."), "{package}: {version}");
        }
    }
}
