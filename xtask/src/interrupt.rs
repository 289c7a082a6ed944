//! Ctrl-C handling: the signal only sets a flag, which the long-running loops poll.
//!
//! Cargo and the other tools that xtask runs in the foreground share its process group, so the
//! terminal's SIGINT reaches them directly and they stop on their own; xtask then sees the flag
//! and stops too. QEMU runs in a process group of its own (see `qemu.rs`) and is killed by xtask.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler. Failing to do so is not fatal: Ctrl-C then kills xtask outright.
pub fn install() {
    if let Err(err) = ctrlc::set_handler(|| REQUESTED.store(true, Ordering::SeqCst)) {
        eprintln!("xtask: warning: cannot install the Ctrl-C handler: {err}");
    }
}

/// Whether Ctrl-C has been pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
