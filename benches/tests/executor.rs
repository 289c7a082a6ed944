//! The fork-join executor gives the sequential results, nests, and passes panics on.

use veridian_benches::executor::tasks::{self, Veridian};
use veridian_benches::executor::{Pool, join};
use veridian_benches::workloads::Rng;

#[test]
fn fork_join_tasks_match_their_sequential_results() {
    let pool = Pool::new(2);
    assert_eq!(pool.threads(), 2);
    for n in [0, 1, 2, 10, 22] {
        assert_eq!(
            pool.install(|| tasks::fib::<Veridian>(n, 5)),
            tasks::fib_sequential(n),
            "fib({n})"
        );
    }
    let values: Vec<u64> = (0..100_000).map(|i| i * 7 + 3).collect();
    let expected = values.iter().sum::<u64>();
    assert_eq!(
        pool.install(|| tasks::sum::<Veridian>(&values, 64)),
        expected
    );
    let mut rng = Rng::new(9);
    let mut data: Vec<u32> = (0..50_000)
        .map(|_| (rng.next_u64() % 1000) as u32)
        .collect();
    let mut sorted = data.clone();
    sorted.sort_unstable();
    pool.install(|| tasks::quicksort::<Veridian, _>(&mut data, 32));
    assert_eq!(data, sorted);
}

#[test]
fn both_workers_run_jobs() {
    let pool = Pool::new(2);
    let names = pool.install(|| {
        // Enough forks with enough work each that the second worker steals some.
        fn spread(depth: u32) -> Vec<String> {
            if depth == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
                return vec![std::thread::current().name().unwrap_or("?").to_owned()];
            }
            let (mut a, b) = join(|| spread(depth - 1), || spread(depth - 1));
            a.extend(b);
            a
        }
        spread(6)
    });
    assert_eq!(names.len(), 64);
    for worker in ["veridian-worker-0", "veridian-worker-1"] {
        assert!(
            names.iter().any(|n| n == worker),
            "{worker} ran nothing: {names:?}"
        );
    }
}

#[test]
fn join_outside_a_pool_runs_both_closures() {
    assert_eq!(join(|| 1, || 2), (1, 2));
    assert_eq!(tasks::fib::<Veridian>(20, 3), tasks::fib_sequential(20));
}

#[test]
fn a_panic_in_a_job_reaches_the_installer_and_the_pool_lives_on() {
    let pool = Pool::new(2);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(|| join(|| 1, || -> u32 { panic!("second half") }))
    }));
    assert!(result.is_err());
    assert_eq!(pool.install(|| tasks::fib::<Veridian>(15, 4)), 610);
}
