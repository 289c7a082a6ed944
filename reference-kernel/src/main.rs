//! The Veridian reference kernel: a bootable x86_64 kernel composed from the Veridian crates.
//!
//! Boot path: a PVH or Multiboot2 loader enters `arch::x86_64::boot` in 32-bit protected mode;
//! the trampoline switches to long mode and calls [`kernel_entry`], which brings up the console,
//! descriptor tables and vector state, parses the loader's boot information into one
//! [`BootInfo`], prints the banner and runs the mode the command line asks for:
//! `mode=run` (default), `mode=test` (the in-kernel test suite, see `ktest`), `mode=bench`
//! (`bench`), `mode=profile` (a workload under the sampling profiler, see `profile`) or
//! `mode=serve` (network services until a `quit` request, see `net`).
//!
//! The kernel only builds for `x86_64-unknown-none`; on any other target this file is a small
//! program that says so.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod drivers;
#[cfg(target_os = "none")]
mod ipc;
#[cfg(target_os = "none")]
mod ktest;
#[cfg(target_os = "none")]
mod mm;
#[cfg(target_os = "none")]
mod net;
#[cfg(target_os = "none")]
use reference_kernel::process_abi;
#[cfg(target_os = "none")]
mod profile;
#[cfg(target_os = "none")]
mod sync;
#[cfg(target_os = "none")]
mod task;
#[cfg(target_os = "none")]
mod user_programs;

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod kernel {
    use reference_kernel::bootinfo::{BootInfo, BootProtocol, MemoryKind, PhysMemory};
    use reference_kernel::cmdline::CmdLine;
    use spin::Once;

    use crate::arch::x86_64::{apic, boot, cpu, gdt, idt, percpu, qemu, recover};
    use reference_kernel::acpi::{AcpiError, AcpiTables, Platform, Rsdp, find_rsdp};

    /// Version printed in the banner.
    const VERSION: &str = env!("CARGO_PKG_VERSION");

    static BOOT_INFO: Once<BootInfo> = Once::new();
    static VECTOR_STATE: Once<cpu::VectorState> = Once::new();

    /// The boot information parsed at entry.
    pub fn boot_info() -> &'static BootInfo {
        BOOT_INFO
            .get()
            .expect("boot information is parsed before anything asks for it")
    }

    /// The vector state enabled at entry.
    pub fn vector_state() -> cpu::VectorState {
        VECTOR_STATE.get().copied().unwrap_or_default()
    }

    /// Physical memory through the kernel's direct map (`mm::paging`): the first 4 GiB from
    /// `paging::init_early` on, all RAM once the kernel's own tables are loaded.
    pub struct EarlyPhysMemory;

    impl PhysMemory for EarlyPhysMemory {
        fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
            let virt = crate::mm::paging::phys_to_virt(phys, len as u64)?;
            // SAFETY: the direct map covers [phys, phys + len) (checked by `phys_to_virt`) at
            // `virt`, which is in the higher half and never null. Boot structures and firmware
            // tables are not written while the kernel reads them; the slice is only used for
            // parsing.
            Some(unsafe { core::slice::from_raw_parts(virt as *const u8, len) })
        }
    }

    /// The machine's CPUs and NUMA layout from ACPI, or why the tables were rejected.
    static PLATFORM: Once<Result<Platform, AcpiError>> = Once::new();
    /// TSC just after the banner's first line was printed (`boot_to_banner` in `mode=bench`).
    static BANNER_TSC: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    /// The ACPI platform description, if the tables were accepted.
    pub fn platform() -> Option<&'static Platform> {
        PLATFORM.get().and_then(|p| p.as_ref().ok())
    }

    /// The ACPI tables through the RSDP the loader gave, or the one found in the BIOS areas.
    fn acpi_tables(info: &BootInfo) -> Result<AcpiTables<'static, EarlyPhysMemory>, AcpiError> {
        let rsdp = match info.rsdp() {
            Some(phys) => Rsdp::read(&EarlyPhysMemory, phys)?,
            None => find_rsdp(&EarlyPhysMemory)?,
        };
        AcpiTables::from_rsdp(&EarlyPhysMemory, rsdp)
    }

    fn read_platform(info: &BootInfo) -> Result<Platform, AcpiError> {
        let acpi = acpi_tables(info).and_then(|tables| Platform::from_tables(&tables));
        // Without ACPI, the MultiProcessor Specification's table (one NUMA node).
        match acpi {
            Ok(p) => Ok(p),
            Err(e) => match reference_kernel::acpi::mptable::find_mp_platform(&EarlyPhysMemory) {
                Ok(p) => {
                    crate::println!(
                        "  acpi:     {e}; using the MP table instead: {} CPUs, {} I/O APICs",
                        p.enabled_cpu_count(),
                        p.madt().io_apics().len()
                    );
                    Ok(p)
                }
                Err(mp) => {
                    crate::println!("  mptable:  {mp}");
                    Err(e)
                }
            },
        }
    }

    /// Entered from the boot trampoline in long mode on the bootstrap processor's stack.
    #[unsafe(no_mangle)]
    pub extern "C" fn kernel_entry(protocol: u32, info_phys: u32, magic: u32) -> ! {
        // Per-CPU data before anything can ask for the CPU index (the heap does) or take a
        // kernel lock (the preemption count lives there).
        percpu::install_early_bsp();
        crate::arch::x86_64::lock::init_lockdep();
        // Vector state first: the kernel's memcpy (veridian-simd) picks its variant from CPUID
        // and XCR0 on its first call, which the next lines may already make.
        let vectors = *VECTOR_STATE.call_once(cpu::enable_vector_state);
        crate::arch::x86_64::fpu::vector_state_ready();
        // The compiler may have called memcpy before the vector state was on (detection then
        // saw no AVX): detect again (`cpu_info` reads CPUID and XCR0 afresh) and use the best.
        let best = veridian_simd::Variant::best_for(veridian_simd::cpu::cpu_info().features);
        let _ = veridian_simd::force_variant(best);
        crate::console::init();
        crate::console::init_logger(log::LevelFilter::Info);
        let bsp_tss = gdt::init();
        idt::init();
        crate::arch::x86_64::mask_legacy_pic();
        crate::mm::paging::init_early();

        let parsed = match protocol {
            boot::PROTOCOL_PVH => BootInfo::from_pvh(u64::from(info_phys), &EarlyPhysMemory),
            boot::PROTOCOL_MULTIBOOT2 => {
                BootInfo::from_multiboot2(magic, u64::from(info_phys), &EarlyPhysMemory)
            }
            other => {
                crate::println!("KERNEL PANIC: unknown boot protocol {other} from the trampoline");
                qemu::exit(qemu::ExitCode::Failure);
            }
        };
        let info = match parsed {
            Ok(info) => BOOT_INFO.call_once(|| info),
            Err(e) => {
                crate::println!("KERNEL PANIC: boot information at {info_phys:#x} rejected: {e}");
                qemu::exit(qemu::ExitCode::Failure);
            }
        };
        // ACPI is read through the early direct map, before anything allocates, so the frame
        // allocator can place each node's RAM in its own allocator.
        let platform = PLATFORM.call_once(|| read_platform(info));
        crate::mm::init(info, platform.as_ref().ok());
        let apic = apic::init();
        let bsp_apic_id = apic.as_ref().map_or(0, |a| a.id);
        let bsp_node = platform
            .as_ref()
            .ok()
            .and_then(|p| p.cpu_by_apic_id(bsp_apic_id))
            .map_or(0, |c| c.node as u32);
        percpu::install(alloc::boxed::Box::leak(alloc::boxed::Box::new(
            percpu::PerCpu::new(0, bsp_apic_id, bsp_node),
        )));
        percpu::ONLINE.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
        let user_support = crate::arch::x86_64::user::init_cpu(bsp_tss);
        let ioapic = match (&apic, platform) {
            (Ok(_), Ok(p)) => Some(crate::arch::x86_64::ioapic::init(p.madt())),
            _ => None,
        };
        let smp = match (&apic, platform) {
            (Ok(_), Ok(p)) => Some(crate::arch::x86_64::smp::start_aps(info, p, |pages| {
                crate::mm::paging::alloc_kernel_stack(pages).ok()
            })),
            _ => None,
        };
        let online_tsc = veridian_perf::arch::rdtsc();
        let tasks = crate::task::init(platform.as_ref().ok());
        crate::task::process::init();
        if let Err(e) = crate::arch::x86_64::irq::init() {
            log::warn!("user interrupt lines unavailable: {e}");
        }
        // The tick handler and the console are interrupt-safe; nothing else is installed.
        x86_64::instructions::interrupts::enable();
        let cmdline = CmdLine::new(info.cmdline());
        if let Some(level) = cmdline.get("log") {
            match crate::console::parse_level(level) {
                Some(l) => log::set_max_level(l),
                None => log::warn!("log={level}: unknown level (off|error|warn|info|debug|trace)"),
            }
        }

        banner(info, vectors);
        match apic {
            Ok(a) => crate::println!(
                "  apic:     id {} ({}), timer {} kHz (/16), TSC {} MHz, {} Hz tick ({})",
                a.id,
                match a.mode {
                    apic::Mode::X2Apic => "x2APIC",
                    apic::Mode::XApic(_) => "xAPIC",
                },
                a.timer_hz / 1000,
                a.tsc_hz / 1_000_000,
                apic::TICK_HZ,
                match a.timer_mode {
                    apic::TimerMode::TscDeadline => "TSC-deadline",
                    apic::TimerMode::Periodic => "periodic",
                }
            ),
            Err(e) => crate::println!("  apic:     not started: {e}"),
        }
        crate::println!(
            "  user:     SYSCALL/SYSRET, SMEP {}, SMAP {}, PCID {}, {} embedded programs",
            if user_support.smep {
                "on"
            } else {
                "off (no CPU support)"
            },
            if user_support.smap {
                "on"
            } else {
                "off (no CPU support)"
            },
            if crate::arch::x86_64::tlb::pcids_on() {
                "on"
            } else {
                "off (not on every CPU)"
            },
            crate::task::process::programs().count()
        );
        match platform {
            Ok(p) => {
                crate::println!("{p}");
                if let Some(why) = p.numa_fallback() {
                    crate::println!("  numa:     one node: {why}");
                }
                let free = crate::mm::frames::free_bytes_per_node();
                for node in 0..p.node_count() {
                    let mut bytes: u64 = p.node_memory(node).map(|m| m.length).sum();
                    if p.node_count() == 1 && bytes == 0 {
                        bytes = info.usable_bytes();
                    }
                    crate::print!(
                        "  node {node}:   {} CPUs, {} MiB ({} MiB free frames), distances",
                        p.cpus_on_node(node),
                        bytes >> 20,
                        free.get(node).copied().unwrap_or(0) >> 20
                    );
                    for other in 0..p.node_count() {
                        crate::print!(" {}", p.distance(node, other).unwrap_or(0));
                    }
                    crate::println!();
                }
            }
            Err(e) => crate::println!("  acpi:     tables rejected, one CPU, one node: {e}"),
        }
        match &smp {
            Some(Ok(r)) => {
                let ms = apic.as_ref().ok().map_or(0, |a| {
                    (online_tsc - boot::entry_tsc()) / (a.tsc_hz / 1000).max(1)
                });
                crate::println!(
                    "  smp:      {} CPUs online ({} APs started, {} failed, {} over the limit), \
                     {ms} ms from kernel entry (TSC)",
                    percpu::online(),
                    r.started,
                    r.failed,
                    r.skipped
                );
            }
            Some(Err(e)) => crate::println!("  smp:      APs not started: {e}"),
            None => crate::println!("  smp:      APs not started (no APIC or no ACPI tables)"),
        }
        match ioapic {
            Some(Ok(gsi)) => crate::println!(
                "  ioapic:   serial IRQ 4 -> GSI {gsi} -> vector {:#x} on the BSP",
                crate::arch::x86_64::ioapic::SERIAL_VECTOR
            ),
            Some(Err(e)) => crate::println!("  ioapic:   serial interrupt not routed: {e}"),
            None => crate::println!("  ioapic:   not set up (no APIC or no ACPI tables)"),
        }
        match &tasks {
            Ok(()) => crate::println!(
                "  sched:    veridian-sched run queues on {} CPUs, {} ms slices",
                percpu::online(),
                crate::task::SLICE_TICKS * 1000 / apic::TICK_HZ
            ),
            Err(e) => crate::println!("  sched:    not started: {e}"),
        }

        // PCI (ECAM from the MCFG, else the configuration ports) and the devices on it.
        match acpi_tables(info).and_then(|tables| tables.mcfg()) {
            Ok(mcfg) => crate::drivers::pci::init(info, Ok(mcfg.as_ref())),
            Err(e) => crate::drivers::pci::init(info, Err(&e)),
        }
        crate::drivers::virtio_blk::init();
        crate::drivers::virtio_net::init();

        match cmdline.get("mode").unwrap_or("run") {
            "run" => {
                crate::println!("mode: run");
                demo_report();
                let ok = tasks.is_ok() && demo_threads();
                if ok {
                    log::info!("nothing more to run yet; shutting down");
                    qemu::exit(qemu::ExitCode::Success);
                }
                crate::println!("mode=run: the demo did not run as asked; exiting with failure");
                qemu::exit(qemu::ExitCode::Failure);
            }
            "bench" => {
                crate::println!("mode: bench");
                let online = match &smp {
                    Some(Ok(r)) if r.failed == 0 && r.skipped == 0 => Ok(online_tsc),
                    Some(Ok(_)) => Err("not every CPU came online"),
                    _ => Err("the APs were not started"),
                };
                crate::bench::boot_rows(
                    boot::entry_tsc(),
                    BANNER_TSC.load(core::sync::atomic::Ordering::Relaxed),
                    online,
                );
                let ok = crate::bench::run_all();
                qemu::exit(if ok {
                    qemu::ExitCode::Success
                } else {
                    qemu::ExitCode::Failure
                });
            }
            "test" => {
                crate::println!("mode: test");
                let inject = cmdline.get("ktest.inject");
                let ok = crate::ktest::run_all(cmdline.get("ktest.filter"), inject);
                qemu::exit(if ok {
                    qemu::ExitCode::Success
                } else {
                    qemu::ExitCode::Failure
                });
            }
            "profile" => {
                crate::println!("mode: profile");
                let workload = cmdline.get("profile.workload").unwrap_or("bench");
                let ok = tasks.is_ok() && crate::profile::run(workload);
                qemu::exit(if ok {
                    qemu::ExitCode::Success
                } else {
                    qemu::ExitCode::Failure
                });
            }
            "serve" => {
                crate::println!("mode: serve");
                let limit_s = cmdline
                    .get("net.limit_s")
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(900);
                let r = crate::net::serve(limit_s.saturating_mul(1000));
                crate::println!(
                    "net: served on {} NICs: {} datagrams echoed, {} stream requests ({} \
                     refused), {} bytes sunk, {} bytes generated; {} frames in, {} out, {} \
                     dropped; {} pool buffers unaccounted for{}",
                    r.nics,
                    r.echoed,
                    r.connections,
                    r.refused,
                    r.sunk,
                    r.generated,
                    r.rx_frames,
                    r.tx_frames,
                    r.dropped,
                    r.leaked,
                    if r.dead {
                        "; a NIC was taken out of service"
                    } else {
                        ""
                    }
                );
                let ok = r.nics > 0 && r.quit && r.leaked == 0 && !r.dead;
                if !r.quit && !r.dead && r.nics > 0 {
                    crate::println!("net: no quit request in {limit_s} s");
                }
                qemu::exit(if ok {
                    qemu::ExitCode::Success
                } else {
                    qemu::ExitCode::Failure
                });
            }
            other => {
                crate::println!(
                    "KERNEL PANIC: mode={other}: unknown mode (expected run, test, bench, \
                     profile or serve)"
                );
                qemu::exit(qemu::ExitCode::Failure);
            }
        }
    }

    /// A short allocation workload, then the heap's and frame allocator's statistics.
    fn demo_report() {
        use alloc::boxed::Box;
        use alloc::vec::Vec;
        let free_before = crate::mm::frames::free_bytes();
        let boxes: Vec<Box<[u8]>> = (0..4096usize)
            .map(|i| alloc::vec![i as u8; 8 << (i % 10)].into_boxed_slice())
            .collect();
        let bytes: usize = boxes.iter().map(|b| b.len()).sum();
        let during = crate::mm::heap::stats();
        drop(boxes);
        crate::mm::heap::trim();
        let after = crate::mm::heap::stats();
        crate::println!(
            "heap: demo held {} objects ({} KiB) in {} chunks; after free and trim: {} live, \
             {} chunks held, frames free {} KiB (before {} KiB)",
            during.classes.iter().map(|c| c.live_objects).sum::<u64>() + during.large_live,
            bytes >> 10,
            during.chunks_held,
            after.classes.iter().map(|c| c.live_objects).sum::<u64>() + after.large_live,
            after.chunks_held,
            crate::mm::frames::free_bytes() >> 10,
            free_before >> 10
        );
        for (i, class) in during.classes.iter().enumerate() {
            if class.allocations > 0 {
                crate::println!(
                    "heap: class {i:2} size {:5}: {:6} allocs, hit rate {:.3}",
                    class.size,
                    class.allocations,
                    class.hit_rate()
                );
            }
        }
    }

    /// A short thread workload on every CPU, then the per-CPU counters.
    /// Runs the demo threads; false if any could not be started or did not end normally (the
    /// run then ends with a failure status).
    pub fn demo_threads() -> bool {
        use alloc::vec::Vec;
        let online = percpu::online() as usize;
        let Ok(all) = veridian_sched::CpuSet::full(online) else {
            crate::println!("demo: no CPU set for {online} CPUs");
            return false;
        };
        let mut handles = Vec::new();
        let mut spawn_failures = 0;
        for i in 0..64u64 {
            match crate::task::spawn("demo", all, veridian_sched::Priority::Normal, move || {
                let mut v: Vec<Vec<u64>> = Vec::new();
                for j in 0..200u64 {
                    v.push((0..(i + j) % 64).collect());
                    if j % 50 == 0 {
                        crate::task::yield_now();
                    }
                }
                core::hint::black_box(v);
            }) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_failures += 1;
                    if spawn_failures == 1 {
                        crate::println!("demo: spawn failed: {e}");
                    }
                }
            }
        }
        if spawn_failures > 1 {
            crate::println!("demo: {spawn_failures} spawns failed in all");
        }
        let failed = handles.iter().filter(|h| h.join().is_err()).count();
        crate::println!(
            "threads: demo ran {} threads ({failed} failed) on {online} CPUs",
            handles.len()
        );
        for cpu in 0..online {
            let (Some(block), Some(s)) = (percpu::cpu(cpu), crate::task::stats(cpu)) else {
                continue;
            };
            crate::println!(
                "cpu {cpu} (node {}, apic {}): ticks {}, picks {}, steals sibling/node/remote \
                 {}/{}/{}, from injector {}, exits {}",
                block.node,
                block.apic_id,
                block.ticks.load(core::sync::atomic::Ordering::Relaxed),
                s.picks,
                s.steals_sibling,
                s.steals_same_node,
                s.steals_remote_node,
                s.from_injector,
                s.exits
            );
        }
        let heap = crate::mm::heap::stats();
        let (allocs, hits) = heap
            .classes
            .iter()
            .fold((0, 0), |(a, h), c| (a + c.allocations, h + c.cache_hits));
        crate::println!(
            "heap: {allocs} small allocations, per-CPU cache hit rate {:.3}",
            if allocs == 0 {
                0.0
            } else {
                hits as f64 / allocs as f64
            }
        );
        spawn_failures == 0 && failed == 0 && !handles.is_empty()
    }

    fn banner(info: &BootInfo, vectors: cpu::VectorState) {
        let protocol = match info.protocol() {
            BootProtocol::Pvh => "PVH (QEMU -kernel)",
            BootProtocol::Multiboot2 => "Multiboot2",
        };
        crate::println!("Veridian reference kernel v{VERSION} (boot: {protocol})");
        BANNER_TSC.store(
            veridian_perf::arch::rdtsc(),
            core::sync::atomic::Ordering::Relaxed,
        );
        if let Some(name) = info.bootloader_name() {
            crate::println!("  loader:   {name}");
        }
        let summary = cpu::CpuSummary::read();
        let (family, model, stepping) = summary.family_model_stepping;
        crate::println!(
            "  cpu:      {} \"{}\" family {family:#x} model {model:#x} stepping {stepping}",
            summary.vendor(),
            summary.brand()
        );
        crate::print!("  features:");
        for f in summary.features() {
            crate::print!(" {f}");
        }
        crate::println!();
        crate::println!(
            "  vector state: sse={} xsave={} avx={} avx512={}; memcpy/memset: veridian-simd {:?}",
            vectors.sse,
            vectors.xsave,
            vectors.avx,
            vectors.avx512,
            veridian_simd::selected_variant()
        );
        let map = info.memory_map();
        let usable = info.usable_bytes();
        crate::println!(
            "  memory:   {} regions, {} MiB usable ({usable:#x} bytes)",
            map.len(),
            usable >> 20
        );
        for r in map {
            let kind = match r.kind {
                MemoryKind::Usable => "usable",
                MemoryKind::Reserved => "reserved",
                MemoryKind::AcpiReclaimable => "ACPI reclaimable",
                MemoryKind::AcpiNvs => "ACPI NVS",
                MemoryKind::Bad => "bad",
                MemoryKind::Other(_) => "other type",
            };
            crate::println!("    [{:#012x}, {:#012x}) {kind}", r.start, r.start + r.len);
        }
        let frames = crate::mm::frames::report();
        crate::println!(
            "  frames:   {} MiB managed in {} ranges ({} KiB reserved, {} MiB beyond the direct \
             map, {} ranges refused)",
            frames.managed_bytes >> 20,
            frames.ranges,
            frames.reserved_bytes >> 10,
            frames.above_limit_bytes >> 20,
            frames.refused_ranges
        );
        match crate::mm::paging::report() {
            Some(p) => {
                crate::println!(
                    "  paging:   direct map {} GiB at {:#x} in {} pages, kernel text/rodata/data \
                     {}/{}/{} pages, {} table frames",
                    p.direct_map_bytes >> 30,
                    crate::mm::paging::PHYS_OFFSET,
                    if p.direct_map_page == 1 << 30 {
                        "1 GiB"
                    } else {
                        "2 MiB"
                    },
                    p.kernel_pages[0],
                    p.kernel_pages[1],
                    p.kernel_pages[2],
                    p.table_frames
                );
                for g in crate::mm::paging::guard_pages() {
                    crate::println!("    guard page {:#x} under the {} stack", g.page, g.stack);
                }
            }
            None => crate::println!("  paging:   boot page tables (kernel tables not built)"),
        }
        match info.rsdp() {
            Some(rsdp) => crate::println!("  acpi:     RSDP at {rsdp:#x}"),
            None => crate::println!("  acpi:     no RSDP from the loader"),
        }
        crate::println!("  cmdline:  \"{}\"", info.cmdline());
        let fixups = info.cmdline_fixups();
        if fixups.any() {
            crate::println!(
                "  cmdline:  at least {} bytes dropped (longer than {} bytes or cut by unreadable memory), \
                 {} bytes replaced by '?' (invalid UTF-8 or control characters)",
                fixups.dropped,
                reference_kernel::MAX_CMDLINE,
                fixups.replaced
            );
        }
    }

    #[panic_handler]
    fn panic(panic: &core::panic::PanicInfo<'_>) -> ! {
        use core::fmt::Write;
        let mut message = recover::Message::new();
        match panic.location() {
            Some(l) => {
                let _ = write!(message, "{} at {}:{}", panic.message(), l.file(), l.line());
            }
            None => {
                let _ = write!(message, "{}", panic.message());
            }
        }
        // A panicking kernel thread is ended (its joiner sees the message); the kernel goes on.
        crate::task::exit_panicked(message.as_str());
        if recover::armed() {
            recover::abort(recover::Abort::Panic(message));
        }
        crate::console::force_write(format_args!("KERNEL PANIC: {}\n", message.as_str()));
        qemu::exit(qemu::ExitCode::Failure)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "reference-kernel is a bare-metal kernel: build it for x86_64-unknown-none and boot it \
         with `cargo xtask run`"
    );
    std::process::exit(2);
}
