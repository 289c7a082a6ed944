//! Criterion benchmark: [`ObjectPool`] acquire+release against boxing a fresh object.
//!
//! Group `object_pool`, ids `object_pool/<variant>/1` (one object per iteration):
//! - `veridian`: `acquire` from an `ObjectPool<Object>` (hosted `ThreadSlots`, nodes from the
//!   system allocator, though on a hit no allocation happens), write one byte, drop the guard
//!   (the reset hook clears `len`, and the object goes back to this thread's magazine).
//! - `box_system`: `Box::new` of a fresh, zeroed `Object` with the system allocator (glibc
//!   `malloc`/`free`), write one byte, drop.
//! - `box_veridian_alloc`: the same with `allocator_api2::boxed::Box::new_in` on veridian-alloc's
//!   `Heap<MmapPages, ThreadSlots>` (the hosted back-ends, as in `benches/alloc.rs`).
//!
//! `Object` is 256 bytes: a length and a 248-byte buffer. Boxing builds a new one each time (a
//! 256-byte zeroing) as code without a pool must; the pool hands back a built one and its reset
//! hook only clears the length, which is the pattern's point.

use std::alloc::System;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use veridian_alloc::Heap;
use veridian_alloc::hosted::{MmapPages, ThreadSlots};
use veridian_alloc::pool::ObjectPool;

/// A 256-byte object: a length and a buffer.
#[repr(C)]
struct Object {
    len: usize,
    data: [u8; 248],
}

const _: () = assert!(size_of::<Object>() == 256);

fn new_object() -> Object {
    Object {
        len: 0,
        data: [0; 248],
    }
}

fn reset_object(o: &mut Object) {
    o.len = 0;
}

/// The work done with the object in every variant: append one byte.
#[inline]
fn touch(o: &mut Object) {
    o.data[o.len] = 1;
    o.len += 1;
}

static HEAP: Heap<MmapPages, ThreadSlots> = Heap::new(MmapPages, ThreadSlots);

type Pool = ObjectPool<Object, fn() -> Object, fn(&mut Object), ThreadSlots, System>;

static POOL: Pool = ObjectPool::new(ThreadSlots, System, new_object, reset_object);

fn object_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("object_pool");
    group.bench_function(BenchmarkId::new("veridian", 1), |b| {
        b.iter(|| {
            let mut o = POOL.acquire().expect("out of memory");
            touch(&mut o);
            black_box(&mut *o);
        })
    });
    group.bench_function(BenchmarkId::new("box_system", 1), |b| {
        b.iter(|| {
            let mut o = Box::new(new_object());
            touch(&mut o);
            black_box(&mut *o);
        })
    });
    group.bench_function(BenchmarkId::new("box_veridian_alloc", 1), |b| {
        b.iter(|| {
            let mut o = allocator_api2::boxed::Box::new_in(new_object(), &HEAP);
            touch(&mut o);
            black_box(&mut *o);
        })
    });
    group.finish();
    // A sanity check, not a measurement: the `veridian` variant should have run from the cache.
    // It only warns, and only when that variant ran at all: a filter (`cargo bench -- <filter>`)
    // may have skipped it, and `--test`/`--list` run it once or not at all.
    let stats = POOL.stats();
    if stats.hits + stats.misses > 1 && stats.hits <= stats.misses {
        eprintln!(
            "warning: the object_pool/veridian benchmark did not run from the cache: {stats:?}"
        );
    }
}

criterion_group!(benches, object_pool);
criterion_main!(benches);
