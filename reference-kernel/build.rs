//! Passes the kernel's linker script when building the kernel image for the bare-metal target,
//! and builds and embeds the user programs (`user/`, a workspace of its own).
//!
//! For `x86_64-unknown-none` this runs a nested `cargo build --release` of `user/` into
//! `$OUT_DIR/user-target`, checks each program with the kernel's own ELF parser
//! (`src/elf.rs`), and writes
//! `$OUT_DIR/user_programs.rs`: `pub static PROGRAMS: &[(&str, &[u8])]`, one
//! `(name, include_bytes!(..))` per binary in `user/programs/src/bin`, sorted by name. For any
//! other target (host builds of the library and its tests, host clippy) the list is empty and
//! nothing is built.

use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The system-call ABI (for the user address range the programs must fit in).
#[allow(dead_code)]
#[path = "user/rt/src/abi.rs"]
mod abi;

/// The kernel's own ELF loader front end: each program is checked at build time exactly as the
/// kernel will check it at load time (static `ET_EXEC` for x86_64, segments in the user range,
/// W^X, entry in an executable segment, no interpreter, dynamic section or TLS).
#[allow(dead_code)]
#[path = "src/elf.rs"]
mod elf;

/// The target of the kernel image and of the user programs.
const KERNEL_TARGET: &str = "x86_64-unknown-none";

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/elf.rs");
    let programs = if target == KERNEL_TARGET {
        println!("cargo:rustc-link-arg-bins=-T{}/linker.ld", dir.display());
        // 4 KiB segment alignment keeps the image small and lets every section start on its own
        // page, so later paging code can give each its own permissions.
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=0x1000");
        println!("cargo:rustc-link-arg-bins=--no-pie");
        build_user_programs(&dir.join("user"), &out_dir)
    } else {
        Vec::new()
    };
    write_program_list(&out_dir.join("user_programs.rs"), &programs);
}

/// Builds the user workspace at `user` and returns each program's name and binary path.
fn build_user_programs(user: &Path, out_dir: &Path) -> Vec<(String, PathBuf)> {
    rerun_if_changed_below(user);
    let target_dir = out_dir.join("user-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // In `user/`, so that its `.cargo/config.toml` applies (cargo finds configuration from the
    // working directory, not from `--manifest-path`).
    cmd.current_dir(user)
        .args(["build", "--release", "--locked", "--target", KERNEL_TARGET])
        .arg("--manifest-path")
        .arg(user.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    clear_inherited_env(&mut cmd);
    let shown = format!(
        "cargo {} (in {})",
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        user.display()
    );
    let output = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {shown}: {e}")));
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        fail(&format!(
            "building the user programs failed ({}): {shown}",
            output.status
        ));
    }

    let bin = target_dir.join(KERNEL_TARGET).join("release");
    let programs: Vec<(String, PathBuf)> = program_names(&user.join("programs/src/bin"))
        .into_iter()
        .map(|name| {
            let path = bin.join(&name);
            (name, path)
        })
        .collect();
    for (name, path) in &programs {
        let elf = fs::read(path)
            .unwrap_or_else(|e| fail(&format!("user program {name}: {}: {e}", path.display())));
        let user = abi::layout::USER_MIN..abi::layout::USER_END;
        if let Err(why) = elf::Program::parse(&elf, user) {
            fail(&format!("user program {name} ({}): {why}", path.display()));
        }
    }
    programs
}

/// Removes what cargo sets for a build script (and what the outer build was told) that would
/// change the nested build: flags for the kernel's build, wrappers (clippy's driver), the
/// outer jobserver, profile and feature settings, the target directory and target. Kept:
/// `CARGO` and `CARGO_HOME` (the same cargo and its caches), `RUSTUP_*` and `RUSTC` (the same
/// toolchain), and everything not meant for cargo.
fn clear_inherited_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_var =
            (key.starts_with("CARGO_") && key != "CARGO_HOME") || key.starts_with("__CARGO");
        let other = matches!(
            key,
            "RUSTFLAGS"
                | "RUSTDOCFLAGS"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "RUSTDOC"
                | "OUT_DIR"
                | "TARGET"
                | "HOST"
                | "NUM_JOBS"
                | "OPT_LEVEL"
                | "PROFILE"
                | "DEBUG"
                | "RUSTC_LINKER"
        );
        if cargo_var || other {
            cmd.env_remove(key);
        }
    }
}

/// `cargo:rerun-if-changed` for every file and directory below `dir`, except build output
/// (`target/`): a changed, added or removed source rebuilds the programs. (Not `dir` itself:
/// cargo scans a named directory recursively, and `user/target` may exist.)
fn rerun_if_changed_below(dir: &Path) {
    let mut entries: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(read) => read.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => fail(&format!("cannot list {}: {e}", dir.display())),
    };
    entries.sort();
    for path in entries {
        if path.is_dir() && path.file_name() == Some(OsStr::new("target")) {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            rerun_if_changed_below(&path);
        }
    }
}

/// The binaries of `src/bin`: `<name>.rs` and `<name>/main.rs`, sorted by name.
fn program_names(bin: &Path) -> Vec<String> {
    let read =
        fs::read_dir(bin).unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", bin.display())));
    let mut names: Vec<String> = read
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.is_dir() {
                path.join("main.rs").is_file().then_some(())?;
                Some(path.file_name()?.to_str()?.to_owned())
            } else if path.extension() == Some(OsStr::new("rs")) {
                Some(path.file_stem()?.to_str()?.to_owned())
            } else {
                None
            }
        })
        .collect();
    names.sort();
    names
}

/// Writes the `PROGRAMS` list to `path` (only when it changed, so the kernel does not rebuild
/// for nothing).
fn write_program_list(path: &Path, programs: &[(String, PathBuf)]) {
    let mut text = String::from(
        "/// The embedded user programs: (name, static non-PIE ELF64 image), sorted by name.\n\
         pub static PROGRAMS: &[(&str, &[u8])] = &[\n",
    );
    for (name, elf) in programs {
        let elf = elf
            .to_str()
            .unwrap_or_else(|| fail(&format!("non-UTF-8 path {}", elf.display())));
        writeln!(text, "    ({name:?}, include_bytes!({elf:?})),").expect("writing to a String");
    }
    text.push_str("];\n");
    if fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        fs::write(path, text).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    }
}

/// Fails the build script with `message`.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
