//! Folded-stack output: one line per distinct stack, `root;caller;…;leaf count`, the input
//! format of `inferno-flamegraph` and Brendan Gregg's `flamegraph.pl`.
//!
//! Frames are named by the embedder's [`Symbolizer`]. Return addresses point just after a call
//! instruction, which may already be the next function (a call to a `noreturn` function at the
//! end of its caller), so frames other than the leaf are symbolised at `return address - 1`
//! (as `perf` does); the leaf is the interrupted instruction pointer itself. `;` and line
//! breaks in names would break the format and are written as `:` and a space.
//!
//! [`write_folded_line`] needs no allocation (one sample, one line); `FoldedStacks` (feature
//! `alloc`) counts identical stacks first, so the output has one line per distinct stack.

use core::fmt;

use super::Sample;
use super::symbol::Symbolizer;

/// Passes text through, replacing the characters the folded format reserves.
struct Sanitize<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Sanitize<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for part in s.split_inclusive([';', '\n', '\r']) {
            match part.char_indices().last() {
                Some((i, ';')) => {
                    self.0.write_str(&part[..i])?;
                    self.0.write_char(':')?;
                }
                Some((i, '\n' | '\r')) => {
                    self.0.write_str(&part[..i])?;
                    self.0.write_char(' ')?;
                }
                _ => self.0.write_str(part)?,
            }
        }
        Ok(())
    }
}

/// Writes the frames of a stack (`ip` leaf, `callers` innermost first) root first.
fn write_frames(
    ip: u64,
    callers: &[u64],
    sym: &impl Symbolizer,
    out: &mut impl fmt::Write,
) -> fmt::Result {
    let mut clean = Sanitize(out);
    for &ret in callers.iter().rev() {
        sym.symbolize(ret.saturating_sub(1), &mut clean)?;
        clean.0.write_char(';')?;
    }
    sym.symbolize(ip, &mut clean)
}

/// Writes one folded line (with its newline) for `sample` weighted `count`.
pub fn write_folded_line(
    sample: &Sample,
    count: u64,
    sym: &impl Symbolizer,
    out: &mut impl fmt::Write,
) -> fmt::Result {
    write_frames(sample.ip, sample.stack(), sym, out)?;
    writeln!(out, " {count}")
}

/// Identical stacks counted together (feature `alloc`).
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default)]
pub struct FoldedStacks {
    /// Key: the leaf IP followed by the return addresses, innermost first.
    stacks: alloc::collections::BTreeMap<alloc::vec::Vec<u64>, u64>,
    total: u64,
}

#[cfg(feature = "alloc")]
impl FoldedStacks {
    /// No stacks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `sample`'s stack once.
    pub fn add(&mut self, sample: &Sample) {
        let mut key = alloc::vec::Vec::with_capacity(1 + sample.stack().len());
        key.push(sample.ip);
        key.extend_from_slice(sample.stack());
        *self.stacks.entry(key).or_insert(0) += 1;
        self.total += 1;
    }

    /// Number of samples added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of distinct stacks.
    pub fn distinct(&self) -> usize {
        self.stacks.len()
    }

    /// Writes one line per distinct stack.
    pub fn write(&self, sym: &impl Symbolizer, out: &mut impl fmt::Write) -> fmt::Result {
        for (key, &count) in &self.stacks {
            write_frames(key[0], &key[1..], sym, out)?;
            writeln!(out, " {count}")?;
        }
        Ok(())
    }
}
