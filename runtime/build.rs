//! Link settings for the `outrigger` binary.

fn main() {
    // Relative relocations packed as DT_RELR (glibc 2.36+, lld): the table the loader reads at
    // start-up shrinks from about 1.5 MB to a few KB, and those pages no longer stay resident in
    // every sidecar.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    // The functions a running sidecar executes, recorded by `link/record-symbol-order.sh`, are
    // laid out first and together: fewer code pages are touched, so fewer stay resident. A name
    // the build no longer has is skipped; a stale list costs memory, never correctness.
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let order = std::path::Path::new(&manifest).join("link/symbol-order.txt");
        println!("cargo:rerun-if-changed={}", order.display());
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
