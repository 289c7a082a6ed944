//! Links a foreign-kernel example with the shared linker script (`boot/linker.ld`, the image at
//! 1 MiB where QEMU's PVH loader puts it) as a position-dependent executable. Shared by the
//! examples through `build = "../boot/build.rs"` in their manifests.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let script = manifest_dir.join("../boot/linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // The target links a static PIE by default; the 32-bit entry code uses absolute
        // addresses, so the image is linked at fixed addresses instead.
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
