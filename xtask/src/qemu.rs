//! Booting the kernel in QEMU (TCG) and following its serial log.
//!
//! QEMU's stdout (the serial port) and stderr are piped, streamed line by line to our stdout and
//! parsed by [`KernelLog`]. The child is polled every 20 ms so that Ctrl-C and the timeout are
//! noticed promptly; QEMU runs in its own process group, so only xtask decides when it dies.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd;
use crate::disk;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::kernel_log::{Exit, KernelLog, LineKind};
use crate::tools::OVMF;

/// How often the child, Ctrl-C and the clock are checked.
const POLL: Duration = Duration::from_millis(20);
/// How long to wait for the last output once QEMU has exited.
const DRAIN: Duration = Duration::from_secs(2);
/// How many of QEMU's own (stderr) lines are kept to explain a failure.
const STDERR_KEPT: usize = 5;

/// QEMU status for isa-debug-exit value 0x10 (`(0x10 << 1) | 1`): the kernel reports success.
pub const EXIT_SUCCESS: i32 = 33;
/// QEMU status for isa-debug-exit value 0x11: the kernel reports failure.
pub const EXIT_FAILURE: i32 = 35;

/// What QEMU boots.
#[derive(Clone, Debug)]
pub enum Boot {
    /// The kernel ELF directly, through its PVH note (`-kernel`), with a command line.
    Kernel {
        /// The kernel ELF.
        elf: PathBuf,
        /// The kernel command line (`-append`).
        cmdline: String,
    },
    /// A GRUB ISO (`-cdrom`); the command line comes from its grub.cfg.
    Cdrom {
        /// The ISO image.
        iso: PathBuf,
        /// Boot through UEFI firmware (OVMF) instead of the default BIOS (SeaBIOS).
        uefi: bool,
    },
}

/// How QEMU ended.
#[derive(Debug)]
pub enum Ending {
    /// QEMU exited by itself.
    Exited(ExitStatus),
    /// It ran past the timeout and was killed.
    TimedOut(Duration),
}

/// The result of one QEMU run.
#[derive(Debug)]
pub struct Outcome {
    /// How QEMU ended.
    pub ending: Ending,
    /// What the kernel said.
    pub log: KernelLog,
    /// Wall time from spawning QEMU to the banner line.
    pub banner_after: Option<Duration>,
    /// The last lines QEMU itself printed on stderr.
    pub qemu_stderr: Vec<String>,
    /// Every serial line, cleaned of control characters.
    pub serial: Vec<String>,
}

impl Outcome {
    /// Whether the run ended by timeout.
    pub fn timed_out(&self) -> bool {
        matches!(self.ending, Ending::TimedOut(_))
    }

    /// How the run ended, as far as the kernel is concerned.
    pub fn exit(&self) -> Exit {
        match self.ending {
            Ending::TimedOut(limit) => {
                Exit::Abnormal(format!("timed out after {} s", limit.as_secs()))
            }
            Ending::Exited(status) => match (status.code(), status.signal()) {
                (Some(EXIT_SUCCESS), _) => Exit::Success,
                (Some(EXIT_FAILURE), _) => Exit::Failure,
                (Some(0), _) => {
                    Exit::Abnormal("kernel reset without reporting (triple fault?)".into())
                }
                (Some(1), _) => Exit::Abnormal(match self.qemu_stderr.last() {
                    Some(message) => format!("QEMU failed (exit status 1): {message}"),
                    None => "QEMU failed (exit status 1)".into(),
                }),
                // isa-debug-exit turns a value v into status (v << 1) | 1.
                (Some(code), _) if code > 1 && code % 2 == 1 && code < 512 => {
                    Exit::Abnormal(format!(
                        "the kernel wrote {:#x} to isa-debug-exit (QEMU status {code}); \
                         expected 0x10 (success) or 0x11 (failure)",
                        (code - 1) / 2
                    ))
                }
                (Some(code), _) => Exit::Abnormal(format!("QEMU exited with status {code}")),
                (None, Some(signal)) => {
                    Exit::Abnormal(format!("QEMU was killed by signal {signal}"))
                }
                (None, None) => Exit::Abnormal(format!("QEMU ended with {status}")),
            },
        }
    }

    /// A one-line reason why the run failed, or `None` when the kernel reported success.
    pub fn failure_reason(&self) -> Option<String> {
        match self.exit() {
            Exit::Success => None,
            Exit::Failure => Some(match self.log.panic() {
                Some(msg) => format!("kernel panic: {msg}"),
                None => "the kernel reported failure (isa-debug-exit 0x11)".into(),
            }),
            Exit::Abnormal(how) => Some(match (self.log.panic(), self.log.running()) {
                (Some(msg), _) => format!("{how}, after a kernel panic: {msg}"),
                (None, Some(test)) => format!("{how} while running test `{test}`"),
                (None, None) => how,
            }),
        }
    }
}

/// The virtual machine's CPUs and NUMA layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// 4 CPUs on 2 NUMA nodes (CPUs 0-1 and 2-3, 128 MiB each, distance 20): the default.
    Numa,
    /// 4 CPUs, no NUMA options (one node).
    Flat,
    /// 1 CPU, no NUMA options.
    Single,
    /// As [`Machine::Numa`] with an asymmetric distance table (node 1 to node 0 is 30): ACPI
    /// allows it, and the scheduler must start on it.
    NumaAsymmetric,
}

impl Machine {
    /// Every machine, for option parsing and help.
    pub const ALL: [(&'static str, Machine); 4] = [
        ("numa", Machine::Numa),
        ("flat", Machine::Flat),
        ("single", Machine::Single),
        ("numa-asymmetric", Machine::NumaAsymmetric),
    ];

    /// QEMU's CPU, memory and NUMA options for this machine.
    pub fn args(self) -> &'static [&'static str] {
        /// 4 CPUs on 2 nodes of 128 MiB, distance 20; the last two options make the table
        /// asymmetric (node 1 to node 0: 30).
        const TWO_NODES: [&str; 16] = [
            "-smp",
            "4",
            "-m",
            "256M",
            "-object",
            "memory-backend-ram,id=mem0,size=128M",
            "-object",
            "memory-backend-ram,id=mem1,size=128M",
            "-numa",
            "node,nodeid=0,cpus=0-1,memdev=mem0",
            "-numa",
            "node,nodeid=1,cpus=2-3,memdev=mem1",
            "-numa",
            "dist,src=0,dst=1,val=20",
            "-numa",
            "dist,src=1,dst=0,val=30",
        ];
        match self {
            // The two-node machine's options are a prefix of the asymmetric one's.
            Machine::Numa => &TWO_NODES[..TWO_NODES.len() - 2],
            Machine::NumaAsymmetric => &TWO_NODES,
            Machine::Flat => &["-smp", "4", "-m", "256M"],
            Machine::Single => &["-smp", "1", "-m", "256M"],
        }
    }
}

/// The virtual machine: its shape, and whether the guest's TSC counts instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vm {
    /// CPUs and NUMA layout.
    pub machine: Machine,
    /// `-icount shift=0`: one TSC tick per guest instruction (deterministic counts).
    pub icount: bool,
    /// QEMU's `-cpu` model (`max` unless a test asks for another).
    pub cpu: &'static str,
    /// Attach the test disk (`disk::path()`, written by `disk::create()` beforehand) as a
    /// virtio-blk device.
    pub disk: bool,
    /// Attach two virtio-net NICs connected to each other through a QEMU hub (nothing else on
    /// that link): the kernel's `net_udp_echo` benchmark.
    pub nic_pair: bool,
}

impl From<Machine> for Vm {
    fn from(machine: Machine) -> Self {
        Self {
            machine,
            icount: false,
            cpu: "max",
            disk: false,
            nic_pair: false,
        }
    }
}

/// The QEMU command line for `boot` on `vm`.
pub fn command(boot: &Boot, vm: impl Into<Vm>) -> Command {
    let vm = vm.into();
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-machine", "q35", "-accel", "tcg", "-cpu", vm.cpu])
        .args(vm.machine.args());
    if vm.icount {
        qemu.args(["-icount", "shift=0"]);
    }
    if vm.disk {
        qemu.args(disk::qemu_args(&disk::path(), ""));
    }
    if vm.nic_pair {
        qemu.args([
            "-netdev",
            "hubport,id=h0,hubid=0",
            "-device",
            "virtio-net-pci,netdev=h0",
            "-netdev",
            "hubport,id=h1,hubid=0",
            "-device",
            "virtio-net-pci,netdev=h1,mac=52:54:00:12:34:57",
        ]);
    }
    console_and_exit(&mut qemu);
    match boot {
        Boot::Kernel { elf, cmdline } => {
            qemu.arg("-kernel").arg(elf).arg("-append").arg(cmdline);
        }
        Boot::Cdrom { iso, uefi } => {
            if *uefi {
                qemu.args(["-bios", OVMF]);
            }
            qemu.arg("-cdrom").arg(iso);
        }
    }
    qemu
}

/// A QEMU command booting the kernel `elf` (PVH) with `cmdline` on a machine given entirely by
/// `machine` (`-machine`, `-cpu`, `-smp`, `-m`, NUMA options, ...; TCG is added here).
pub fn kernel_command(machine: &[String], elf: &Path, cmdline: &str) -> Command {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg"]).args(machine);
    console_and_exit(&mut qemu);
    qemu.arg("-kernel").arg(elf).arg("-append").arg(cmdline);
    qemu
}

/// No display or monitor, the serial port on stdio, no reboot (a triple fault ends QEMU) and
/// the `isa-debug-exit` device the kernel reports through.
fn console_and_exit(qemu: &mut Command) {
    qemu.args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .arg("-no-reboot")
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
}

/// Where a line came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Serial,
    Qemu,
}

struct Message {
    source: Source,
    line: String,
    at: Instant,
}

/// Kills the child when dropped, so that no early return leaves QEMU running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Boots `boot`, streams its output, and returns how it ended. Ctrl-C kills QEMU and returns
/// [`Error::Interrupted`]; a timeout kills QEMU and returns an [`Outcome`] saying so.
pub fn run(boot: &Boot, vm: impl Into<Vm>, timeout: Duration) -> Result<Outcome> {
    run_command(command(boot, vm), timeout, true)
}

/// [`run`] for a QEMU command built by the caller (e.g. the boot matrix's machine shapes);
/// with `echo` off the serial log is kept in the [`Outcome`] but not printed.
pub fn run_command(mut qemu: Command, timeout: Duration, echo: bool) -> Result<Outcome> {
    qemu.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    println!("xtask: $ {}", cmd::show(&qemu));
    let started = Instant::now();
    let mut child = KillOnDrop(
        qemu.spawn()
            .map_err(|err| Error::Failed(format!("cannot start qemu-system-x86_64: {err}")))?,
    );

    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.0.stdout.take() {
        spawn_reader(stdout, Source::Serial, tx.clone());
    }
    if let Some(stderr) = child.0.stderr.take() {
        spawn_reader(stderr, Source::Qemu, tx);
    } else {
        drop(tx);
    }

    let mut log = KernelLog::new();
    let mut banner_after = None;
    let mut qemu_stderr = Vec::new();
    let mut serial = Vec::new();
    let mut handle = |msg: Message| {
        if echo {
            println!("{}", displayable(&msg.line));
        }
        match msg.source {
            Source::Serial => {
                serial.push(crate::kernel_log::clean(&msg.line));
                if log.feed(&msg.line) == LineKind::Banner {
                    banner_after = Some(msg.at.duration_since(started));
                }
            }
            Source::Qemu => {
                let line = msg.line.trim();
                if !line.is_empty() {
                    if qemu_stderr.len() == STDERR_KEPT {
                        qemu_stderr.remove(0);
                    }
                    qemu_stderr.push(line.to_owned());
                }
            }
        }
    };

    let mut output_open = true;
    let ending = loop {
        if output_open {
            match rx.recv_timeout(POLL) {
                Ok(msg) => handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => output_open = false,
            }
        } else {
            thread::sleep(POLL);
        }
        if let Some(status) = child
            .0
            .try_wait()
            .map_err(|err| Error::Failed(format!("cannot wait for QEMU: {err}")))?
        {
            break Ending::Exited(status);
        }
        if interrupt::requested() {
            println!("xtask: Ctrl-C: stopping QEMU");
            stop(&mut child.0);
            return Err(Error::Interrupted);
        }
        if started.elapsed() >= timeout {
            println!(
                "xtask: no result after {} s: stopping QEMU",
                timeout.as_secs()
            );
            stop(&mut child.0);
            break Ending::TimedOut(timeout);
        }
    };

    // The last lines may still be in the pipes.
    let drain_until = Instant::now() + DRAIN;
    while output_open {
        let left = drain_until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(msg) => handle(msg),
            Err(_) => output_open = false,
        }
    }

    Ok(Outcome {
        ending,
        log,
        banner_after,
        qemu_stderr,
        serial,
    })
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Forwards the lines of `pipe` (lossily decoded) to `tx`, stamped with their arrival time.
fn spawn_reader(pipe: impl Read + Send + 'static, source: Source, tx: Sender<Message>) {
    thread::spawn(move || {
        cmd::for_each_raw_line(pipe, |raw| {
            let message = Message {
                source,
                line: String::from_utf8_lossy(raw).into_owned(),
                at: Instant::now(),
            };
            tx.send(message).is_ok()
        });
    });
}

/// The line as shown to the user: without its line ending, and without the terminal control
/// sequences (screen clearing, cursor moves) that GRUB sends; colours are kept.
fn displayable(raw: &str) -> String {
    let raw = raw.trim_end_matches(['\r', '\n']);
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find("\u{1b}[") {
        out.push_str(&rest[..pos]);
        let seq = &rest[pos + 2..];
        let end = seq.find(|c: char| ('@'..='~').contains(&c));
        match end {
            Some(end) => {
                if seq[end..].starts_with('m') {
                    out.push_str(&rest[pos..pos + 2 + end + 1]);
                }
                rest = &seq[end + 1..];
            }
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displayable_keeps_colours_and_drops_cursor_control() {
        assert_eq!(
            displayable("\u{1b}[2J\u{1b}[1;1H\u{1b}[32mok\u{1b}[0m done\r\n"),
            "\u{1b}[32mok\u{1b}[0m done"
        );
        assert_eq!(displayable("plain\n"), "plain");
        assert_eq!(displayable("cut \u{1b}[12"), "cut ");
    }

    #[test]
    fn command_line_matches_the_documented_one() {
        let boot = Boot::Kernel {
            elf: "k.elf".into(),
            cmdline: "mode=test ktest.filter=x".into(),
        };
        assert_eq!(
            cmd::show(&command(&boot, Machine::Flat)),
            "qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 4 -m 256M -display none \
             -monitor none -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -kernel k.elf -append 'mode=test ktest.filter=x'"
        );
        let with_disk = Vm {
            disk: true,
            ..Machine::Single.into()
        };
        let shown = cmd::show(&command(&boot, with_disk));
        assert!(
            shown.contains(&format!(
                "-m 256M -drive file={},if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0 \
                 -display none",
                disk::path().display()
            )),
            "{shown}"
        );
        let iso = Boot::Cdrom {
            iso: "v.iso".into(),
            uefi: true,
        };
        assert!(
            cmd::show(&command(&iso, Machine::Numa))
                .ends_with("-bios /usr/share/ovmf/OVMF.fd -cdrom v.iso")
        );
        assert!(cmd::show(&command(&iso, Machine::Numa)).contains(
            "-numa node,nodeid=0,cpus=0-1,memdev=mem0 -numa node,nodeid=1,cpus=2-3,memdev=mem1"
        ));
    }

    fn outcome(code: i32, stderr: &[&str]) -> Outcome {
        Outcome {
            ending: Ending::Exited(ExitStatus::from_raw(code << 8)),
            log: KernelLog::new(),
            banner_after: None,
            qemu_stderr: stderr.iter().map(|s| (*s).to_owned()).collect(),
            serial: Vec::new(),
        }
    }

    #[test]
    fn exit_statuses_are_interpreted() {
        assert_eq!(outcome(33, &[]).exit(), Exit::Success);
        assert_eq!(outcome(35, &[]).exit(), Exit::Failure);
        assert_eq!(
            outcome(0, &[]).failure_reason().as_deref(),
            Some("kernel reset without reporting (triple fault?)")
        );
        assert_eq!(
            outcome(1, &["qemu: could not load kernel 'x'"])
                .failure_reason()
                .as_deref(),
            Some("QEMU failed (exit status 1): qemu: could not load kernel 'x'")
        );
        assert!(
            outcome(5, &[])
                .failure_reason()
                .unwrap()
                .contains("wrote 0x2 to isa-debug-exit")
        );
        let timed_out = Outcome {
            ending: Ending::TimedOut(Duration::from_secs(8)),
            ..outcome(0, &[])
        };
        assert!(timed_out.timed_out());
        assert_eq!(
            timed_out.failure_reason().as_deref(),
            Some("timed out after 8 s")
        );
    }

    /// A real QEMU run that fails at once: the error path, without needing a kernel.
    #[test]
    fn missing_kernel_file_is_a_qemu_failure() {
        if cmd::find_program("qemu-system-x86_64").is_none() {
            eprintln!("qemu-system-x86_64 not installed: skipped");
            return;
        }
        let boot = Boot::Kernel {
            elf: "/nonexistent/xtask-test-kernel.elf".into(),
            cmdline: "mode=run".into(),
        };
        let outcome = run(&boot, Machine::Flat, Duration::from_secs(30)).expect("QEMU starts");
        let reason = outcome.failure_reason().expect("a failure");
        assert!(
            reason.starts_with("QEMU failed (exit status 1)"),
            "{reason}"
        );
        assert!(outcome.banner_after.is_none());
    }
}
