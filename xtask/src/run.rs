//! `cargo xtask run`: build the kernel (or the ISO), boot it in QEMU, follow it, report.

use std::process::ExitCode;

use crate::RunArgs;
use crate::disk;
use crate::error::Result;
use crate::iso::{self, IsoOptions};
use crate::kernel;
use crate::net;
use crate::qemu::{self, Boot, Vm};
use crate::test;
use crate::tools::{self, Needs};

/// Exit status of `run` when QEMU was stopped by the timeout.
const EXIT_TIMEOUT: u8 = 124;

/// Runs the `run` command.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let use_iso = args.iso || args.uefi;
    if args.uefi && !args.iso {
        println!("xtask: --uefi boots the GRUB ISO (as --iso does)");
    }
    tools::ensure(Needs {
        qemu: true,
        iso: use_iso,
        lints: false,
    })?;
    if args.uefi {
        tools::ensure_ovmf()?;
        tools::ensure_grub_uefi()?;
    }

    let boot = if use_iso {
        let iso = iso::build(&IsoOptions {
            profile: args.profile,
            default_entry: args.entry,
            extra_cmdline: args.extra.clone(),
        })?;
        Boot::Cdrom {
            iso,
            uefi: args.uefi,
        }
    } else {
        Boot::Kernel {
            elf: kernel::build(args.profile)?,
            cmdline: cmdline(&args.extra),
        }
    };

    // The test disk too, so `cargo xtask run -- mode=test` runs the block tests.
    disk::create()?;
    let vm = Vm {
        disk: true,
        ..args.machine.into()
    };
    // A virtio-net NIC on QEMU's user network, ports forwarded from 127.0.0.1 only
    // (`-- mode=serve` serves on them).
    let ports = net::Ports::pick()
        .map_err(|e| crate::error::Error::Failed(format!("network set-up: {e}")))?;
    println!(
        "xtask: network: 127.0.0.1:{} (TCP) -> guest stream service 5001, 127.0.0.1:{} (UDP) -> \
         echo 7, 127.0.0.1:{} (UDP) -> control 9 (served with `-- mode=serve`)",
        ports.stream, ports.echo, ports.control
    );
    let mut command = qemu::command(&boot, vm);
    command.args(ports.qemu_args());
    let outcome = qemu::run_command(command, args.timeout, true)?;
    let mut reason = outcome.failure_reason();
    if outcome.log.saw_tests() {
        // The kernel ran its test suite (`-- mode=test`, or the ISO's test entry): judge it too.
        let verdict = outcome.log.judge(&outcome.exit());
        test::print_suite(&verdict);
        if reason.is_none() {
            reason = test::suite_failure(&verdict);
        }
    }

    match outcome.banner_after {
        Some(after) => println!(
            "xtask: boot to banner {:.2} s (QEMU TCG, wall clock)",
            after.as_secs_f64()
        ),
        None => println!("xtask: no banner line seen"),
    }
    Ok(match reason {
        None => {
            println!("xtask: the kernel exited with success");
            ExitCode::SUCCESS
        }
        Some(reason) => {
            println!("xtask: FAILED: {reason}");
            if outcome.timed_out() {
                ExitCode::from(EXIT_TIMEOUT)
            } else {
                ExitCode::FAILURE
            }
        }
    })
}

/// The kernel command line: `mode=run` unless the extra words choose a mode, then the words.
fn cmdline(extra: &[String]) -> String {
    let has_mode = extra.iter().any(|word| word.starts_with("mode="));
    let default = (!has_mode).then_some("mode=run");
    default
        .into_iter()
        .chain(extra.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_defaults_to_run_mode() {
        assert_eq!(cmdline(&[]), "mode=run");
        assert_eq!(cmdline(&["log=debug".into()]), "mode=run log=debug");
        assert_eq!(
            cmdline(&["mode=test".into(), "ktest.filter=alloc".into()]),
            "mode=test ktest.filter=alloc"
        );
    }
}
