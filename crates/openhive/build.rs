//! Links the `openhive` binary with `symbol-order.txt` (scripts/symbol-order.sh makes it):
//! the functions a server runs at start and while idle first, then those it runs under
//! load, so an idle server maps a few pages of code instead of most of the binary (see
//! docs/PERFORMANCE.md, "Idle RSS"). Only where the linker is LLD, rustc's default for
//! x86_64-unknown-linux-gnu; `OPENHIVE_NO_SYMBOL_ORDER=1`, or rustflags that choose
//! another linker, leave the default layout. Names the build does not have are ignored.

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=OPENHIVE_NO_SYMBOL_ORDER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    // rustc links with its own LLD there unless told otherwise (rust-version 1.95; the
    // default since 1.90); GNU ld does not know the option.
    let other_linker = ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|f| rustflags.contains(f));
    if target != "x86_64-unknown-linux-gnu"
        || other_linker
        || std::env::var_os("OPENHIVE_NO_SYMBOL_ORDER").is_some()
    {
        return;
    }
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = std::path::Path::new(&dir).join("symbol-order.txt");
    if order.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
