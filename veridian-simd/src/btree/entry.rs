//! The entry API: look a key up once, then read, update, insert or remove it in place.
//!
//! **What it does.** [`super::CacheBTree::entry`] descends once and keeps either the slot
//! holding the key ([`OccupiedEntry`]) or the path to where it would go ([`VacantEntry`]), so
//! `entry(k).or_insert(v)` searches the tree once. The entries borrow the tree mutably, so the
//! remembered position cannot go stale.

use super::node::CapacityError;
use super::{BTreeKey, CacheBTree, Vacancy};

/// A view into one key of a [`CacheBTree`], present or absent.
pub enum Entry<'a, K: BTreeKey, V> {
    /// The key is present.
    Occupied(OccupiedEntry<'a, K, V>),
    /// The key is absent.
    Vacant(VacantEntry<'a, K, V>),
}

/// A present key.
pub struct OccupiedEntry<'a, K: BTreeKey, V> {
    tree: &'a mut CacheBTree<K, V>,
    leaf: u32,
    slot: usize,
}

/// An absent key and where it would go.
pub struct VacantEntry<'a, K: BTreeKey, V> {
    tree: &'a mut CacheBTree<K, V>,
    key: K,
    at: Vacancy,
}

impl<'a, K: BTreeKey, V> Entry<'a, K, V> {
    /// The value, inserting `default` first if the key is absent.
    pub fn or_insert(self, default: V) -> &'a mut V {
        match self {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(default),
        }
    }

    /// The value, inserting `f()` first if the key is absent (`f` runs only then).
    pub fn or_insert_with<F: FnOnce() -> V>(self, f: F) -> &'a mut V {
        match self {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(f()),
        }
    }

    /// The value, inserting `f(&key)` first if the key is absent.
    pub fn or_insert_with_key<F: FnOnce(&K) -> V>(self, f: F) -> &'a mut V {
        match self {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let value = f(&v.key);
                v.insert(value)
            }
        }
    }

    /// The value, inserting `V::default()` first if the key is absent.
    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    /// Runs `f` on the value if the key is present; returns the entry for chaining.
    pub fn and_modify<F: FnOnce(&mut V)>(self, f: F) -> Self {
        match self {
            Entry::Occupied(mut o) => {
                f(o.get_mut());
                Entry::Occupied(o)
            }
            vacant => vacant,
        }
    }

    /// The entry's key.
    pub fn key(&self) -> &K {
        match self {
            Entry::Occupied(o) => o.key(),
            Entry::Vacant(v) => v.key(),
        }
    }
}

impl<'a, K: BTreeKey, V> OccupiedEntry<'a, K, V> {
    pub(super) fn new(tree: &'a mut CacheBTree<K, V>, leaf: u32, slot: usize) -> Self {
        OccupiedEntry { tree, leaf, slot }
    }

    /// The key.
    pub fn key(&self) -> &K {
        &self.tree.arena.leaves[self.leaf as usize].keys[self.slot]
    }

    /// The value.
    pub fn get(&self) -> &V {
        self.tree.arena.leaves[self.leaf as usize].val(self.slot)
    }

    /// The value, mutably.
    pub fn get_mut(&mut self) -> &mut V {
        self.tree.arena.leaves[self.leaf as usize].val_mut(self.slot)
    }

    /// The value, mutably, for the tree's whole borrow.
    pub fn into_mut(self) -> &'a mut V {
        self.tree.arena.leaves[self.leaf as usize].val_mut(self.slot)
    }

    /// Replaces the value; returns the old one.
    pub fn insert(&mut self, value: V) -> V {
        core::mem::replace(self.get_mut(), value)
    }

    /// Removes the entry; returns its value.
    pub fn remove(self) -> V {
        self.remove_entry().1
    }

    /// Removes the entry; returns its key and value.
    pub fn remove_entry(self) -> (K, V) {
        let key = *self.key();
        match self.tree.remove_entry(&key) {
            Some(kv) => kv,
            None => unreachable!("an occupied entry's key is in the tree"),
        }
    }
}

impl<'a, K: BTreeKey, V> VacantEntry<'a, K, V> {
    pub(super) fn new(tree: &'a mut CacheBTree<K, V>, key: K, at: Vacancy) -> Self {
        VacantEntry { tree, key, at }
    }

    /// The key that would be inserted.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Inserts `value`; returns it in place, or the error when nodes cannot be allocated (the
    /// tree unchanged, `value` dropped).
    pub fn try_insert(self, value: V) -> Result<&'a mut V, CapacityError> {
        let Vacancy { path, leaf, slot } = &self.at;
        let (leaf, slot) = self.tree.insert_new(self.key, value, path, *leaf, *slot)?;
        Ok(self.tree.arena.leaves[leaf as usize].val_mut(slot))
    }

    /// Inserts `value`; returns it in place.
    ///
    /// # Panics
    /// When nodes cannot be allocated (out of memory), like `Vec::push`; see
    /// [`VacantEntry::try_insert`].
    pub fn insert(self, value: V) -> &'a mut V {
        match self.try_insert(value) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }
}
