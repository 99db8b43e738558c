//! Assembles s2n-bignum's edwards25519 base-point multiplication and point encoding on
//! x86-64 Linux and sets `cfg(basepoint_asm)`; elsewhere the crate uses curve25519-dalek's.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(basepoint_asm)");
    println!("cargo::rerun-if-changed=s2n-bignum");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch != "x86_64" || os != "linux" {
        return;
    }
    let mut build = cc::Build::new();
    build.include("s2n-bignum").define("WINDOWS_ABI", "0");
    // Our own names, so that a binary that also links aws-lc (which carries the same
    // functions under s2n-bignum's names) links.
    for f in [
        "edwards25519_scalarmulbase",
        "edwards25519_scalarmulbase_alt",
        "edwards25519_encode",
    ] {
        build.define(f, Some(format!("openhive_s2n_{f}").as_str()));
        build.file(format!("s2n-bignum/{f}.S"));
    }
    build.compile("openhive_s2n_bignum");
    println!("cargo::rustc-cfg=basepoint_asm");
}
