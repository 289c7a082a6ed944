//! A frame-pointer stack walker that survives bad pointers.
//!
//! **What it does.** With frame pointers, each frame starts with the caller's frame pointer at
//! `[fp]` and the return address at `[fp + 8]` (x86_64 System V, also what `rustc
//! -C force-frame-pointers=yes` emits). [`walk_frame_pointers`] follows that chain from the
//! interrupted frame and stores the return addresses, innermost first.
//!
//! **What it relies on.** The embedder's [`AddressCheck`]: the walker reads nothing that the
//! check has not approved (16 bytes at `fp`). In an interrupt handler the interrupted code is
//! stopped, so its stack does not change under the walk.
//!
//! **What it guarantees.** It stops, without reading, at the first frame pointer that is null,
//! misaligned, not readable, not strictly above the previous one (a loop or a corrupt chain),
//! more than [`MAX_FRAME_SIZE`] above it (a jump to unrelated memory), or whose `fp + 16` would
//! overflow; it stops at a null return address and when `out` is full. So it terminates (the
//! frame pointer strictly increases) and reads only approved memory, whatever the stack holds.

use crate::env::AddressCheck;

/// The largest distance between consecutive frame pointers the walker follows (1 MiB): more
/// than any kernel or sane user stack frame, far less than a jump into another mapping.
pub const MAX_FRAME_SIZE: usize = 1 << 20;

const WORD: usize = core::mem::size_of::<usize>();

/// Walks the frame-pointer chain starting at `fp`, writing return addresses (innermost first)
/// into `out`; returns how many it wrote (module docs for when it stops).
pub fn walk_frame_pointers(fp: usize, check: &impl AddressCheck, out: &mut [u64]) -> usize {
    walk_frame_pointers_with(
        fp,
        |fp| {
            if !check.is_readable(fp, 2 * WORD) {
                return None;
            }
            let frame = core::ptr::with_exposed_provenance::<usize>(fp);
            // SAFETY: `fp` is aligned for `usize` (the walker checks before asking) and the
            // embedder's check approved reading 2 * WORD bytes at it (the `AddressCheck`
            // contract makes such reads fault-free and side-effect-free). Volatile: the memory
            // belongs to code we do not synchronise with; we want exactly these two reads, not
            // whatever the optimiser derives from them.
            Some(unsafe {
                (
                    core::ptr::read_volatile(frame),
                    core::ptr::read_volatile(frame.add(1)),
                )
            })
        },
        out,
    )
}

/// [`walk_frame_pointers`] with the reads done by `read_frame`: given an aligned frame pointer
/// `fp` (with `fp + 16` not overflowing), it returns the two words at `fp` (the caller's frame
/// pointer, the return address) or `None` when they cannot be read, which ends the walk. For
/// memory an [`AddressCheck`] cannot vouch for in advance, such as a user stack read with
/// fault-catching loads. The same stopping rules apply (module docs).
pub fn walk_frame_pointers_with(
    fp: usize,
    mut read_frame: impl FnMut(usize) -> Option<(usize, usize)>,
    out: &mut [u64],
) -> usize {
    let mut fp = fp;
    let mut n = 0;
    while n < out.len() {
        if fp == 0 || !fp.is_multiple_of(WORD) || fp.checked_add(2 * WORD).is_none() {
            break;
        }
        let Some((next, ret)) = read_frame(fp) else {
            break;
        };
        if ret == 0 {
            break;
        }
        out[n] = ret as u64;
        n += 1;
        if next <= fp || next - fp > MAX_FRAME_SIZE {
            break;
        }
        fp = next;
    }
    n
}
