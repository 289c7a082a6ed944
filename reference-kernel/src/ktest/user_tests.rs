//! Kernel tests of user mode: processes built from the programs in `reference-kernel/user/`,
//! their system calls, faults and memory.

use alloc::vec::Vec;

use crate::mm::frames;
use crate::task::process::{self, Child, KILLED, ProcessError};

/// Spawns `name` with `arg` from the kernel.
fn start(name: &str, arg: u64) -> Child {
    process::spawn(name, arg, 0).unwrap_or_else(|e| panic!("spawn {name}: {e}"))
}

/// Runs `name` with `arg` to its end; its exit code and the frames its space gave back.
fn run(name: &str, arg: u64) -> (i64, u64) {
    let child = start(name, arg);
    let code = child.wait();
    (code, child.process.frames_returned())
}

/// Free frame bytes before and after `f` (after one warm-up run of `f`, so that caches that
/// grow once — kernel stacks, heap chunks — are already grown).
fn frames_back_after(f: impl Fn()) -> (usize, usize) {
    f();
    let before = frames::free_bytes();
    f();
    (before, frames::free_bytes())
}

pub fn user_hello_exits_cleanly() {
    let (code, frames) = run("hello", 7);
    assert_eq!(code, 0, "hello's exit code");
    assert!(frames > 0, "the address space gave back no frames");
}

pub fn user_processes_run_on_every_cpu() {
    let cpus = crate::arch::x86_64::percpu::online() as usize;
    let all = if cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << cpus) - 1
    };
    // Where a process runs depends on timing: while this thread is still spawning, idle CPUs
    // may steal every process queued on this one, so one round can miss this CPU. Rounds until
    // every CPU ran one (a CPU that never runs user processes still fails after the last).
    let mut ran_on = 0u64;
    for _round in 0..6 {
        let children: Vec<Child> = (0..cpus * 3).map(|_| start("spin_cpus", 200)).collect();
        for c in &children {
            assert_eq!(c.wait(), 0, "spin_cpus failed");
            ran_on |= c.thread.thread().ran_on();
        }
        if ran_on == all {
            break;
        }
    }
    assert_eq!(ran_on, all, "processes ran on CPUs {ran_on:#b} of {all:#b}");
}

pub fn user_faults_kill_only_the_process() {
    // 0 null read, 1 write to .rodata, 2 #GP, 3 ud2, 4 divide by zero, 5 stack overflow into
    // the guard page, 6 execute in a data page, 7 privileged instruction.
    for kind in 0..8 {
        let (before, after) = frames_back_after(|| {
            let (code, _) = run("fault", kind);
            assert_eq!(code, KILLED, "fault {kind}: exit code");
        });
        assert_eq!(before, after, "fault {kind}: frames not all returned");
    }
    // The kernel goes on: a normal process still runs.
    assert_eq!(run("hello", 0).0, 0);
}

pub fn user_bad_pointers_get_efault() {
    let (code, _) = run("badptr", 0);
    assert_eq!(code, 0, "badptr reported {code} failed checks");
}

pub fn user_demand_paging_and_munmap() {
    let promoted = crate::mm::aspace::promotions();
    let (before, after) = frames_back_after(|| {
        // 8 MiB, or an eighth of the free memory on a small machine (at least 1 MiB).
        let mib = ((frames::free_bytes() / 8) >> 20).clamp(1, 8) as u64;
        let child = start("mmap_touch", mib);
        assert_eq!(child.wait(), 0, "mmap_touch failed");
    });
    assert_eq!(before, after, "frames not all returned");
    // Two runs touched every page of at least one 2 MiB-aligned block each (the region starts
    // at MMAP_BASE, 2 MiB-aligned, and is at least 2 MiB on any machine that has 16 MiB free).
    if frames::free_bytes() >= 16 << 20 {
        assert!(
            crate::mm::aspace::promotions() >= promoted + 2,
            "no 2 MiB block was promoted to a huge page"
        );
    }
}

pub fn user_spawn_and_wait() {
    let (code, _) = run("spawner", 4);
    assert_eq!(code, 0, "spawner failed");
}

pub fn user_syscall_fuzzer_survives() {
    let (before, after) = frames_back_after(|| {
        let (code, _) = run("sysfuzz", 0x5eed);
        assert_eq!(code, 0, "sysfuzz saw an invalid result");
    });
    assert_eq!(before, after, "frames not all returned");
}

pub fn user_fuzzers_on_every_cpu() {
    let cpus = crate::arch::x86_64::percpu::online() as u64;
    let children: Vec<Child> = (0..cpus).map(|i| start("sysfuzz", 1000 + i)).collect();
    for c in &children {
        assert_eq!(c.wait(), 0, "sysfuzz saw an invalid result");
    }
}

pub fn user_bad_images_refused() {
    assert_eq!(
        process::spawn("no-such-program", 0, 0).err(),
        Some(ProcessError::NoSuchProgram)
    );
    let hello = process::image("hello").expect("hello is embedded");
    let mut bad = hello.to_vec();
    bad[4] = 1; // ELFCLASS32
    match process::spawn_image("bad", &bad, 0, 0) {
        Err(ProcessError::BadImage(m)) => assert!(!m.is_empty()),
        Err(e) => panic!("expected a bad-image error, got {e}"),
        Ok(_) => panic!("a 32-bit image was accepted"),
    }
    // Headers and program headers only: every segment's bytes are missing.
    let truncated = &hello[..0x200];
    assert!(
        matches!(
            process::spawn_image("bad", truncated, 0, 0),
            Err(ProcessError::BadImage(_))
        ),
        "a truncated image was accepted"
    );
}

/// Runs `f` in a kernel thread pinned to CPU `cpu` and waits for it.
fn on_cpu(cpu: usize, f: impl FnOnce() + Send + 'static) {
    let handle = crate::task::spawn(
        "tlb",
        veridian_sched::CpuSet::single(cpu).expect("cpu in range"),
        veridian_sched::Priority::Normal,
        f,
    )
    .expect("spawn");
    handle.join().expect("the thread ends normally");
}

/// TLB shootdown and PCIDs: a CPU that keeps a space loaded lazily gets an IPI when the space
/// unmaps memory (and no other CPU does), a CPU that cached a translation earlier never uses it
/// after the page was unmapped and the address mapped again, and retiring the space takes it
/// off every CPU before its tables are freed.
pub fn tlb_shootdown_and_pcids() {
    use alloc::sync::Arc;

    use crate::arch::x86_64::context::{self, UserSpace};
    use crate::arch::x86_64::{percpu, tlb, user};
    use crate::mm::aspace::{AddressSpace, Region, RegionKind};

    const X: u64 = 0x4000_0000;
    const TAG: u64 = 0x7ff0;
    let region = Region {
        start: X,
        end: X + 4 * 4096,
        writable: true,
        executable: false,
        kind: RegionKind::Anonymous,
    };
    let online = percpu::online() as usize;
    // The test thread itself runs on `a`; the lazy CPU is `b` (the same one on a 1-CPU machine:
    // then only the generation check and the retirement are exercised, not the IPIs).
    let (a, b) = (0, if online > 1 { 1 } else { 0 });
    let space = Arc::new(AddressSpace::new().expect("an address space"));
    space.reserve(region).expect("reserve");
    let enter = |s: &Arc<AddressSpace>| {
        let s: Arc<dyn UserSpace> = s.clone();
        assert!(context::enter_address_space(s, TAG), "enter the space");
    };
    let read = || {
        let mut buf = [0u8; 6];
        user::copy_from_user(&mut buf, X).expect("read X");
        buf
    };

    // 1. On `b`: map X, write it, read it (its translation is cached on `b`), and leave the CPU
    // with the space still loaded (lazily).
    on_cpu(b, {
        let s = space.clone();
        move || {
            enter(&s);
            assert!(s.handle_fault(X, 0b10), "demand-map X");
            user::copy_to_user(X, b"first!").expect("write X");
            assert_eq!(&read(), b"first!");
            drop(context::leave_address_space_lazily());
        }
    });
    assert_eq!(
        space.tlb().loaded_on(),
        1 << b,
        "the space stays loaded on CPU {b}"
    );
    let before: alloc::vec::Vec<u64> = (0..online).map(|i| tlb::received(i).unwrap_or(0)).collect();

    // 2. On `a`: unmap X (a shootdown to `b`, which holds the space lazily), then map X again to
    // another frame holding other bytes.
    on_cpu(a, {
        let s = space.clone();
        move || {
            enter(&s);
            s.munmap(X, 4 * 4096).expect("munmap X");
            assert_eq!(
                s.tlb().loaded_on(),
                1 << percpu::cpu_index(),
                "after the shootdown only this CPU has the space loaded"
            );
            s.reserve(region).expect("reserve X again");
            assert!(s.handle_fault(X, 0b10), "demand-map X again");
            user::copy_to_user(X, b"second").expect("write X again");
            drop(context::leave_address_space());
        }
    });
    let after: alloc::vec::Vec<u64> = (0..online).map(|i| tlb::received(i).unwrap_or(0)).collect();
    let ran = space.tlb().ran_on();
    for i in (0..online).filter(|&i| after[i] != before[i]) {
        assert!(
            ran & (1 << i) != 0,
            "IPI to CPU {i}, which never ran the space"
        );
    }
    if a != b {
        assert_eq!(after[b], before[b] + 1, "CPU {b} (lazy) got one shootdown");
        for i in (0..online).filter(|&i| i != b) {
            assert_eq!(after[i], before[i], "CPU {i} never had the space: no IPI");
        }
        assert_eq!(
            tlb::has_user_tables(b),
            Some(false),
            "CPU {b} left the space"
        );
    } else {
        crate::println!("note: tlb_shootdown_and_pcids: one CPU, the IPI part is not exercised");
    }

    // 3. On `b` again: X reads the new bytes, not the old frame through a stale translation.
    on_cpu(b, {
        let s = space.clone();
        move || {
            enter(&s);
            assert_eq!(&read(), b"second", "stale translation of X on CPU {b}");
            drop(context::leave_address_space_lazily());
        }
    });

    // 4. Retirement: `b` still has the space loaded lazily; dropping the last reference takes
    // it off `b` (an IPI where `b` is another CPU) before the tables are freed.
    assert_eq!(space.tlb().loaded_on(), 1 << b);
    let before_b = tlb::received(b).unwrap_or(0);
    assert_eq!(
        Arc::strong_count(&space),
        1,
        "only the test holds the space"
    );
    let pcid = space.tlb().pcid();
    drop(space);
    assert_eq!(
        tlb::has_user_tables(b),
        Some(false),
        "CPU {b} left the retired space"
    );
    if a != b {
        assert_eq!(
            tlb::received(b),
            Some(before_b + 1),
            "CPU {b} got the retirement IPI"
        );
    }
    crate::println!(
        "note: tlb_shootdown_and_pcids: PCIDs {} (the space had PCID {pcid}), shootdown IPIs sent since boot {}",
        if tlb::pcids_on() { "on" } else { "off" },
        tlb::stats().sent
    );
}

/// Synchronous IPC between two processes (`ipc_test` against `ipc_echo`): echoed calls, bad
/// handles, `EPIPE` when the peer is gone; every frame back afterwards.
pub fn user_ipc_call_reply() {
    let (before, after) = frames_back_after(|| {
        let (code, _) = run("ipc_test", 300);
        assert_eq!(code, 0, "ipc_test's failed checks");
    });
    assert_eq!(before, after, "free frame bytes before and after");
    // Pinned to one CPU (the server inherits it), the calls take the fast path: a direct
    // switch each way for almost every call.
    let direct = crate::task::direct_switches();
    let child = process::spawn_on(
        "ipc_test",
        300,
        0,
        Some(veridian_sched::CpuSet::single(0).expect("cpu 0")),
    )
    .expect("spawn ipc_test");
    assert_eq!(child.wait(), 0, "ipc_test's failed checks (pinned)");
    let fast = crate::task::direct_switches() - direct;
    assert!(
        fast >= 2 * 250,
        "only {fast} direct switches for 300 calls on one CPU"
    );
    crate::println!("note: user_ipc_call_reply: {fast} direct switches for 300 pinned calls");
}

/// Spawns `name` with `arg` on `cpus` (all online CPUs if `None`) with `handles` at its first
/// handles.
fn start_with(
    name: &str,
    arg: u64,
    cpus: Option<veridian_sched::CpuSet>,
    handles: &[crate::ipc::Object],
) -> Child {
    process::spawn_on_with(name, arg, 0, cpus, handles)
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"))
}

/// IPC between a client pinned to CPU 0 and an `ipc_echo` server pinned to CPU 1: every call
/// crosses CPUs (the wake-ups go by IPI; no direct switch is possible).
pub fn user_ipc_cross_cpu() {
    use crate::ipc::{Endpoint, KernelHold, Object};
    use veridian_sched::CpuSet;
    if crate::arch::x86_64::percpu::online() < 2 {
        crate::ktest::skip("needs two CPUs, one online");
        return;
    }
    let (before, after) = frames_back_after(|| {
        // Held until both run, so that neither finds itself alone on the endpoint.
        let held = KernelHold::new(Object::Endpoint(alloc::sync::Arc::new(Endpoint::new())));
        let ep = core::slice::from_ref(held.object());
        let server = start_with("ipc_echo", 0, CpuSet::single(1).ok(), ep);
        let client = start_with("ipc_client", 500, CpuSet::single(0).ok(), ep);
        drop(held);
        // Once the client is gone, the server's next receive fails with EPIPE and it ends.
        let codes = (client.wait(), server.wait());
        assert_eq!(
            codes,
            (0, 0),
            "the client's exit code (100 + errno on a failed call), the server's"
        );
    });
    assert_eq!(before, after, "free frame bytes before and after");
}

/// One `ipc_echo` server, eight clients on any CPUs, 200 calls each: every reply goes to the
/// caller it answers (each client checks words unique to it), and the server ends when the
/// last client is gone.
pub fn user_ipc_many_clients() {
    use crate::ipc::{Endpoint, KernelHold, Object};
    let held = KernelHold::new(Object::Endpoint(alloc::sync::Arc::new(Endpoint::new())));
    let ep = core::slice::from_ref(held.object());
    let server = start_with("ipc_echo", 0, None, ep);
    let clients: Vec<Child> = (0..8)
        .map(|_| start_with("ipc_client", 200, None, ep))
        .collect();
    drop(held);
    let codes: Vec<i64> = clients.iter().map(Child::wait).collect();
    let server = server.wait();
    assert_eq!(
        (codes.as_slice(), server),
        (&[0; 8][..], 0),
        "the clients' exit codes (100 + errno on a failed call), the server's"
    );
}

/// Processes killed while blocked in IPC (`ipc_kill`: a caller waiting for a reply, a caller
/// in the queue, a server holding a caller): each ends with `KILLED`, its peers get errors,
/// not hangs, and every frame comes back.
pub fn user_ipc_kill() {
    let (before, after) = frames_back_after(|| {
        let (code, _) = run("ipc_kill", 0);
        assert_eq!(code, 0, "ipc_kill's failed checks");
    });
    assert_eq!(before, after, "free frame bytes before and after");
}

/// Notifications (`notify_test`), and one delivered from an interrupt: once the program has
/// bound user line 3, the test raises the line on this CPU; the interrupt handler signals the
/// notification and the program's blocked wait returns the line's bits.
pub fn user_notifications() {
    use crate::arch::x86_64::irq;
    use crate::ipc::notification;
    const LINE: u8 = 3;
    let before = notification::delivered(LINE);
    let taken = irq::taken();
    let child = start("notify_test", 0);
    let mut waited = 0;
    while !notification::is_bound(LINE) && child.process.exit_code().is_none() && waited < 5000 {
        crate::task::sleep_ms(1);
        waited += 1;
    }
    if !notification::is_bound(LINE) {
        child.process.kill();
        panic!(
            "notify_test never bound line {LINE} (exit code {:?})",
            child.process.exit_code()
        );
    }
    // Let it reach its wait (the wake-up works either way: the bits are kept).
    crate::task::sleep_ms(5);
    assert!(irq::raise(LINE), "raise user line {LINE}");
    assert_eq!(child.wait(), 0, "notify_test's failed checks");
    assert_eq!(irq::taken(), taken + 1, "interrupts taken on user lines");
    assert_eq!(
        notification::delivered(LINE),
        before + 1,
        "interrupts delivered to the line's notification"
    );
    assert!(
        !notification::is_bound(LINE),
        "the binding ended with the notification"
    );
}

/// A shared-memory channel (veridian-io rings in memory two processes map) carries 1 000 000
/// messages in batches of 1 to 37: none lost, duplicated, reordered or corrupted; the
/// channel's memory comes back when both processes end.
pub fn user_channel_million_messages() {
    let (before, after) = frames_back_after(|| {
        let (code, _) = run("chan_test", 1000);
        assert_eq!(code, 0, "chan_test's failed checks (1000 messages)");
    });
    assert_eq!(before, after, "free frame bytes before and after");
    let (code, _) = run("chan_test", 1_000_000);
    assert_eq!(code, 0, "chan_test's failed checks (1 000 000 messages)");
}
