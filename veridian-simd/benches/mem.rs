//! `memcpy`, `memset` and `memmove` side by side: the dispatched routines (`veridian`), glibc
//! (through `copy_from_slice` / `fill` / `copy_within`, which call libc), a bare `rep movsb` /
//! `rep stosb`, the `compiler_builtins` x86_64 algorithm (`builtins_like`: byte-align the
//! destination, `rep movsq`/`rep stosq`, `rep movsb`/`rep stosb` for the rest; backwards with
//! `std` for overlapping moves), and each of this crate's variants the CPU supports.
//!
//! Buffers are page-aligned and reused; `memmove` moves `n` bytes up by `n / 2` inside one
//! buffer (overlapping, so every implementation must copy backwards). 64 MiB runs with 10
//! samples.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use veridian_simd::Variant;

const SIZES: [usize; 8] = [16, 64, 256, 1024, 4096, 65536, 1 << 20, 64 << 20];

/// A page-aligned region of `len` bytes inside a larger `Vec`.
struct Aligned {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize, fill: u8) -> Self {
        let buf = vec![fill; len + 4096];
        let off = buf.as_ptr().align_offset(4096);
        Aligned { buf, off, len }
    }
    fn slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

mod peers {
    use std::arch::asm;

    /// `rep movsb`.
    pub unsafe fn rep_movsb(dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: caller passes valid, non-overlapping (or dst < src) ranges; DF is clear.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
                options(nostack, preserves_flags));
        }
    }

    /// `rep stosb`.
    pub unsafe fn rep_stosb(dst: *mut u8, c: u8, n: usize) {
        // SAFETY: caller passes a valid range; DF is clear.
        unsafe {
            asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c,
                options(nostack, preserves_flags));
        }
    }

    /// `std; rep movsb; cld` from the last byte down (a backward `rep movsb`), for dst > src.
    pub unsafe fn rep_movsb_backward(dst: *mut u8, src: *const u8, n: usize) {
        if n == 0 {
            return;
        }
        // SAFETY: caller passes valid ranges; DF is set only inside the block and cleared again.
        unsafe {
            asm!("std", "rep movsb", "cld", inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _, options(nostack));
        }
    }

    /// `compiler_builtins`' `rep_param`: bytes to align the destination to 8, then qwords, then
    /// the remaining bytes.
    fn rep_param(dst: *mut u8, mut n: usize) -> (usize, usize, usize) {
        let pre = ((8 - (dst as usize & 0b111)) & 0b111).min(n);
        n -= pre;
        (pre, n >> 3, n & 0b111)
    }

    /// `compiler_builtins::mem::x86_64::copy_forward` (without the `ermsb` target feature).
    pub unsafe fn builtins_copy_forward(mut dst: *mut u8, mut src: *const u8, n: usize) {
        let (pre, qwords, bytes) = rep_param(dst, n);
        // SAFETY: as `rep_movsb`; the three blocks together copy exactly `n` bytes forwards.
        unsafe {
            asm!("rep movsb", inout("ecx") pre => _, inout("rdi") dst => dst, inout("rsi") src => src,
                options(nostack, preserves_flags));
            asm!("rep movsq", inout("rcx") qwords => _, inout("rdi") dst => dst, inout("rsi") src => src,
                options(nostack, preserves_flags));
            asm!("rep movsb", inout("ecx") bytes => _, inout("rdi") dst => _, inout("rsi") src => _,
                options(nostack, preserves_flags));
        }
    }

    /// `compiler_builtins::mem::x86_64::copy_backward`.
    pub unsafe fn builtins_copy_backward(dst: *mut u8, src: *const u8, n: usize) {
        if n == 0 {
            return;
        }
        let (pre, qwords, bytes) = rep_param(dst, n);
        // SAFETY: as `rep_movsb_backward`; this is the compiler_builtins block verbatim.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "sub $7, %rsi",
                "sub $7, %rdi",
                "mov {qword_count}, %rcx",
                "rep movsq",
                "test {pre_byte_count:e}, {pre_byte_count:e}",
                "add $7, %rsi",
                "add $7, %rdi",
                "mov {pre_byte_count:e}, %ecx",
                "rep movsb",
                "cld",
                pre_byte_count = in(reg) pre,
                qword_count = in(reg) qwords,
                inout("ecx") bytes => _,
                inout("rdi") dst.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(att_syntax, nostack)
            );
        }
    }

    /// `compiler_builtins`' `memmove`: backwards when the source is below an overlapping
    /// destination.
    pub unsafe fn builtins_memmove(dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: forwarded.
        unsafe {
            if (dst as usize).wrapping_sub(src as usize) < n {
                builtins_copy_backward(dst, src, n)
            } else {
                builtins_copy_forward(dst, src, n)
            }
        }
    }

    /// `compiler_builtins::mem::x86_64::set_bytes`.
    pub unsafe fn builtins_set_bytes(mut dst: *mut u8, c: u8, n: usize) {
        let c = c as u64 * 0x0101_0101_0101_0101;
        let (pre, qwords, bytes) = rep_param(dst, n);
        // SAFETY: as `rep_stosb`; the three blocks together fill exactly `n` bytes.
        unsafe {
            asm!("rep stosb", inout("ecx") pre => _, inout("rdi") dst => dst, in("rax") c,
                options(nostack, preserves_flags));
            asm!("rep stosq", inout("rcx") qwords => _, inout("rdi") dst => dst, in("rax") c,
                options(nostack, preserves_flags));
            asm!("rep stosb", inout("ecx") bytes => _, inout("rdi") dst => _, in("rax") c,
                options(nostack, preserves_flags));
        }
    }
}

fn configure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
) {
    group.throughput(Throughput::Bytes(n as u64));
    group.sample_size(if n >= 64 << 20 { 10 } else { 50 });
}

fn variants() -> Vec<veridian_simd::Routines> {
    Variant::ALL
        .into_iter()
        .filter_map(|v| {
            let r = v.routines();
            if r.is_none() {
                eprintln!(
                    "skipping variant {}: CPU lacks {:?}",
                    v.name(),
                    v.required_features()
                );
            }
            r
        })
        .collect()
}

fn bench_memcpy(c: &mut Criterion) {
    let mut group = c.benchmark_group("memcpy");
    for n in SIZES {
        configure(&mut group, n);
        let mut src = Aligned::new(n, 0x5A);
        let mut dst = Aligned::new(n, 0);
        let s = src.slice().as_ptr();
        let d = dst.slice().as_mut_ptr();
        let id = |f: &str| BenchmarkId::new(f, n);
        group.bench_function(id("veridian"), |b| {
            // SAFETY: the pointers name live buffers of `n` bytes set up above.
            b.iter(|| unsafe { veridian_simd::memcpy(black_box(d), black_box(s), black_box(n)) })
        });
        group.bench_function(id("glibc"), |b| {
            b.iter(|| {
                // SAFETY: the pointers name live buffers of `n` bytes set up above.
                let (dd, ss) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(black_box(d), n),
                        std::slice::from_raw_parts(black_box(s), black_box(n)),
                    )
                };
                dd.copy_from_slice(ss)
            })
        });
        group.bench_function(id("rep_movsb"), |b| {
            // SAFETY: the pointers name live buffers of `n` bytes set up above.
            b.iter(|| unsafe { peers::rep_movsb(black_box(d), black_box(s), black_box(n)) })
        });
        group.bench_function(id("builtins_like"), |b| {
            // SAFETY: the pointers name live buffers of `n` bytes set up above.
            b.iter(|| unsafe {
                peers::builtins_copy_forward(black_box(d), black_box(s), black_box(n))
            })
        });
        for r in variants() {
            group.bench_function(id(r.variant().name()), |b| {
                // SAFETY: the pointers name live buffers of `n` bytes set up above.
                b.iter(|| unsafe { r.memcpy(black_box(d), black_box(s), black_box(n)) })
            });
        }
    }
    group.finish();
}

fn bench_memset(c: &mut Criterion) {
    let mut group = c.benchmark_group("memset");
    for n in SIZES {
        configure(&mut group, n);
        let mut dst = Aligned::new(n, 0);
        let d = dst.slice().as_mut_ptr();
        let id = |f: &str| BenchmarkId::new(f, n);
        group.bench_function(id("veridian"), |b| {
            // SAFETY: the pointers name live buffers of `n` bytes set up above.
            b.iter(|| unsafe { veridian_simd::memset(black_box(d), black_box(0x33), black_box(n)) })
        });
        group.bench_function(id("glibc"), |b| {
            b.iter(|| {
                // SAFETY: the pointers name live buffers of `n` bytes set up above.
                let dd = unsafe { std::slice::from_raw_parts_mut(black_box(d), black_box(n)) };
                dd.fill(black_box(0x33))
            })
        });
        group.bench_function(id("rep_movsb"), |b| {
            // SAFETY: the pointers name live buffers of `n` bytes set up above.
            b.iter(|| unsafe { peers::rep_stosb(black_box(d), black_box(0x33), black_box(n)) })
        });
        group.bench_function(id("builtins_like"), |b| {
            // SAFETY: the pointers name live buffers of `n` bytes set up above.
            b.iter(|| unsafe {
                peers::builtins_set_bytes(black_box(d), black_box(0x33), black_box(n))
            })
        });
        for r in variants() {
            group.bench_function(id(r.variant().name()), |b| {
                // SAFETY: the pointers name live buffers of `n` bytes set up above.
                b.iter(|| unsafe { r.memset(black_box(d), black_box(0x33), black_box(n)) })
            });
        }
    }
    group.finish();
}

fn bench_memmove(c: &mut Criterion) {
    let mut group = c.benchmark_group("memmove");
    for n in SIZES {
        configure(&mut group, n);
        let shift = n / 2;
        let mut buf = Aligned::new(n + shift, 0x77);
        let base = buf.slice().as_mut_ptr();
        let (s, d) = (base as *const u8, base.wrapping_add(shift));
        let id = |f: &str| BenchmarkId::new(f, n);
        // `s..s + n` and `d..d + n` lie in one live buffer of `n + n / 2` bytes; every routine
        // here handles the overlap.
        group.bench_function(id("veridian"), |b| {
            // SAFETY: the pointers name live buffers of `n` bytes set up above.
            b.iter(|| unsafe { veridian_simd::memmove(black_box(d), black_box(s), black_box(n)) })
        });
        group.bench_function(id("glibc"), |b| {
            b.iter(|| {
                // SAFETY: the pointers name live buffers of `n` bytes set up above.
                let all = unsafe { std::slice::from_raw_parts_mut(black_box(base), n + shift) };
                all.copy_within(0..black_box(n), shift)
            })
        });
        group.bench_function(id("rep_movsb"), |b| {
            // SAFETY: the pointers name live buffers of `n` bytes set up above.
            b.iter(|| unsafe {
                peers::rep_movsb_backward(black_box(d), black_box(s), black_box(n))
            })
        });
        group.bench_function(id("builtins_like"), |b| {
            // SAFETY: the pointers name live buffers of `n` bytes set up above.
            b.iter(|| unsafe { peers::builtins_memmove(black_box(d), black_box(s), black_box(n)) })
        });
        for r in variants() {
            group.bench_function(id(r.variant().name()), |b| {
                // SAFETY: the pointers name live buffers of `n` bytes set up above.
                b.iter(|| unsafe { r.memmove(black_box(d), black_box(s), black_box(n)) })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_memcpy, bench_memset, bench_memmove);
criterion_main!(benches);
