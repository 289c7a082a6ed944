//! loom models of the Chase–Lev deque: owner against one thief, and two thieves.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p veridian-sched --test loom_deque`
//! (with its own target directory, e.g. `CARGO_TARGET_DIR=target/loom`). Models use a
//! preemption bound of 3 unless `LOOM_MAX_PREEMPTIONS` is set.
//!
//! What is checked, in every interleaving and weak-memory outcome loom explores within the
//! bound: every pushed value is taken exactly once (by the owner's pops, a thief's steal, or
//! left in the deque and counted at the end), never duplicated, never lost; a steal never
//! returns a value that was not pushed (which a stale slot read that won its CAS would). A
//! capacity of 2 with three pushes makes the ring wrap and the full check matter.

#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use veridian_sched::deque::{ChaseLev, Steal};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Values 1..=n; a steal loops on `Retry` (bounded: each retry follows someone's success).
fn steal_one(q: &ChaseLev<usize>) -> Option<usize> {
    loop {
        match q.steal() {
            Steal::Success(v) => return Some(v),
            Steal::Empty => return None,
            Steal::Retry => thread::yield_now(),
        }
    }
}

fn check_exactly_once(taken: &[usize], pushed: &[usize]) {
    let mut taken = taken.to_vec();
    taken.sort_unstable();
    let mut pushed = pushed.to_vec();
    pushed.sort_unstable();
    assert_eq!(taken, pushed, "values lost or duplicated");
}

#[test]
fn owner_vs_one_thief() {
    model(|| {
        let q = Arc::new(ChaseLev::<usize>::new(2));
        let thief = {
            let q = q.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    if let Some(v) = steal_one(&q) {
                        got.push(v);
                    }
                }
                got
            })
        };
        let mut taken = Vec::new();
        let mut pushed = Vec::new();
        // SAFETY: this thread is the only owner.
        unsafe {
            for v in 1..=3 {
                if q.push(v).is_ok() {
                    pushed.push(v);
                }
                if v == 2 {
                    if let Some(x) = q.pop() {
                        taken.push(x);
                    }
                }
            }
            while let Some(x) = q.pop() {
                taken.push(x);
            }
        }
        taken.extend(thief.join().unwrap());
        check_exactly_once(&taken, &pushed);
    });
}

#[test]
fn owner_pops_last_element_against_thief() {
    model(|| {
        let q = Arc::new(ChaseLev::<usize>::new(2));
        // SAFETY: this thread is the only owner.
        unsafe { q.push(7).unwrap() };
        let thief = {
            let q = q.clone();
            thread::spawn(move || steal_one(&q))
        };
        // SAFETY: as above.
        let mine = unsafe { q.pop() };
        let theirs = thief.join().unwrap();
        // Exactly one side gets the single element.
        assert!(mine.is_some() != theirs.is_some(), "{mine:?} {theirs:?}");
        assert_eq!(mine.or(theirs), Some(7));
    });
}

#[test]
fn two_thieves() {
    model(|| {
        let q = Arc::new(ChaseLev::<usize>::new(2));
        // SAFETY: this thread is the only owner.
        unsafe {
            q.push(1).unwrap();
            q.push(2).unwrap();
        }
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || steal_one(&q))
            })
            .collect();
        let mut taken: Vec<usize> = thieves
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        // SAFETY: as above; the thieves are done.
        while let Some(v) = unsafe { q.pop() } {
            taken.push(v);
        }
        check_exactly_once(&taken, &[1, 2]);
    });
}

#[test]
fn two_thieves_and_owner_pushing() {
    model(|| {
        let q = Arc::new(ChaseLev::<usize>::new(2));
        // SAFETY: this thread is the only owner.
        unsafe { q.push(1).unwrap() };
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || steal_one(&q))
            })
            .collect();
        let mut pushed = vec![1];
        // SAFETY: as above.
        if unsafe { q.push(2) }.is_ok() {
            pushed.push(2);
        }
        let mut taken: Vec<usize> = thieves
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        // SAFETY: as above.
        while let Some(v) = unsafe { q.pop() } {
            taken.push(v);
        }
        check_exactly_once(&taken, &pushed);
    });
}
