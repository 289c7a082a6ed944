//! In-kernel test harness (stable Rust: a plain list, no `custom_test_frameworks`).
//!
//! Each test runs under a recovery point ([`recover::catch`]), so a test that panics or takes a
//! CPU exception is reported as failed and the suite goes on. Every step prints one
//! machine-readable line on the serial console, which xtask parses:
//!
//! ```text
//! ktest plan <N>
//! ktest start <name>
//! ktest pass <name>
//! ktest skip <name>: <reason>
//! ktest fail <name>: <reason>
//! ktest summary <P> passed, <F> failed[, <S> skipped]
//! ```
//!
//! A test that cannot run on this machine (one CPU where it needs two, say) calls [`skip`]
//! and returns: it is reported as skipped with the reason, never as passed.
//!
//! A test that hangs is caught by xtask's timeout, which names the last test started.
//! `ktest.filter=<substring>` runs only matching tests; `ktest.inject=<fail|panic|fault|hang>`
//! appends one deliberately broken test, `injected_<kind>`, which xtask uses to prove that the
//! harness reports each kind of failure.
//!
//! `unsafe` is denied here; the one exception is the harness's recovery point around each test
//! (marked `allow` below, with its contract).

#![deny(unsafe_code)]

mod device_tests;
mod profile_tests;
mod tests;
mod user_tests;

use crate::arch::x86_64::recover::{self, Abort};

/// The reason the running test gave to [`skip`] (tests run one at a time, on the bootstrap
/// processor's boot context).
static SKIPPED: spin::Mutex<Option<&'static str>> = spin::Mutex::new(None);

/// Marks the running test as skipped with `reason` (it should return right after).
pub fn skip(reason: &'static str) {
    *SKIPPED.lock() = Some(reason);
}

/// What a test is expected to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Return normally.
    Pass,
    /// Panic (the test passes only if it panics).
    Panic,
}

/// One kernel test.
pub struct KernelTest {
    /// Unique name, printed in the result lines.
    pub name: &'static str,
    /// The test body; failing means panicking (`assert!`) or faulting.
    pub run: fn(),
    /// Expected outcome.
    pub expect: Expect,
}

/// Runs the registered tests (and the injected one, if any) and prints the results.
/// Returns true when every selected test passed.
pub fn run_all(filter: Option<&str>, inject: Option<&str>) -> bool {
    let injected = match inject {
        None => None,
        Some(kind) => match tests::injected(kind) {
            Some(t) => Some(t),
            None => {
                crate::println!(
                    "ktest: unknown ktest.inject={kind} (expected fail, panic, fault or hang)"
                );
                return false;
            }
        },
    };
    let selected = |t: &&KernelTest| filter.is_none_or(|f| t.name.contains(f));
    let all = || tests::TESTS.iter().chain(injected).filter(selected);
    let planned = all().count();
    crate::println!("ktest plan {planned}");
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for test in all() {
        crate::println!("ktest start {}", test.name);
        *SKIPPED.lock() = None;
        // SAFETY: the suite runs in the bootstrap processor's boot context (`kernel_entry`),
        // which is not a thread and never migrates; a test that is aborted leaves its frames
        // behind, which the harness accepts (a failed test may leave a lock held, and the
        // suite then reports the next test that needs it as failing or hanging).
        #[allow(unsafe_code)]
        let outcome = unsafe { recover::catch(test.run) };
        let verdict = match (test.expect, outcome) {
            (Expect::Pass, Ok(())) => Ok(()),
            (Expect::Pass, Err(reason)) => Err(Failure::Aborted(reason)),
            (Expect::Panic, Err(Abort::Panic(_))) => Ok(()),
            (Expect::Panic, Err(reason)) => Err(Failure::Aborted(reason)),
            (Expect::Panic, Ok(())) => Err(Failure::DidNotPanic),
        };
        let skip_reason = SKIPPED.lock().take();
        match verdict {
            Ok(()) if let Some(reason) = skip_reason => {
                skipped += 1;
                crate::println!("ktest skip {}: {reason}", test.name);
            }
            Ok(()) => {
                passed += 1;
                crate::println!("ktest pass {}", test.name);
            }
            Err(reason) => {
                failed += 1;
                // One line per result: multi-line messages (assert_eq!'s left/right) are joined.
                let mut text = recover::Message::new();
                let _ = core::fmt::Write::write_fmt(&mut text, format_args!("{reason}"));
                crate::print!("ktest fail {}: ", test.name);
                for (i, line) in text.as_str().lines().enumerate() {
                    crate::print!("{}{}", if i > 0 { " | " } else { "" }, line.trim());
                }
                crate::println!();
            }
        }
    }
    if planned == 0 {
        crate::println!(
            "ktest: no test matches ktest.filter={}",
            filter.unwrap_or("")
        );
    }
    if skipped > 0 {
        crate::println!("ktest summary {passed} passed, {failed} failed, {skipped} skipped");
    } else {
        crate::println!("ktest summary {passed} passed, {failed} failed");
    }
    failed == 0 && planned > 0
}

/// Why a test failed.
#[allow(clippy::large_enum_variant, reason = "one per test, never stored")]
enum Failure {
    /// It panicked or faulted when it should have returned.
    Aborted(Abort),
    /// It was expected to panic and returned.
    DidNotPanic,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Aborted(a) => write!(f, "{a}"),
            Failure::DidNotPanic => write!(f, "expected a panic, but the test returned normally"),
        }
    }
}
