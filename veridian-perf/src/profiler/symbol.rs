//! The symbolisation hook: turning addresses into frame names for folded output.
//!
//! The kernel knows its own symbols (a table linked in, or parsed from its ELF at boot); user
//! space knows its `/proc/self/maps` and debug info. Neither belongs in this crate, so names come
//! from a [`Symbolizer`] the embedder passes to the folded-stack writer. Two are supplied:
//! [`HexSymbolizer`] (`0x…`, no knowledge at all) and [`SymbolTable`] (a sorted slice of
//! `(start, size, name)`, binary-searched, no allocation: what a kernel links in).

use core::fmt;

/// Writes the name of the code at an address.
pub trait Symbolizer {
    /// Writes a name for `addr` (never `;` or a newline: the folded writer replaces them).
    fn symbolize(&self, addr: u64, out: &mut dyn fmt::Write) -> fmt::Result;
}

impl<S: Symbolizer + ?Sized> Symbolizer for &S {
    fn symbolize(&self, addr: u64, out: &mut dyn fmt::Write) -> fmt::Result {
        (**self).symbolize(addr, out)
    }
}

/// Names every address `0x<hex>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HexSymbolizer;

impl Symbolizer for HexSymbolizer {
    fn symbolize(&self, addr: u64, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "{addr:#x}")
    }
}

/// One function: `[start, start + size)` is `name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// First address.
    pub start: u64,
    /// Length in bytes (non-zero).
    pub size: u64,
    /// The name written into the flame graph.
    pub name: &'a str,
}

/// A table of non-overlapping [`Symbol`]s sorted by address.
#[derive(Clone, Copy, Debug)]
pub struct SymbolTable<'a> {
    symbols: &'a [Symbol<'a>],
}

/// Why a slice is not a valid [`SymbolTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolTableError {
    /// Index of the first symbol that is empty, overflows, or overlaps or precedes the one
    /// before it.
    pub index: usize,
}

impl fmt::Display for SymbolTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "symbol {} is empty, overflows, or is out of order",
            self.index
        )
    }
}

impl<'a> SymbolTable<'a> {
    /// Checks that `symbols` are non-empty, sorted and non-overlapping.
    pub fn new(symbols: &'a [Symbol<'a>]) -> Result<Self, SymbolTableError> {
        let mut prev_end = 0u64;
        for (index, s) in symbols.iter().enumerate() {
            let end = s
                .start
                .checked_add(s.size)
                .ok_or(SymbolTableError { index })?;
            if s.size == 0 || s.start < prev_end {
                return Err(SymbolTableError { index });
            }
            prev_end = end;
        }
        Ok(Self { symbols })
    }

    /// The symbol containing `addr` and the offset into it.
    pub fn lookup(&self, addr: u64) -> Option<(&'a Symbol<'a>, u64)> {
        let i = self
            .symbols
            .partition_point(|s| s.start <= addr)
            .checked_sub(1)?;
        let s = &self.symbols[i];
        let off = addr - s.start;
        (off < s.size).then_some((s, off))
    }
}

impl Symbolizer for SymbolTable<'_> {
    /// The symbol's name, or `0x<hex>` for an address outside every symbol.
    fn symbolize(&self, addr: u64, out: &mut dyn fmt::Write) -> fmt::Result {
        match self.lookup(addr) {
            Some((s, _)) => out.write_str(s.name),
            None => write!(out, "{addr:#x}"),
        }
    }
}
