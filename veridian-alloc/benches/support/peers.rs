//! The allocators `benches/alloc.rs` and `examples/alloc_ab.rs` compare, set up once: our
//! [`Heap`] (with and without owner return), glibc, mimalloc, jemalloc, and three allocators
//! over a 512 MiB `MAP_NORESERVE` arena each: `talc` (`TalcLock` with `spinning_top`'s spin
//! lock), `linked_list` (`linked_list_allocator::LockedHeap`), `buddy_system`
//! (`buddy_system_allocator::LockedHeap<33>`). None is the process's global allocator.

use std::alloc::System;
use std::sync::OnceLock;

use veridian_alloc::hosted::{MmapPages, ThreadSlots};
use veridian_alloc::{DEFAULT_CPUS, Heap, SpinLock};

pub static VERIDIAN: Heap<MmapPages, ThreadSlots> = Heap::new(MmapPages, ThreadSlots);
pub static VERIDIAN_OWNER: Heap<MmapPages, ThreadSlots, DEFAULT_CPUS, SpinLock, true> =
    Heap::new(MmapPages, ThreadSlots);
pub static SYSTEM: System = System;
pub static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub type Talc = talc::TalcLock<spinning_top::RawSpinlock, talc::source::Claim>;
pub type LinkedList = linked_list_allocator::LockedHeap;
pub type BuddySystem = buddy_system_allocator::LockedHeap<33>;

/// Size of each arena handed to the arena-based peers.
const ARENA_BYTES: usize = 512 << 20;

/// A fresh, untouched anonymous `MAP_NORESERVE` mapping of `bytes` (leaked); also the
/// footprint example's arenas.
pub fn arena(bytes: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing has no
    // preconditions; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap of the arena failed");
    p.cast()
}

pub fn talc() -> &'static Talc {
    static T: OnceLock<&'static Talc> = OnceLock::new();
    T.get_or_init(|| {
        // SAFETY: the arena is a fresh mapping of ARENA_BYTES that nothing else uses, leaked for
        // the life of the process, as `Talc::claim` requires.
        let source = unsafe { talc::source::Claim::new(arena(ARENA_BYTES), ARENA_BYTES) };
        Box::leak(Box::new(Talc::new(source)))
    })
}

pub fn linked_list() -> &'static LinkedList {
    static L: OnceLock<&'static LinkedList> = OnceLock::new();
    L.get_or_init(|| {
        let heap: &'static LinkedList = Box::leak(Box::new(LinkedList::empty()));
        // SAFETY: the arena is a fresh, leaked mapping used by nothing else; init runs once.
        unsafe { heap.lock().init(arena(ARENA_BYTES), ARENA_BYTES) };
        heap
    })
}

pub fn buddy_system() -> &'static BuddySystem {
    static B: OnceLock<&'static BuddySystem> = OnceLock::new();
    B.get_or_init(|| {
        let heap: &'static BuddySystem = Box::leak(Box::new(BuddySystem::new()));
        // SAFETY: the arena is a fresh, leaked mapping used by nothing else; init runs once.
        unsafe { heap.lock().init(arena(ARENA_BYTES) as usize, ARENA_BYTES) };
        heap
    })
}

/// Runs `$f(group, name, allocator)` for every allocator, in the same order everywhere (the
/// statics and functions above must be in scope where it is used).
macro_rules! each_allocator {
    ($f:ident, $group:expr) => {{
        $f($group, "veridian", &VERIDIAN);
        $f($group, "veridian_owner", &VERIDIAN_OWNER);
        $f($group, "system", &SYSTEM);
        $f($group, "mimalloc", &MIMALLOC);
        $f($group, "jemalloc", &JEMALLOC);
        $f($group, "talc", talc());
        $f($group, "linked_list", linked_list());
        $f($group, "buddy_system", buddy_system());
    }};
}
pub(crate) use each_allocator;
