//! The size-class table: which slab class serves a request of a given size and alignment.
//!
//! Small classes (8..=256 B) step by 16 B up to 128 B, then by 32 B; medium classes
//! (320..=8192 B) use four classes per power of two. Requests above 8192 B, or aligned to more
//! than a page, go to the buddy allocator.
//!
//! Worst-case internal fragmentation (bytes handed out but not asked for), per range:
//!
//! | request | classes | worst case |
//! |---|---|---|
//! | 1..=8 | 8 | 7 B (a 1-byte request) |
//! | 9..=128 | 16, 32, ..., 128 | 15 B: 17 B -> 32 B is the worst ratio (47 %); above 64 B, < 20 % |
//! | 129..=256 | 160, 192, 224, 256 | 31 B (19.4 % at 129 -> 160) |
//! | 257..=8192 | 4 per doubling | 24.9 % (257 -> 320 B; every step is 1/4 of the lower power of two) |
//!
//! Each class also fixes its slab size: the smallest power of two of at least 16 KiB whose tail
//! waste (the slab header plus the remainder that does not fit a whole object) is at most 1/32
//! of the slab, capped at 256 KiB. The table in `docs/benchmarks/alloc.md` lists each class's
//! slab size and waste.

use crate::buddy::PAGE_SIZE;

/// Object sizes of the slab classes, ascending.
pub const CLASS_SIZES: [usize; NUM_CLASSES] = [
    8, 16, 32, 48, 64, 80, 96, 112, 128, // small, 16-byte steps
    160, 192, 224, 256, // small, 32-byte steps
    320, 384, 448, 512, // medium: four classes per power of two
    640, 768, 896, 1024, //
    1280, 1536, 1792, 2048, //
    2560, 3072, 3584, 4096, //
    5120, 6144, 7168, 8192, //
];

/// Number of slab classes.
pub const NUM_CLASSES: usize = 33;

/// Largest request served from slabs; larger ones come from the buddy allocator.
pub const MAX_SLAB_SIZE: usize = 8192;

/// Largest alignment served from slabs (slab bases are aligned to at least this much).
pub const MAX_SLAB_ALIGN: usize = PAGE_SIZE;

/// Bytes at the end of every slab reserved for its header (see `slab.rs`).
pub const SLAB_HEADER_SIZE: usize = 64;

const MIN_SLAB_BYTES: usize = 16 * 1024;
const MAX_SLAB_BYTES: usize = 256 * 1024;

/// Slab size used for a class: see the module documentation. A table lookup (the sizes are
/// computed once, at compile time: the slow paths ask for them per object).
#[inline]
pub const fn slab_bytes(class: usize) -> usize {
    SLAB_BYTES[class]
}

/// Objects per slab of a class (a table lookup, as [`slab_bytes`]).
#[inline]
pub const fn objects_per_slab(class: usize) -> usize {
    OBJECTS_PER_SLAB[class]
}

/// [`slab_bytes`] of every class.
const SLAB_BYTES: [usize; NUM_CLASSES] = {
    let mut table = [0; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        table[c] = compute_slab_bytes(c);
        c += 1;
    }
    table
};

/// [`objects_per_slab`] of every class.
const OBJECTS_PER_SLAB: [usize; NUM_CLASSES] = {
    let mut table = [0; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        table[c] = (SLAB_BYTES[c] - SLAB_HEADER_SIZE) / CLASS_SIZES[c];
        c += 1;
    }
    table
};

/// The smallest power of two of at least 16 KiB whose tail waste is at most 1/32 of the slab,
/// capped at 256 KiB (the rule of the module documentation).
const fn compute_slab_bytes(class: usize) -> usize {
    let size = CLASS_SIZES[class];
    let mut slab = MIN_SLAB_BYTES;
    while slab < MAX_SLAB_BYTES {
        let usable = slab - SLAB_HEADER_SIZE;
        let waste = SLAB_HEADER_SIZE + usable % size;
        if waste * 32 <= slab {
            break;
        }
        slab *= 2;
    }
    slab
}

/// Lookup table for every slab size, indexed by `(size + 7) / 8` (1025 bytes): the smallest
/// class that holds the size (alignment is checked separately).
const SMALL_LOOKUP_MAX: usize = MAX_SLAB_SIZE;
static SMALL_LOOKUP: [u8; SMALL_LOOKUP_MAX / 8 + 1] = {
    let mut table = [0u8; SMALL_LOOKUP_MAX / 8 + 1];
    let mut i = 0;
    while i < table.len() {
        let size = i * 8;
        let mut c = 0;
        while CLASS_SIZES[c] < size {
            c += 1;
        }
        table[i] = c as u8;
        i += 1;
    }
    table
};

/// The class for a request, or `None` when it must come from the buddy allocator (too large,
/// or aligned to more than [`MAX_SLAB_ALIGN`]). `align` must be a power of two.
#[inline]
pub fn class_for(size: usize, align: usize) -> Option<usize> {
    if let Some(class) = class_for_common(size, align) {
        return Some(class);
    }
    class_for_slow(size, align)
}

/// [`class_for`]'s answer for the common requests (under [`MAX_SLAB_SIZE`] bytes, aligned to
/// at most 8) by one table lookup; `None` for every other request, which [`class_for`] then
/// decides. The heap's fast paths call it first, so the table lookup and the rarer cases do
/// not meet in one `Option` (which cost three instructions per call).
#[inline(always)]
pub(crate) fn class_for_common(size: usize, align: usize) -> Option<usize> {
    // Every class is a multiple of 8, so alignments up to 8 (nearly all requests) need no check.
    // Both bounds in one comparison: `size >> 9 < 16` (`size < 8192`; an exact 8192 bytes is
    // left to `class_for`) and `align < 16` (`align <= 8`, a power of two) hold exactly when
    // the bitwise or of the two is below 16.
    if ((size >> 9) | align) < 16 {
        // SAFETY: `size < 8192`, so `(size + 7) / 8 <= 1024 < SMALL_LOOKUP.len()` (the
        // compiler cannot see this through the `or`, and a bounds check would cost two
        // instructions per call).
        return Some(unsafe { *SMALL_LOOKUP.get_unchecked((size + 7) >> 3) } as usize);
    }
    None
}

#[cold]
fn class_for_slow(size: usize, align: usize) -> Option<usize> {
    if size > MAX_SLAB_SIZE || align > MAX_SLAB_ALIGN {
        return None;
    }
    let mut class = if size <= SMALL_LOOKUP_MAX {
        SMALL_LOOKUP[size.div_ceil(8)] as usize
    } else {
        CLASS_SIZES.iter().position(|&c| c >= size)?
    };
    // A slab base is aligned to its slab size (>= 16 KiB) and objects sit at multiples of the
    // class size, so an object is aligned to `align` exactly when the class size is a multiple
    // (`align` is a power of two).
    while CLASS_SIZES[class] & (align - 1) != 0 {
        class += 1;
        if class == NUM_CLASSES {
            return None;
        }
    }
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_ascend_and_fit_their_slabs() {
        for c in 1..NUM_CLASSES {
            assert!(CLASS_SIZES[c] > CLASS_SIZES[c - 1]);
        }
        for (c, &size) in CLASS_SIZES.iter().enumerate() {
            let slab = slab_bytes(c);
            assert!(slab.is_power_of_two() && (MIN_SLAB_BYTES..=MAX_SLAB_BYTES).contains(&slab));
            assert!(
                objects_per_slab(c) >= 8,
                "class {} has {} objects",
                c,
                objects_per_slab(c)
            );
            let waste = slab - objects_per_slab(c) * size;
            assert!(waste * 32 <= slab, "class {size} wastes {waste} of {slab}");
        }
    }

    #[test]
    fn class_for_is_smallest_fitting_aligned_class() {
        // Exhaustive natively; every 61st size under Miri, which is ~1000x slower.
        let step = if cfg!(miri) { 61 } else { 1 };
        for size in (0..=MAX_SLAB_SIZE).step_by(step) {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096] {
                let expected = (0..NUM_CLASSES)
                    .find(|&c| CLASS_SIZES[c] >= size && CLASS_SIZES[c].is_multiple_of(align));
                assert_eq!(
                    class_for(size, align),
                    expected,
                    "size {size} align {align}"
                );
            }
        }
        assert_eq!(class_for(MAX_SLAB_SIZE + 1, 8), None);
        assert_eq!(class_for(8, 8192), None);
        assert_eq!(class_for(usize::MAX, 8), None);
    }

    #[test]
    fn worst_case_waste_matches_the_documented_table() {
        let mut worst_ratio_above_256 = 0.0f64;
        for size in 257..=MAX_SLAB_SIZE {
            let c = CLASS_SIZES[class_for(size, 1).unwrap()];
            worst_ratio_above_256 = worst_ratio_above_256.max((c - size) as f64 / c as f64);
        }
        assert!(worst_ratio_above_256 < 0.25, "{worst_ratio_above_256}");
        for size in 129..=256 {
            let c = CLASS_SIZES[class_for(size, 1).unwrap()];
            assert!(c - size <= 31);
        }
    }
}
