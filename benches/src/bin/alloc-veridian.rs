//! The allocator workloads with veridian-alloc's `Heap` as the global allocator, set up as a
//! hosted program would: chunks from `mmap` with transparent huge pages asked for
//! (`MmapHugePages`), free chunks kept up to the peak (`HeapConfig::HOSTED`), one slot per
//! thread, remote frees returned to their owner slot (`Heap`'s `OWNER_RETURN` parameter) in
//! batches that an exiting thread sends at once (`flush_at_thread_exit`):
//! `alloc-veridian WORKLOAD [--tiny]`.

use veridian_alloc::hosted::{MmapHugePages, ThreadSlots, flush_at_thread_exit};
use veridian_alloc::{DEFAULT_CPUS, Heap, HeapConfig, SpinLock};

#[global_allocator]
static HEAP: Heap<MmapHugePages, ThreadSlots, DEFAULT_CPUS, SpinLock, true> =
    Heap::with_config(MmapHugePages, ThreadSlots, HeapConfig::HOSTED);

fn main() -> std::process::ExitCode {
    // The first and only registration: it cannot find the table full.
    assert!(flush_at_thread_exit(&HEAP));
    veridian_benches::workloads::main("veridian")
}
