//! A small ELF64 image builder for the loader tests: an ELF header and program headers written
//! byte by byte into a `Vec<u8>`, every field settable, so each check can be hit on its own.
//!
//! Shared by the unit tests in `src/elf.rs` (through `#[path]`) and by `tests/elf.rs`.

#![allow(dead_code)]

use std::vec;
use std::vec::Vec;

pub const PT_NULL: u32 = 0;
pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
pub const PT_NOTE: u32 = 4;
pub const PT_PHDR: u32 = 6;
pub const PT_TLS: u32 = 7;
pub const PT_GNU_STACK: u32 = 0x6474_e551;
pub const PT_GNU_RELRO: u32 = 0x6474_e552;

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// Where the valid image is linked (the user ABI's `PROGRAM_BASE`).
pub const BASE: u64 = 0x40_0000;
/// The user range the tests parse with (the user ABI's `USER_MIN..USER_END`).
pub const USER: core::ops::Range<u64> = 0x10_0000..0x8000_0000_0000;

/// One program header, field by field.
#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub file_size: u64,
    pub mem_size: u64,
    pub align: u64,
}

impl Phdr {
    /// A page-aligned `PT_LOAD`.
    pub fn load(flags: u32, offset: u64, vaddr: u64, file_size: u64, mem_size: u64) -> Self {
        Self {
            p_type: PT_LOAD,
            flags,
            offset,
            vaddr,
            file_size,
            mem_size,
            align: 0x1000,
        }
    }

    /// A header of another type with all other fields zero.
    pub fn other(p_type: u32) -> Self {
        Self {
            p_type,
            flags: PF_R,
            offset: 0,
            vaddr: 0,
            file_size: 0,
            mem_size: 0,
            align: 0,
        }
    }
}

/// An ELF64 image under construction.
#[derive(Clone, Debug)]
pub struct ElfImage {
    /// `e_ident[0..16]`.
    pub ident: [u8; 16],
    pub e_type: u16,
    pub machine: u16,
    pub version: u32,
    pub entry: u64,
    pub phoff: u64,
    pub phentsize: u16,
    /// `e_phnum`; `None` writes `phdrs.len()`.
    pub phnum: Option<u16>,
    pub phdrs: Vec<Phdr>,
    /// Length of the built image (grown to hold the headers if they fit nowhere else).
    pub len: usize,
}

impl ElfImage {
    /// A valid static executable at [`BASE`]: text (R+X, covering the headers) in the first
    /// page, data (R+W) with bss after it, a `PT_GNU_STACK`; entry in the text.
    pub fn valid() -> Self {
        Self {
            ident: *b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0",
            e_type: 2,
            machine: 62,
            version: 1,
            entry: BASE + 0x200,
            phoff: 64,
            phentsize: 56,
            phnum: None,
            phdrs: vec![
                Phdr::load(PF_R | PF_X, 0, BASE, 0x1000, 0x1000),
                Phdr::load(PF_R | PF_W, 0x1000, BASE + 0x1000, 0x180, 0x3000),
                Phdr::other(PT_GNU_STACK),
            ],
            len: 0x1180,
        }
    }

    /// The image bytes: a recognisable pattern, overwritten by the headers. Program headers
    /// that would not fit inside `len` bytes are left out (so `phoff` may point anywhere).
    pub fn build(&self) -> Vec<u8> {
        let mut out: Vec<u8> = (0..self.len.max(64)).map(|i| (i % 251) as u8).collect();
        let phnum = self
            .phnum
            .unwrap_or(u16::try_from(self.phdrs.len()).unwrap());
        let mut header = Vec::with_capacity(64);
        header.extend_from_slice(&self.ident);
        header.extend_from_slice(&self.e_type.to_le_bytes());
        header.extend_from_slice(&self.machine.to_le_bytes());
        header.extend_from_slice(&self.version.to_le_bytes());
        header.extend_from_slice(&self.entry.to_le_bytes());
        header.extend_from_slice(&self.phoff.to_le_bytes());
        header.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        header.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        header.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
        header.extend_from_slice(&self.phentsize.to_le_bytes());
        header.extend_from_slice(&phnum.to_le_bytes());
        header.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
        out[..64].copy_from_slice(&header);

        for (i, ph) in self.phdrs.iter().enumerate() {
            let mut entry = Vec::with_capacity(56);
            entry.extend_from_slice(&ph.p_type.to_le_bytes());
            entry.extend_from_slice(&ph.flags.to_le_bytes());
            entry.extend_from_slice(&ph.offset.to_le_bytes());
            entry.extend_from_slice(&ph.vaddr.to_le_bytes());
            entry.extend_from_slice(&ph.vaddr.to_le_bytes()); // p_paddr
            entry.extend_from_slice(&ph.file_size.to_le_bytes());
            entry.extend_from_slice(&ph.mem_size.to_le_bytes());
            entry.extend_from_slice(&ph.align.to_le_bytes());
            let at = usize::try_from(self.phoff)
                .ok()
                .and_then(|o| o.checked_add(i * usize::from(self.phentsize)));
            if let Some(dst) = at.and_then(|at| out.get_mut(at..at.checked_add(56)?)) {
                dst.copy_from_slice(&entry);
            }
        }
        out
    }
}
