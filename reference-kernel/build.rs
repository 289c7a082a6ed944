//! Passes the kernel's linker script when building the kernel image for the bare-metal target,
//! and builds and embeds the user programs (`user/`, a workspace of its own).
//!
//! For `x86_64-unknown-none` this runs a nested `cargo build --release` of `user/` into
//! `$OUT_DIR/user-target`, checks each program's ELF headers, and writes
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

/// The system-call ABI (for the address-space layout the ELF check uses).
#[allow(dead_code)]
#[path = "user/rt/src/abi.rs"]
mod abi;

/// The target of the kernel image and of the user programs.
const KERNEL_TARGET: &str = "x86_64-unknown-none";

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
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
        if let Err(why) = check_elf(&elf) {
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

/// Checks what the kernel's loader relies on: a little-endian ELF64 `ET_EXEC` for x86_64 whose
/// `PT_LOAD` segments lie in the user half at or above `PROGRAM_BASE`, none both writable and
/// executable, with the entry point in an executable one, and no `PT_INTERP`, `PT_DYNAMIC` or
/// `PT_TLS`. (The kernel validates again at load time; this catches a broken linker script at
/// build time.)
fn check_elf(elf: &[u8]) -> Result<(), String> {
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    const PT_TLS: u32 = 7;
    const PF_X: u32 = 1;
    const PF_W: u32 = 2;
    let u16_at = |at: u64| field(elf, at).map(u16::from_le_bytes);
    let u32_at = |at: u64| field(elf, at).map(u32::from_le_bytes);
    let u64_at = |at: u64| field(elf, at).map(u64::from_le_bytes);
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("not a little-endian ELF64 file".into());
    }
    // e_type ET_EXEC (2), e_machine EM_X86_64 (62).
    if u16_at(16)? != 2 || u16_at(18)? != 62 {
        return Err("not an ET_EXEC for x86_64 (EM_X86_64)".into());
    }
    let entry = u64_at(24)?;
    let phoff = u64_at(32)?;
    let (phentsize, phnum) = (u64::from(u16_at(54)?), u64::from(u16_at(56)?));
    let mut entry_ok = false;
    let mut loads = 0;
    for i in 0..phnum {
        let ph = phoff.checked_add(i * phentsize).ok_or("bad e_phoff")?;
        let (kind, flags) = (u32_at(ph)?, u32_at(ph + 4)?);
        let (vaddr, memsz) = (u64_at(ph + 16)?, u64_at(ph + 40)?);
        match kind {
            PT_INTERP | PT_DYNAMIC | PT_TLS => {
                return Err(format!(
                    "program header {i} has type {kind} (interp/dynamic/TLS)"
                ));
            }
            PT_LOAD => {
                loads += 1;
                if flags & PF_W != 0 && flags & PF_X != 0 {
                    return Err(format!(
                        "segment {i} at {vaddr:#x} is writable and executable"
                    ));
                }
                let end = vaddr.checked_add(memsz).ok_or("segment wraps")?;
                if vaddr < abi::layout::PROGRAM_BASE || end > abi::layout::USER_END {
                    return Err(format!(
                        "segment {i} {vaddr:#x}..{end:#x} is outside user space"
                    ));
                }
                entry_ok |= flags & PF_X != 0 && (vaddr..end).contains(&entry);
            }
            _ => {}
        }
    }
    if loads == 0 {
        return Err("no PT_LOAD segment".into());
    }
    if !entry_ok {
        return Err(format!(
            "entry point {entry:#x} is not in an executable segment"
        ));
    }
    Ok(())
}

/// The `N` bytes of `elf` at offset `at`.
fn field<const N: usize>(elf: &[u8], at: u64) -> Result<[u8; N], String> {
    usize::try_from(at)
        .ok()
        .and_then(|at| elf.get(at..)?.get(..N)?.try_into().ok())
        .ok_or_else(|| format!("truncated: {N} bytes at {at:#x}"))
}

/// Fails the build script with `message`.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
