//! [`Failures`]: counts a test program's failed checks, printing each, for its exit code.

/// Failed checks of one program, each printed as `<program>: FAIL <what>`.
#[derive(Debug)]
pub struct Failures {
    program: &'static str,
    /// Checks failed so far.
    pub count: i64,
}

impl Failures {
    /// None failed yet; `program` prefixes each line.
    pub const fn new(program: &'static str) -> Self {
        Self { program, count: 0 }
    }

    /// Records a check: prints `what` and counts it unless `ok`.
    pub fn check(&mut self, ok: bool, what: core::fmt::Arguments<'_>) {
        if !ok {
            crate::println!("{}: FAIL {what}", self.program);
            self.count += 1;
        }
    }
}
