//! Benchmarks of the DMA API (filled in below).
fn main() {}
