//! The allocator workloads with jemalloc (`tikv-jemallocator`, default settings) as the
//! global allocator: `alloc-jemalloc WORKLOAD [--tiny]`.

#[global_allocator]
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    veridian_benches::workloads::main("jemalloc")
}
