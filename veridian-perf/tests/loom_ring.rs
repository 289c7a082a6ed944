//! loom model of the profiler's SPSC sample ring: every interleaving of one producer and one
//! consumer, through wrap-around and overflow. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p veridian-perf --test loom_ring`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use veridian_perf::profiler::ring::SampleRing;

/// A two-word record: a torn copy would show different words.
type Rec = [u64; 2];

/// loom's DPOR remembers only the last access to each atomic, so when the consumer runs first
/// it may never try the producer first (seen here: one execution). Each model therefore runs
/// twice, once with the consumer (main thread) first and once with it yielding to the producer
/// first, as veridian-sync's loom models do.
fn producer_consumer(main_yields: bool) {
    loom::model(move || {
        const SENT: u64 = 3;
        let ring: Arc<SampleRing<Rec, 2>> = Arc::new(SampleRing::new());
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut accepted = 0;
                for seq in 1..=SENT {
                    // SAFETY: this thread is the only producer.
                    if unsafe { ring.push_unchecked(&[seq, seq]) } {
                        accepted += 1;
                    }
                }
                accepted
            })
        };
        let mut got = Vec::new();
        if main_yields {
            thread::yield_now();
        }
        for _ in 0..2 {
            // SAFETY: this thread is the only consumer.
            if let Some(r) = unsafe { ring.pop_unchecked() } {
                got.push(r);
            }
        }
        let accepted = producer.join().unwrap();
        // SAFETY: the producer has finished; this thread is the only consumer.
        while let Some(r) = unsafe { ring.pop_unchecked() } {
            got.push(r);
        }
        for r in &got {
            assert_eq!(r[0], r[1], "torn record");
        }
        assert!(
            got.windows(2).all(|w| w[0][0] < w[1][0]),
            "out of order: {got:?}"
        );
        assert_eq!(got.len() as u64, accepted);
        assert_eq!(
            accepted + ring.dropped(),
            SENT,
            "every record is delivered or counted"
        );
    });
}

#[test]
fn loom_ring_producer_consumer_wraps_and_overflows() {
    producer_consumer(false);
}

#[test]
fn loom_ring_producer_first() {
    producer_consumer(true);
}

#[test]
fn loom_ring_split_hands_out_one_pair() {
    loom::model(|| {
        let ring: Arc<SampleRing<u64, 2>> = Arc::new(SampleRing::new());
        let r2 = ring.clone();
        let t = thread::spawn(move || r2.split().is_some());
        let here = ring.split().is_some();
        let there = t.join().unwrap();
        assert!(here ^ there, "exactly one split succeeds");
    });
}
