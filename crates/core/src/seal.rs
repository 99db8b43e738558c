//! Sealing of secrets the database must hold but a copy of the database alone must not
//! reveal (the tokens this instance presents to its peers).
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per value, under a 32-byte key that never
//! enters the database: the server derives it from the instance key (the 0600 key file of
//! the data directory, [`crate::InstanceKey::derive_secret`]). A sealed value is the text
//! `sealed:v1:` ‖ base64(nonce ‖ ciphertext ‖ tag); anything without that prefix is a value
//! stored in clear by an older version, which callers still accept (and re-seal).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;

/// Prefix of a sealed value.
pub const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the sealed value does not open with this key (another key, or altered)")]
    WrongKeyOrAltered,
    #[error("sealing failed")]
    Seal,
}

/// A sealing key. `Debug` never shows it.
#[derive(Clone)]
pub struct SealKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(***)")
    }
}

/// True if `stored` is a sealed value (as opposed to a legacy value in clear).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

impl SealKey {
    pub fn new(key: &[u8; 32]) -> SealKey {
        SealKey {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Seals `plain` (a fresh random nonce each time).
    pub fn seal(&self, plain: &str) -> Result<String, SealError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let ct = self
            .cipher
            .encrypt(&nonce, plain.as_bytes())
            .map_err(|_| SealError::Seal)?;
        let mut raw = Vec::with_capacity(NONCE_LEN + ct.len());
        raw.extend_from_slice(&nonce_bytes);
        raw.extend_from_slice(&ct);
        Ok(format!("{SEALED_PREFIX}{}", B64.encode(raw)))
    }

    /// Opens a value made by [`SealKey::seal`].
    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        let b64 = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::Malformed)?;
        let raw = B64.decode(b64).map_err(|_| SealError::Malformed)?;
        if raw.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce_bytes: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let plain = self
            .cipher
            .decrypt(&XNonce::from(nonce_bytes), ct)
            .map_err(|_| SealError::WrongKeyOrAltered)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_another_key_or_an_altered_value() {
        let k = SealKey::new(&[7; 32]);
        let s1 = k.seal("ohs_secret_token").unwrap();
        let s2 = k.seal("ohs_secret_token").unwrap();
        assert!(is_sealed(&s1));
        assert_ne!(s1, s2, "a fresh nonce per value");
        assert!(!s1.contains("ohs_secret_token"));
        assert_eq!(k.open(&s1).unwrap(), "ohs_secret_token");
        assert_eq!(
            SealKey::new(&[8; 32]).open(&s1),
            Err(SealError::WrongKeyOrAltered)
        );
        let mut altered = s1.clone().into_bytes();
        let i = altered.len() - 5;
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(k.open(&altered).is_err());
        assert_eq!(k.open("ohs_plain"), Err(SealError::Malformed));
        assert_eq!(k.open("sealed:v1:AAAA"), Err(SealError::Malformed));
        assert!(!is_sealed("ohs_plain"));
        assert!(!format!("{k:?}").contains('7'));
    }
}
