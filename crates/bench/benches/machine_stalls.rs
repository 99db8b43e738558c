//! Is this machine steady enough for tail-latency figures? Runs one fixed piece of pure
//! arithmetic (no memory, no system calls, no other thread) over and over for
//! `MACHINE_STALLS_SECS` seconds (default 10) and prints how long each took: the median, and
//! every stretch in which the same work ran more than 5x slower than that median. On a
//! steady machine there is none; a p99 taken while there are some measures the machine.
//! Then the same arithmetic in pieces of ~9 ms (a common-term search's size), 300 times:
//! their p50 and p99, as the search figures report them.
//!
//! `cargo bench -p openhive-bench --bench machine_stalls` (docs/PERFORMANCE.md,
//! "The machine's stalls").

use std::hint::black_box;
use std::time::{Duration, Instant};

/// `n` steps of a linear congruential generator: pure register arithmetic.
fn work(n: u64) -> u64 {
    let mut x: u64 = black_box(1);
    for _ in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    black_box(x)
}

fn timed(n: u64) -> Duration {
    let t = Instant::now();
    work(n);
    t.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let secs: u64 = std::env::var("MACHINE_STALLS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    // Calibrate a chunk of 0.25-0.5 ms (doubled until it takes at least 0.25 ms).
    let mut chunk: u64 = 10_000;
    while timed(chunk) < Duration::from_micros(250) {
        chunk *= 2;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let at = start.elapsed();
        times.push((at, timed(chunk)));
    }
    let mut sorted: Vec<Duration> = times.iter().map(|&(_, d)| d).collect();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    // Stretches of consecutive chunks each over 5x the median.
    let mut stretches: Vec<(Duration, Duration, usize)> = Vec::new(); // (start, spent, chunks)
    let mut open = false;
    for &(at, d) in &times {
        if d > median * 5 {
            match stretches.last_mut() {
                Some(s) if open => {
                    s.1 += d;
                    s.2 += 1;
                }
                _ => stretches.push((at, d, 1)),
            }
            open = true;
        } else {
            open = false;
        }
    }
    let stalled: Duration = stretches.iter().map(|s| s.1).sum();
    println!(
        "{} chunks of {chunk} steps in {secs} s: median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        times.len(),
        ms(median),
        ms(sorted[sorted.len() * 99 / 100]),
        ms(sorted[sorted.len() - 1]),
    );
    println!(
        "stretches over 5x the median: {}, {:.0} ms in them ({:.1} % of the run)",
        stretches.len(),
        ms(stalled),
        100.0 * stalled.as_secs_f64() / secs as f64
    );
    for (at, spent, n) in stretches.iter().take(12) {
        println!(
            "  at {:8.1} ms: {n} chunks in {:.1} ms ({:.1}x the median each)",
            ms(*at),
            ms(*spent),
            spent.as_secs_f64() / (median.as_secs_f64() * *n as f64)
        );
    }
    // Pieces of ~9 ms, as one search query.
    let piece = chunk * (9.0 / ms(median)).round().max(1.0) as u64;
    let mut pieces: Vec<Duration> = (0..300).map(|_| timed(piece)).collect();
    pieces.sort();
    println!(
        "300 pieces of ~9 ms of the same work: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pieces[150]),
        ms(pieces[297]),
        ms(pieces[299])
    );
}
