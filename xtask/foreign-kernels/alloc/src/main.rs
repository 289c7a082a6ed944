//! A foreign kernel using veridian-alloc alone: its `Heap` is the `#[global_allocator]`, fed
//! with frames from the PVH memory map through the crate's own `FrameAllocator`, and `alloc`'s
//! collections run on it. The glue (`glue.rs`) is the `PageSource` over the frames and the
//! one-CPU `CpuLocal`.

#![no_std]
#![no_main]

extern crate alloc;

#[macro_use]
#[path = "../../boot/boot.rs"]
mod boot;
mod glue;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use veridian_alloc::{Heap, HeapConfig};

static FRAMES: glue::Frames = glue::Frames::new();

/// 1 MiB chunks (the smallest page-source request for small objects), one CPU slot.
const CONFIG: HeapConfig = match HeapConfig::DEFAULT.with_chunk_size(1 << 20) {
    Some(config) => config,
    None => panic!("1 MiB is a valid chunk size"),
};

#[global_allocator]
static HEAP: Heap<&glue::Frames, glue::ThisCpu, 1> =
    Heap::with_config(&FRAMES, glue::ThisCpu, CONFIG);

pub fn kmain(start_info: u64) {
    let ram = FRAMES.init_from_pvh(start_info);
    println!("alloc: {} MiB of frames from the PVH memory map", ram >> 20);
    let free_at_start = FRAMES.free_bytes();

    // Vec: growth by reallocation, contents kept.
    let mut squares: Vec<u64> = Vec::new();
    for i in 0..100_000u64 {
        squares.push(i * i);
    }
    assert!(
        squares
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (i as u64) * (i as u64))
    );
    println!("alloc: Vec of 100000 u64 grown by push, contents kept");

    // Box: alignment and size of a large-aligned value.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let boxes: Vec<Box<Page>> = (0..64).map(|i| Box::new(Page([i as u8; 4096]))).collect();
    for (i, page) in boxes.iter().enumerate() {
        assert_eq!((&raw const **page).addr() % 4096, 0, "misaligned Box");
        assert!(page.0.iter().all(|&b| b == i as u8));
    }
    drop(boxes);
    println!("alloc: 64 page-aligned Box<[u8; 4096]>, aligned and distinct");

    // BTreeMap with String values: many small objects of several classes.
    let mut map = BTreeMap::new();
    for key in (0..5000u32).rev() {
        map.insert(key, format!("value {key}"));
    }
    for key in (0..5000).step_by(2) {
        assert_eq!(map.remove(&key), Some(format!("value {key}")));
    }
    assert_eq!(map.len(), 2500);
    assert!(map.keys().copied().eq((1..5000).step_by(2)));
    let joined: String = map.values().take(3).map(String::as_str).collect();
    assert_eq!(joined, "value 1value 3value 5");
    println!("alloc: BTreeMap<u32, String>: 5000 inserts, 2500 removes, order kept");

    // A 3 MiB block: above half a chunk, so the page source serves it directly.
    let free_before = FRAMES.free_bytes();
    let direct_before = HEAP.stats().direct_live;
    let big = alloc::vec![0xa5u8; 3 << 20];
    assert!(big.iter().all(|&b| b == 0xa5));
    assert_eq!(HEAP.stats().direct_live, direct_before + 1);
    assert!(FRAMES.free_bytes() <= free_before - (3 << 20));
    drop(big);
    assert_eq!(HEAP.stats().direct_live, direct_before);
    assert_eq!(
        FRAMES.free_bytes(),
        free_before,
        "the direct block's frames did not come back"
    );
    println!("alloc: 3 MiB Vec served by the page source directly, its frames back after drop");

    drop((squares, map, joined));
    HEAP.trim();
    let stats = HEAP.stats();
    assert_eq!(stats.live_small_bytes(), 0, "small objects still live");
    assert_eq!(stats.large_live, 0);
    assert_eq!(stats.failed_allocations, 0);
    let given = FRAMES.chunks_given.load(Ordering::Relaxed);
    let back = FRAMES.chunks_taken_back.load(Ordering::Relaxed);
    assert!(
        given > 1 && back > 0,
        "the page source was not used both ways"
    );
    let held = FRAMES.free_bytes().abs_diff(free_at_start);
    assert!(
        held <= CONFIG.chunk_size() * CONFIG.chunks_kept(),
        "{held} bytes not given back"
    );
    println!(
        "alloc: everything freed and trimmed: {given} chunks given, {back} back, {} KiB kept",
        held >> 10
    );
}
