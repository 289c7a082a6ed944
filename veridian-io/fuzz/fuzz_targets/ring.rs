//! veridian-io's SPSC ring (`Producer`/`Consumer`, and `OverflowProducer` in front of it)
//! against a `VecDeque`: every push, batch push, pop and batch pop gives what the model gives,
//! in FIFO order, with the same lengths; the counters start near `usize::MAX` when the fuzzer
//! asks, so they wrap. Entries own heap memory (`Vec<u8>`), so a lost, duplicated or
//! double-dropped entry is a leak or use-after-free that AddressSanitizer reports.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use veridian_io::ring::{OverflowProducer, Ring};

#[derive(Arbitrary, Debug)]
struct Input {
    capacity_log2: u8,
    start_near_wrap: bool,
    overflow: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Push,
    PushIter(u8),
    PushSlice(u8),
    Pop,
    PopBatch(u8),
    Flush,
}

fuzz_target!(|input: Input| {
    let capacity = 1usize << (input.capacity_log2 % 8);
    let start = if input.start_near_wrap {
        usize::MAX - capacity * 3 / 2
    } else {
        0
    };
    let (tx, mut rx) = Ring::<Vec<u8>>::with_start(capacity, start)
        .unwrap()
        .split();
    assert_eq!(rx.capacity(), capacity);
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut next = 0u32;
    let mut value = || {
        next += 1;
        next.to_le_bytes().to_vec()
    };
    let pop_check = |got: Option<Vec<u8>>, model: &mut VecDeque<Vec<u8>>| {
        assert_eq!(got, model.pop_front());
    };
    if input.overflow {
        let mut tx = OverflowProducer::new(tx);
        for op in input.ops.iter().take(2000) {
            match *op {
                Op::Push | Op::PushIter(_) | Op::PushSlice(_) => {
                    let v = value();
                    model.push_back(v.clone());
                    let _ = tx.push(v);
                }
                // Entries in the overflow list reach the consumer only after a push or flush
                // moved them into the ring.
                Op::Pop => match rx.pop() {
                    Some(v) => pop_check(Some(v), &mut model),
                    None => assert_eq!(model.len(), tx.overflow_pending()),
                },
                Op::PopBatch(max) => {
                    let mut got = Vec::new();
                    rx.pop_batch(usize::from(max), |v| got.push(v));
                    for v in got {
                        pop_check(Some(v), &mut model);
                    }
                }
                Op::Flush => {
                    tx.flush();
                }
            }
            assert_eq!(rx.len() + tx.overflow_pending(), model.len());
            assert_eq!(rx.overflow_pending(), tx.overflow_pending());
        }
        while tx.flush() > 0 || !rx.is_empty() {
            rx.pop_batch(usize::MAX, |v| pop_check(Some(v), &mut model));
        }
    } else {
        let mut tx = tx;
        for op in input.ops.iter().take(2000) {
            match *op {
                Op::Push => {
                    let v = value();
                    match tx.push(v.clone()) {
                        Ok(()) => model.push_back(v),
                        Err(back) => {
                            assert_eq!(back, v);
                            assert_eq!(model.len(), capacity, "push refused with room left");
                        }
                    }
                }
                Op::PushIter(n) => {
                    let values: Vec<Vec<u8>> = (0..n).map(|_| value()).collect();
                    let mut iter = values.clone().into_iter();
                    let pushed = tx.push_iter(&mut iter);
                    assert_eq!(pushed, usize::from(n).min(capacity - model.len()));
                    model.extend(values[..pushed].iter().cloned());
                    assert_eq!(
                        iter.as_slice(),
                        &values[pushed..],
                        "iterator advanced too far"
                    );
                }
                Op::PushSlice(n) => {
                    let values: Vec<Vec<u8>> = (0..n).map(|_| value()).collect();
                    let pushed = tx.push_slice(&values);
                    assert_eq!(pushed, usize::from(n).min(capacity - model.len()));
                    model.extend(values[..pushed].iter().cloned());
                }
                Op::Pop => pop_check(rx.pop(), &mut model),
                Op::PopBatch(max) => {
                    let mut got = Vec::new();
                    let n = rx.pop_batch(usize::from(max), |v| got.push(v));
                    assert_eq!(n, got.len());
                    assert_eq!(n, usize::from(max).min(model.len()));
                    for v in got {
                        pop_check(Some(v), &mut model);
                    }
                }
                Op::Flush => {}
            }
            assert_eq!(rx.len(), model.len());
            assert_eq!(tx.len(), model.len());
            assert_eq!(tx.free(), capacity - model.len());
            assert_eq!(tx.is_full(), model.len() == capacity);
            assert_eq!(rx.is_empty(), model.is_empty());
        }
    }
    // Whatever is left is dropped with the ring: AddressSanitizer's leak check sees a lost entry.
});
