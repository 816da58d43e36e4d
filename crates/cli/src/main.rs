//! The `iommu` command (skeleton until the CLI issue lands).

fn main() {
    eprintln!("iommu: not implemented yet");
    std::process::exit(2);
}
