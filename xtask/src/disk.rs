//! The test disk: a raw image with known contents that `cargo xtask test` (and `run`) attach
//! as a virtio-blk device, so the kernel's block tests can check every byte they read.
//!
//! Sector `n` (512 bytes): bytes 0..8 hold `n` little-endian, byte `i` in 8..512 holds
//! `(n * 251 + i) mod 256` — the same bytes as the kernel's `reference_kernel::testdisk`
//! (both test the same fixed sample). The image is written afresh before each use, so a run
//! that was interrupted in the middle of the kernel's write test leaves nothing behind.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::workspace;

/// Bytes per sector.
pub const SECTOR: usize = 512;
/// Sectors in the image (8 MiB).
pub const SECTORS: u64 = 16 * 1024;

/// Where the image lives: `target/veridian-disk.img`.
pub fn path() -> PathBuf {
    workspace::target_dir().join("veridian-disk.img")
}

/// The contents of sector `sector`.
pub fn sector_pattern(sector: u64) -> [u8; SECTOR] {
    let mut bytes = [0u8; SECTOR];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = match i {
            0..8 => sector.to_le_bytes()[i],
            _ => sector.wrapping_mul(251).wrapping_add(i as u64) as u8,
        };
    }
    bytes
}

/// Writes the image (all [`SECTORS`] sectors) and returns its path.
pub fn create() -> Result<PathBuf> {
    let path = path();
    let fail = |e: std::io::Error| Error::Failed(format!("writing {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut image = Vec::with_capacity(SECTORS as usize * SECTOR);
    for sector in 0..SECTORS {
        image.extend_from_slice(&sector_pattern(sector));
    }
    fs::File::create(&path)
        .and_then(|mut f| f.write_all(&image))
        .map_err(fail)?;
    Ok(path)
}

/// QEMU options attaching `image` as a virtio-blk PCI device; `device_options` are appended
/// to the device's (`",queue-size=8"`, say), empty for the ordinary disk.
pub fn qemu_args(image: &std::path::Path, device_options: &str) -> [String; 4] {
    [
        "-drive".into(),
        format!("file={},if=none,id=d0,format=raw", image.display()),
        "-device".into(),
        format!("virtio-blk-pci,drive=d0{device_options}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sample_matches_the_kernel() {
        // The same sample is asserted in reference-kernel/src/testdisk.rs.
        let sector = sector_pattern(0x1_0203);
        assert_eq!(&sector[..12], &[3, 2, 1, 0, 0, 0, 0, 0, 249, 250, 251, 252]);
        assert_eq!(sector[511], 240);
        assert_eq!(sector_pattern(8)[0], 8);
        assert_ne!(sector_pattern(0), sector_pattern(256));
    }

    #[test]
    fn qemu_options_name_the_image() {
        let args = qemu_args(std::path::Path::new("/t/d.img"), "");
        assert_eq!(
            args.join(" "),
            "-drive file=/t/d.img,if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0"
        );
        let args = qemu_args(std::path::Path::new("/t/d.img"), ",queue-size=8");
        assert!(args[3].ends_with("drive=d0,queue-size=8"));
    }
}
