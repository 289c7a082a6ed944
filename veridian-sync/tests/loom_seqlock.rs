//! Loom models of the seqlock protocol: a reader never accepts a torn value, never goes
//! backwards, and writers never lose an update, in every interleaving loom explores (with its
//! model of the C++11 memory model: Relaxed/Acquire/Release loads, stores, RMWs and fences).
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p veridian-sync --release --test loom_seqlock`
//!
//! # Mutations these models catch
//! Each of these, applied alone, makes at least one model fail: the reader skipping the
//! sequence check; no Acquire fence in the reader (F_r); no Release fence in the writer (F_w);
//! the reader's first sequence load Relaxed (R1); the writer's final store Relaxed (W3); the
//! writer not making the sequence odd (W1); `write_with` without the writer lock.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use veridian_sync::seqlock::SeqLock;

/// Runs `f` under loom with at most `bound` preemptions per execution, unless
/// `LOOM_MAX_PREEMPTIONS` asks for another bound. Unbounded exploration of these models does
/// not finish in minutes; small bounds find most bugs in practice (the CHESS work on iterative
/// context bounding), and the bounds below were chosen so that each test finishes in seconds in
/// release mode while still catching the mutations listed at the top of this file.
fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    builder.check(f);
}

fn consistent(v: &[u64; 3]) -> bool {
    v[0] == v[1] && v[1] == v[2]
}

/// One writer writing twice, one reader making two single attempts, three-word value.
#[test]
fn try_read_never_torn() {
    model(4, || {
        let lock = Arc::new(SeqLock::new([0u64; 3]));
        let writer = {
            let lock = lock.clone();
            thread::spawn(move || {
                lock.write([1; 3]);
                lock.write([2; 3]);
            })
        };
        let mut last = 0;
        for _ in 0..2 {
            if let Some(v) = lock.try_read() {
                assert!(consistent(&v), "torn read {v:?}");
                assert!(v[0] >= last, "read went backwards");
                last = v[0];
            }
        }
        writer.join().unwrap();
        assert_eq!(lock.try_read(), Some([2; 3]));
    });
}

/// The retrying `read` against one write of a two-word value (a value of 12 bytes: one word and
/// one `u32` chunk), and `read_or_lock` with no optimistic attempt.
#[test]
fn read_never_torn() {
    model(6, || {
        let lock = Arc::new(SeqLock::new([0u32; 3]));
        let writer = {
            let lock = lock.clone();
            thread::spawn(move || lock.write([7; 3]))
        };
        let v = lock.read();
        assert!(v == [0; 3] || v == [7; 3], "torn read {v:?}");
        let w = lock.read_or_lock(0);
        assert!(w == [0; 3] || w == [7; 3], "torn locked read {w:?}");
        assert!(w[0] >= v[0]);
        writer.join().unwrap();
    });
}

/// Two writers with `write_with` (read-modify-write on a private copy) and a reader.
#[test]
fn writers_serialise_and_reader_sees_whole_writes() {
    model(6, || {
        let lock = Arc::new(SeqLock::new([0u64; 2]));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let lock = lock.clone();
                thread::spawn(move || {
                    lock.write_with(|v| {
                        v[0] += 1;
                        v[1] += 1;
                    })
                })
            })
            .collect();
        if let Some(v) = lock.try_read() {
            assert_eq!(v[0], v[1], "torn read {v:?}");
        }
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(lock.try_read(), Some([2, 2]));
    });
}
