//! Prints what the crate detects on this machine and what the dispatch chooses:
//! `cargo run -p veridian-simd --example cpu_report`.

fn main() {
    let info = veridian_simd::cpu::cpu_info();
    println!("features:   {:?}", info.features);
    println!("xcr0:       {:#x}", info.xcr0);
    println!("caches:     {:?}", info.caches);
    for v in veridian_simd::Variant::ALL {
        let state = if v.routines().is_some() {
            "supported"
        } else {
            "not supported"
        };
        println!("variant {:8} {state}", v.name());
    }
    // The first dispatched call detects the CPU and sets the thresholds.
    let mut buf = [0u8; 64];
    veridian_simd::fill(&mut buf, 1);
    println!("dispatch:   {}", veridian_simd::selected_variant().name());
    println!("thresholds: {:?}", veridian_simd::thresholds());
}
