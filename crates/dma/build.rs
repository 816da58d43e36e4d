//! Declares the `loom` cfg used by the model-checked flush-queue protocol.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
