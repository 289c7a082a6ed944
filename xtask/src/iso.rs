//! Building a bootable GRUB ISO (Multiboot2) with `grub-mkrescue`.
//!
//! Layout: `target/iso/root/boot/kernel.elf`, `target/iso/root/boot/grub/grub.cfg`, and the image
//! `target/veridian.iso`. The ISO boots through BIOS when GRUB's i386-pc modules are installed
//! (`grub-pc-bin`) and through UEFI when its x86_64-efi modules are (`grub-efi-amd64-bin`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{Error, Result};
use crate::kernel::{self, Profile};
use crate::tools::{GRUB_BIOS_DIR, GRUB_UEFI_DIR};
use crate::workspace;

/// The GRUB menu entries: title and kernel command line. Entry numbers index this list.
pub const ENTRIES: [(&str, &str); 2] = [("Veridian", "mode=run"), ("Veridian tests", "mode=test")];

/// How to build the ISO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoOptions {
    /// The kernel's profile.
    pub profile: Profile,
    /// The menu entry GRUB boots (an index into [`ENTRIES`]).
    pub default_entry: usize,
    /// Words appended to every entry's kernel command line.
    pub extra_cmdline: Vec<String>,
}

/// The image's path.
pub fn iso_path() -> PathBuf {
    workspace::target_dir().join("veridian.iso")
}

/// The contents of grub.cfg.
pub fn grub_cfg(default_entry: usize, extra_cmdline: &[String]) -> String {
    let mut cfg = format!(
        "set timeout=0\n\
         set default={default_entry}\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n"
    );
    for (title, mode) in ENTRIES {
        let cmdline = std::iter::once(mode)
            .chain(extra_cmdline.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        cfg.push_str(&format!(
            "\nmenuentry \"{title}\" {{\n    multiboot2 /boot/kernel.elf {cmdline}\n    boot\n}}\n"
        ));
    }
    cfg
}

/// Which firmware the ISO will boot with, judging by the installed GRUB modules.
pub fn firmware_support() -> (bool, bool) {
    (
        Path::new(GRUB_BIOS_DIR).is_dir(),
        Path::new(GRUB_UEFI_DIR).is_dir(),
    )
}

/// Builds the kernel, then the ISO; returns the ISO's path.
pub fn build(options: &IsoOptions) -> Result<PathBuf> {
    let Some((title, _)) = ENTRIES.get(options.default_entry) else {
        return Err(Error::Failed(format!(
            "no GRUB entry {} (there are {})",
            options.default_entry,
            ENTRIES.len()
        )));
    };
    let elf = kernel::build(options.profile)?;

    let iso_dir = workspace::target_dir().join("iso");
    let root = iso_dir.join("root");
    let io_err = |what: &str, path: &Path, err: std::io::Error| {
        Error::Failed(format!("cannot {what} {}: {err}", path.display()))
    };
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|err| io_err("remove", &root, err))?;
    }
    let grub_dir = root.join("boot/grub");
    fs::create_dir_all(&grub_dir).map_err(|err| io_err("create", &grub_dir, err))?;
    let kernel_copy = root.join("boot/kernel.elf");
    fs::copy(&elf, &kernel_copy).map_err(|err| io_err("write", &kernel_copy, err))?;
    let cfg_path = grub_dir.join("grub.cfg");
    fs::write(
        &cfg_path,
        grub_cfg(options.default_entry, &options.extra_cmdline),
    )
    .map_err(|err| io_err("write", &cfg_path, err))?;

    let iso = iso_path();
    let mut mkrescue = Command::new("grub-mkrescue");
    mkrescue.arg("-o").arg(&iso).arg(&root);
    println!("xtask: $ {}", cmd::show(&mkrescue));
    let output = cmd::capture(&mut mkrescue)?;
    if !output.status.success() {
        // Its chatter is only worth showing when it failed.
        print!("{}", String::from_utf8_lossy(&output.stdout));
        print!("{}", String::from_utf8_lossy(&output.stderr));
        return Err(Error::Failed(format!(
            "grub-mkrescue failed ({})",
            cmd::describe_status(output.status)
        )));
    }

    let firmware = match firmware_support() {
        (true, true) => "BIOS and UEFI",
        (true, false) => "BIOS only (install grub-efi-amd64-bin for UEFI)",
        (false, true) => "UEFI only (install grub-pc-bin for BIOS)",
        (false, false) => "unknown firmware: no GRUB modules found",
    };
    println!(
        "xtask: wrote {} ({firmware}; {} kernel; GRUB boots entry {} \"{title}\")",
        workspace::display(&iso),
        options.profile.dir_name(),
        options.default_entry,
    );
    Ok(iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_has_both_entries_and_the_chosen_default() {
        let cfg = grub_cfg(1, &[]);
        assert!(cfg.starts_with("set timeout=0\nset default=1\nserial --unit=0 --speed=115200\n"));
        assert!(cfg.contains("terminal_input serial console\nterminal_output serial console\n"));
        assert!(cfg.contains(
            "menuentry \"Veridian\" {\n    multiboot2 /boot/kernel.elf mode=run\n    boot\n}"
        ));
        assert!(cfg.contains(
            "menuentry \"Veridian tests\" {\n    multiboot2 /boot/kernel.elf mode=test\n    boot\n}"
        ));
    }

    #[test]
    fn grub_cfg_appends_extra_words() {
        let cfg = grub_cfg(0, &["ktest.filter=alloc".to_owned()]);
        assert!(cfg.contains("multiboot2 /boot/kernel.elf mode=run ktest.filter=alloc\n"));
        assert!(cfg.contains("multiboot2 /boot/kernel.elf mode=test ktest.filter=alloc\n"));
    }
}
