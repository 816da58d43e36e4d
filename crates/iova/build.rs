//! Declares the `loom` cfg so `--cfg loom` builds (the loom tests) do not warn.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
