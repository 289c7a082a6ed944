//! Footprint.
fn main() {}
