//! `cargo xtask publish-check`: every component crate packaged and tested as crates.io would see
//! it.
//!
//! 1. `cargo publish --workspace --dry-run` packages each publishable crate in dependency order
//!    and verifies it: cargo builds the unpacked package, with its sibling dependencies taken
//!    from the packages made before it (cargo's local registry overlay), so an unversioned path
//!    dependency or a file missing from the package fails here.
//! 2. `cargo package --no-verify` writes the same packages to
//!    `target/package/<name>-<version>.crate`; each is unpacked into
//!    `target/publish-check/` and tested there: `cargo test --no-run` with default features
//!    (the suites a user of the published crate builds with plain `cargo test` must compile),
//!    then `cargo test --features std` (the hosted suites; the self dev-dependency that turns
//!    `std` on in the workspace is dropped by `cargo package`). A sibling dependency is resolved
//!    to the unpacked sibling (`--config patch.crates-io.<name>.path=...`), the same sources
//!    the registry would serve.
//!
//! `--allow-dirty`: the check is of the working tree being tested, committed or not.

use std::path::{Path, PathBuf};

use crate::cmd;
use crate::error::{Error, Result};
use crate::workspace::{self, COMPONENT_CRATES};

/// Where the packages are unpacked (listed in the workspace's `exclude`, so each unpacked
/// package is a workspace of its own, as it is on a user's machine).
const UNPACK_DIR: &str = "publish-check";

/// Runs the whole check; stops at the first failure.
pub fn publish_check() -> Result<()> {
    dry_run()?;
    let packages = unpack_all()?;
    for package in &packages {
        test_unpacked(package, &packages)?;
    }
    Ok(())
}

/// Step 1: `cargo publish --workspace --dry-run` (packaging and cargo's own verification).
pub fn dry_run() -> Result<()> {
    // Cargo verifies each package by building it (sources under `<target>/package/`, artifacts
    // in the target directory) with its packaged siblings as registry dependencies. Registry
    // dependencies count as immutable and the packaged sources carry a fixed 2006 mtime, so
    // artifacts an earlier run left behind look fresh and were used against today's sources (a
    // stale sibling failing to resolve new items). The dry run builds in a target directory of
    // its own, emptied first.
    let target = workspace::target_dir().join("publish-dry-run");
    // A precaution beside it, not shown necessary (removing these alone left the dry run
    // failing; the separate target directory fixed it): cargo extracts the packaged siblings of
    // its overlay registry under `$CARGO_HOME/registry/{src,cache}/-<hash>/` (a local
    // registry's directories start with `-`), where copies from earlier runs stay.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut stale = vec![target.clone()];
    if let Some(home) = cargo_home {
        for kind in ["src", "cache"] {
            let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else {
                continue;
            };
            for registry in registries.flatten() {
                if !registry.file_name().to_string_lossy().starts_with('-') {
                    continue;
                }
                let Ok(entries) = std::fs::read_dir(registry.path()) else {
                    continue;
                };
                stale.extend(entries.flatten().map(|e| e.path()).filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| COMPONENT_CRATES.iter().any(|c| n.starts_with(c)))
                }));
            }
        }
    }
    for path in stale.iter().filter(|p| p.exists()) {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        removed.map_err(|e| {
            Error::Failed(format!(
                "cannot remove {} before the dry run: {e}",
                path.display()
            ))
        })?;
    }
    cmd::run_checked(cmd::cargo().env("CARGO_TARGET_DIR", &target).args([
        "publish",
        "--workspace",
        "--dry-run",
        "--allow-dirty",
    ]))
}

/// An unpacked package.
#[derive(Debug)]
pub struct Unpacked {
    /// The crate's name.
    pub name: &'static str,
    /// Its directory, `target/publish-check/<name>-<version>`.
    pub dir: PathBuf,
}

/// Writes every component crate's package to `target/package/<name>-<version>.crate` (already
/// verified by [`dry_run`], which leaves its packages in temporary directories only) and unpacks
/// each into a fresh directory.
pub fn unpack_all() -> Result<Vec<Unpacked>> {
    let mut package = cmd::cargo();
    package.args(["package", "--no-verify", "--allow-dirty"]);
    for name in COMPONENT_CRATES {
        package.args(["-p", name]);
    }
    cmd::run_checked(&mut package)?;
    let target = workspace::target_dir();
    let unpack_root = target.join(UNPACK_DIR);
    if unpack_root.exists() {
        std::fs::remove_dir_all(&unpack_root).map_err(|err| {
            Error::Failed(format!(
                "cannot remove {}: {err}",
                workspace::display(&unpack_root)
            ))
        })?;
    }
    std::fs::create_dir_all(&unpack_root).map_err(|err| {
        Error::Failed(format!(
            "cannot create {}: {err}",
            workspace::display(&unpack_root)
        ))
    })?;
    let version = workspace_version()?;
    let mut packages = Vec::new();
    for name in COMPONENT_CRATES {
        let stem = format!("{name}-{version}");
        let archive = target.join("package").join(format!("{stem}.crate"));
        if !archive.is_file() {
            return Err(Error::Failed(format!(
                "{} is missing after `cargo package`",
                workspace::display(&archive)
            )));
        }
        // `-m`: the files get the time of unpacking, not the fixed time `cargo package` stores
        // (for reproducible archives). With the stored time, cargo would take the build of an
        // earlier unpacking at the same path as up to date, and test stale code.
        let mut tar = std::process::Command::new("tar");
        tar.arg("-xzmf").arg(&archive).arg("-C").arg(&unpack_root);
        cmd::run_checked(&mut tar)?;
        packages.push(Unpacked {
            name,
            dir: unpack_root.join(stem),
        });
    }
    Ok(packages)
}

/// Step 2 for one package: its test suites built with default features, then run with `std`
/// (with default features for a crate that has no `std` feature).
pub fn test_unpacked(package: &Unpacked, all: &[Unpacked]) -> Result<()> {
    let manifest = std::fs::read_to_string(package.dir.join("Cargo.toml")).map_err(|err| {
        Error::Failed(format!(
            "cannot read the packaged manifest of {}: {err}",
            package.name
        ))
    })?;
    let patches = patches_for(sibling_dependencies(&manifest), all, package.name)?;
    // A crate without hosted back-ends (no `std` feature: the embedder traits) runs its tests
    // with default features.
    let run = if has_std_feature(&manifest) {
        Some("std")
    } else {
        Some("")
    };
    for features in [None, run] {
        let mut command = cmd::cargo();
        command.current_dir(&package.dir).arg("test");
        match features {
            None => command.arg("--no-run"),
            Some("") => &mut command,
            Some(features) => command.args(["--features", features]),
        };
        for patch in &patches {
            command.args(["--config", patch]);
        }
        cmd::run_checked(&mut command)?;
    }
    Ok(())
}

/// The `--config` patches that resolve each crate of `first`, and every component crate those
/// depend on directly or through another one (veridian-sched -> veridian-sync ->
/// veridian-embed), to its unpacked package in `all`. `who` names the dependent in errors.
pub fn patches_for(first: Vec<&'static str>, all: &[Unpacked], who: &str) -> Result<Vec<String>> {
    let mut patches = Vec::new();
    let mut pending = first;
    let mut seen: Vec<&'static str> = Vec::new();
    while let Some(sibling) = pending.pop() {
        if seen.contains(&sibling) {
            continue;
        }
        seen.push(sibling);
        let unpacked = all.iter().find(|p| p.name == sibling).ok_or_else(|| {
            Error::Failed(format!(
                "{who} depends on {sibling}, which is not a component crate"
            ))
        })?;
        patches.push(patch_config(sibling, &unpacked.dir));
        let sibling_manifest =
            std::fs::read_to_string(unpacked.dir.join("Cargo.toml")).map_err(|err| {
                Error::Failed(format!(
                    "cannot read the packaged manifest of {sibling}: {err}"
                ))
            })?;
        pending.extend(sibling_dependencies(&sibling_manifest));
    }
    Ok(patches)
}

/// Whether a packaged (normalised) manifest declares a `std` feature: a `std = [...]` line in
/// its `[features]` table.
fn has_std_feature(manifest: &str) -> bool {
    let mut in_features = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_features = line == "[features]";
        } else if in_features && line.starts_with("std = ") {
            return true;
        }
    }
    false
}

/// The `--config` value that resolves crates.io's `name` to the unpacked package in `dir`.
fn patch_config(name: &str, dir: &Path) -> String {
    format!("patch.crates-io.{name}.path=\"{}\"", dir.display())
}

/// The component crates a packaged (normalised) manifest depends on, in any dependency table
/// (`[dependencies.veridian-sync]`, `[target.'cfg(..)'.dependencies.veridian-sync]`,
/// `[dev-dependencies.…]`).
fn sibling_dependencies(manifest: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for line in manifest.lines() {
        let Some(header) = line
            .trim()
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        else {
            continue;
        };
        for name in COMPONENT_CRATES {
            let is_dependency = ["dependencies.", "dev-dependencies.", "build-dependencies."]
                .iter()
                .any(|table| header.ends_with(&format!("{table}{name}")));
            if is_dependency && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    found
}

/// The workspace's `version` (every component crate inherits it).
fn workspace_version() -> Result<String> {
    let path = workspace::root().join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|err| Error::Failed(format!("cannot read {}: {err}", path.display())))?;
    parse_workspace_version(&text)
        .ok_or_else(|| Error::Failed("no `version` in [workspace.package]".into()))
}

/// `version = "x.y.z"` of the `[workspace.package]` table.
fn parse_workspace_version(manifest: &str) -> Option<String> {
    workspace::manifest_string(manifest, "workspace.package", "version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_feature_is_found_only_in_the_features_table() {
        let with = "[package]\nname = \"a\"\n\n[features]\ndefault = []\nstd = [\"alloc\"]\n";
        assert!(has_std_feature(with));
        let without = "[package]\nname = \"veridian-embed\"\n\n[lib]\nname = \"x\"\n";
        assert!(!has_std_feature(without));
        let elsewhere = "[features]\nalloc = []\n\n[dependencies.x]\nstd = true\n";
        assert!(!has_std_feature(elsewhere));
    }

    #[test]
    fn sibling_dependencies_are_read_from_normalised_manifests() {
        let manifest = "\
[package]
name = \"veridian-sched\"

[dependencies.libc]
version = \"0.2\"

[dependencies.veridian-sync]
version = \"0.1.0\"

[target.'cfg(loom)'.dependencies.loom]
version = \"0.7\"

[dev-dependencies.veridian-sync-extra]
version = \"1\"
";
        assert_eq!(sibling_dependencies(manifest), ["veridian-sync"]);
        assert!(sibling_dependencies("[dependencies]\nveridian = \"1\"\n").is_empty());
    }

    #[test]
    fn workspace_version_is_found() {
        let manifest = "\
[workspace]
members = []

[workspace.package]
edition = \"2024\"
version = \"0.3.1\"

[package]
version = \"9.9.9\"
";
        assert_eq!(parse_workspace_version(manifest).as_deref(), Some("0.3.1"));
        assert_eq!(
            parse_workspace_version("[package]\nversion = \"1\"\n"),
            None
        );
    }

    /// A crate's README is shown on crates.io and docs.rs without the rest of the repository:
    /// links must stay inside the package or be absolute.
    #[test]
    fn component_readmes_link_nothing_outside_their_package() {
        for name in COMPONENT_CRATES {
            let path = workspace::root().join(name).join("README.md");
            let text = std::fs::read_to_string(&path).unwrap();
            for (number, line) in text.lines().enumerate() {
                assert!(
                    !line.contains("](../") && !line.contains("](/"),
                    "{name}/README.md:{}: a link leaves the package: {line}",
                    number + 1
                );
            }
        }
    }

    #[test]
    fn patch_points_at_the_unpacked_directory() {
        assert_eq!(
            patch_config("veridian-sync", Path::new("/t/veridian-sync-0.1.0")),
            "patch.crates-io.veridian-sync.path=\"/t/veridian-sync-0.1.0\""
        );
    }
}
