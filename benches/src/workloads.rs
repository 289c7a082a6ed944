//! Allocator workloads in the style of mimalloc-bench, run by the `alloc-*` binaries (one per
//! global allocator) and, at a tiny size, by this package's tests.
//!
//! Each workload returns a checksum that depends only on the work done, never on addresses,
//! thread timing or the allocator: every allocator must print the same one (the runner and the
//! tests compare them).

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::mpsc;
use std::thread;

use serde_json::{Map, Value};

/// How much work a workload does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// A few milliseconds: for tests (debug builds included).
    Tiny,
    /// The measured size: about 0.3–2 s per run with glibc's allocator on the 2-core machine
    /// the figures in `docs/benchmarks/programs.md` come from.
    Full,
}

/// One workload: its name (the binaries' argument), how many threads it runs at once (the
/// runner pins single-threaded workloads to one CPU) and its function.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// The name given on the command line.
    pub name: &'static str,
    /// Threads allocating at the same time (1: the runner pins the process to CPU 0).
    pub threads: usize,
    /// Runs the workload and returns its checksum.
    pub run: fn(Size) -> u64,
}

/// Every workload, in the order the runner measures them.
pub const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "larson",
        threads: LARSON_THREADS,
        run: larson,
    },
    Workload {
        name: "xmalloc",
        threads: 2,
        run: xmalloc,
    },
    Workload {
        name: "cache-scratch",
        threads: SCRATCH_THREADS,
        run: cache_scratch,
    },
    Workload {
        name: "json",
        threads: 1,
        run: json,
    },
    Workload {
        name: "compiler",
        threads: 1,
        run: compiler,
    },
];

/// The workload called `name`.
pub fn find(name: &str) -> Option<Workload> {
    WORKLOADS.iter().copied().find(|w| w.name == name)
}

/// The `main` of an `alloc-<allocator>` binary: `alloc-<allocator> WORKLOAD [--tiny]` runs the
/// workload and prints `WORKLOAD checksum=0x... allocator=<allocator>` (the line the runner
/// checks). Exit status 2 on a bad command line.
pub fn main(allocator: &str) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, size) = match args.as_slice() {
        [name] => (name.as_str(), Size::Full),
        [name, tiny] if tiny == "--tiny" => (name.as_str(), Size::Tiny),
        _ => {
            eprintln!(
                "usage: alloc-{allocator} WORKLOAD [--tiny]; workloads: {}",
                names()
            );
            return std::process::ExitCode::from(2);
        }
    };
    let Some(workload) = find(name) else {
        eprintln!("unknown workload `{name}`; workloads: {}", names());
        return std::process::ExitCode::from(2);
    };
    let checksum = (workload.run)(size);
    println!("{name} checksum={checksum:#018x} allocator={allocator}");
    std::process::ExitCode::SUCCESS
}

/// The workload names, comma-separated (for messages).
pub fn names() -> String {
    WORKLOADS.map(|w| w.name).join(", ")
}

/// SplitMix64: a small deterministic generator (the workloads must do the same work on every
/// allocator, so no randomness from the environment).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; the small modulo bias does not matter here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Mixes `value` into `hash` (FNV-1a over the value's bytes).
fn mix(hash: u64, value: u64) -> u64 {
    value.to_le_bytes().iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A block of `size` bytes (capacity) whose first 8 bytes hold `tag`.
fn tagged_block(size: usize, tag: u64) -> Vec<u8> {
    let mut block = Vec::with_capacity(size.max(8));
    block.extend_from_slice(&tag.to_le_bytes());
    block
}

/// The tag [`tagged_block`] wrote.
fn tag_of(block: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&block[..8]);
    u64::from_le_bytes(bytes)
}

const LARSON_THREADS: usize = 2;

/// Larson (Larson and Krishnan's server simulation, as in mimalloc-bench): each of
/// [`LARSON_THREADS`] threads owns an array of slots and, many times, frees a random slot's
/// block and puts a new block of a random size (16..=1024 B) there. Threads live for one
/// round; the next round's thread `t` inherits the slots of the previous round's thread
/// `t + 1`, so most frees are of blocks another thread allocated (the first round's come from
/// the main thread, which filled the slots).
pub fn larson(size: Size) -> u64 {
    let (slots, rounds, ops) = match size {
        Size::Tiny => (64, 3, 500),
        Size::Full => (1000, 60, 250_000),
    };
    let mut rng = Rng::new(1);
    let mut sets: Vec<Vec<Vec<u8>>> = (0..LARSON_THREADS)
        .map(|t| {
            (0..slots)
                .map(|i| tagged_block(16 + rng.below(1009), (t * slots + i) as u64))
                .collect()
        })
        .collect();
    let mut checksum = 0u64;
    for round in 0..rounds {
        // Thread t takes the slots of thread t + 1 of the previous round.
        sets.rotate_left(1);
        let handles: Vec<_> = sets
            .drain(..)
            .enumerate()
            .map(|(t, mut blocks)| {
                thread::spawn(move || {
                    let mut rng = Rng::new(((round as u64) << 32) | t as u64);
                    let mut sum = 0u64;
                    for op in 0..ops {
                        let i = rng.below(blocks.len());
                        let size = 16 + rng.below(1009);
                        let old = std::mem::replace(
                            &mut blocks[i],
                            tagged_block(size, ((round * ops + op) as u64) << 8 | t as u64),
                        );
                        sum = sum.wrapping_add(tag_of(&old));
                    }
                    (blocks, sum)
                })
            })
            .collect();
        for handle in handles {
            let (blocks, sum) = handle.join().expect("larson thread panicked");
            checksum = checksum.wrapping_add(sum);
            sets.push(blocks);
        }
    }
    for block in sets.iter().flatten() {
        checksum = checksum.wrapping_add(tag_of(block));
    }
    checksum
}

/// Like xmalloc-test: one thread allocates blocks (16..=512 B, random sizes) and sends them in
/// batches of 256 through a bounded channel to a second thread, which checks and frees them.
/// Every block is freed by a thread other than the one that allocated it.
pub fn xmalloc(size: Size) -> u64 {
    const BATCH: usize = 256;
    let batches = match size {
        Size::Tiny => 20,
        Size::Full => 40_000,
    };
    let (send, receive) = mpsc::sync_channel::<Vec<Vec<u8>>>(8);
    let producer = thread::spawn(move || {
        let mut rng = Rng::new(2);
        for b in 0..batches {
            let batch = (0..BATCH)
                .map(|i| tagged_block(16 + rng.below(497), (b * BATCH + i) as u64))
                .collect();
            send.send(batch).expect("the consumer hung up");
        }
    });
    let consumer = thread::spawn(move || {
        let mut sum = 0u64;
        let mut blocks = 0u64;
        for batch in receive {
            for block in batch {
                sum = sum.wrapping_add(tag_of(&block).wrapping_mul(block.capacity() as u64 | 1));
                blocks += 1;
            }
        }
        mix(sum, blocks)
    });
    producer.join().expect("xmalloc producer panicked");
    consumer.join().expect("xmalloc consumer panicked")
}

const SCRATCH_THREADS: usize = 2;

/// Cache-scratch (passive false sharing, from Hoard's benchmarks as in mimalloc-bench): the
/// main thread allocates one 8-byte object per thread, side by side, and hands one to each
/// thread; each thread frees it, then many times allocates an 8-byte object, writes each byte
/// of it many times and frees it. An allocator that gives a thread the object another thread
/// freed (on a cache line the main thread's other objects share) makes the threads' writes
/// fight over that line.
pub fn cache_scratch(size: Size) -> u64 {
    const OBJECT: usize = 8;
    let (iterations, repetitions) = match size {
        Size::Tiny => (100, 10),
        Size::Full => (120_000, 1000),
    };
    let objects: Vec<Vec<u8>> = (0..SCRATCH_THREADS).map(|_| vec![0u8; OBJECT]).collect();
    let handles: Vec<_> = objects
        .into_iter()
        .map(|first| {
            thread::spawn(move || {
                drop(first);
                let mut sum = 0u64;
                for _ in 0..iterations {
                    // A heap object (the allocator is what is measured), not a stack array.
                    #[allow(clippy::useless_vec, reason = "the allocation is the point")]
                    let mut object = vec![0u8; OBJECT];
                    for _ in 0..repetitions {
                        for byte in object.iter_mut() {
                            // Volatile: every write reaches the cache line, as in the C original.
                            let p: *mut u8 = byte;
                            // SAFETY: `p` points to a live byte of `object`, which we own.
                            unsafe { p.write_volatile(p.read_volatile().wrapping_add(1)) };
                        }
                    }
                    sum += object.iter().map(|&b| u64::from(b)).sum::<u64>();
                }
                sum
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("cache-scratch thread panicked"))
        .fold(FNV_START, mix)
}

/// A parser workload: builds a JSON document of several megabytes with `serde_json` (an array
/// of records with strings, numbers, nested objects and arrays), then several times serializes
/// it to a `String` and parses that back into a new `Value`, dropping the old one.
pub fn json(size: Size) -> u64 {
    let (records, rounds) = match size {
        Size::Tiny => (50, 2),
        Size::Full => (25_000, 6),
    };
    let mut rng = Rng::new(3);
    let mut document = Value::Array(
        (0..records)
            .map(|i| {
                let mut record = Map::new();
                record.insert("id".into(), Value::from(i as u64));
                record.insert("name".into(), Value::from(word(&mut rng, 3)));
                record.insert(
                    "tags".into(),
                    Value::Array(
                        (0..rng.below(6))
                            .map(|_| Value::from(word(&mut rng, 2)))
                            .collect(),
                    ),
                );
                record.insert(
                    "score".into(),
                    Value::from(rng.below(1_000_000) as f64 / 8.0),
                );
                let mut nested = Map::new();
                nested.insert(
                    "values".into(),
                    Value::Array(
                        (0..rng.below(12))
                            .map(|_| Value::from(rng.below(100_000) as u64))
                            .collect(),
                    ),
                );
                nested.insert("active".into(), Value::from(rng.below(2) == 1));
                nested.insert("note".into(), Value::from(sentence(&mut rng, 8)));
                record.insert("detail".into(), Value::Object(nested));
                Value::Object(record)
            })
            .collect(),
    );
    let mut checksum = FNV_START;
    for _ in 0..rounds {
        let text = serde_json::to_string(&document).expect("serialising a Value cannot fail");
        checksum = mix(checksum, text.len() as u64);
        document = serde_json::from_str(&text).expect("our own output parses");
        checksum = mix(checksum, value_digest(&document));
    }
    checksum
}

/// Nodes, string bytes and integer values of a JSON value (order-independent of addresses).
fn value_digest(value: &Value) -> u64 {
    match value {
        Value::Null => 1,
        Value::Bool(b) => 2 + u64::from(*b),
        Value::Number(n) => n.as_u64().unwrap_or(7),
        Value::String(s) => s.len() as u64,
        Value::Array(items) => items.iter().fold(11, |h, v| mix(h, value_digest(v))),
        Value::Object(map) => map
            .iter()
            .fold(13, |h, (k, v)| mix(mix(h, k.len() as u64), value_digest(v))),
    }
}

const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "an", "el", "or", "qu", "ix", "ba", "de", "zu",
];

/// A word of 1..=`max_syllables` syllables (a new `String`).
fn word(rng: &mut Rng, max_syllables: usize) -> String {
    (0..1 + rng.below(max_syllables))
        .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
        .collect()
}

/// `words` words separated by spaces.
fn sentence(rng: &mut Rng, words: usize) -> String {
    (0..words)
        .map(|_| word(rng, 3))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An expression tree of boxed nodes (the compiler workload's AST).
enum Expr {
    Number(i64),
    Variable(String),
    Add(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    Let(String, Box<Expr>, Box<Expr>),
}

/// A random expression of at most `depth` levels over the variables `v0..v7`.
fn expression(rng: &mut Rng, depth: usize) -> Expr {
    if depth == 0 || rng.below(4) == 0 {
        return if rng.below(2) == 0 {
            Expr::Number(rng.below(100) as i64)
        } else {
            Expr::Variable(format!("v{}", rng.below(8)))
        };
    }
    let left = Box::new(expression(rng, depth - 1));
    let right = Box::new(expression(rng, depth - 1));
    match rng.below(3) {
        0 => Expr::Add(left, right),
        1 => Expr::Mul(left, right),
        _ => Expr::Let(format!("v{}", rng.below(8)), left, right),
    }
}

/// Evaluates `expr` with `scope` (a `HashMap<String, _>` of variables, unknown ones are 1).
fn evaluate(expr: &Expr, scope: &mut HashMap<String, i64>) -> i64 {
    match expr {
        Expr::Number(n) => *n,
        Expr::Variable(name) => scope.get(name).copied().unwrap_or(1),
        Expr::Add(a, b) => evaluate(a, scope).wrapping_add(evaluate(b, scope)),
        Expr::Mul(a, b) => evaluate(a, scope).wrapping_mul(evaluate(b, scope)),
        Expr::Let(name, value, body) => {
            let value = evaluate(value, scope);
            let saved = scope.insert(name.clone(), value);
            let result = evaluate(body, scope);
            match saved {
                Some(old) => scope.insert(name.clone(), old),
                None => scope.remove(name),
            };
            result
        }
    }
}

/// A compiler-like workload: generated source text tokenized into many short-lived `String`s,
/// a word count in a `HashMap<String, u64>` turned into a `BTreeMap`, the tokens sorted as a
/// `Vec<String>`, and many expression trees of boxed nodes built, evaluated and dropped.
pub fn compiler(size: Size) -> u64 {
    let (lines, trees, depth) = match size {
        Size::Tiny => (200, 20, 6),
        Size::Full => (120_000, 12_000, 12),
    };
    let mut rng = Rng::new(4);
    let mut checksum = FNV_START;

    // Source text: one `format!` per line, joined into one large String.
    let mut source = String::new();
    for i in 0..lines {
        let line = format!(
            "let {} = {}({}, {}); // {}\n",
            word(&mut rng, 3),
            word(&mut rng, 2),
            word(&mut rng, 3),
            rng.below(1000),
            i
        );
        source.push_str(&line);
    }
    checksum = mix(checksum, source.len() as u64);

    // Tokens: each a new, lower-cased String; counted by word.
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut tokens: Vec<String> = Vec::new();
    for token in source.split(|c: char| !c.is_alphanumeric()) {
        if token.is_empty() {
            continue;
        }
        let token = token.to_lowercase();
        *counts.entry(token.clone()).or_default() += 1;
        tokens.push(token);
    }
    drop(source);
    let ordered: BTreeMap<String, u64> = counts.into_iter().collect();
    checksum = ordered
        .iter()
        .fold(mix(checksum, ordered.len() as u64), |h, (w, &n)| {
            mix(mix(h, w.len() as u64), n)
        });
    tokens.sort_unstable();
    tokens.dedup();
    checksum = tokens
        .iter()
        .step_by(97)
        .fold(mix(checksum, tokens.len() as u64), |h, t| {
            mix(h, t.len() as u64)
        });
    drop(tokens);
    drop(ordered);

    // Trees: built, evaluated and dropped one by one.
    let mut scope: HashMap<String, i64> = (0..4).map(|i| (format!("v{i}"), i + 2)).collect();
    for _ in 0..trees {
        let tree = expression(&mut rng, depth);
        checksum = mix(checksum, evaluate(black_box(&tree), &mut scope) as u64);
    }
    checksum
}
