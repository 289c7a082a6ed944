//! The `perf_event_open` back-end: software events must count here; hardware events either
//! count (a machine with a PMU) or report "not supported" cleanly (this build machine, VMs).

use std::hint::black_box;
use std::time::Duration;

use veridian_perf::linux::{
    LinuxEvent, LinuxPerfError, MAX_GROUP, PerfGroup, Scope, SoftwareEvent,
};
use veridian_perf::pmu::Event;

const TASK_CLOCK: LinuxEvent = LinuxEvent::Software(SoftwareEvent::TaskClock);
const PAGE_FAULTS: LinuxEvent = LinuxEvent::Software(SoftwareEvent::PageFaults);
const CTX_SWITCHES: LinuxEvent = LinuxEvent::Software(SoftwareEvent::ContextSwitches);

fn spin(iterations: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..iterations {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

#[test]
fn software_group_counts_cpu_time_faults_and_switches() {
    let g = PerfGroup::open(&[TASK_CLOCK, PAGE_FAULTS, CTX_SWITCHES])
        .expect("software events exist everywhere");
    assert_eq!(g.events(), [TASK_CLOCK, PAGE_FAULTS, CTX_SWITCHES]);
    let before = g.read().unwrap();
    assert_eq!(before.get(TASK_CLOCK), Some(0), "created disabled");
    g.enable().unwrap();

    let r0 = g.read().unwrap();
    black_box(spin(5_000_000));
    let r1 = g.read().unwrap();
    assert!(
        r1.get(TASK_CLOCK).unwrap() > r0.get(TASK_CLOCK).unwrap(),
        "task-clock increases while spinning"
    );
    assert!(r1.time_enabled > 0 && r1.time_running > 0);

    // Fresh pages: a large zeroed allocation is a new mapping; touching it faults.
    const LEN: usize = 8 << 20;
    let mut v: Vec<u8> = vec![0; LEN];
    let r2 = g.read().unwrap();
    for i in (0..LEN).step_by(4096) {
        v[i] = 1;
    }
    black_box(&v);
    let r3 = g.read().unwrap();
    assert!(
        r3.get(PAGE_FAULTS).unwrap() > r2.get(PAGE_FAULTS).unwrap(),
        "page-faults increase when touching fresh pages"
    );

    let c0 = r3.get(CTX_SWITCHES).unwrap();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let r4 = g.read().unwrap();
    if g.scope() == Scope::UserAndKernel {
        assert!(r4.get(CTX_SWITCHES).unwrap() > c0, "sleeping switches out");
    }

    // Disabled counters stand still; reset zeroes them.
    g.disable().unwrap();
    let d0 = g.read().unwrap();
    black_box(spin(1_000_000));
    let d1 = g.read().unwrap();
    assert_eq!(d0.get(TASK_CLOCK), d1.get(TASK_CLOCK));
    g.reset().unwrap();
    assert!(g.read().unwrap().iter().all(|(_, v)| v == 0));
}

#[test]
fn hardware_events_count_or_are_cleanly_unsupported() {
    for e in Event::ALL {
        let ev = LinuxEvent::Hardware(e);
        match PerfGroup::open(&[ev]) {
            Ok(g) => {
                // A machine with hardware counters: they must count.
                g.enable().unwrap();
                black_box(spin(1_000_000));
                let r = g.read().unwrap();
                if matches!(e, Event::Cycles | Event::Instructions) {
                    assert!(r.get(ev).unwrap() > 0, "{e} counted nothing");
                }
            }
            Err(LinuxPerfError::NotSupported(got)) => {
                assert_eq!(got, ev);
                assert!(
                    LinuxPerfError::NotSupported(got)
                        .to_string()
                        .contains("not supported")
                );
            }
            Err(other) => panic!("{e}: expected a count or NotSupported, got {other:?}"),
        }
    }
}

#[test]
fn a_mixed_group_names_the_event_the_machine_lacks() {
    let hw = LinuxEvent::Hardware(Event::Cycles);
    match PerfGroup::open(&[TASK_CLOCK, hw]) {
        Ok(g) => assert_eq!(g.events(), [TASK_CLOCK, hw]),
        Err(LinuxPerfError::NotSupported(got)) => assert_eq!(got, hw),
        Err(other) => panic!("{other:?}"),
    }
}

#[test]
fn group_size_is_checked() {
    assert!(matches!(
        PerfGroup::open(&[]),
        Err(LinuxPerfError::BadGroupSize(0))
    ));
    let many = [TASK_CLOCK; MAX_GROUP + 1];
    assert!(
        matches!(PerfGroup::open(&many), Err(LinuxPerfError::BadGroupSize(n)) if n == MAX_GROUP + 1)
    );
    // A group of one (read without PERF_FORMAT_GROUP) counts too.
    let one = PerfGroup::open(&[TASK_CLOCK]).unwrap();
    one.enable().unwrap();
    black_box(spin(1_000_000));
    let r = one.read().unwrap();
    assert!(r.get(TASK_CLOCK).unwrap() > 0 && r.time_enabled > 0);
    // A full group of MAX_GROUP works.
    let g = PerfGroup::open(&[TASK_CLOCK; MAX_GROUP]).unwrap();
    assert_eq!(g.read().unwrap().iter().count(), MAX_GROUP);
}
