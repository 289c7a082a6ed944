//! Where things are in the workspace, and what it is made of.

use std::path::{Path, PathBuf};

/// The bare-metal target that the kernel and the component crates are built for.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// Bare-metal targets of other architectures every component crate must build for (with
/// default features and without): their x86_64-only parts are behind `cfg(target_arch)`.
pub const PORTABLE_TARGETS: [&str; 2] = ["aarch64-unknown-none", "riscv64gc-unknown-none-elf"];

/// The package name of the bootable kernel.
pub const KERNEL_PACKAGE: &str = "reference-kernel";

/// The `no_std` component crates, each of which must build for [`KERNEL_TARGET`], in
/// dependency order (`publish-check` packages them in this order): the shared embedder traits
/// first.
pub const COMPONENT_CRATES: [&str; 7] = [
    "veridian-embed",
    "veridian-alloc",
    "veridian-sync",
    "veridian-sched",
    "veridian-io",
    "veridian-perf",
    "veridian-simd",
];

/// The manifest of the user programs' workspace (relative to the root): a workspace of its own,
/// excluded from the main one and built only for [`KERNEL_TARGET`] (by the kernel's build
/// script), so the main workspace's `fmt --all` and clippy steps do not reach it.
pub const USER_MANIFEST: &str = "reference-kernel/user/Cargo.toml";

/// The workspace root: the parent of this crate's directory.
pub fn root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The workspace's normal target directory, `<root>/target`.
///
/// Everything xtask builds goes here, whatever `CARGO_TARGET_DIR` says, so that the kernel
/// image is always found at the same place.
pub fn target_dir() -> PathBuf {
    root().join("target")
}

/// Shows `path` relative to the workspace root when it is inside it (for messages).
pub fn display(path: &Path) -> String {
    let root = root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The string value of `key = "value"` in the `[table]` of a manifest (a plain line-based
/// reading, enough for our own manifests): `None` when the table has no such line, or the
/// value is not a quoted string (`key.workspace = true` is not `key = ...`).
pub fn manifest_string(manifest: &str, table: &str, key: &str) -> Option<String> {
    let header = format!("[{table}]");
    let mut in_table = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == header;
        } else if in_table
            && let Some(value) = line
                .strip_prefix(key)
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix('='))
        {
            let value = value.trim();
            return value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned);
        }
    }
    None
}
