//! The allocator workloads with mimalloc (the `mimalloc` crate, default settings) as the
//! global allocator: `alloc-mimalloc WORKLOAD [--tiny]`.

#[global_allocator]
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    veridian_benches::workloads::main("mimalloc")
}
