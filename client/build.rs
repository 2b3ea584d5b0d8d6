//! The `cachefill` executable is linked at a fixed address (not position-independent) on
//! Linux: a position-independent one starts by patching about 100,000 pointers in its
//! read-only data, a copy-on-write page fault for each page, which was most of the 5 ms a
//! `cachefill` command took before doing anything. The library and the Python extension stay
//! position-independent.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-link-arg-bin=cachefill=-no-pie");
    }
}
