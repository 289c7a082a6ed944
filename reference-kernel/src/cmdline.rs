//! Kernel command-line lookup.
//!
//! # What it does
//!
//! [`CmdLine`] wraps the command line (e.g. [`BootInfo::cmdline`](crate::BootInfo::cmdline))
//! and answers queries about its words. Words are separated by ASCII whitespace; a word is
//! either a bare `key` or `key=value` (split at the first `=`, so values may contain `=`).
//! There is no quoting.
//!
//! # What it relies on
//!
//! Nothing but `core`; it borrows the string and never allocates.
//!
//! # What it guarantees
//!
//! Lookups never panic and return slices of the original string (lifetime `'a`). Keys are
//! compared exactly (case-sensitively); when a key occurs several times, the last
//! occurrence wins.

/// A parsed view of a kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdLine<'a> {
    line: &'a str,
}

impl<'a> CmdLine<'a> {
    /// Wraps the command line `s`.
    pub const fn new(s: &'a str) -> Self {
        Self { line: s }
    }

    /// The wrapped command line, unchanged.
    pub const fn as_str(&self) -> &'a str {
        self.line
    }

    /// The words of the command line in order, as `(key, value)`: `Some(value)` for
    /// `key=value` (possibly `Some("")` for `key=`), `None` for a bare `key`.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        self.line
            .split_ascii_whitespace()
            .map(|word| match word.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (word, None),
            })
    }

    /// The value of the last `key=value` word for `key`, or `None` if there is none.
    /// Bare `key` words are not considered (they have no value).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter()
            .filter(|&(k, _)| k == key)
            .filter_map(|(_, v)| v)
            .last()
    }

    /// Whether `key` is set: judged by its last occurrence, which must be either a bare
    /// `key` word or `key=1`, `key=true` or `key=on` (`true`/`on` in any ASCII case).
    /// Any other value (e.g. `key=0`, `key=off`) or no occurrence gives `false`.
    pub fn flag(&self, key: &str) -> bool {
        match self.iter().filter(|&(k, _)| k == key).last() {
            Some((_, None)) => true,
            Some((_, Some(v))) => {
                v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("on")
            }
            None => false,
        }
    }
}
