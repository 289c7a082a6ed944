//! With `export-mem-symbols`, this test binary's `memcpy`/`memmove`/`memset`/`memcmp`/`bcmp`
//! are the crate's: every copy the standard library and the test harness make goes through them
//! (including the very first one, which runs the CPU detection). A recursion between the
//! symbols and the dispatch would overflow the stack here; a wrong routine would corrupt the
//! harness itself. Run with `cargo test -p veridian-simd --features export-mem-symbols --test export`.
#![cfg(feature = "export-mem-symbols")]

use std::collections::BTreeMap;

unsafe extern "C" {
    #[link_name = "memcpy"]
    fn c_memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    #[link_name = "memset"]
    fn c_memset(dst: *mut u8, c: i32, n: usize) -> *mut u8;
}

#[test]
fn the_symbols_are_ours() {
    assert_eq!(
        c_memcpy as *const () as usize,
        veridian_simd::export::memcpy as *const () as usize
    );
    assert_eq!(
        c_memset as *const () as usize,
        veridian_simd::export::memset as *const () as usize
    );
}

#[test]
fn std_copies_through_the_exported_symbols() {
    let mut map = BTreeMap::new();
    for i in 0..2000u32 {
        let v: Vec<u8> = (0..(i % 700)).map(|j| (i ^ j) as u8).collect();
        map.insert(i, v.clone());
        assert_eq!(map[&i], v);
    }
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 3) as u8).collect();
    let copy = big.clone();
    assert!(copy == big);
    let mut moved = big.clone();
    moved.copy_within(0..4_000_000, 1_000_000);
    assert!(moved[1_000_000..] == big[..4_000_000]);
    let zeros = vec![0u8; 3_000_000];
    assert!(zeros.iter().all(|&b| b == 0));
    let s = format!("{:?}", (0..100).collect::<Vec<_>>());
    assert!(s.starts_with("[0, 1, 2"));
    // SAFETY: 16 writable bytes, 16 readable bytes.
    unsafe {
        let mut d = [0u8; 16];
        c_memcpy(d.as_mut_ptr(), b"0123456789abcdef".as_ptr(), 16);
        assert_eq!(&d, b"0123456789abcdef");
        c_memset(d.as_mut_ptr(), 0x141, 16); // low byte only, as in C
        assert_eq!(d, [0x41; 16]);
    }
}
