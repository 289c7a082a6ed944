//! `Heap` against the shadow model of `tests/heap_model.rs` (the same model and checks: no
//! overlap, alignment, contents kept across realloc, every chunk back after `reclaim_all`),
//! driven by operation sequences the fuzzer picks.
#![no_main]

#[allow(dead_code, missing_docs)]
#[path = "../../tests/common/mod.rs"]
mod common;

use common::heap_model::{Op, run};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// At most this many operations per input: with sizes up to 1 MiB (a 1 MiB buddy block each)
/// the model's 1 GiB page source never runs out, so every allocation must succeed.
const MAX_OPS: usize = 400;

#[derive(Arbitrary, Debug)]
enum FuzzOp {
    Alloc { size: Size, align_log2: u8 },
    Free { pick: u16 },
    Realloc { pick: u16, size: Size },
}

/// A size in one of the heap's ranges: small and medium classes, buddy blocks.
#[derive(Arbitrary, Debug)]
enum Size {
    Small(u8),
    Medium(u16),
    Large(u32),
}

impl Size {
    fn bytes(&self) -> usize {
        match *self {
            Size::Small(n) => 1 + usize::from(n),
            Size::Medium(n) => 257 + usize::from(n) % (8192 - 256),
            Size::Large(n) => 8193 + n as usize % (1 << 20),
        }
    }
}

fuzz_target!(|ops: Vec<FuzzOp>| {
    let ops: Vec<Op> = ops
        .iter()
        .take(MAX_OPS)
        .map(|op| match op {
            FuzzOp::Alloc { size, align_log2 } => Op::Alloc {
                size: size.bytes(),
                align_log2: u32::from(align_log2 % 14),
            },
            FuzzOp::Free { pick } => Op::Free {
                pick: usize::from(*pick),
            },
            FuzzOp::Realloc { pick, size } => Op::Realloc {
                pick: usize::from(*pick),
                size: size.bytes(),
            },
        })
        .collect();
    run(&ops);
});
