//! Links `lithos_knot` as a position-dependent executable.
//!
//! A knot runs per container, so its resident memory is multiplied. In a PIE the dynamic
//! loader writes every absolute pointer of `.data.rel.ro` at start-up, which turns about
//! 30 KiB of that section into private dirty pages. Linked at a fixed address, those pages
//! stay clean and shared with the file. The knot reads no untrusted input, so giving up
//! address randomisation of its own image costs little.

fn main() {
    println!("cargo:rustc-link-arg-bin=lithos_knot=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
