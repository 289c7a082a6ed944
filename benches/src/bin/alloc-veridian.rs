//! The allocator workloads with veridian-alloc's `Heap` as the global allocator, set up as a
//! hosted program would: chunks from `mmap` with transparent huge pages asked for
//! (`MmapHugePages`), free chunks kept up to the peak (`HeapConfig::HOSTED`), one slot per
//! thread: `alloc-veridian WORKLOAD [--tiny]`.

use veridian_alloc::hosted::{MmapHugePages, ThreadSlots};
use veridian_alloc::{Heap, HeapConfig};

#[global_allocator]
static HEAP: Heap<MmapHugePages, ThreadSlots> =
    Heap::with_config(MmapHugePages, ThreadSlots, HeapConfig::HOSTED);

fn main() -> std::process::ExitCode {
    veridian_benches::workloads::main("veridian")
}
