//! Running external programs: cargo, rustup, apt-get, grub-mkrescue.

use std::env;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output, Stdio};

use crate::error::{Error, Result, check_interrupt};
use crate::workspace;

/// A `cargo` command run in the workspace root with the workspace's own target directory.
pub fn cargo() -> Command {
    // `cargo run` tells us which cargo it is; use the same one.
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace::root())
        .env("CARGO_TARGET_DIR", workspace::target_dir());
    cmd
}

/// The command as a user would type it (program name without its directory, then the arguments).
pub fn show(cmd: &Command) -> String {
    let program = PathBuf::from(cmd.get_program());
    let name = program
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let args = cmd.get_args().map(quote);
    std::iter::once(name)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c))
    {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Describes an exit status in words: `exit status 101`, `killed by signal 9`.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

fn spawn_error(cmd: &Command, err: &std::io::Error) -> Error {
    Error::Failed(format!("cannot run `{}`: {err}", show(cmd)))
}

/// Runs `cmd` in the foreground (inherited stdio, no stdin), after echoing it.
pub fn run(cmd: &mut Command) -> Result<ExitStatus> {
    println!("xtask: $ {}", show(cmd));
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|err| spawn_error(cmd, &err))?;
    check_interrupt()?;
    Ok(status)
}

/// Like [`run`], but a non-zero exit is an error.
pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = run(cmd)?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "`{}` failed ({})",
            show(cmd),
            describe_status(status)
        )))
    }
}

/// Runs `cmd` with its stdout piped: each line is echoed to our stdout and handed to `on_line`.
/// Its stderr is inherited.
pub fn run_lines(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> Result<ExitStatus> {
    println!("xtask: $ {}", show(cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| spawn_error(cmd, &err))?;
    if let Some(stdout) = child.stdout.take() {
        for_each_line(stdout, |line| {
            println!("{line}");
            on_line(line);
        });
    }
    let status = child.wait().map_err(|err| spawn_error(cmd, &err))?;
    check_interrupt()?;
    Ok(status)
}

/// Calls `f` with each line `pipe` gives (lossily decoded, without its line ending) until it
/// ends.
pub fn for_each_line(pipe: impl std::io::Read, mut f: impl FnMut(&str)) {
    for_each_raw_line(pipe, |raw| {
        f(String::from_utf8_lossy(raw).trim_end_matches(['\n', '\r']));
        true
    });
}

/// Calls `f` with the bytes of each line `pipe` gives (line ending included) until it ends or
/// `f` returns false.
pub fn for_each_raw_line(pipe: impl std::io::Read, mut f: impl FnMut(&[u8]) -> bool) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if !f(&buf) {
                    break;
                }
            }
        }
    }
}

/// Runs `cmd` quietly and returns what it printed.
pub fn capture(cmd: &mut Command) -> Result<Output> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|err| spawn_error(cmd, &err))?;
    check_interrupt()?;
    Ok(output)
}

/// Finds an executable named `name` in `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_quotes_only_what_needs_it() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.args(["clippy", "-D", "warnings", "a b", "it's"]);
        assert_eq!(show(&cmd), r"cargo clippy -D warnings 'a b' 'it'\''s'");
    }

    #[test]
    fn finds_sh() {
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-no-such-program-xtask").is_none());
    }
}
