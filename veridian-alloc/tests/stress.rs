//! Multi-threaded stress with real threads: cross-thread frees (producers allocate, consumers
//! free), every block tagged with a unique id so a block handed out twice is caught, and at the
//! end every page goes back to the page source.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

use common::RecordingPages;
use veridian_alloc::hosted::ThreadSlots;
use veridian_alloc::{Heap, SpinLock};

const PER_PRODUCER: usize = 40_000;

fn layout_for(i: usize) -> Layout {
    let size = match i % 10 {
        0..=5 => 16 + (i * 13) % 240,
        6..=8 => 256 + (i * 101) % 7900,
        _ => 9000 + (i * 977) % 60_000,
    };
    Layout::from_size_align(size, 8).unwrap()
}

fn tag(p: *mut u8, layout: Layout, id: u64) {
    // SAFETY: a live block of at least 16 bytes (the smallest layout above).
    unsafe {
        (p as *mut u64).write(id);
        (p.add(layout.size() - 8) as *mut u64).write_unaligned(!id);
    }
}

fn check(p: *mut u8, layout: Layout, id: u64) {
    // SAFETY: as in `tag`.
    let (a, b) = unsafe {
        (
            (p as *const u64).read(),
            (p.add(layout.size() - 8) as *const u64).read_unaligned(),
        )
    };
    assert_eq!(
        (a, b),
        (id, !id),
        "block {p:p} was overwritten: handed out twice?"
    );
}

#[test]
fn producers_allocate_consumers_free() {
    producers_allocate_consumers_free_with::<false>();
}

/// The same with remote frees returned to their owner (every consumer free is one).
#[test]
fn producers_allocate_consumers_free_owner_return() {
    producers_allocate_consumers_free_with::<true>();
}

fn producers_allocate_consumers_free_with<const OWNER_RETURN: bool>() {
    let pages = RecordingPages::new(2 << 30);
    let mut heap: Heap<&RecordingPages, ThreadSlots, 64, SpinLock, OWNER_RETURN> =
        Heap::new(&pages, ThreadSlots);
    std::thread::scope(|s| {
        let heap = &heap;
        for producer in 0..2u64 {
            let (tx, rx) = mpsc::sync_channel::<(usize, u64, usize)>(1024);
            s.spawn(move || {
                for i in 0..PER_PRODUCER {
                    let layout = layout_for(i);
                    // SAFETY: non-zero size.
                    let p = unsafe { heap.alloc(layout) };
                    assert!(!p.is_null());
                    let id = producer << 32 | i as u64;
                    tag(p, layout, id);
                    tx.send((p as usize, id, i)).unwrap();
                    // Some local churn too.
                    if i % 3 == 0 {
                        let l = layout_for(i + 1);
                        // SAFETY: alloc and free of the same layout.
                        unsafe { heap.dealloc(heap.alloc(l), l) };
                    }
                }
            });
            s.spawn(move || {
                for (p, id, i) in rx {
                    let layout = layout_for(i);
                    check(p as *mut u8, layout, id);
                    // SAFETY: the producer gave us this live block of this layout.
                    unsafe { heap.dealloc(p as *mut u8, layout) };
                }
                heap.trim();
            });
        }
    });
    let stats = heap.stats();
    assert!(
        stats.classes.iter().all(|c| c.live_objects == 0),
        "{stats:?}"
    );
    assert_eq!(stats.large_live, 0);
    heap.reclaim_all();
    let stats = heap.stats();
    assert!(stats.classes.iter().all(|c| c.slabs == 0), "{stats:?}");
    assert_eq!(pages.live_bytes(), 0, "pages leaked: {stats:?}");
}

#[test]
fn many_threads_share_and_exchange_objects() {
    many_threads_share_and_exchange_objects_with::<false>();
}

/// The same with remote frees returned to their owner (the shared slot's included).
#[test]
fn many_threads_share_and_exchange_objects_owner_return() {
    many_threads_share_and_exchange_objects_with::<true>();
}

fn many_threads_share_and_exchange_objects_with<const OWNER_RETURN: bool>() {
    // More threads than heap slots (8): the extra ones use the shared, locked slot.
    let pages = RecordingPages::new(2 << 30);
    let mut heap: Heap<&RecordingPages, ThreadSlots, 8, SpinLock, OWNER_RETURN> =
        Heap::new(&pages, ThreadSlots);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, u64)>();
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|s| {
        let heap = &heap;
        let rx = &rx;
        for t in 0..12u64 {
            let tx = tx.clone();
            s.spawn(move || {
                let layout = Layout::from_size_align(48, 16).unwrap();
                for i in 0..5_000u64 {
                    // SAFETY: non-zero size.
                    let p = unsafe { heap.alloc(layout) };
                    assert_eq!(p as usize % 16, 0);
                    let id = t << 32 | i;
                    tag(p, layout, id);
                    tx.send((p as usize, id)).unwrap();
                    if let Ok((q, qid)) = rx.lock().unwrap().try_recv() {
                        check(q as *mut u8, layout, qid);
                        // SAFETY: a live block of this layout, ours now.
                        unsafe { heap.dealloc(q as *mut u8, layout) };
                    }
                }
            });
        }
    });
    drop(tx);
    let layout = Layout::from_size_align(48, 16).unwrap();
    for (q, qid) in rx.into_inner().unwrap() {
        check(q as *mut u8, layout, qid);
        // SAFETY: a live block of this layout.
        unsafe { heap.dealloc(q as *mut u8, layout) };
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
    assert_eq!(pages.live_bytes(), 0);
}
