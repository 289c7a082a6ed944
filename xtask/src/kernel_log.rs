//! Parser for the kernel's serial log, and the verdict on a kernel test run.
//!
//! The kernel speaks a small line protocol on its serial port, mixed with ordinary log lines
//! (which are ignored):
//!
//! ```text
//! Veridian reference kernel ...       banner (first line starting with this)
//! ktest plan <N>
//! ktest start <name>
//! ktest pass <name>
//! ktest fail <name>: <reason>
//! ktest skip <name>: <reason>
//! ktest summary <P> passed, <F> failed[, <S> skipped]
//! KERNEL PANIC: <msg>                 a panic; inside a test it fails that test
//! lockdep: <report>                   the lock validator found a problem: fails the run
//! ```
//!
//! [`KernelLog`] is a state machine fed one line at a time; [`KernelLog::judge`] combines what it
//! saw with how QEMU ended ([`Exit`]) into a [`Verdict`].

/// The start of the kernel's banner line.
pub const BANNER_PREFIX: &str = "Veridian reference kernel";

/// One line of the protocol, as recognised by [`classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The banner.
    Banner,
    /// `ktest plan <N>`.
    Plan(usize),
    /// `ktest start <name>`.
    Start(&'a str),
    /// `ktest pass <name>`.
    Pass(&'a str),
    /// `ktest skip <name>: <reason>`: the test cannot run on this machine.
    Skip {
        /// The test's name.
        name: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// `ktest fail <name>: <reason>`.
    Fail {
        /// The test's name.
        name: &'a str,
        /// Why it failed (may be empty).
        reason: &'a str,
    },
    /// `ktest summary <P> passed, <F> failed[, <S> skipped]`.
    Summary {
        /// P.
        passed: usize,
        /// F.
        failed: usize,
        /// S (0 when the part is absent).
        skipped: usize,
    },
    /// `KERNEL PANIC: <msg>`.
    Panic(&'a str),
    /// `lockdep: <report>`: veridian-sync's lock validator reported a problem.
    Lockdep(&'a str),
    /// A `ktest` line that does not parse.
    Malformed(&'a str),
    /// Anything else: ordinary log output.
    Other,
}

/// Reduces a raw serial line to its visible text: drops the line ending, whatever a carriage
/// return in the middle of the line overwrote, terminal escape sequences (GRUB sends some) and
/// other control characters, then trims surrounding spaces.
pub fn clean(raw: &str) -> String {
    let raw = raw.trim_end_matches(['\r', '\n']);
    let visible = raw.rsplit('\r').next().unwrap_or(raw);
    let mut out = String::with_capacity(visible.len());
    let mut chars = visible.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A control sequence (ESC [, parameters, a final byte in @..~); any other escape
            // is two characters long.
            '\u{1b}' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim().to_owned()
}

/// Recognises a line that [`clean`] has already cleaned.
pub fn classify(line: &str) -> Line<'_> {
    if line.starts_with(BANNER_PREFIX) {
        return Line::Banner;
    }
    if let Some(msg) = line.strip_prefix("KERNEL PANIC:") {
        return Line::Panic(msg.trim());
    }
    if line.starts_with("lockdep:") {
        return Line::Lockdep(line);
    }
    let Some(rest) = line.strip_prefix("ktest ") else {
        return Line::Other;
    };
    let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    let arg = arg.trim();
    let parsed = match word {
        "plan" => arg.parse().ok().map(Line::Plan),
        "start" if !arg.is_empty() => Some(Line::Start(arg)),
        "pass" if !arg.is_empty() => Some(Line::Pass(arg)),
        "skip" if !arg.is_empty() => {
            let (name, reason) = arg.split_once(": ").unwrap_or((arg, ""));
            Some(Line::Skip {
                name: name.strip_suffix(':').unwrap_or(name),
                reason: reason.trim(),
            })
        }
        "fail" if !arg.is_empty() => {
            let (name, reason) = arg.split_once(": ").unwrap_or((arg, ""));
            let name = name.strip_suffix(':').unwrap_or(name);
            Some(Line::Fail {
                name,
                reason: reason.trim(),
            })
        }
        "summary" => parse_summary(arg),
        _ => None,
    };
    parsed.unwrap_or(Line::Malformed(line))
}

/// Parses `<P> passed, <F> failed[, <S> skipped]`.
fn parse_summary(text: &str) -> Option<Line<'static>> {
    let mut parts = text.split(',');
    let count = |part: Option<&str>, word: &str| -> Option<usize> {
        part?.trim().strip_suffix(word)?.trim().parse().ok()
    };
    let passed = count(parts.next(), "passed")?;
    let failed = count(parts.next(), "failed")?;
    let skipped = match parts.next() {
        None => 0,
        some => count(some, "skipped")?,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Line::Summary {
        passed,
        failed,
        skipped,
    })
}

/// A test the kernel reported as failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedTest {
    /// The test's name.
    pub name: String,
    /// The reason the kernel gave.
    pub reason: String,
}

/// What the log said so far.
#[derive(Clone, Debug, Default)]
pub struct KernelLog {
    banner: Option<String>,
    plan: Option<usize>,
    started: usize,
    passed: Vec<String>,
    skipped: Vec<FailedTest>,
    failed: Vec<FailedTest>,
    running: Option<String>,
    summary: Option<(usize, usize, usize)>,
    panic: Option<String>,
    anomalies: Vec<String>,
}

impl KernelLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one raw line (line ending optional). Returns the recognised line kind, so that the
    /// caller can react to the banner.
    pub fn feed(&mut self, raw: &str) -> LineKind {
        let line = clean(raw);
        match classify(&line) {
            Line::Banner => {
                if self.banner.is_some() {
                    self.anomalies
                        .push("a second banner: the kernel started again".to_owned());
                    return LineKind::Other;
                }
                self.banner = Some(line.clone());
                return LineKind::Banner;
            }
            Line::Plan(n) => {
                if let Some(old) = self.plan {
                    self.anomalies
                        .push(format!("a second plan line ({old}, then {n})"));
                }
                self.plan = Some(n);
            }
            Line::Start(name) => {
                if let Some(previous) = &self.running {
                    self.anomalies.push(format!(
                        "test `{name}` started before `{previous}` finished"
                    ));
                }
                self.started += 1;
                self.running = Some(name.to_owned());
            }
            Line::Pass(name) => {
                self.finish(name);
                self.passed.push(name.to_owned());
            }
            Line::Skip { name, reason } => {
                self.finish(name);
                self.skipped.push(FailedTest {
                    name: name.to_owned(),
                    reason: reason.to_owned(),
                });
            }
            Line::Fail { name, reason } => {
                self.finish(name);
                self.failed.push(FailedTest {
                    name: name.to_owned(),
                    reason: reason.to_owned(),
                });
            }
            Line::Summary {
                passed,
                failed,
                skipped,
            } => {
                if self.summary.is_some() {
                    self.anomalies.push("a second summary line".to_owned());
                }
                self.summary = Some((passed, failed, skipped));
            }
            Line::Lockdep(report) => self.anomalies.push(report.to_owned()),
            Line::Panic(msg) => match self.running.take() {
                // A panic inside a test fails that test.
                Some(name) => self.failed.push(FailedTest {
                    name,
                    reason: format!("kernel panic: {msg}"),
                }),
                None => {
                    if self.panic.is_none() {
                        self.panic = Some(msg.to_owned());
                    }
                }
            },
            Line::Malformed(text) => {
                self.anomalies.push(format!("unparsable line `{text}`"));
            }
            Line::Other => return LineKind::Other,
        }
        LineKind::Protocol
    }

    /// Records the end of test `name`, checking it is the one that was running.
    fn finish(&mut self, name: &str) {
        match self.running.take() {
            Some(running) if running == name => {}
            Some(running) => self.anomalies.push(format!(
                "a result for `{name}` while `{running}` was running"
            )),
            None => self
                .anomalies
                .push(format!("a result for `{name}`, which was not started")),
        }
    }

    /// Whether any test-protocol line was seen (the kernel ran in test mode).
    pub fn saw_tests(&self) -> bool {
        self.plan.is_some() || self.started > 0 || self.summary.is_some()
    }

    /// The test that started and has not finished yet.
    pub fn running(&self) -> Option<&str> {
        self.running.as_deref()
    }

    /// The message of a panic outside any test.
    pub fn panic(&self) -> Option<&str> {
        self.panic.as_deref()
    }

    /// Judges a run that ended with `exit`.
    pub fn judge(&self, exit: &Exit) -> Verdict {
        let mut problems = self.anomalies.clone();
        let failed = self.failed.len();

        match exit {
            Exit::Success if failed > 0 => problems.push(format!(
                "the kernel exited with success although {failed} test(s) failed"
            )),
            Exit::Failure if failed == 0 && self.panic.is_none() => problems
                .push("the kernel exited with failure (0x11) but reported no failed test".into()),
            Exit::Abnormal(how) => problems.push(match &self.running {
                Some(name) => format!("{how} while running test `{name}`"),
                None if self.started == 0 => format!("{how} before any test started"),
                None => format!("{how} (no test was running)"),
            }),
            Exit::Success | Exit::Failure => {
                if let Some(name) = &self.running {
                    problems.push(format!("test `{name}` started but never finished"));
                }
            }
        }
        if let Some(msg) = &self.panic {
            problems.push(format!("kernel panic: {msg}"));
        }
        if self.banner.is_none() {
            problems.push(format!("no banner (`{BANNER_PREFIX} ...`)"));
        }
        match self.plan {
            None => problems.push("no `ktest plan` line".into()),
            Some(plan) if plan != self.started => problems.push(format!(
                "the plan announced {plan} test(s) but {} started",
                self.started
            )),
            Some(_) => {}
        }
        match self.summary {
            None => problems.push("no `ktest summary` line".into()),
            Some((p, f, s)) if (p, f, s) != (self.passed.len(), failed, self.skipped.len()) => {
                problems.push(format!(
                    "the summary says {p} passed, {f} failed, {s} skipped but the log shows {} \
                     passed, {failed} failed, {} skipped",
                    self.passed.len(),
                    self.skipped.len()
                ))
            }
            Some(_) => {}
        }

        Verdict {
            passed: self.passed.clone(),
            skipped: self.skipped.clone(),
            failed: self.failed.clone(),
            unfinished: self.running.clone(),
            problems,
        }
    }
}

/// What [`KernelLog::feed`] made of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// The (first) banner.
    Banner,
    /// A protocol line (test or panic).
    Protocol,
    /// Ordinary output.
    Other,
}

/// How the run ended, as far as the verdict is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The kernel wrote 0x10 to isa-debug-exit (QEMU status 33).
    Success,
    /// The kernel wrote 0x11 to isa-debug-exit (QEMU status 35).
    Failure,
    /// Anything else, described (`timed out after 120 s`, `kernel reset without reporting ...`).
    Abnormal(String),
}

/// The verdict on a kernel test run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Tests reported as passed.
    pub passed: Vec<String>,
    /// Tests reported as skipped, with the reason.
    pub skipped: Vec<FailedTest>,
    /// Tests reported as failed (including one that panicked).
    pub failed: Vec<FailedTest>,
    /// The test that was running when the run ended, if any.
    pub unfinished: Option<String>,
    /// Everything wrong with the run beyond failed tests; any of them is one extra failure.
    pub problems: Vec<String>,
}

impl Verdict {
    /// Whether the whole suite passed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.problems.is_empty()
    }

    /// The problems as one line, if there are any.
    pub fn problem_line(&self) -> Option<String> {
        (!self.problems.is_empty()).then(|| self.problems.join("; "))
    }

    /// The tests this run blames: those reported as failed, then the one left running.
    pub fn blamed(&self) -> Vec<&str> {
        self.failed
            .iter()
            .map(|test| test.name.as_str())
            .chain(self.unfinished.as_deref())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(text: &str) -> KernelLog {
        let mut log = KernelLog::new();
        for line in text.split_inclusive('\n') {
            log.feed(line);
        }
        log
    }

    const CLEAN: &str = "\
Veridian reference kernel 0.1.0 (x86_64, PVH)
ktest plan 2
ktest start alloc::basic
ktest pass alloc::basic
ktest start sync::mutex
ktest pass sync::mutex
ktest summary 2 passed, 0 failed
";

    #[test]
    fn clean_run_passes() {
        let log = feed_all(CLEAN);
        assert!(log.saw_tests());
        let verdict = log.judge(&Exit::Success);
        assert!(verdict.ok(), "{verdict:?}");
        assert_eq!(verdict.passed, ["alloc::basic", "sync::mutex"]);
        assert!(verdict.blamed().is_empty());
    }

    #[test]
    fn lockdep_report_fails_an_otherwise_clean_run() {
        let log = feed_all(&format!(
            "{CLEAN}lockdep: lock order inversion: \"b\" taken at a.rs:1 while holding \"a\"\n"
        ));
        let verdict = log.judge(&Exit::Success);
        assert!(!verdict.ok(), "{verdict:?}");
        assert!(verdict.problems[0].starts_with("lockdep: lock order inversion"));
    }

    #[test]
    fn clean_log_with_abnormal_exit_fails() {
        let verdict = feed_all(CLEAN).judge(&Exit::Abnormal("QEMU exited with status 1".into()));
        assert!(!verdict.ok());
        assert_eq!(
            verdict.problems,
            ["QEMU exited with status 1 (no test was running)"]
        );
    }

    #[test]
    fn failing_test_is_counted_and_named() {
        let log = feed_all(
            "Veridian reference kernel\n\
             ktest plan 2\n\
             ktest start a::one\n\
             ktest fail a::one: assertion failed: 1 == 2 at src/a.rs:3\n\
             ktest start b\n\
             ktest pass b\n\
             ktest summary 1 passed, 1 failed\n",
        );
        let verdict = log.judge(&Exit::Failure);
        assert!(!verdict.ok());
        assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
        assert_eq!(
            verdict.failed,
            [FailedTest {
                name: "a::one".into(),
                reason: "assertion failed: 1 == 2 at src/a.rs:3".into()
            }]
        );
        assert_eq!(verdict.passed, ["b"]);
        assert_eq!(verdict.blamed(), ["a::one"]);
    }

    #[test]
    fn exit_status_must_agree_with_results() {
        let log = feed_all(
            "Veridian reference kernel\nktest plan 1\nktest start a\nktest fail a\n\
             ktest summary 0 passed, 1 failed\n",
        );
        assert_eq!(log.judge(&Exit::Success).problems.len(), 1);
        assert!(feed_all(CLEAN).judge(&Exit::Failure).problems[0].contains("no failed test"));
    }

    #[test]
    fn panic_in_a_test_fails_that_test() {
        let log = feed_all(
            "Veridian reference kernel\n\
             ktest plan 2\n\
             ktest start ok_test\n\
             ktest pass ok_test\n\
             ktest start injected_panic\n\
             KERNEL PANIC: deliberate panic at src/ktest.rs:10:5\n",
        );
        assert!(log.panic().is_none());
        let verdict = log.judge(&Exit::Failure);
        assert_eq!(verdict.blamed(), ["injected_panic"]);
        assert_eq!(
            verdict.failed[0].reason,
            "kernel panic: deliberate panic at src/ktest.rs:10:5"
        );
        assert_eq!(verdict.problems, ["no `ktest summary` line"]);
    }

    #[test]
    fn panic_outside_a_test_is_a_problem() {
        let log = feed_all("Veridian reference kernel\nKERNEL PANIC: no memory map\n");
        assert_eq!(log.panic(), Some("no memory map"));
        let verdict = log.judge(&Exit::Failure);
        assert!(verdict.blamed().is_empty());
        assert!(
            verdict
                .problems
                .contains(&"kernel panic: no memory map".to_owned())
        );
        assert!(
            verdict
                .problems
                .contains(&"no `ktest plan` line".to_owned())
        );
    }

    #[test]
    fn missing_summary_is_a_problem() {
        let text = CLEAN.replace("ktest summary 2 passed, 0 failed\n", "");
        let verdict = feed_all(&text).judge(&Exit::Success);
        assert!(verdict.failed.is_empty());
        assert_eq!(verdict.problems, ["no `ktest summary` line"]);
    }

    #[test]
    fn plan_and_starts_must_agree() {
        let text = CLEAN.replace("ktest plan 2", "ktest plan 3");
        let verdict = feed_all(&text).judge(&Exit::Success);
        assert_eq!(
            verdict.problems,
            ["the plan announced 3 test(s) but 2 started"]
        );
    }

    #[test]
    fn summary_must_match_the_results() {
        let text = CLEAN.replace("2 passed, 0 failed", "3 passed, 0 failed");
        let verdict = feed_all(&text).judge(&Exit::Success);
        assert_eq!(
            verdict.problems,
            [
                "the summary says 3 passed, 0 failed, 0 skipped but the log shows 2 passed, 0 failed, 0 skipped"
            ]
        );
    }

    #[test]
    fn crlf_endings_are_accepted() {
        let text = CLEAN.replace('\n', "\r\n");
        let log = feed_all(&text);
        assert_eq!(
            log.banner.as_deref(),
            Some("Veridian reference kernel 0.1.0 (x86_64, PVH)")
        );
        let verdict = log.judge(&Exit::Success);
        assert!(verdict.ok(), "{verdict:?}");
        assert_eq!(verdict.passed, ["alloc::basic", "sync::mutex"]);
    }

    #[test]
    fn interleaved_log_lines_are_ignored() {
        let mut text = String::from("SeaBIOS (version 1.16)\nBooting from ROM...\n");
        for line in CLEAN.lines() {
            text.push_str(line);
            text.push_str("\n[ INFO] cpu 1 online\n\n  some ktest-looking text\n");
        }
        let verdict = feed_all(&text).judge(&Exit::Success);
        assert!(verdict.ok(), "{verdict:?}");
        assert_eq!(verdict.passed.len(), 2);
    }

    #[test]
    fn timeout_names_the_running_test() {
        let log = feed_all("Veridian reference kernel\nktest plan 1\nktest start injected_hang\n");
        assert_eq!(log.running(), Some("injected_hang"));
        let verdict = log.judge(&Exit::Abnormal("timed out after 8 s".into()));
        assert_eq!(verdict.unfinished.as_deref(), Some("injected_hang"));
        assert_eq!(verdict.blamed(), ["injected_hang"]);
        assert_eq!(
            verdict.problems,
            [
                "timed out after 8 s while running test `injected_hang`",
                "no `ktest summary` line"
            ]
        );
    }

    #[test]
    fn reset_before_any_test() {
        let verdict = feed_all("Veridian reference kernel\n").judge(&Exit::Abnormal(
            "kernel reset without reporting (triple fault?)".into(),
        ));
        assert_eq!(
            verdict.problems[0],
            "kernel reset without reporting (triple fault?) before any test started"
        );
    }

    #[test]
    fn grub_escape_sequences_and_overwrites_are_cleaned() {
        assert_eq!(
            clean("\u{1b}[2J\u{1b}[0;37;40m\u{1b}[1;1HVeridian reference kernel 0.1\r\n"),
            "Veridian reference kernel 0.1"
        );
        assert_eq!(
            clean("  Booting `Veridian tests'\rktest plan 3\r\n"),
            "ktest plan 3"
        );
        assert_eq!(clean("\tktest pass x  \n"), "ktest pass x");
    }

    #[test]
    fn classify_recognises_the_protocol() {
        assert_eq!(classify("ktest plan 12"), Line::Plan(12));
        assert_eq!(classify("ktest start a::b"), Line::Start("a::b"));
        assert_eq!(classify("ktest pass a::b"), Line::Pass("a::b"));
        assert_eq!(
            classify("ktest fail a::b: left: 1, right: 2"),
            Line::Fail {
                name: "a::b",
                reason: "left: 1, right: 2"
            }
        );
        assert_eq!(
            classify("ktest fail a::b"),
            Line::Fail {
                name: "a::b",
                reason: ""
            }
        );
        assert_eq!(
            classify("ktest summary 5 passed, 1 failed"),
            Line::Summary {
                passed: 5,
                failed: 1,
                skipped: 0
            }
        );
        assert_eq!(
            classify("ktest summary 5 passed, 1 failed, 2 skipped"),
            Line::Summary {
                passed: 5,
                failed: 1,
                skipped: 2
            }
        );
        assert_eq!(
            classify("ktest skip smp::two: one CPU online"),
            Line::Skip {
                name: "smp::two",
                reason: "one CPU online"
            }
        );
        assert_eq!(
            classify("ktest summary 5 passed, 1 failed, 2 lost"),
            Line::Malformed("ktest summary 5 passed, 1 failed, 2 lost")
        );
        assert_eq!(classify("KERNEL PANIC: oops"), Line::Panic("oops"));
        assert_eq!(
            classify("ktest plan many"),
            Line::Malformed("ktest plan many")
        );
        assert_eq!(
            classify("ktest summary lots"),
            Line::Malformed("ktest summary lots")
        );
        assert_eq!(classify("ktests are nice"), Line::Other);
    }

    /// A skipped test is neither passed nor failed, and the summary must count it.
    #[test]
    fn skipped_tests_are_reported_apart() {
        let mut log = KernelLog::new();
        for line in [
            "Veridian reference kernel 0.1.0",
            "ktest plan 2",
            "ktest start a",
            "ktest pass a",
            "ktest start b",
            "ktest skip b: one CPU online",
            "ktest summary 1 passed, 0 failed, 1 skipped",
        ] {
            log.feed(line);
        }
        let verdict = log.judge(&Exit::Success);
        assert!(verdict.ok(), "{:?}", verdict.problems);
        assert_eq!(verdict.passed, ["a"]);
        assert_eq!(verdict.skipped.len(), 1);
        assert_eq!(verdict.skipped[0].reason, "one CPU online");
        let mut log = KernelLog::new();
        for line in [
            "Veridian reference kernel 0.1.0",
            "ktest plan 1",
            "ktest start b",
            "ktest skip b: one CPU online",
            "ktest summary 1 passed, 0 failed",
        ] {
            log.feed(line);
        }
        assert!(!log.judge(&Exit::Success).ok(), "a skip counted as a pass");
        assert_eq!(classify("[INFO] ktest plan 3"), Line::Other);
    }

    #[test]
    fn out_of_order_results_are_problems() {
        let log = feed_all(
            "Veridian reference kernel\nktest plan 2\nktest start a\nktest start b\n\
             ktest pass b\nktest pass c\nktest summary 2 passed, 0 failed\n",
        );
        let verdict = log.judge(&Exit::Success);
        assert_eq!(
            verdict.problems,
            [
                "test `b` started before `a` finished",
                "a result for `c`, which was not started"
            ]
        );
    }

    #[test]
    fn second_banner_is_a_problem() {
        let text = format!("{CLEAN}Veridian reference kernel\n");
        let verdict = feed_all(&text).judge(&Exit::Success);
        assert_eq!(
            verdict.problems,
            ["a second banner: the kernel started again"]
        );
    }
}
