//! The heap as the `#[global_allocator]` of this test binary: the test harness itself and a real
//! workload (collections, strings, threads) run on it.

use std::collections::{BTreeMap, HashMap};

use veridian_alloc::Heap;
use veridian_alloc::hosted::{MmapPages, ThreadSlots};

#[global_allocator]
static HEAP: Heap<MmapPages, ThreadSlots> = Heap::new(MmapPages, ThreadSlots);

#[test]
fn collections_strings_and_threads_run_to_completion() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut words: HashMap<String, usize> = HashMap::new();
                let mut tree = BTreeMap::new();
                let mut v: Vec<Vec<u8>> = Vec::new();
                for i in 0..20_000usize {
                    let w = format!("word-{}-{}", t, i % 997);
                    *words.entry(w.clone()).or_default() += 1;
                    tree.insert(i, w.repeat(1 + i % 5));
                    v.push(vec![(i % 251) as u8; i % 3000]);
                    if i % 7 == 0 {
                        tree.remove(&(i / 2));
                        v.swap_remove(i % v.len());
                    }
                }
                let total: usize = words.values().sum();
                assert_eq!(total, 20_000);
                for bytes in &v {
                    assert!(bytes.iter().all(|&b| b == bytes[0]));
                }
                (words.len(), tree.len(), v.len())
            })
        })
        .collect();
    for h in handles {
        let (w, t, v) = h.join().unwrap();
        assert_eq!(w, 997);
        assert!(t > 0 && v > 0);
    }
    let stats = HEAP.stats();
    let allocations: u64 = stats.classes.iter().map(|c| c.allocations).sum();
    let hits: u64 = stats.classes.iter().map(|c| c.cache_hits).sum();
    assert!(allocations > 100_000, "{allocations}");
    assert!(
        hits as f64 > 0.5 * allocations as f64,
        "hit rate {}",
        hits as f64 / allocations as f64
    );
}
