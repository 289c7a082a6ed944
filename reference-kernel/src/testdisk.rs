//! The contents of the test disk image xtask attaches as virtio-blk (`target/veridian-disk.img`),
//! so the kernel's tests can check every byte they read.
//!
//! Sector `n` (512 bytes): bytes 0..8 hold `n` little-endian (no two sectors are equal), byte
//! `i` in 8..512 holds `(n * 251 + i) mod 256`. xtask writes the same bytes (its
//! `disk::sector_pattern`); both sides test the same fixed sample, so they cannot drift apart.

/// Bytes per sector.
pub const SECTOR: usize = 512;

/// Byte `offset` (`< 512`) of sector `sector`.
pub fn pattern_byte(sector: u64, offset: usize) -> u8 {
    match offset {
        0..8 => sector.to_le_bytes()[offset],
        _ => (sector.wrapping_mul(251).wrapping_add(offset as u64)) as u8,
    }
}

/// Fills `buf` (whole or partial sectors) with the pattern of the sectors from `first` on.
pub fn fill(first: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(first + (i / SECTOR) as u64, i % SECTOR);
    }
}

/// The first offset in `buf` (sectors from `first` on) that differs from the pattern.
pub fn first_mismatch(first: u64, buf: &[u8]) -> Option<usize> {
    buf.iter()
        .enumerate()
        .position(|(i, &b)| b != pattern_byte(first + (i / SECTOR) as u64, i % SECTOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sample_matches_xtask() {
        // The same sample is asserted in xtask/src/disk.rs.
        let mut sector = [0u8; SECTOR];
        fill(0x1_0203, &mut sector);
        assert_eq!(&sector[..12], &[3, 2, 1, 0, 0, 0, 0, 0, 249, 250, 251, 252]);
        assert_eq!(sector[511], 240);
        assert_eq!(first_mismatch(0x1_0203, &sector), None);
        sector[300] ^= 1;
        assert_eq!(first_mismatch(0x1_0203, &sector), Some(300));
        let mut two = [0u8; 2 * SECTOR];
        fill(7, &mut two);
        assert_eq!(two[SECTOR], 8);
    }
}
