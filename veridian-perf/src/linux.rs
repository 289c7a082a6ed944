//! Linux `perf_event_open` counter groups for the calling thread (feature `std`).
//!
//! **What it does.** [`PerfGroup::open`] opens up to [`MAX_GROUP`] events as one group (the
//! first is the leader, created disabled; the others join it), so the kernel schedules them
//! onto the PMU together and one `read(2)` of the leader with `PERF_FORMAT_GROUP` returns every
//! count, taken at the same moment, with the enabled/running times. Hardware events are the
//! crate's four [`Event`]s; software events ([`SoftwareEvent`]) are counted by the kernel and
//! exist on every machine, including VMs without a virtual PMU.
//!
//! **Why `libc` and not the `perf-event2` crate.** We need five things (`perf_event_open`,
//! three `ioctl`s, one `read`) and full control over the read format and the error mapping;
//! `libc` is already in the dependency tree of every hosted Rust program, while `perf-event2`
//! brings its own generated bindings and builders. The benchmark compares the two side by
//! side (`counter_read`).
//!
//! **What it guarantees.** An event the machine cannot count gives
//! [`LinuxPerfError::NotSupported`] naming the event (the kernel answers `ENOENT`,
//! `EOPNOTSUPP` or `ENODEV` for hardware events on a machine without hardware counters), never
//! a group that silently reads zero. Counting includes the kernel when allowed; when
//! `perf_event_paranoid` forbids it (`EACCES`/`EPERM`), the group is reopened user-only and
//! [`PerfGroup::scope`] says so (user-only counts miss kernel work: context switches then
//! read 0). The file descriptors are closed on drop.

use core::fmt;
use std::io;

use crate::pmu::Event;

/// The most events in one group.
pub const MAX_GROUP: usize = 8;

/// Events the kernel counts in software.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SoftwareEvent {
    /// CPU time of the task, in nanoseconds (`PERF_COUNT_SW_TASK_CLOCK`).
    TaskClock,
    /// Page faults (`PERF_COUNT_SW_PAGE_FAULTS`).
    PageFaults,
    /// Context switches (`PERF_COUNT_SW_CONTEXT_SWITCHES`).
    ContextSwitches,
}

/// An event `perf_event_open` can count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinuxEvent {
    /// A hardware event (`PERF_TYPE_HARDWARE`).
    Hardware(Event),
    /// A software event (`PERF_TYPE_SOFTWARE`).
    Software(SoftwareEvent),
}

impl LinuxEvent {
    /// `(type, config)` for `perf_event_attr`.
    fn type_config(self) -> (u32, u64) {
        match self {
            // PERF_TYPE_HARDWARE = 0; PERF_COUNT_HW_CPU_CYCLES 0, INSTRUCTIONS 1,
            // CACHE_MISSES 3, BRANCH_MISSES 5.
            LinuxEvent::Hardware(e) => (
                0,
                match e {
                    Event::Cycles => 0,
                    Event::Instructions => 1,
                    Event::CacheMisses => 3,
                    Event::BranchMisses => 5,
                },
            ),
            // PERF_TYPE_SOFTWARE = 1; TASK_CLOCK 1, PAGE_FAULTS 2, CONTEXT_SWITCHES 3.
            LinuxEvent::Software(s) => (
                1,
                match s {
                    SoftwareEvent::TaskClock => 1,
                    SoftwareEvent::PageFaults => 2,
                    SoftwareEvent::ContextSwitches => 3,
                },
            ),
        }
    }
}

impl fmt::Display for LinuxEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinuxEvent::Hardware(e) => write!(f, "{e}"),
            LinuxEvent::Software(SoftwareEvent::TaskClock) => f.write_str("task-clock"),
            LinuxEvent::Software(SoftwareEvent::PageFaults) => f.write_str("page-faults"),
            LinuxEvent::Software(SoftwareEvent::ContextSwitches) => f.write_str("context-switches"),
        }
    }
}

/// What the group counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// User and kernel mode.
    UserAndKernel,
    /// User mode only (`perf_event_paranoid` refused kernel counting).
    UserOnly,
}

/// Errors from the Linux back-end.
#[derive(Debug)]
pub enum LinuxPerfError {
    /// This machine cannot count the event (no hardware counters, or an unknown event).
    NotSupported(LinuxEvent),
    /// The kernel has no `perf_event_open` (`ENOSYS`, or blocked by seccomp).
    NoPerfEvents,
    /// `perf_event_paranoid` or a security module forbids counting the event at all.
    PermissionDenied(LinuxEvent),
    /// A group needs between 1 and [`MAX_GROUP`] events.
    BadGroupSize(usize),
    /// The kernel returned fewer bytes or another number of counts than asked for.
    ShortRead,
    /// Any other error from the kernel.
    Os(io::Error),
}

impl fmt::Display for LinuxPerfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinuxPerfError::NotSupported(e) => write!(f, "{e}: not supported on this machine"),
            LinuxPerfError::NoPerfEvents => f.write_str("perf_event_open is not available"),
            LinuxPerfError::PermissionDenied(e) => {
                write!(f, "{e}: permission denied (perf_event_paranoid)")
            }
            LinuxPerfError::BadGroupSize(n) => {
                write!(f, "a group needs 1..={MAX_GROUP} events, not {n}")
            }
            LinuxPerfError::ShortRead => f.write_str("short read from a perf event group"),
            LinuxPerfError::Os(e) => write!(f, "perf_event_open: {e}"),
        }
    }
}

impl std::error::Error for LinuxPerfError {}

/// `struct perf_event_attr` up to `config1` (`PERF_ATTR_SIZE_VER0`, 64 bytes): every kernel
/// since 2.6.31 accepts it and zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const ATTR_FLAG_DISABLED: u64 = 1 << 0;
const ATTR_FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
const ATTR_FLAG_EXCLUDE_HV: u64 = 1 << 6;
const FORMAT_TOTAL_TIME_ENABLED: u64 = 1 << 0;
const FORMAT_TOTAL_TIME_RUNNING: u64 = 1 << 1;
const FORMAT_GROUP: u64 = 1 << 3;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
/// `_IO('$', 0)`, `_IO('$', 1)`, `_IO('$', 3)`.
const IOC_ENABLE: libc::c_ulong = 0x2400;
const IOC_DISABLE: libc::c_ulong = 0x2401;
const IOC_RESET: libc::c_ulong = 0x2403;
const IOC_FLAG_GROUP: libc::c_ulong = 1;

fn open_one(
    event: LinuxEvent,
    group_fd: libc::c_int,
    scope: Scope,
    leader: bool,
    read_format: u64,
) -> Result<libc::c_int, io::Error> {
    let (type_, config) = event.type_config();
    let mut flags = ATTR_FLAG_EXCLUDE_HV;
    if leader {
        flags |= ATTR_FLAG_DISABLED;
    }
    if scope == Scope::UserOnly {
        flags |= ATTR_FLAG_EXCLUDE_KERNEL;
    }
    let attr = PerfEventAttr {
        type_,
        size: core::mem::size_of::<PerfEventAttr>() as u32,
        config,
        read_format,
        flags,
        ..PerfEventAttr::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares, alive for the call;
    // pid 0 / cpu -1 is "this thread, any CPU"; the other arguments are plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            0 as libc::pid_t,
            -1 as libc::c_int,
            group_fd,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd as libc::c_int)
    }
}

fn map_error(event: LinuxEvent, e: io::Error) -> LinuxPerfError {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV) => LinuxPerfError::NotSupported(event),
        Some(libc::ENOSYS) => LinuxPerfError::NoPerfEvents,
        Some(libc::EACCES | libc::EPERM) => LinuxPerfError::PermissionDenied(event),
        _ => LinuxPerfError::Os(e),
    }
}

/// An open group of counters for the calling thread (module docs).
#[derive(Debug)]
pub struct PerfGroup {
    fds: [libc::c_int; MAX_GROUP],
    events: [LinuxEvent; MAX_GROUP],
    len: usize,
    scope: Scope,
}

/// One read of a group: the counts and how long the group was enabled and on the PMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxReading {
    events: [LinuxEvent; MAX_GROUP],
    values: [u64; MAX_GROUP],
    len: usize,
    /// Nanoseconds the group was enabled.
    pub time_enabled: u64,
    /// Nanoseconds the group was actually counting (less than enabled when multiplexed).
    pub time_running: u64,
}

impl LinuxReading {
    /// `(event, count)` in the group's order.
    pub fn iter(&self) -> impl Iterator<Item = (LinuxEvent, u64)> + '_ {
        self.events[..self.len]
            .iter()
            .copied()
            .zip(self.values[..self.len].iter().copied())
    }

    /// The count of the first slot that counts `event`.
    pub fn get(&self, event: LinuxEvent) -> Option<u64> {
        self.iter().find(|&(e, _)| e == event).map(|(_, v)| v)
    }
}

impl PerfGroup {
    /// Opens `events` (1..=[`MAX_GROUP`]) as one group for the calling thread, disabled.
    pub fn open(events: &[LinuxEvent]) -> Result<Self, LinuxPerfError> {
        if events.is_empty() || events.len() > MAX_GROUP {
            return Err(LinuxPerfError::BadGroupSize(events.len()));
        }
        match Self::open_scoped(events, Scope::UserAndKernel) {
            Err(LinuxPerfError::PermissionDenied(_)) => Self::open_scoped(events, Scope::UserOnly),
            other => other,
        }
    }

    fn open_scoped(events: &[LinuxEvent], scope: Scope) -> Result<Self, LinuxPerfError> {
        let mut group = Self {
            fds: [-1; MAX_GROUP],
            events: [events[0]; MAX_GROUP],
            len: 0,
            scope,
        };
        // A lone event is read without PERF_FORMAT_GROUP: the kernel's group read walks the
        // sibling list under the event's child mutex, which a single counter does not need
        // (measured: `counter_read` in docs/benchmarks/perf.md).
        let mut read_format = FORMAT_TOTAL_TIME_ENABLED | FORMAT_TOTAL_TIME_RUNNING;
        if events.len() > 1 {
            read_format |= FORMAT_GROUP;
        }
        for (i, &e) in events.iter().enumerate() {
            let leader = if i == 0 { -1 } else { group.fds[0] };
            // On error `group` is dropped, closing what was opened.
            let fd =
                open_one(e, leader, scope, i == 0, read_format).map_err(|err| map_error(e, err))?;
            group.fds[i] = fd;
            group.events[i] = e;
            group.len = i + 1;
        }
        Ok(group)
    }

    /// What the group counts.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The events, in order.
    pub fn events(&self) -> &[LinuxEvent] {
        &self.events[..self.len]
    }

    fn ioctl_group(&self, request: libc::c_ulong) -> Result<(), LinuxPerfError> {
        // SAFETY: fds[0] is the open leader; these perf ioctls take an integer argument.
        let r = unsafe { libc::ioctl(self.fds[0], request as _, IOC_FLAG_GROUP) };
        if r < 0 {
            Err(LinuxPerfError::Os(io::Error::last_os_error()))
        } else {
            Ok(())
        }
    }

    /// Starts every counter of the group.
    pub fn enable(&self) -> Result<(), LinuxPerfError> {
        self.ioctl_group(IOC_ENABLE)
    }

    /// Stops every counter of the group (counts stay readable).
    pub fn disable(&self) -> Result<(), LinuxPerfError> {
        self.ioctl_group(IOC_DISABLE)
    }

    /// Zeroes every counter of the group.
    pub fn reset(&self) -> Result<(), LinuxPerfError> {
        self.ioctl_group(IOC_RESET)
    }

    /// Reads every counter with one `read(2)` of the leader.
    pub fn read(&self) -> Result<LinuxReading, LinuxPerfError> {
        if self.len == 1 {
            // value, time_enabled, time_running.
            let mut buf = [0u64; 3];
            // SAFETY: `buf` is writable for its 24 bytes; fds[0] is open.
            let got = unsafe {
                libc::read(
                    self.fds[0],
                    buf.as_mut_ptr().cast(),
                    core::mem::size_of_val(&buf),
                )
            };
            if got < 0 {
                return Err(LinuxPerfError::Os(io::Error::last_os_error()));
            }
            if got as usize != core::mem::size_of_val(&buf) {
                return Err(LinuxPerfError::ShortRead);
            }
            let mut values = [0u64; MAX_GROUP];
            values[0] = buf[0];
            return Ok(LinuxReading {
                events: self.events,
                values,
                len: 1,
                time_enabled: buf[1],
                time_running: buf[2],
            });
        }
        // nr, time_enabled, time_running, values[nr].
        let mut buf = [0u64; 3 + MAX_GROUP];
        let want = (3 + self.len) * core::mem::size_of::<u64>();
        // SAFETY: `buf` is writable for `want <= size_of_val(&buf)` bytes; fds[0] is open.
        let got = unsafe { libc::read(self.fds[0], buf.as_mut_ptr().cast(), want) };
        if got < 0 {
            return Err(LinuxPerfError::Os(io::Error::last_os_error()));
        }
        if got as usize != want || buf[0] as usize != self.len {
            return Err(LinuxPerfError::ShortRead);
        }
        let mut values = [0u64; MAX_GROUP];
        values[..self.len].copy_from_slice(&buf[3..3 + self.len]);
        Ok(LinuxReading {
            events: self.events,
            values,
            len: self.len,
            time_enabled: buf[1],
            time_running: buf[2],
        })
    }
}

impl Drop for PerfGroup {
    fn drop(&mut self) {
        // Members first, leader last.
        for &fd in self.fds[..self.len].iter().rev() {
            // SAFETY: each fd was returned by perf_event_open and is closed exactly once here.
            unsafe { libc::close(fd) };
        }
    }
}
