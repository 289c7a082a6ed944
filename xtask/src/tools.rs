//! Checking (and, where we may, installing) the tools the commands need.
//!
//! Missing system packages are installed with `apt-get` only when running as root on
//! Debian/Ubuntu; otherwise the check fails with the exact command to run.

use std::path::Path;
use std::process::Command;

use crate::cmd;
use crate::error::{Error, Result};
use crate::workspace::KERNEL_TARGET;

/// What a command needs beyond cargo itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Needs {
    /// `qemu-system-x86_64`.
    pub qemu: bool,
    /// `grub-mkrescue` with the BIOS modules, `xorriso`, `mformat`.
    pub iso: bool,
    /// The rustfmt and clippy components.
    pub lints: bool,
}

impl Needs {
    /// Everything (used by `test`).
    pub const ALL: Self = Self {
        qemu: true,
        iso: true,
        lints: true,
    };
    /// QEMU only (`bench`, `profile`).
    pub const QEMU: Self = Self {
        qemu: true,
        iso: false,
        lints: false,
    };
}

/// The GRUB module directory for BIOS boot (package `grub-pc-bin`).
pub const GRUB_BIOS_DIR: &str = "/usr/lib/grub/i386-pc";
/// The GRUB module directory for UEFI boot (package `grub-efi-amd64-bin`).
pub const GRUB_UEFI_DIR: &str = "/usr/lib/grub/x86_64-efi";
/// The UEFI firmware image for QEMU (package `ovmf`).
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// A system requirement: something that must exist, and the Debian packages providing it.
pub struct Requirement {
    /// What is needed (a program or a path), for messages.
    pub what: &'static str,
    /// Whether it is there.
    pub present: fn() -> bool,
    /// The Debian packages that provide it.
    pub packages: &'static [&'static str],
}

fn requirements(needs: Needs) -> Vec<Requirement> {
    let mut list = Vec::new();
    if needs.qemu {
        list.push(Requirement {
            what: "qemu-system-x86_64",
            present: || cmd::find_program("qemu-system-x86_64").is_some(),
            packages: &["qemu-system-x86"],
        });
    }
    if needs.iso {
        list.push(Requirement {
            what: "grub-mkrescue",
            present: || cmd::find_program("grub-mkrescue").is_some(),
            packages: &["grub-pc-bin", "grub-common"],
        });
        list.push(Requirement {
            what: GRUB_BIOS_DIR,
            present: || Path::new(GRUB_BIOS_DIR).is_dir(),
            packages: &["grub-pc-bin"],
        });
        list.push(Requirement {
            what: "xorriso",
            present: || cmd::find_program("xorriso").is_some(),
            packages: &["xorriso"],
        });
        list.push(Requirement {
            what: "mformat",
            present: || cmd::find_program("mformat").is_some(),
            packages: &["mtools"],
        });
    }
    list
}

/// Checks everything `needs` asks for, installing what is missing where possible.
pub fn ensure(needs: Needs) -> Result<()> {
    ensure_target()?;
    if needs.lints {
        ensure_lint_components()?;
    }
    ensure_packages(needs)
}

/// The Rust target for the kernel.
fn ensure_target() -> Result<()> {
    ensure_rust_target(KERNEL_TARGET)
}

/// The Rust target `target` (its `core`/`alloc` for cross builds), added with rustup when
/// missing.
pub fn ensure_rust_target(target: &str) -> Result<()> {
    if cmd::find_program("rustup").is_none() {
        // Without rustup (a distribution toolchain), all we can do is look at the sysroot.
        let sysroot = cmd::capture(Command::new("rustc").args(["--print", "sysroot"]))?;
        let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
        let lib = Path::new(&sysroot).join("lib/rustlib").join(target);
        return if lib.is_dir() {
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "the Rust target {target} is not installed and rustup is not available \
                 to add it (install rustup, then: rustup target add {target})"
            )))
        };
    }
    let installed = cmd::capture(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    println!("xtask: the Rust target {target} is missing: adding it with rustup");
    cmd::run_checked(Command::new("rustup").args(["target", "add", target]))
}

/// rustfmt and clippy (through cargo, so that the check works with or without rustup).
fn ensure_lint_components() -> Result<()> {
    let works = |sub: &str| -> Result<bool> {
        Ok(cmd::capture(cmd::cargo().args([sub, "--version"]))?
            .status
            .success())
    };
    if works("fmt")? && works("clippy")? {
        return Ok(());
    }
    if cmd::find_program("rustup").is_none() {
        return Err(
            "cargo fmt / cargo clippy are missing and rustup is not available \
                    (install rustup, then: rustup component add rustfmt clippy)"
                .into(),
        );
    }
    println!("xtask: rustfmt or clippy is missing: adding them with rustup");
    cmd::run_checked(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
}

fn ensure_packages(needs: Needs) -> Result<()> {
    ensure_requirements(requirements(needs))
}

/// Checks `list`, installing the packages of what is missing where possible (root on
/// Debian/Ubuntu), otherwise failing with the exact command to run.
pub fn ensure_requirements(list: Vec<Requirement>) -> Result<()> {
    let missing: Vec<Requirement> = list.into_iter().filter(|req| !(req.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages = packages_for(&missing);
    let what: Vec<&str> = missing.iter().map(|req| req.what).collect();
    let packages_line = packages.join(" ");

    if !(is_root() && Path::new("/etc/debian_version").exists()) {
        return Err(Error::Failed(manual_install_message(&what, &packages)));
    }

    println!("xtask: missing: {}", what.join(", "));
    println!("xtask: installing {packages_line} with apt-get");
    cmd::run_checked(Command::new("apt-get").arg("update"))?;
    cmd::run_checked(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(&packages),
    )?;
    let still_missing: Vec<&str> = missing
        .iter()
        .filter(|req| !(req.present)())
        .map(|req| req.what)
        .collect();
    if still_missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "still missing after installing {packages_line}: {}",
            still_missing.join(", ")
        )))
    }
}

/// The packages providing `missing`, each once, in order.
fn packages_for(missing: &[Requirement]) -> Vec<&'static str> {
    let mut packages: Vec<&str> = Vec::new();
    for package in missing.iter().flat_map(|req| req.packages) {
        if !packages.contains(package) {
            packages.push(package);
        }
    }
    packages
}

/// The error when we may not install: what is missing and the exact command to run.
fn manual_install_message(what: &[&str], packages: &[&str]) -> String {
    let packages = packages.join(" ");
    format!(
        "missing: {} (Debian/Ubuntu packages: {packages}); install them with: \
         sudo apt-get update && sudo apt-get install -y {packages}",
        what.join(", ")
    )
}

fn is_root() -> bool {
    cmd::capture(Command::new("id").arg("-u"))
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Fails clearly when the UEFI firmware for QEMU is missing.
pub fn ensure_ovmf() -> Result<()> {
    if Path::new(OVMF).is_file() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "UEFI boot needs {OVMF}; install it with: sudo apt-get install -y ovmf"
        )))
    }
}

/// Fails clearly when GRUB's UEFI modules are missing (an ISO built without them has no UEFI
/// boot path).
pub fn ensure_grub_uefi() -> Result<()> {
    if Path::new(GRUB_UEFI_DIR).is_dir() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "a UEFI-bootable ISO needs {GRUB_UEFI_DIR}; install it with: \
             sudo apt-get install -y grub-efi-amd64-bin"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_listed_once() {
        let all = requirements(Needs::ALL);
        assert_eq!(
            packages_for(&all),
            [
                "qemu-system-x86",
                "grub-pc-bin",
                "grub-common",
                "xorriso",
                "mtools"
            ]
        );
        assert!(requirements(Needs::default()).is_empty());
    }

    #[test]
    fn manual_install_names_the_command() {
        assert_eq!(
            manual_install_message(&["xorriso", "mformat"], &["xorriso", "mtools"]),
            "missing: xorriso, mformat (Debian/Ubuntu packages: xorriso mtools); install them \
             with: sudo apt-get update && sudo apt-get install -y xorriso mtools"
        );
    }
}
