//! The heap's shadow model (shared by `tests/heap_model.rs` and the fuzz target
//! `fuzz/fuzz_targets/heap.rs`): random operation sequences checked against a map of live
//! blocks (every block aligned, inside memory the page source gave, never overlapping a live
//! block, contents preserved until freed and across realloc), then everything freed and
//! reclaimed.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;

use veridian_alloc::Heap;
use veridian_alloc::hosted::ThreadSlots;

use super::RecordingPages;

pub type TestHeap<'a> = Heap<&'a RecordingPages, ThreadSlots, 4>;

#[derive(Debug, Clone)]
pub enum Op {
    /// A new block of `size` bytes aligned to `1 << align_log2`.
    Alloc { size: usize, align_log2: u32 },
    /// Frees the live block `pick % live`.
    Free { pick: usize },
    /// Grows or shrinks the live block `pick % live` to `size` bytes.
    Realloc { pick: usize, size: usize },
}

/// Live blocks by address: (layout, fill byte).
#[derive(Default)]
struct Model {
    live: BTreeMap<usize, (Layout, u8)>,
    next_fill: u8,
}

impl Model {
    fn check_new(&self, pages: &RecordingPages, ptr: *mut u8, layout: Layout) {
        let a = ptr as usize;
        assert!(!ptr.is_null(), "allocation of {layout:?} failed");
        assert_eq!(
            a % layout.align(),
            0,
            "{a:#x} not aligned to {}",
            layout.align()
        );
        let len = layout.size();
        assert!(
            pages.contains(a, len),
            "{a:#x}+{len} outside the page source's chunks"
        );
        if let Some((&b, &(l, _))) = self.live.range(..=a).next_back() {
            assert!(
                b + l.size() <= a,
                "{a:#x} overlaps live block {b:#x}+{}",
                l.size()
            );
        }
        if let Some((&b, _)) = self.live.range(a..).next() {
            assert!(a + len <= b, "{a:#x}+{len} overlaps live block {b:#x}");
        }
    }

    fn fill(&mut self, ptr: *mut u8, size: usize) -> u8 {
        self.next_fill = self.next_fill.wrapping_add(1).max(1);
        // SAFETY: the block is live and `size` bytes long.
        unsafe { std::ptr::write_bytes(ptr, self.next_fill, size) };
        self.next_fill
    }

    fn pick(&self, pick: usize) -> Option<(usize, Layout, u8)> {
        if self.live.is_empty() {
            return None;
        }
        let (&a, &(l, f)) = self.live.iter().nth(pick % self.live.len()).unwrap();
        Some((a, l, f))
    }
}

/// Panics unless `size` bytes at `ptr` all hold `fill`.
pub fn verify(ptr: *mut u8, size: usize, fill: u8) {
    // SAFETY: the block is live and at least `size` bytes long.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, size) };
    if let Some(i) = bytes.iter().position(|&b| b != fill) {
        panic!(
            "block {ptr:p}: byte {i} is {:#x}, expected {fill:#x}",
            bytes[i]
        );
    }
}

/// Runs `ops` on a fresh heap over a page source limited to 1 GiB, checking every result
/// against the model; then frees everything and checks every chunk went back.
pub fn run(ops: &[Op]) {
    let pages = RecordingPages::new(1 << 30);
    let mut heap: TestHeap<'_> = Heap::new(&pages, ThreadSlots);
    let mut model = Model::default();
    for op in ops {
        match *op {
            Op::Alloc { size, align_log2 } => {
                let layout = Layout::from_size_align(size, 1 << align_log2).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { heap.alloc(layout) };
                model.check_new(&pages, p, layout);
                let fill = model.fill(p, size);
                model.live.insert(p as usize, (layout, fill));
            }
            Op::Free { pick } => {
                if let Some((a, layout, fill)) = model.pick(pick) {
                    verify(a as *mut u8, layout.size(), fill);
                    model.live.remove(&a);
                    // SAFETY: a live block of this layout.
                    unsafe { heap.dealloc(a as *mut u8, layout) };
                }
            }
            Op::Realloc { pick, size } => {
                if let Some((a, layout, fill)) = model.pick(pick) {
                    model.live.remove(&a);
                    // SAFETY: a live block of this layout; size is non-zero and small.
                    let p = unsafe { heap.realloc(a as *mut u8, layout, size) };
                    let new_layout = Layout::from_size_align(size, layout.align()).unwrap();
                    model.check_new(&pages, p, new_layout);
                    verify(p, layout.size().min(size), fill);
                    let fill = model.fill(p, size);
                    model.live.insert(p as usize, (new_layout, fill));
                }
            }
        }
    }
    let stats = heap.stats();
    let live_small: u64 = stats.classes.iter().map(|c| c.live_objects).sum();
    assert_eq!(
        live_small + stats.large_live,
        model.live.len() as u64,
        "live count in stats"
    );
    for (&a, &(layout, fill)) in &model.live {
        verify(a as *mut u8, layout.size(), fill);
        // SAFETY: a live block of this layout.
        unsafe { heap.dealloc(a as *mut u8, layout) };
    }
    heap.reclaim_all();
    let stats = heap.stats();
    assert!(
        stats
            .classes
            .iter()
            .all(|c| c.live_objects == 0 && c.slabs == 0),
        "{stats:?}"
    );
    assert_eq!(stats.large_live, 0);
    assert_eq!(stats.chunks_held, 0, "chunks still held after reclaim_all");
    assert_eq!(pages.live_bytes(), 0, "page source still has chunks out");
}
