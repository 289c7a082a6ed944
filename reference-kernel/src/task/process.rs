//! User processes: an embedded program loaded into its own address space and run by one
//! thread in ring 3, scheduled like every kernel thread.
//!
//! What it does:
//! - [`spawn`] looks a program up among the ones embedded in the kernel image
//!   (`reference-kernel/user/`, built by `build.rs`), validates its ELF (`elf::Program`:
//!   a malformed or hostile image is refused with the parser's message), builds an
//!   [`AddressSpace`] (segments copied in with their permissions, a demand-paged stack under an
//!   unmapped guard page) and starts a thread that enters the space and jumps to ring 3.
//! - A process ends by the `exit` system call, by a fault in user mode (it is killed with one
//!   line naming it, the fault and the address), or by a kernel fault or panic in its thread;
//!   in every case its address space is torn down on the spot (every frame back, counted) and
//!   its exit code recorded ([`KILLED`] unless it exited itself).
//! - Children are remembered per parent until the parent `wait`s for them.
//!
//! No `unsafe`: address spaces are `mm::aspace`'s, ring 3 and the user copies are
//! `arch::x86_64::user`'s.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt::Write;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use reference_kernel::elf;
use veridian_sched::{CpuSet, Priority, Task as _};

use super::{JoinHandle, SpawnError};
use crate::arch::x86_64::context::{self, UserSpace};
use crate::arch::x86_64::hooks::{self, ProcessHooks};
use crate::arch::x86_64::user::{self, UserFault};
use crate::ipc::{HandleTable, Ipc, Object};
use crate::mm::aspace::{AddressSpace, Region, RegionKind, USER_MAP_END};
use crate::process_abi::{self as abi, layout};
use crate::sync::IrqLock;

pub use abi::KILLED;

/// Exit code while the process runs.
const RUNNING: i64 = i64::MIN;

/// A user process.
pub struct Process {
    pid: u64,
    name: String,
    parent: u64,
    /// The address space until the process ends.
    space: IrqLock<Option<Arc<AddressSpace>>>,
    exit_code: AtomicI64,
    /// Frames its address space gave back when it ended.
    frames_returned: AtomicU64,
    /// Its IPC endpoints, by handle.
    handles: IrqLock<HandleTable>,
    /// Its IPC waiter and reply right.
    ipc: Ipc,
}

impl Process {
    /// The exit code once it ended.
    pub fn exit_code(&self) -> Option<i64> {
        let code = self.exit_code.load(Ordering::Acquire);
        (code != RUNNING).then_some(code)
    }
    /// Its IPC handle table.
    pub fn handles(&self) -> &IrqLock<HandleTable> {
        &self.handles
    }

    /// Its IPC state.
    pub fn ipc(&self) -> &Ipc {
        &self.ipc
    }

    /// Frames returned when its address space was torn down (0 while it runs).
    pub fn frames_returned(&self) -> u64 {
        self.frames_returned.load(Ordering::Relaxed)
    }
    /// Its address space while it runs.
    pub fn space(&self) -> Option<Arc<AddressSpace>> {
        self.space.lock().clone()
    }

    /// Ends the process's use of memory: the running thread (the process's own) leaves the
    /// address space, which is then freed; records `code` unless a code is recorded already.
    fn end(&self, code: i64) {
        let first = self
            .exit_code
            .compare_exchange(RUNNING, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first && self.ipc.killed() {
            KILLS_PENDING.fetch_sub(1, Ordering::SeqCst);
        }
        drop(context::leave_address_space());
        // Whoever waits on this process through IPC gets -EPIPE instead of waiting forever.
        self.ipc.end();
        self.handles.lock().close_all();
        let space = self.space.lock().take();
        if let Some(space) = space {
            let held = space.frames();
            match Arc::try_unwrap(space) {
                Ok(space) => {
                    drop(space);
                    self.frames_returned.store(held, Ordering::Relaxed);
                }
                // Someone still looks at it (a `space()` caller): freed when they drop it.
                Err(shared) => drop(shared),
            }
        }
    }
}

/// A process started by [`spawn`]: the process and its thread.
pub struct Child {
    /// The process.
    pub process: Arc<Process>,
    /// Its thread.
    pub thread: JoinHandle,
}

impl Child {
    /// Waits for the process to end; its exit code.
    pub fn wait(&self) -> i64 {
        let _ = self.thread.join();
        self.process.exit_code().unwrap_or(KILLED)
    }
}

/// Why [`spawn`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessError {
    /// No embedded program has that name.
    NoSuchProgram,
    /// The program's ELF was refused (the parser's message).
    BadImage(String),
    /// No memory for the address space.
    OutOfMemory,
    /// The thread could not be started.
    Spawn(SpawnError),
}

impl core::fmt::Display for ProcessError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSuchProgram => write!(f, "no such program"),
            Self::BadImage(m) => write!(f, "bad program image: {m}"),
            Self::OutOfMemory => write!(f, "out of memory"),
            Self::Spawn(e) => write!(f, "{e}"),
        }
    }
}

static NEXT_PID: AtomicU64 = AtomicU64::new(1);
/// Children not yet waited for, by pid.
static CHILDREN: IrqLock<BTreeMap<u64, Child>> =
    IrqLock::new("task::process::CHILDREN", BTreeMap::new());

/// The embedded programs' names.
pub fn programs() -> impl Iterator<Item = &'static str> {
    crate::user_programs::PROGRAMS.iter().map(|(n, _)| *n)
}

/// The embedded ELF image of program `name`.
pub fn image(name: &str) -> Option<&'static [u8]> {
    crate::user_programs::PROGRAMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Builds the address space of `image`: its segments, and the stack below `STACK_TOP` over an
/// unmapped guard page. Returns the space and the entry point.
fn build_space(image: &[u8]) -> Result<(AddressSpace, u64), ProcessError> {
    let program = elf::Program::parse(image, layout::USER_MIN..USER_MAP_END).map_err(|e| {
        let mut s = String::new();
        let _ = write!(s, "{e}");
        ProcessError::BadImage(s)
    })?;
    let space = AddressSpace::new().ok_or(ProcessError::OutOfMemory)?;
    for seg in program.segments() {
        let pages = seg.pages();
        let region = Region {
            start: pages.start,
            end: pages.end,
            writable: seg.writable,
            executable: seg.executable,
            kind: RegionKind::Image,
        };
        space
            .load(region, seg.vaddr - pages.start, seg.file_bytes(image))
            .map_err(|e| match e {
                crate::mm::aspace::AspaceError::OutOfMemory => ProcessError::OutOfMemory,
                other => {
                    let mut s = String::new();
                    let _ = write!(s, "segment at {:#x}: {other}", seg.vaddr);
                    ProcessError::BadImage(s)
                }
            })?;
    }
    space
        .reserve(Region {
            start: layout::STACK_TOP - layout::STACK_SIZE,
            end: layout::STACK_TOP,
            writable: true,
            executable: false,
            kind: RegionKind::Stack,
        })
        .map_err(|_| ProcessError::BadImage("stack overlaps a segment".into()))?;
    Ok((space, program.entry()))
}

/// Starts the embedded program `name` as a process with `arg` in its `rdi`, on any CPU the
/// scheduler picks; `parent` is the parent's pid (0: the kernel).
pub fn spawn(name: &str, arg: u64, parent: u64) -> Result<Child, ProcessError> {
    spawn_on(name, arg, parent, None)
}

/// [`spawn`] with the CPUs the process may run on (`None`: every online CPU).
pub fn spawn_on(
    name: &str,
    arg: u64,
    parent: u64,
    cpus: Option<CpuSet>,
) -> Result<Child, ProcessError> {
    spawn_on_with(name, arg, parent, cpus, &[])
}

/// [`spawn_on`], with `handles[i]` at handle `i` of the child's handle table before it
/// starts (at most `ipc::MAX_HANDLES`; more are left out).
pub fn spawn_on_with(
    name: &str,
    arg: u64,
    parent: u64,
    cpus: Option<CpuSet>,
    handles: &[Object],
) -> Result<Child, ProcessError> {
    let image = image(name).ok_or(ProcessError::NoSuchProgram)?;
    start_image(name, image, arg, parent, cpus, handles)
}

/// Starts the ELF `image` (validated; copied into the new address space) as process `name`.
pub fn spawn_image(name: &str, image: &[u8], arg: u64, parent: u64) -> Result<Child, ProcessError> {
    start_image(name, image, arg, parent, None, &[])
}

fn start_image(
    name: &str,
    image: &[u8],
    arg: u64,
    parent: u64,
    cpus: Option<CpuSet>,
    objects: &[Object],
) -> Result<Child, ProcessError> {
    let (space, entry) = build_space(image)?;
    let mut handles = HandleTable::new();
    for object in objects {
        // The table fills from handle 0 up: object `i` gets handle `i`.
        if handles.insert(object.clone()).is_err() {
            break;
        }
    }
    let space = Arc::new(space);
    let pid = NEXT_PID.fetch_add(1, Ordering::Relaxed);
    // The profiler names ring-3 samples' programs by process id.
    crate::profile::note_process(pid, name);
    let process = Arc::new(Process {
        pid,
        name: name.into(),
        parent,
        space: IrqLock::new("task::process::Process::space", Some(space.clone())),
        exit_code: AtomicI64::new(RUNNING),
        frames_returned: AtomicU64::new(0),
        handles: IrqLock::new("task::process::Process::handles", handles),
        ipc: Ipc::new(),
    });
    let cpus = match cpus {
        Some(c) => c,
        None => super::all_online_cpus().ok_or(ProcessError::Spawn(SpawnError::NotReady))?,
    };
    let thread = super::spawn_for(
        "user",
        cpus,
        Priority::Normal,
        Some(process.clone()),
        move || {
            let space: Arc<dyn UserSpace> = space;
            if context::enter_address_space(space, pid) {
                user::enter_user(entry, layout::STACK_TOP, arg);
            }
        },
    )
    .map_err(ProcessError::Spawn)?;
    Ok(Child { process, thread })
}

/// The running thread's process.
pub fn current() -> Option<Arc<Process>> {
    super::current().and_then(|t| t.process.clone())
}

/// The running thread's process id: the tag its address space was entered with, one per-CPU
/// load (the `getpid` path).
pub fn current_pid() -> Option<u64> {
    let pid = context::current_tag();
    (pid != 0).then_some(pid)
}

/// Ends the calling process with `code` (the `exit` system call). Returns only if the caller
/// is not a process.
pub fn exit(code: i64) {
    let Some(p) = current() else {
        return;
    };
    p.end(code);
    drop(p);
    super::finish(Ok(()));
}

/// Called by the thread's end (any way it ends): the process ends too, as killed unless it
/// exited or was killed already (a kernel panic or fault in its thread is reported here).
pub(super) fn thread_ending(process: &Process, outcome: &Result<(), super::ThreadError>) {
    if process.exit_code().is_none()
        && let Err(e) = outcome
    {
        crate::println!(
            "process {} `{}` ended by the kernel: {e}",
            process.pid,
            process.name
        );
    }
    process.end(KILLED);
}

/// Starts `name` as a child of the calling process, on the CPUs the caller may use (children
/// inherit their parent's affinity); its pid.
pub(super) fn spawn_child(name: &str, arg: u64, handles: &[Object]) -> Result<u64, ProcessError> {
    let parent = current().map_or(0, |p| p.pid);
    let cpus = super::current().map(|t| *t.affinity());
    let child = spawn_on_with(name, arg, parent, cpus, handles)?;
    let pid = child.process.pid;
    CHILDREN.lock().insert(pid, child);
    Ok(pid)
}

/// Waits for the calling process's child `pid`; its exit code, `None` if it is not a child of
/// the caller (or was waited for already).
pub(super) fn wait_child(pid: u64) -> Option<i64> {
    let me = current().map_or(0, |p| p.pid);
    let child = {
        let mut children = CHILDREN.lock();
        match children.get(&pid) {
            Some(c) if c.process.parent == me => children.remove(&pid),
            _ => None,
        }
    }?;
    Some(child.wait())
}

/// Processes killed ([`Process::kill`]) that have not ended yet: while 0, the check at the end
/// of a blocking system call is one load.
static KILLS_PENDING: AtomicU64 = AtomicU64::new(0);

impl Process {
    /// Kills the process: a thread blocked in IPC or a notification wait is woken at once, and
    /// its blocking system call (that one or its next) ends the process with [`KILLED`]
    /// instead of returning; a thread running in ring 3 ends at the next timer interrupt that
    /// returns to it. Idempotent.
    pub fn kill(&self) {
        if self.exit_code().is_some() {
            return;
        }
        // Counted before the cancellation, so the woken thread's check sees it.
        KILLS_PENDING.fetch_add(1, Ordering::SeqCst);
        if !self.ipc.cancel() {
            KILLS_PENDING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// `kill(pid)`: kills the calling process's child `pid`; `-ESRCH` if it is none.
pub(super) fn kill_child(pid: u64) -> Result<(), i64> {
    let me = current().map_or(0, |p| p.pid);
    let child = CHILDREN
        .lock()
        .get(&pid)
        .filter(|c| c.process.parent == me)
        .map(|c| c.process.clone())
        .ok_or(abi::errno::ESRCH)?;
    child.kill();
    Ok(())
}

/// Ends the calling process with [`KILLED`] if it was killed (the end of every blocking
/// system call, and the timer's return to ring 3).
#[inline(always)]
pub(super) fn exit_if_killed() {
    if KILLS_PENDING.load(Ordering::SeqCst) != 0 {
        exit_if_killed_slow();
    }
}

#[cold]
#[inline(never)]
fn exit_if_killed_slow() {
    if current().is_some_and(|p| p.ipc.killed()) {
        exit(KILLED);
    }
}

/// The user-fault hook: a fault in user mode kills the process.
fn user_fault(fault: &UserFault) {
    let Some(p) = current() else {
        return;
    };
    crate::println!("process {} `{}` killed: {fault}", p.pid, p.name);
    p.end(KILLED);
    let mut s = String::new();
    let _ = write!(s, "process {} `{}`: {fault}", p.pid, p.name);
    drop(p);
    super::finish(Err(super::ThreadError::Faulted(s)));
}

static HOOKS: ProcessHooks = ProcessHooks {
    syscalls: &super::syscall::TABLE,
    user_fault,
    user_irq: crate::ipc::notification::irq_fired,
    user_interrupted: exit_if_killed,
};

/// Registers the process layer with the architecture layer (system calls,
/// user faults). Once, after `task::init`.
pub fn init() {
    hooks::register_process(&HOOKS);
}
