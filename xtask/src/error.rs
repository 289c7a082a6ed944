//! The error type shared by all commands.

use std::fmt;

/// Why a command stopped early.
#[derive(Debug)]
pub enum Error {
    /// The user pressed Ctrl-C (exit status 130).
    Interrupted,
    /// Anything else, with a one-line explanation (exit status 1).
    Failed(String),
}

/// The result type of everything that can stop a command.
pub type Result<T> = std::result::Result<T, Error>;

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::Failed(message.to_owned())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Interrupted => f.write_str("interrupted (Ctrl-C)"),
            Self::Failed(message) => f.write_str(message),
        }
    }
}

/// Returns [`Error::Interrupted`] if Ctrl-C has been pressed.
pub fn check_interrupt() -> Result<()> {
    if crate::interrupt::requested() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
