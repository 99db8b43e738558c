//! The instance's Ed25519 key and the encodings used on the wire.
//!
//! - Public key: standard base64 (padded) of the 44-byte SPKI DER form
//!   (`302a300506032b6570032100` ‖ 32-byte key), as the TypeScript OpenHive sends it.
//! - Signature: standard base64 (padded) of the 64 raw signature bytes.
//! - Private key: never encoded for the wire. It is persisted as the hex 32-byte seed in a
//!   0600 file of the data directory (see the server's `identity` module).
//!
//! One verification rule everywhere, ZIP-215 (<https://zips.z.cash/zip-0215>, the
//! `ed25519-zebra` crate): `s` canonical, `A` and `R` any encoding of a curve point, and the
//! cofactored equation `[8][s]B = [8]R + [8][k]A`. Its point is that checking many
//! signatures at once ([`verify_each`], ~3-5 times cheaper per signature) and checking
//! one ([`PublicKey::verify`]) give the same answer for every input, so whether an event
//! is accepted never depends on the batch it arrived in. Every signature RFC 8032's strict
//! rule (`ed25519-dalek`'s `verify_strict`, used here before) accepts is accepted; it
//! also accepts signatures whose `R` carries a small-order component, which only the key's
//! holder can make. Keys keep their own rules ([`PublicKey::from_base64`]: canonical, not
//! small-order), checked once per key, whatever the signatures.
//! Signing is RFC 8032's (deterministic: the reference vector below), written out here
//! so that its one curve operation, `[r]B`, runs on `openhive-basepoint` (s2n-bignum's
//! x86-64 assembly, half the time of curve25519-dalek's); every signature is the one
//! `ed25519-dalek` makes from the same seed and message (test
//! `signatures_are_ed25519_dalek_s_byte_for_byte`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{SigningKey, VerifyingKey};
use ed25519_zebra::batch;
use ed25519_zebra::{Signature, VerificationKey};
use std::fmt;
use zeroize::Zeroize as _;

const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("public key is not base64 of a 44-byte Ed25519 SPKI")]
    BadPublicKey,
    #[error("public key is a small-order (weak) Ed25519 point")]
    WeakPublicKey,
    #[error("public key is not canonically encoded")]
    NonCanonicalPublicKey,
    #[error("signature is not base64 of 64 bytes")]
    BadSignatureEncoding,
    #[error("signature does not verify")]
    BadSignature,
    #[error("private key seed is not 64 hex characters")]
    BadSeed,
}

/// An instance's signing key. `Debug` never prints the secret.
#[derive(Clone)]
pub struct InstanceKey {
    key: SigningKey,
    /// The seed expanded for signing (RFC 8032 §5.1.5), derived once.
    expanded: Expanded,
    /// Its public half, in the form that verifies (derived once, from the seed).
    public: PublicKey,
}

/// A seed expanded (RFC 8032 §5.1.5): the secret scalar `s` (mod the group's order, which
/// changes neither `[s]B` nor `S`) and the prefix that derives each signature's nonce.
#[derive(Clone)]
struct Expanded {
    scalar: Scalar,
    prefix: [u8; 32],
    /// `[s]B` compressed: the public key's 32 bytes, hashed into every signature.
    public: [u8; 32],
}

impl Drop for Expanded {
    fn drop(&mut self) {
        self.scalar.zeroize();
        self.prefix.zeroize();
    }
}

impl Expanded {
    fn from_seed(seed: &[u8; 32]) -> Self {
        use sha2::Digest as _;
        let h: [u8; 64] = sha2::Sha512::digest(seed).into();
        let mut lower = [0u8; 32];
        lower.copy_from_slice(&h[..32]);
        let mut prefix = [0u8; 32];
        prefix.copy_from_slice(&h[32..]);
        let scalar = Scalar::from_bytes_mod_order(curve25519_dalek::scalar::clamp_integer(lower));
        let public = openhive_basepoint::mul_base(&scalar).to_bytes();
        Self {
            scalar,
            prefix,
            public,
        }
    }

    /// RFC 8032 §5.1.6: `r = H(prefix ‖ M)`, `R = [r]B`, `k = H(R ‖ A ‖ M)`,
    /// `S = r + k·s`; the signature is `R ‖ S`.
    fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use sha2::Digest as _;
        let wide = |h: sha2::Sha512| -> Scalar {
            let bytes: [u8; 64] = h.finalize().into();
            Scalar::from_bytes_mod_order_wide(&bytes)
        };
        let mut r = wide(
            sha2::Sha512::new()
                .chain_update(self.prefix)
                .chain_update(msg),
        );
        let big_r = openhive_basepoint::mul_base(&r);
        let k = wide(
            sha2::Sha512::new()
                .chain_update(big_r.as_bytes())
                .chain_update(self.public)
                .chain_update(msg),
        );
        let s = k * self.scalar + r;
        r.zeroize();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }
}

impl fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceKey({})", self.public().to_base64())
    }
}

impl InstanceKey {
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        Self::from_seed(&seed)
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
            expanded: Expanded::from_seed(seed),
            public: PublicKey(VerificationKey::from(&ed25519_zebra::SigningKey::from(
                *seed,
            ))),
        }
    }

    pub fn from_seed_hex(hex_seed: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(hex_seed.trim()).map_err(|_| KeyError::BadSeed)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadSeed)?;
        Ok(Self::from_seed(&seed))
    }

    /// The seed as hex, for the 0600 key file only.
    pub fn seed_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// A 32-byte secret for `purpose`, derived from the seed (SHA-256 of a domain label, the
    /// purpose and the seed): keys for local use (sealing stored secrets) that live only
    /// where the instance key lives, the 0600 key file.
    pub fn derive_secret(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"openhive derived secret v1\0");
        h.update(purpose.as_bytes());
        h.update(b"\0");
        h.update(self.key.to_bytes());
        h.finalize().into()
    }

    /// Signs `msg` and returns the base64 signature.
    pub fn sign_b64(&self, msg: &[u8]) -> String {
        B64.encode(self.expanded.sign(msg))
    }
}

/// Keys [`PublicKey::from_base64`] accepted, by their text (only accepted ones: a refusal is
/// checked again each time). Cleared when full.
const PARSED_KEYS_MAX: usize = 4096;

fn parsed_keys() -> &'static std::sync::Mutex<std::collections::HashMap<String, PublicKey>> {
    static KEYS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, PublicKey>>,
    > = std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default)
}

/// A verifying key (checked by [`PublicKey::from_base64`], or our own).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerificationKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl PublicKey {
    pub fn to_base64(&self) -> String {
        let mut der = Vec::with_capacity(44);
        der.extend_from_slice(&SPKI_PREFIX);
        der.extend_from_slice(self.0.as_ref());
        B64.encode(der)
    }

    /// Parses a peer's key. The one place every key from outside is parsed (handshakes,
    /// rosters, stored keys), so it refuses, besides malformed input:
    /// - small-order ("weak") points, such as the all-zero key: a signature can verify
    ///   under them for almost any message, and since the first key learned for an instance
    ///   wins, accepting one would pin that instance to a key nothing meaningfully verifies
    ///   against;
    /// - non-canonical encodings (a y coordinate ≥ p, a sign bit on x = 0, a base64 text
    ///   other than the standard one): one key, one text, so keys compare as strings.
    ///
    /// Keys accepted are remembered (a bounded map, per process): parsing decompresses a curve
    /// point, and the same few keys are parsed again for every hive a sync batch covers.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        if let Some(k) = parsed_keys().lock().ok().and_then(|m| m.get(s).copied()) {
            return Ok(k);
        }
        let key = Self::parse(s)?;
        if let Ok(mut m) = parsed_keys().lock() {
            if m.len() >= PARSED_KEYS_MAX {
                m.clear();
            }
            m.insert(s.to_string(), key);
        }
        Ok(key)
    }

    fn parse(s: &str) -> Result<Self, KeyError> {
        let der = B64.decode(s).map_err(|_| KeyError::BadPublicKey)?;
        if der.len() != 44 || der[..12] != SPKI_PREFIX {
            return Err(KeyError::BadPublicKey);
        }
        if B64.encode(&der) != s {
            return Err(KeyError::NonCanonicalPublicKey);
        }
        let raw: [u8; 32] = der[12..].try_into().map_err(|_| KeyError::BadPublicKey)?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::BadPublicKey)?;
        if key.to_edwards().compress().to_bytes() != raw {
            return Err(KeyError::NonCanonicalPublicKey);
        }
        if key.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        VerificationKey::try_from(ed25519_zebra::VerificationKeyBytes::from(raw))
            .map(PublicKey)
            .map_err(|_| KeyError::BadPublicKey)
    }

    /// Checks a base64 signature over `msg` (ZIP-215, see the module's documentation).
    pub fn verify(&self, msg: &[u8], signature_b64: &str) -> Result<(), KeyError> {
        let sig = decode_signature(signature_b64)?;
        self.0.verify(&sig, msg).map_err(|_| KeyError::BadSignature)
    }
}

fn decode_signature(signature_b64: &str) -> Result<Signature, KeyError> {
    let bytes = B64
        .decode(signature_b64)
        .map_err(|_| KeyError::BadSignatureEncoding)?;
    let raw: [u8; 64] = bytes
        .try_into()
        .map_err(|_| KeyError::BadSignatureEncoding)?;
    Ok(Signature::from_bytes(&raw))
}

/// Below this many signatures [`verify_each`] checks them one by one: a batch of one or two
/// costs about what their single checks do.
const BATCH_MIN: usize = 3;

/// Checks each `(message, base64 signature, key)`, the answer aligned with `items`: the same
/// answers as [`PublicKey::verify`] item by item (ZIP-215 makes the batch and the single
/// check agree), for a fraction of the CPU when they are many. All are checked in one batch
/// first; if the batch fails, each is checked on its own to find the bad ones, so a batch
/// with a forged signature costs its single checks on top.
pub fn verify_each(items: &[(&[u8], &str, &PublicKey)]) -> Vec<bool> {
    let mut out = vec![false; items.len()];
    let mut queued = Vec::with_capacity(items.len());
    for (i, (msg, sig, key)) in items.iter().enumerate() {
        if let Ok(sig) = decode_signature(sig) {
            let vk = ed25519_zebra::VerificationKeyBytes::from(key.0);
            queued.push((i, batch::Item::from((vk, sig, *msg))));
        }
    }
    if queued.len() >= BATCH_MIN {
        let mut verifier = batch::Verifier::new();
        for (_, item) in &queued {
            verifier.queue(item.clone());
        }
        if verifier.verify(rand::rng()).is_ok() {
            for (i, _) in &queued {
                out[*i] = true;
            }
            return out;
        }
    }
    for (i, item) in queued {
        out[i] = item.verify_single().is_ok();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference implementation's vector (openhive-reference.md §5.3).
    #[test]
    fn reference_test_vector() {
        let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
        let key = InstanceKey::from_seed(&seed);
        assert_eq!(
            key.public().to_base64(),
            "MCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
        );
        let payload = r#"{"post_id":"p1","title":"Hello","content":"héllo wörld","url":null,"author":{"instance_id":"inst_A","agent_id":"a1","name":"alice","avatar_url":null}}"#;
        let sig = key.sign_b64(payload.as_bytes());
        assert_eq!(
            sig,
            "USE+Jn34lYMUcc2BWLpUGVE2IFYa0k19VdqcM38WWNnAV+Q1REiYYv7vCj7FeHCvmUs07Iu2cdLBxBy0/1hjDw=="
        );
        assert_eq!(key.public().verify(payload.as_bytes(), &sig), Ok(()));
        assert_eq!(
            key.public().verify(b"tampered", &sig),
            Err(KeyError::BadSignature)
        );
    }

    /// Our RFC 8032 signing ([`Expanded::sign`], `[r]B` on `openhive-basepoint`) makes the
    /// signature `ed25519-dalek` makes, for any seed and message, and derives the same key.
    #[test]
    fn signatures_are_ed25519_dalek_s_byte_for_byte() {
        use ed25519_dalek::Signer as _;
        use proptest::prelude::*;
        proptest!(|(seed in proptest::array::uniform32(any::<u8>()),
                    msg in proptest::collection::vec(any::<u8>(), 0..700))| {
            let ours = InstanceKey::from_seed(&seed);
            let dalek = SigningKey::from_bytes(&seed);
            prop_assert_eq!(ours.expanded.public, dalek.verifying_key().to_bytes());
            prop_assert_eq!(ours.sign_b64(&msg), B64.encode(dalek.sign(&msg).to_bytes()));
        });
    }

    /// Parsed keys are remembered: a second parse gives the same key, and a refused text is
    /// refused again (only accepted keys are kept), also once the memory was full.
    #[test]
    fn remembered_keys_parse_alike_and_refusals_stay_refusals() {
        let k = InstanceKey::generate().public();
        let text = k.to_base64();
        assert_eq!(PublicKey::from_base64(&text), Ok(k));
        assert_eq!(PublicKey::from_base64(&text), Ok(k));
        for _ in 0..=PARSED_KEYS_MAX {
            let _ = PublicKey::from_base64(&InstanceKey::generate().public().to_base64());
        }
        assert_eq!(PublicKey::from_base64(&text), Ok(k));
        let zero = B64.encode([&SPKI_PREFIX[..], &[0u8; 32]].concat());
        assert_eq!(PublicKey::from_base64(&zero), Err(KeyError::WeakPublicKey));
        assert_eq!(PublicKey::from_base64(&zero), Err(KeyError::WeakPublicKey));
        assert!(parsed_keys().lock().unwrap().len() <= PARSED_KEYS_MAX);
    }

    #[test]
    fn public_key_round_trips_and_rejects_garbage() {
        let k = InstanceKey::generate().public();
        assert_eq!(PublicKey::from_base64(&k.to_base64()), Ok(k));
        assert!(PublicKey::from_base64("AAAA").is_err());
        assert!(PublicKey::from_base64("not base64!").is_err());
    }

    fn spki(raw: [u8; 32]) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        B64.encode(der)
    }

    #[test]
    fn weak_and_non_canonical_keys_are_refused() {
        // The all-zero key decodes to a point of order 4; the identity (y = 1) has order 1.
        assert_eq!(
            PublicKey::from_base64(&spki([0; 32])),
            Err(KeyError::WeakPublicKey)
        );
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_base64(&spki(identity)),
            Err(KeyError::WeakPublicKey)
        );
        // y = p + 1 encodes the identity again, non-canonically (y >= p).
        let mut y_over_p = [0xffu8; 32];
        y_over_p[0] = 0xee;
        y_over_p[31] = 0x7f;
        assert_eq!(
            PublicKey::from_base64(&spki(y_over_p)),
            Err(KeyError::NonCanonicalPublicKey)
        );
        // A real key with its x sign bit flipped is another (valid) point, but the key with
        // y = 1 and the sign bit set (x = 0 cannot be negative) is not canonical.
        let mut neg_zero = identity;
        neg_zero[31] |= 0x80;
        assert!(PublicKey::from_base64(&spki(neg_zero)).is_err());
        // Base64 with non-zero padding bits decodes to the same bytes: refused too.
        let good = InstanceKey::generate().public().to_base64();
        assert!(PublicKey::from_base64(&good).is_ok());
        let last = good.len() - 2; // the character before the single '='
        let mut alt = good.clone().into_bytes();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let idx = alphabet.iter().position(|c| *c == alt[last]).unwrap_or(0);
        alt[last] = alphabet[idx ^ 1];
        let alt = String::from_utf8(alt).unwrap_or_default();
        assert!(PublicKey::from_base64(&alt).is_err(), "{alt}");
    }

    #[test]
    fn seed_round_trips_and_debug_hides_it() {
        let k = InstanceKey::generate();
        let k2 = InstanceKey::from_seed_hex(&k.seed_hex()).unwrap();
        assert_eq!(k.public(), k2.public());
        assert!(!format!("{k:?}").contains(&k.seed_hex()));
    }

    #[test]
    fn each_signature_is_judged_alone_or_in_a_batch_alike() {
        let k = InstanceKey::generate();
        let other = InstanceKey::generate();
        let (pk, po) = (k.public(), other.public());
        let msgs: Vec<Vec<u8>> = (0..6)
            .map(|i| format!("message {i}").into_bytes())
            .collect();
        let sigs: Vec<String> = msgs.iter().map(|m| k.sign_b64(m)).collect();
        let good: Vec<(&[u8], &str, &PublicKey)> = msgs
            .iter()
            .zip(&sigs)
            .map(|(m, s)| (m.as_slice(), s.as_str(), &pk))
            .collect();
        assert_eq!(verify_each(&good), vec![true; 6]);
        // A wrong message, a wrong key and a malformed signature among good ones.
        let mut mixed = good.clone();
        mixed[1].0 = b"tampered";
        mixed[3].2 = &po;
        mixed[4].1 = "not a signature";
        let singles: Vec<bool> = mixed
            .iter()
            .map(|(m, s, key)| key.verify(m, s).is_ok())
            .collect();
        assert_eq!(singles, vec![true, false, true, false, false, true]);
        assert_eq!(verify_each(&mixed), singles);
        // Below the batch size too.
        assert_eq!(verify_each(&mixed[..2]), vec![true, false]);
        assert_eq!(verify_each(&[]), Vec::<bool>::new());
    }

    /// A signature whose `R` carries a small-order component, made by the key's holder:
    /// `verify_strict` refuses it, the cofactored batch equation accepts it, which is why a
    /// strict single check beside a batch check made acceptance depend on the batch. Under
    /// ZIP-215 both accept it, alone or among others; a wrong `s` fails both.
    #[test]
    fn a_small_order_component_in_r_is_judged_the_same_alone_and_in_a_batch() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::scalar::Scalar;
        use sha2::{Digest, Sha512};
        let seed: [u8; 32] = rand::random();
        let signer = InstanceKey::from_seed(&seed);
        let expanded = ed25519_dalek::hazmat::ExpandedSecretKey::from(&seed);
        let a_bytes = signer.key.verifying_key().to_bytes();
        let msg = b"crafted";
        let r = Scalar::from_bytes_mod_order_wide(&rand::random::<[u8; 64]>());
        let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1]).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(a_bytes);
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * expanded.scalar;
        let mut raw = [0u8; 64];
        raw[..32].copy_from_slice(big_r.as_bytes());
        raw[32..].copy_from_slice(s.as_bytes());
        let crafted = B64.encode(raw);
        let strict = ed25519_dalek::Signature::from_bytes(&raw);
        assert!(
            signer
                .key
                .verifying_key()
                .verify_strict(msg, &strict)
                .is_err()
        );
        let pk = signer.public();
        assert_eq!(pk.verify(msg, &crafted), Ok(()));
        let honest: Vec<(Vec<u8>, String)> = (0..4)
            .map(|i| {
                let m = format!("honest {i}").into_bytes();
                let sig = signer.sign_b64(&m);
                (m, sig)
            })
            .collect();
        let mut items: Vec<(&[u8], &str, &PublicKey)> = honest
            .iter()
            .map(|(m, s)| (m.as_slice(), s.as_str(), &pk))
            .collect();
        items.push((msg, &crafted, &pk));
        assert_eq!(verify_each(&items), vec![true; 5]);
        // The same R with s + 1 verifies nowhere.
        raw[32..].copy_from_slice((s + Scalar::ONE).as_bytes());
        let wrong = B64.encode(raw);
        assert_eq!(pk.verify(msg, &wrong), Err(KeyError::BadSignature));
        items[4].1 = &wrong;
        assert_eq!(verify_each(&items), vec![true, true, true, true, false]);
    }
}
