//! `symbol-order.txt` (the linker's function order, `build.rs`) is a list LLD takes: one
//! symbol name per line, no blanks, no duplicates, and the start-up code in it. A file
//! made by a broken run of `scripts/symbol-order.sh` (an empty callgrind output, messages
//! on stdout) fails here instead of silently giving back the idle memory.

#[test]
fn the_symbol_order_is_one_unique_symbol_per_line_with_start_up_first() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let names: Vec<&str> = text.lines().collect();
    assert!(names.len() > 1000, "{} names", names.len());
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.iter().enumerate() {
        assert!(
            !n.is_empty() && !n.contains(char::is_whitespace),
            "line {}: {n:?}",
            i + 1
        );
        assert!(seen.insert(*n), "line {}: {n} twice", i + 1);
    }
    // The idle group comes first: the binary's `main` and SQLite's start-up are in it.
    let start = &names[..names.len() / 2];
    assert!(start.contains(&"main"));
    assert!(start.contains(&"sqlite3_initialize"));
}
