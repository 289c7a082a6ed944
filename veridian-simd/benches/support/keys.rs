//! The keys of the `CacheBTree` benchmark, shared by `benches/btree.rs` and
//! `examples/btree_drive.rs` (included with `#[path]`).

/// xorshift64*: deterministic, fast, good enough to shuffle keys.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

pub fn random_keys(n: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    let mut set = std::collections::HashSet::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        let k = rng.next();
        if set.insert(k) {
            keys.push(k);
        }
    }
    keys
}

pub fn shuffled(keys: &[u64], seed: u64) -> Vec<u64> {
    let mut v = keys.to_vec();
    let mut rng = Rng(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}
