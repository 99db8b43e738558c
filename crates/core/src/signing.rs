//! The instance's Ed25519 key and the encodings used on the wire.
//!
//! - Public key: standard base64 (padded) of the 44-byte SPKI DER form
//!   (`302a300506032b6570032100` ‖ 32-byte key), as the TypeScript OpenHive sends it.
//! - Signature: standard base64 (padded) of the 64 raw signature bytes.
//! - Private key: never encoded for the wire. It is persisted as the hex 32-byte seed in a
//!   0600 file of the data directory (see the server's `identity` module).
//!
//! One verification rule everywhere: [`PublicKey::verify`] uses `verify_strict`.
//! [`verify_batch`] is only a fast path; on any failure callers fall back to strict
//! per-event checks, so the accept/reject decision is always the strict one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::fmt;

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
        PublicKey(self.key.verifying_key())
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
        B64.encode(self.key.sign(msg).to_bytes())
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

/// A verifying key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl PublicKey {
    pub fn to_base64(&self) -> String {
        let mut der = Vec::with_capacity(44);
        der.extend_from_slice(&SPKI_PREFIX);
        der.extend_from_slice(self.0.as_bytes());
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
        Ok(PublicKey(key))
    }

    /// Strict verification of a base64 signature over `msg`.
    pub fn verify(&self, msg: &[u8], signature_b64: &str) -> Result<(), KeyError> {
        let sig = decode_signature(signature_b64)?;
        self.0
            .verify_strict(msg, &sig)
            .map_err(|_| KeyError::BadSignature)
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

/// Batch pre-check: `true` only if every signature verifies in one batch. A `false` says
/// nothing about which one failed; callers then verify each item with [`PublicKey::verify`].
/// A `true` is confirmed by the strict rule only for items that pass `verify_strict`; since
/// batch acceptance can be laxer than strict on crafted signatures, callers that need the
/// strict decision must not skip it — see `Event::verify_all`.
pub fn verify_batch(items: &[(&[u8], &str, &PublicKey)]) -> bool {
    let mut msgs = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (msg, sig, key) in items {
        let Ok(sig) = decode_signature(sig) else {
            return false;
        };
        msgs.push(*msg);
        sigs.push(sig);
        keys.push(key.0);
    }
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()
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
    fn batch_detects_a_bad_signature() {
        let k = InstanceKey::generate();
        let pk = k.public();
        let s1 = k.sign_b64(b"one");
        let s2 = k.sign_b64(b"two");
        assert!(verify_batch(&[(b"one", &s1, &pk), (b"two", &s2, &pk)]));
        assert!(!verify_batch(&[(b"one", &s1, &pk), (b"two", &s1, &pk)]));
    }
}
