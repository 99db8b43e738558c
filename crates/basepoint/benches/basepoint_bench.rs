//! `[r]B` compressed, per call: the assembly this crate runs here against
//! curve25519-dalek's, alternated in rounds (the machine is shared), best and median.
//!
//! `cargo bench -p openhive-basepoint --bench basepoint_bench`

use curve25519_dalek::scalar::Scalar;
use std::time::Instant;

const CALLS: usize = 2_000;
const ROUNDS: usize = 9;

fn time(
    f: fn(&Scalar) -> curve25519_dalek::edwards::CompressedEdwardsY,
    scalars: &[Scalar],
) -> f64 {
    let t = Instant::now();
    let mut acc = 0u8;
    for s in scalars {
        acc ^= f(s).as_bytes()[0];
    }
    std::hint::black_box(acc);
    t.elapsed().as_secs_f64() * 1e6 / scalars.len() as f64
}

fn main() {
    let scalars: Vec<Scalar> = (0..CALLS)
        .map(|i| {
            let mut wide = [0u8; 64];
            for (j, b) in wide.iter_mut().enumerate() {
                *b = (i.wrapping_mul(131) ^ j.wrapping_mul(29)) as u8;
            }
            Scalar::from_bytes_mod_order_wide(&wide)
        })
        .collect();
    let (mut ours, mut dalek) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(time(openhive_basepoint::mul_base, &scalars));
        dalek.push(time(openhive_basepoint::portable, &scalars));
    }
    ours.sort_by(f64::total_cmp);
    dalek.sort_by(f64::total_cmp);
    println!("[r]B compressed, µs per call, best / median of {ROUNDS} rounds of {CALLS}:");
    println!(
        "  {:<28} {:>6.2} / {:>6.2}",
        openhive_basepoint::implementation(),
        ours[0],
        ours[ROUNDS / 2]
    );
    println!(
        "  {:<28} {:>6.2} / {:>6.2}",
        "curve25519-dalek",
        dalek[0],
        dalek[ROUNDS / 2]
    );
}
