//! Links every program with `user.ld` at the ABI's `PROGRAM_BASE`, as a static non-PIE
//! executable (the code itself is position-dependent: `-C relocation-model=static` in
//! `.cargo/config.toml`).

/// The ABI, for `layout::PROGRAM_BASE` (the one definition of where programs are linked).
#[allow(dead_code)]
#[path = "../rt/src/abi.rs"]
mod abi;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=user.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../rt/src/abi.rs");
    println!("cargo:rustc-link-arg-bins=-T{dir}/user.ld");
    println!(
        "cargo:rustc-link-arg-bins=--defsym=PROGRAM_BASE={:#x}",
        abi::layout::PROGRAM_BASE
    );
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=0x1000");
}
