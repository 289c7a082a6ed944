//! The allocator workloads with the system allocator (glibc's malloc) as the global
//! allocator: `alloc-glibc WORKLOAD [--tiny]`.

#[global_allocator]
static SYSTEM: std::alloc::System = std::alloc::System;

fn main() -> std::process::ExitCode {
    veridian_benches::workloads::main("glibc")
}
