//! Ed25519's base-point multiplication, `[r]B` compressed: the one curve operation of
//! signing (RFC 8032 §5.1.6, step 2), and ~80 % of its cost with curve25519-dalek.
//!
//! On x86-64 Linux it runs s2n-bignum's `edwards25519_scalarmulbase` and
//! `edwards25519_encode` (`s2n-bignum/`, AT&T assembly, formally verified and constant-time
//! by their authors; SPDX `Apache-2.0 OR ISC OR MIT-0`), taking the variant with `MULX`
//! and `ADCX`/`ADOX` when the CPU has BMI2 and ADX and the plain one otherwise, as aws-lc
//! does. Elsewhere it is curve25519-dalek's `EdwardsPoint::mul_base`. Both give the same
//! bytes for every scalar (the tests compare them), so a signature does not depend on the
//! machine that made it.
//!
//! Invariants:
//! - the only `unsafe` is the two calls into the assembly, each with buffers of exactly
//!   the sizes its contract names (`res[8]`, `scalar[4]`; `z[32]`, `p[8]`);
//! - it never branches on the scalar: both paths are constant-time in it.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;

/// `[s]B`, compressed (RFC 8032's encoding).
pub fn mul_base(s: &Scalar) -> CompressedEdwardsY {
    #[cfg(basepoint_asm)]
    {
        asm::mul_base(s)
    }
    #[cfg(not(basepoint_asm))]
    {
        portable(s)
    }
}

/// curve25519-dalek's multiplication: the fallback, and what the assembly is checked
/// against.
pub fn portable(s: &Scalar) -> CompressedEdwardsY {
    EdwardsPoint::mul_base(s).compress()
}

/// Which implementation [`mul_base`] runs here (for benchmarks and logs).
pub fn implementation() -> &'static str {
    #[cfg(basepoint_asm)]
    {
        if asm::has_mulx_adx() {
            "s2n-bignum (BMI2+ADX)"
        } else {
            "s2n-bignum (plain)"
        }
    }
    #[cfg(not(basepoint_asm))]
    {
        "curve25519-dalek"
    }
}

#[cfg(basepoint_asm)]
mod asm {
    use super::{CompressedEdwardsY, Scalar};

    unsafe extern "C" {
        // build.rs renames s2n-bignum's symbols with this prefix.
        fn openhive_s2n_edwards25519_scalarmulbase(res: *mut u64, scalar: *const u64);
        fn openhive_s2n_edwards25519_scalarmulbase_alt(res: *mut u64, scalar: *const u64);
        fn openhive_s2n_edwards25519_encode(z: *mut u8, p: *const u64);
    }

    pub(super) fn has_mulx_adx() -> bool {
        // std caches the CPUID answer: after the first call this is a load and a test.
        std::is_x86_feature_detected!("bmi2") && std::is_x86_feature_detected!("adx")
    }

    type ScalarMulBase = unsafe extern "C" fn(res: *mut u64, scalar: *const u64);

    pub(super) fn mul_base(s: &Scalar) -> CompressedEdwardsY {
        if has_mulx_adx() {
            with(openhive_s2n_edwards25519_scalarmulbase, s)
        } else {
            with(openhive_s2n_edwards25519_scalarmulbase_alt, s)
        }
    }

    /// The plain variant, which [`mul_base`] takes only on CPUs without BMI2 or ADX.
    #[cfg(test)]
    pub(super) fn mul_base_plain(s: &Scalar) -> CompressedEdwardsY {
        with(openhive_s2n_edwards25519_scalarmulbase_alt, s)
    }

    fn with(scalarmulbase: ScalarMulBase, s: &Scalar) -> CompressedEdwardsY {
        // The scalar as four little-endian 64-bit words.
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(s.as_bytes().chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(chunk);
            *limb = u64::from_le_bytes(le);
        }
        // The affine point (x, y), each coordinate reduced mod 2^255 - 19.
        let mut point = [0u64; 8];
        let mut out = [0u8; 32];
        // SAFETY: `point` holds the 8 words and `limbs` the 4 that `scalarmulbase` writes and
        // reads, `out` the 32 bytes and `point` the 8 words that `encode` writes and reads;
        // neither reads anything else or keeps a pointer.
        unsafe {
            scalarmulbase(point.as_mut_ptr(), limbs.as_ptr());
            openhive_s2n_edwards25519_encode(out.as_mut_ptr(), point.as_ptr());
        }
        CompressedEdwardsY(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn edge_scalars() -> Vec<Scalar> {
        let mut v = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, Scalar::from(2u8)];
        // Powers of two across every limb boundary, and their negations (near the order).
        for i in [7u32, 63, 64, 127, 128, 191, 192, 251] {
            let mut b = [0u8; 32];
            b[(i / 8) as usize] = 1 << (i % 8);
            let s = Scalar::from_bytes_mod_order(b);
            v.push(s);
            v.push(-s);
        }
        v
    }

    #[test]
    fn edge_scalars_give_dalek_s_points() {
        for s in edge_scalars() {
            assert_eq!(mul_base(&s), portable(&s), "scalar {:?}", s.as_bytes());
        }
    }

    #[test]
    fn zero_gives_the_identity_and_one_the_base_point() {
        assert_eq!(
            mul_base(&Scalar::ZERO),
            curve25519_dalek::traits::Identity::identity()
        );
        assert_eq!(
            mul_base(&Scalar::ONE),
            curve25519_dalek::constants::ED25519_BASEPOINT_COMPRESSED
        );
    }

    proptest! {
        #[test]
        fn every_scalar_gives_dalek_s_point(wide in proptest::array::uniform32(any::<u8>()),
                                            high in proptest::array::uniform32(any::<u8>())) {
            let mut b = [0u8; 64];
            b[..32].copy_from_slice(&wide);
            b[32..].copy_from_slice(&high);
            let s = Scalar::from_bytes_mod_order_wide(&b);
            prop_assert_eq!(mul_base(&s), portable(&s));
        }
    }

    #[cfg(basepoint_asm)]
    proptest! {
        #[test]
        fn the_plain_variant_agrees(wide in proptest::array::uniform32(any::<u8>())) {
            let s = Scalar::from_bytes_mod_order(wide);
            prop_assert_eq!(asm::mul_base_plain(&s), portable(&s));
        }
    }
}
