//! The scheduler's per-CPU FIFO storage: a growable ring with a power-of-two capacity.
//!
//! It replaces `VecDeque` behind the FIFO lock for one reason: [`Fifo::rotate`] (the yield's
//! "take the head, append the caller") is a single read and write with no capacity check, and
//! `pop_front`/`push_back` inline to a few instructions, with only the growth kept out of line.

use alloc::boxed::Box;
use core::mem::MaybeUninit;

/// Capacity of the first allocation (no allocation while empty and never used).
const FIRST_CAPACITY: usize = 8;

/// A FIFO of `T`: slots `head .. head + len` (modulo the capacity) hold values.
pub(crate) struct Fifo<T> {
    /// The slots; the length is zero or a power of two.
    buf: Box<[MaybeUninit<T>]>,
    /// Physical index of the first value (below the capacity, 0 when it is zero).
    head: usize,
    /// Number of values.
    len: usize,
}

impl<T> Fifo<T> {
    /// An empty FIFO (allocates nothing).
    pub(crate) fn new() -> Self {
        Self {
            buf: Box::new([]),
            head: 0,
            len: 0,
        }
    }

    /// Number of values.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Physical index of logical position `i` (`i <= len`, capacity non-zero).
    #[inline(always)]
    fn slot(&self, i: usize) -> usize {
        (self.head + i) & (self.buf.len() - 1)
    }

    /// Appends `value`.
    #[inline]
    pub(crate) fn push_back(&mut self, value: T) {
        if self.len == self.buf.len() {
            self.grow();
        }
        let at = self.slot(self.len);
        self.buf[at].write(value);
        self.len += 1;
    }

    /// Takes the first value.
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let at = self.head;
        self.head = self.slot(1);
        self.len -= 1;
        // SAFETY: `at` was the first of the `len` initialised slots; it is outside them now,
        // so the value is read exactly once.
        Some(unsafe { self.buf[at].assume_init_read() })
    }

    /// `pop_front` then `push_back(value)`, without a capacity check: the first value, or
    /// `value` itself when the FIFO is empty (it then stays empty).
    #[inline]
    pub(crate) fn rotate(&mut self, value: T) -> T {
        if self.len == 0 {
            return value;
        }
        let first = self.head;
        // SAFETY: `first` holds the first initialised value; it is read once here and the slot
        // is either overwritten just below (a full ring: `back == first`) or left outside the
        // live range by the `head` update.
        let out = unsafe { self.buf[first].assume_init_read() };
        let back = self.slot(self.len);
        self.buf[back].write(value);
        self.head = self.slot(1);
        out
    }

    /// The value at logical position `i`, if `i < len`.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        // SAFETY: positions below `len` are initialised.
        Some(unsafe { self.buf[self.slot(i)].assume_init_ref() })
    }

    /// Removes and returns the value at logical position `i` (the later ones move up by one),
    /// if `i < len`.
    pub(crate) fn remove(&mut self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        // SAFETY: position `i` is initialised; its slot is refilled by the shift below or
        // falls outside the live range when `len` shrinks.
        let out = unsafe { self.buf[self.slot(i)].assume_init_read() };
        for j in i..self.len - 1 {
            let (to, from) = (self.slot(j), self.slot(j + 1));
            // SAFETY: `from` (position `j + 1 < len`) is initialised; its value moves to `to`,
            // whose value was moved out before, and `from` is overwritten next or left outside.
            let v = unsafe { self.buf[from].assume_init_read() };
            self.buf[to].write(v);
        }
        self.len -= 1;
        Some(out)
    }

    /// Doubles the capacity (or makes the first allocation), keeping the order; the values
    /// start at slot 0 afterwards.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let cap = (self.buf.len() * 2).max(FIRST_CAPACITY);
        let mut buf = Box::new_uninit_slice(cap);
        for (i, to) in buf.iter_mut().enumerate().take(self.len) {
            // SAFETY: positions below `len` are initialised; each moves once into the new
            // buffer, and the old one is freed without dropping its slots (`MaybeUninit`).
            to.write(unsafe { self.buf[self.slot(i)].assume_init_read() });
        }
        self.buf = buf;
        self.head = 0;
    }
}

impl<T> Drop for Fifo<T> {
    fn drop(&mut self) {
        while self.pop_front().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::Fifo;
    use alloc::collections::VecDeque;
    use alloc::rc::Rc;
    use alloc::vec::Vec;

    /// Random operations against `VecDeque`, across growth and wrap-around.
    #[test]
    fn matches_vecdeque() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut fifo = Fifo::new();
        let mut model = VecDeque::new();
        for step in 0..20_000u64 {
            match next() % 6 {
                0 | 1 => {
                    fifo.push_back(step);
                    model.push_back(step);
                }
                2 => assert_eq!(fifo.pop_front(), model.pop_front()),
                3 => {
                    let got = fifo.rotate(step);
                    let want = match model.pop_front() {
                        Some(v) => {
                            model.push_back(step);
                            v
                        }
                        None => step,
                    };
                    assert_eq!(got, want);
                }
                4 => {
                    let i = (next() as usize) % (model.len() + 1);
                    assert_eq!(fifo.remove(i), model.remove(i));
                }
                _ => {
                    let i = (next() as usize) % (model.len() + 1);
                    assert_eq!(fifo.get(i), model.get(i));
                }
            }
            assert_eq!(fifo.len(), model.len());
        }
        let rest: Vec<u64> = core::iter::from_fn(|| fifo.pop_front()).collect();
        assert_eq!(rest, Vec::from(model));
    }

    /// Every value is dropped exactly once (taken out or left in the FIFO when it is dropped).
    #[test]
    fn drops_each_value_once() {
        let probe = Rc::new(());
        {
            let mut fifo = Fifo::new();
            for _ in 0..13 {
                fifo.push_back(probe.clone());
            }
            drop(fifo.pop_front());
            drop(fifo.rotate(probe.clone()));
            drop(fifo.remove(3));
            assert_eq!(Rc::strong_count(&probe), 1 + fifo.len());
        }
        assert_eq!(Rc::strong_count(&probe), 1);
    }
}
