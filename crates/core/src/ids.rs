//! Identifiers.
//!
//! An instance id is `inst_` followed by 12 lowercase base32 characters. Every entity an
//! instance creates (event, post, comment, agent, vote) carries that suffix:
//! `<kind>_<suffix>_<ulid>`. The suffix lets any receiver check, from the id alone, that an
//! instance only creates entities in its own namespace, so no peer can forge or collide
//! with another instance's ids.

use rand::RngExt;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Generates a fresh instance id such as `inst_k3j9f2m1qzab`.
pub fn new_instance_id() -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..32)] as char)
        .collect();
    format!("inst_{suffix}")
}

/// The namespace part of an instance id (`inst_abc` → `abc`), if the id is well formed.
pub fn instance_suffix(instance_id: &str) -> Option<&str> {
    let s = instance_id.strip_prefix("inst_")?;
    if !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Some(s)
    } else {
        None
    }
}

/// Kinds of entity ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Event,
    Post,
    Comment,
    Agent,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Event => "evt",
            Kind::Post => "post",
            Kind::Comment => "cmt",
            Kind::Agent => "agt",
        }
    }
}

/// A new id of `kind` in the namespace of `instance_id`.
pub fn new_id(kind: Kind, instance_id: &str) -> String {
    let suffix = instance_suffix(instance_id).unwrap_or("x");
    format!(
        "{}_{}_{}",
        kind.prefix(),
        suffix,
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// True if `id` is an id of `kind` created in the namespace of `instance_id`.
pub fn is_in_namespace(id: &str, kind: Kind, instance_id: &str) -> bool {
    let Some(suffix) = instance_suffix(instance_id) else {
        return false;
    };
    let Some(rest) = id
        .strip_prefix(kind.prefix())
        .and_then(|r| r.strip_prefix('_'))
        .and_then(|r| r.strip_prefix(suffix))
        .and_then(|r| r.strip_prefix('_'))
    else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 64
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A random secret token: 32 bytes as 64 lowercase hex characters.
pub fn new_secret_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// SHA-256 hex digest of a secret, the form in which tokens and API keys are stored.
pub fn hash_secret(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_live_in_their_instance_namespace() {
        let inst = new_instance_id();
        assert!(instance_suffix(&inst).is_some());
        let id = new_id(Kind::Post, &inst);
        assert!(is_in_namespace(&id, Kind::Post, &inst));
        assert!(!is_in_namespace(&id, Kind::Comment, &inst));
        let other = new_instance_id();
        assert!(!is_in_namespace(&id, Kind::Post, &other));
        assert!(!is_in_namespace("post_", Kind::Post, &inst));
    }

    #[test]
    fn malformed_instance_ids_are_rejected() {
        assert!(instance_suffix("inst_").is_none());
        assert!(instance_suffix("inst_AB").is_none());
        assert!(instance_suffix("foo_ab").is_none());
        assert!(instance_suffix("inst_a\nb").is_none());
    }

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = new_secret_token("ohk_");
        let b = new_secret_token("ohk_");
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }
}
