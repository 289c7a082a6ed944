//! The allocator workloads with veridian-alloc's `Heap` (chunks from `mmap`, one slot per
//! thread) as the global allocator: `alloc-veridian WORKLOAD [--tiny]`.

use veridian_alloc::Heap;
use veridian_alloc::hosted::{MmapPages, ThreadSlots};

#[global_allocator]
static HEAP: Heap<MmapPages, ThreadSlots> = Heap::new(MmapPages, ThreadSlots);

fn main() -> std::process::ExitCode {
    veridian_benches::workloads::main("veridian")
}
