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

    /// Signs `msg` and returns the base64 signature.
    pub fn sign_b64(&self, msg: &[u8]) -> String {
        B64.encode(self.key.sign(msg).to_bytes())
    }
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

    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let der = B64.decode(s).map_err(|_| KeyError::BadPublicKey)?;
        if der.len() != 44 || der[..12] != SPKI_PREFIX {
            return Err(KeyError::BadPublicKey);
        }
        let raw: [u8; 32] = der[12..].try_into().map_err(|_| KeyError::BadPublicKey)?;
        VerifyingKey::from_bytes(&raw)
            .map(PublicKey)
            .map_err(|_| KeyError::BadPublicKey)
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

    #[test]
    fn public_key_round_trips_and_rejects_garbage() {
        let k = InstanceKey::generate().public();
        assert_eq!(PublicKey::from_base64(&k.to_base64()), Ok(k));
        assert!(PublicKey::from_base64("AAAA").is_err());
        assert!(PublicKey::from_base64("not base64!").is_err());
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
