//! `cargo xtask profile [--icount] [--timeout SECS] [-- WORKLOAD]`: the kernel's sampling
//! profiler, from boot to flame graph.
//!
//! Boots the release kernel with `mode=profile profile.workload=WORKLOAD` (`bench` by default,
//! `threads`, or `user:<program>`), with a second serial port (COM2) written to
//! `target/profile/com2.folded`, where the kernel streams its folded stacks as raw addresses
//! and ends with [`END_MARKER`]. The addresses are symbolised here from the kernel ELF's symbol
//! table (and, for `user:<tag>;0x..` lines, from the user program's ELF), read with the
//! `object` crate and demangled with `rustc-demangle`; the result is written to
//! `target/profile/folded.txt`, turned into `target/profile/flame.svg` by `inferno`, and the 20
//! functions with the most self samples (leaf frames) are printed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

use crate::error::{Error, Result};
use crate::kernel::{self, Profile};
use crate::qemu::{self, Boot, Machine, Vm};
use crate::tools::{self, Needs};
use crate::workspace;

/// The kernel's last line on COM2 (`reference-kernel/src/profile.rs`).
pub const END_MARKER: &str = "# veridian-profile end";

/// Options of `cargo xtask profile`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The workload (`bench`, `threads`, `user:<program>`).
    pub workload: String,
    /// Run under `-icount shift=0` (as `cargo xtask bench` does).
    pub icount: bool,
    /// When to give up on the boot.
    pub timeout: Duration,
}

/// One folded stack from the kernel: raw addresses, root first, and its count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawStack {
    /// The process tag for a ring-3 sample (`user:<tag>`), `None` for a kernel stack.
    pub user: Option<u64>,
    /// Frame addresses, root first (the kernel already subtracted 1 from return addresses).
    pub frames: Vec<u64>,
    /// Samples with this stack.
    pub count: u64,
}

/// What the kernel wrote on COM2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// The stacks.
    pub stacks: Vec<RawStack>,
    /// Process id → program name, for the processes started while the profiler ran.
    pub processes: BTreeMap<u64, String>,
}

/// Parses the kernel's COM2 output; `Err` when the end marker is missing or a line is not a
/// folded stack or a `# process <pid> <program>` line.
pub fn parse_folded(text: &str) -> std::result::Result<Folded, String> {
    let mut folded = Folded::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with(END_MARKER) {
            return Ok(folded);
        }
        if line.is_empty() {
            continue;
        }
        if let Some(process) = line.strip_prefix("# process ") {
            let (pid, name) = process
                .split_once(' ')
                .and_then(|(pid, name)| Some((pid.parse().ok()?, name)))
                .ok_or_else(|| format!("not a process line: {line:?}"))?;
            folded.processes.insert(pid, name.to_owned());
            continue;
        }
        let bad = || format!("not a folded stack: {line:?}");
        let (stack, count) = line.rsplit_once(' ').ok_or_else(bad)?;
        let count = count.parse().map_err(|_| bad())?;
        let (user, frames) = match stack.strip_prefix("user:") {
            Some(rest) => {
                let (tag, frames) = rest.split_once(';').ok_or_else(bad)?;
                (Some(tag.parse().map_err(|_| bad())?), frames)
            }
            None => (None, stack),
        };
        let frames = frames
            .split(';')
            .map(|f| u64::from_str_radix(f.strip_prefix("0x")?, 16).ok())
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(bad)?;
        folded.stacks.push(RawStack {
            user,
            frames,
            count,
        });
    }
    Err(format!(
        "no `{END_MARKER}` line: the kernel did not finish its output"
    ))
}

/// Function symbols of one ELF: sorted `(start, end, demangled name)`.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    functions: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// A table from `(start, size, name)` entries (names as they are). A symbol of size 0
    /// (assembly labels such as the interrupt entry stubs) reaches to the next symbol.
    pub fn from_entries(entries: impl IntoIterator<Item = (u64, u64, String)>) -> Self {
        let mut functions: Vec<_> = entries
            .into_iter()
            .map(|(start, size, name)| (start, start.saturating_add(size), name))
            .collect();
        functions.sort();
        for i in 0..functions.len() {
            if functions[i].1 == functions[i].0 {
                let next = functions.get(i + 1).map_or(functions[i].0 + 1, |f| f.0);
                functions[i].1 = next.max(functions[i].0 + 1);
            }
        }
        Self { functions }
    }

    /// The function symbols of the ELF file at `path`, demangled (hash suffix dropped).
    pub fn from_elf(path: &Path) -> Result<Self> {
        let data = fs::read(path)
            .map_err(|e| Error::Failed(format!("cannot read {}: {e}", workspace::display(path))))?;
        let file = object::File::parse(&*data).map_err(|e| {
            Error::Failed(format!(
                "{} is not an ELF file: {e}",
                workspace::display(path)
            ))
        })?;
        Ok(Self::from_entries(
            file.symbols()
                // Functions, and the labels of assembly code (interrupt and system-call
                // entry: no type, no size) in executable sections.
                .filter(|s| {
                    s.address() != 0
                        && matches!(
                            s.kind(),
                            SymbolKind::Text | SymbolKind::Label | SymbolKind::Unknown
                        )
                        && s.section_index()
                            .and_then(|i| file.section_by_index(i).ok())
                            .is_some_and(|sec| sec.kind() == SectionKind::Text)
                })
                .filter_map(|s| {
                    let name = s.name().ok()?;
                    Some((
                        s.address(),
                        s.size(),
                        format!("{:#}", rustc_demangle::demangle(name)),
                    ))
                }),
        ))
    }

    /// The function containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.functions.partition_point(|f| f.0 <= addr);
        let (start, end, name) = self.functions.get(i.checked_sub(1)?)?;
        (*start <= addr && addr < *end).then_some(name.as_str())
    }

    /// `addr`'s function name, or the address in hex.
    fn name(&self, addr: u64) -> String {
        self.lookup(addr)
            .map_or_else(|| format!("{addr:#x}"), str::to_owned)
    }
}

/// Folded stacks with names: kernel frames through `kernel`, ring-3 frames of process `pid`
/// through `user[pid]` (under a root frame `[<program> <pid>]`, or `[user <pid>]` for a
/// process not in `names_of`), identical stacks merged; also the self-sample count of each leaf
/// function, most first.
pub fn symbolize(
    stacks: &[RawStack],
    kernel: &Symbols,
    user: &BTreeMap<u64, Symbols>,
    names_of: &BTreeMap<u64, String>,
) -> (Vec<String>, Vec<(String, u64)>) {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    let mut leaves: BTreeMap<String, u64> = BTreeMap::new();
    for s in stacks {
        let mut names: Vec<String> = Vec::with_capacity(s.frames.len() + 1);
        match s.user {
            Some(pid) => {
                let program = names_of.get(&pid).map_or("user", String::as_str);
                names.push(format!("[{program} {pid}]"));
                let table = user.get(&pid).unwrap_or(&EMPTY);
                names.extend(s.frames.iter().map(|&a| table.name(a)));
            }
            None => names.extend(s.frames.iter().map(|&a| kernel.name(a))),
        }
        // The folded format reserves `;` and the count's space separator only at the end.
        let names: Vec<String> = names.iter().map(|n| n.replace(';', ":")).collect();
        if let Some(leaf) = names.last() {
            *leaves.entry(leaf.clone()).or_insert(0) += s.count;
        }
        *merged.entry(names.join(";")).or_insert(0) += s.count;
    }
    let lines = merged
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect();
    let mut top: Vec<(String, u64)> = leaves.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (lines, top)
}

static EMPTY: Symbols = Symbols {
    functions: Vec::new(),
};

/// Writes the flame graph of `folded` lines to `svg`.
pub fn write_flame_graph(folded: &[String], title: &str, svg: &Path) -> Result<()> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = "samples".to_owned();
    let file = fs::File::create(svg)
        .map_err(|e| Error::Failed(format!("cannot create {}: {e}", workspace::display(svg))))?;
    inferno::flamegraph::from_lines(
        &mut options,
        folded.iter().map(String::as_str),
        std::io::BufWriter::new(file),
    )
    .map_err(|e| Error::Failed(format!("inferno: {e}")))
}

/// The newest build of user program `name` for the release kernel (the kernel's build script
/// builds the user workspace into its `OUT_DIR`).
fn user_elf(name: &str) -> Option<PathBuf> {
    let build = workspace::target_dir()
        .join(workspace::KERNEL_TARGET)
        .join(Profile::Release.dir_name())
        .join("build");
    fs::read_dir(build)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| {
            e.path()
                .join("out/user-target")
                .join(workspace::KERNEL_TARGET)
                .join("release")
                .join(name)
        })
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

/// Runs `cargo xtask profile`.
pub fn profile(options: &Options) -> Result<ExitCode> {
    tools::ensure(Needs::QEMU)?;
    let elf = kernel::build(Profile::Release)?;
    let out_dir = workspace::target_dir().join("profile");
    fs::create_dir_all(&out_dir).map_err(|e| {
        Error::Failed(format!(
            "cannot create {}: {e}",
            workspace::display(&out_dir)
        ))
    })?;
    let com2 = out_dir.join("com2.folded");
    let _ = fs::remove_file(&com2);
    let boot = Boot::Kernel {
        elf: elf.clone(),
        cmdline: format!("mode=profile profile.workload={}", options.workload),
    };
    let vm = Vm {
        machine: Machine::Numa,
        icount: options.icount,
        cpu: "max",
        disk: false,
        nic_pair: false,
    };
    let mut command = qemu::command(&boot, vm);
    command
        .arg("-serial")
        .arg(format!("file:{}", com2.display()));
    let outcome = qemu::run_command(command, options.timeout, true)?;
    if let Some(reason) = outcome.failure_reason() {
        return Err(Error::Failed(reason));
    }
    let text = fs::read_to_string(&com2)
        .map_err(|e| Error::Failed(format!("cannot read {}: {e}", workspace::display(&com2))))?;
    let parsed = parse_folded(&text).map_err(Error::Failed)?;
    let stacks = parsed.stacks;
    let kernel_symbols = Symbols::from_elf(&elf)?;
    let mut user_symbols = BTreeMap::new();
    for (&pid, program) in &parsed.processes {
        match user_elf(program) {
            Some(path) => {
                user_symbols.insert(pid, Symbols::from_elf(&path)?);
            }
            None => println!(
                "xtask: no ELF of user program `{program}` found: its frames stay addresses"
            ),
        }
    }
    let (folded, top) = symbolize(&stacks, &kernel_symbols, &user_symbols, &parsed.processes);
    let folded_path = out_dir.join("folded.txt");
    fs::write(&folded_path, folded.join("\n") + "\n").map_err(|e| {
        Error::Failed(format!(
            "cannot write {}: {e}",
            workspace::display(&folded_path)
        ))
    })?;
    let svg = out_dir.join("flame.svg");
    write_flame_graph(
        &folded,
        &format!("Veridian kernel, workload {}", options.workload),
        &svg,
    )?;
    let total: u64 = stacks.iter().map(|s| s.count).sum();
    println!();
    println!(
        "top 20 functions by self samples ({total} samples, workload {}):",
        options.workload
    );
    for (name, count) in top.iter().take(20) {
        println!(
            "{count:>8} {:>6.2}%  {name}",
            *count as f64 * 100.0 / total.max(1) as f64
        );
    }
    println!(
        "xtask: flame graph {}, folded stacks {}",
        workspace::display(&svg),
        workspace::display(&folded_path)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small input in the format the kernel writes on COM2, with the addresses of the
    /// made-up symbol table below (one address, 0x...300, in no function).
    const RECORDED: &str = "\
0xffffffff80100010;0xffffffff80100120;0xffffffff80100230 7
0xffffffff80100010;0xffffffff80100120 2
0xffffffff80100010;0xffffffff80100300 1
user:3;0x400010 4
user:4;0x400010 1
# process 3 hello
# veridian-profile end samples=15
";

    fn table() -> Symbols {
        Symbols::from_entries([
            (0xffff_ffff_8010_0000, 0x100, "kernel_entry".to_owned()),
            (0xffff_ffff_8010_0100, 0x100, "bench::run_all".to_owned()),
            (
                0xffff_ffff_8010_0200,
                0x80,
                "heap::alloc_free_pair".to_owned(),
            ),
            (0xffff_ffff_8010_0400, 0, "isr_common".to_owned()),
            (0xffff_ffff_8010_0500, 0x10, "last".to_owned()),
        ])
    }

    #[test]
    fn folded_output_is_parsed_and_needs_the_end_marker() {
        let parsed = parse_folded(RECORDED).expect("parses");
        let stacks = &parsed.stacks;
        assert_eq!(stacks.len(), 5);
        assert_eq!(stacks[0].frames.len(), 3);
        assert_eq!(stacks[0].count, 7);
        assert_eq!(parsed.processes.get(&3).map(String::as_str), Some("hello"));
        assert!(parse_folded("# process x y\n# veridian-profile end\n").is_err());
        assert_eq!(stacks[3].user, Some(3));
        let cut = RECORDED.lines().take(2).collect::<Vec<_>>().join("\n");
        assert!(parse_folded(&cut).unwrap_err().contains("end"));
        assert!(parse_folded("0xzz 1\n# veridian-profile end\n").is_err());
    }

    #[test]
    fn symbols_are_looked_up_by_range() {
        let t = table();
        assert_eq!(t.lookup(0xffff_ffff_8010_0000), Some("kernel_entry"));
        assert_eq!(
            t.lookup(0xffff_ffff_8010_027f),
            Some("heap::alloc_free_pair")
        );
        assert_eq!(t.lookup(0xffff_ffff_8010_0280), None);
        assert_eq!(t.lookup(0x10), None);
        assert_eq!(t.lookup(0xffff_ffff_8010_04ff), Some("isr_common"));
        assert_eq!(t.lookup(0xffff_ffff_8010_0500), Some("last"));
    }

    #[test]
    fn flame_graph_svg_holds_the_known_functions() {
        let parsed = parse_folded(RECORDED).expect("parses");
        let user = BTreeMap::from([(
            3,
            Symbols::from_entries([(0x400000, 0x100, "main".to_owned())]),
        )]);
        let (folded, top) = symbolize(&parsed.stacks, &table(), &user, &parsed.processes);
        assert!(folded.contains(&"kernel_entry;bench::run_all;heap::alloc_free_pair 7".to_owned()));
        assert!(folded.contains(&"kernel_entry;0xffffffff80100300 1".to_owned()));
        assert!(folded.contains(&"[hello 3];main 4".to_owned()));
        // Process 4 has neither a name nor an ELF: its frame stays an address.
        assert!(folded.contains(&"[user 4];0x400010 1".to_owned()));
        assert_eq!(top[0], ("heap::alloc_free_pair".to_owned(), 7));
        assert_eq!(top[1], ("main".to_owned(), 4));
        assert_eq!(top[2], ("bench::run_all".to_owned(), 2));

        let dir = std::env::temp_dir().join(format!("xtask-profile-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let svg = dir.join("flame.svg");
        write_flame_graph(&folded, "test", &svg).expect("inferno writes the graph");
        let text = fs::read_to_string(&svg).expect("svg written");
        let _ = fs::remove_dir_all(&dir);
        assert!(text.starts_with("<?xml") && text.contains("<svg"));
        for name in [
            "kernel_entry",
            "bench::run_all",
            "heap::alloc_free_pair",
            "main",
        ] {
            assert!(text.contains(name), "{name} missing from the SVG");
        }
    }
}
