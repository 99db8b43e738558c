//! Key rotation: the statement an instance signs when it replaces its signing key, the chain
//! of keys an instance has used, and the key shared by everything that signs.
//!
//! A [`RotationStatement`] `{instance_id, old_key, new_key, at}` is signed by **both** keys
//! (the old one proves it is the instance's own act; the new one proves the instance holds
//! it, so nobody rotates an instance onto a key it does not own). Signed bytes (UTF-8):
//!
//! ```text
//! openhive-key-rotation/1\n<instance_id>\n<old_key>\n<new_key>\n<at>
//! ```
//!
//! An instance's [`KeyChain`] is its first key (first key wins, as before rotation existed)
//! followed by the keys its statements hand over to, each valid from its statement's `at`
//! (exclusive of the next one's). An event is verified with exactly one key: the key of the
//! period its `origin_ts` falls in. So old events keep verifying with the old key, and an
//! event signed by the old key claiming a time at or after the rotation is refused.

use crate::event::{Event, EventError};
use crate::signing::{InstanceKey, KeyError, PublicKey};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

pub const ROTATION_DOMAIN: &str = "openhive-key-rotation/1";

/// At most this many rotations are followed per instance (a chain is walked per verified
/// batch; an instance rotating more often than this is not a use case).
pub const MAX_CHAIN: usize = 64;

/// "`instance_id` stops using `old_key` and signs with `new_key` from `at` on."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationStatement {
    pub instance_id: String,
    pub old_key: String,
    pub new_key: String,
    /// Milliseconds since the epoch, on the rotating instance's clock: its events with an
    /// `origin_ts` ≥ `at` are signed by `new_key`, earlier ones by `old_key`.
    pub at: i64,
    /// Signature of the old key over [`RotationStatement::signing_bytes`].
    pub old_signature: String,
    /// Signature of the new key over the same bytes.
    pub new_signature: String,
}

/// Why a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("malformed rotation statement: {0}")]
    Malformed(&'static str),
    #[error("rotation statement: the old key's signature does not verify")]
    OldSignature,
    #[error("rotation statement: the new key's signature does not verify")]
    NewSignature,
}

impl RotationStatement {
    /// Signs a rotation of `instance_id` from `old` to `new` at `at`.
    pub fn sign(old: &InstanceKey, new: &InstanceKey, instance_id: &str, at: i64) -> Self {
        let mut s = RotationStatement {
            instance_id: instance_id.to_string(),
            old_key: old.public().to_base64(),
            new_key: new.public().to_base64(),
            at,
            old_signature: String::new(),
            new_signature: String::new(),
        };
        let bytes = s.signing_bytes();
        s.old_signature = old.sign_b64(&bytes);
        s.new_signature = new.sign_b64(&bytes);
        s
    }

    /// The exact bytes both signatures cover.
    pub fn signing_bytes(&self) -> Vec<u8> {
        format!(
            "{ROTATION_DOMAIN}\n{}\n{}\n{}\n{}",
            self.instance_id, self.old_key, self.new_key, self.at
        )
        .into_bytes()
    }

    /// Checks the statement on its own: well-formed, two distinct valid keys, both
    /// signatures verify. Returns (old key, new key). Whether the old key is the
    /// instance's current key is the chain's business.
    pub fn verify(&self) -> Result<(PublicKey, PublicKey), RotationError> {
        if crate::ids::instance_suffix(&self.instance_id).is_none() {
            return Err(RotationError::Malformed("instance_id"));
        }
        if self.at < 0 {
            return Err(RotationError::Malformed("at"));
        }
        let old = PublicKey::from_base64(&self.old_key)
            .map_err(|_| RotationError::Malformed("old_key"))?;
        let new = PublicKey::from_base64(&self.new_key)
            .map_err(|_| RotationError::Malformed("new_key"))?;
        if old == new {
            return Err(RotationError::Malformed("old_key equals new_key"));
        }
        let bytes = self.signing_bytes();
        old.verify(&bytes, &self.old_signature)
            .map_err(|_| RotationError::OldSignature)?;
        new.verify(&bytes, &self.new_signature)
            .map_err(|_| RotationError::NewSignature)?;
        Ok((old, new))
    }
}

/// The keys an instance has signed with, oldest first, each with the first `origin_ts` it
/// signs (the first key: from the beginning of time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChain {
    keys: Vec<(PublicKey, i64)>,
}

impl KeyChain {
    /// A chain of one key (no rotation).
    pub fn single(key: PublicKey) -> Self {
        KeyChain {
            keys: vec![(key, i64::MIN)],
        }
    }

    /// The chain from `anchor` (the first key learned for the instance) through
    /// `statements` (any order, any instance's; the caller checked their signatures when it
    /// stored them): from the current end, the statement whose `old_key` is that key is
    /// followed if its `at` is later than the current key's start. Statements that do not
    /// continue the chain are ignored.
    pub fn build(anchor: PublicKey, statements: &[RotationStatement]) -> Self {
        let mut chain = KeyChain::single(anchor);
        while chain.keys.len() <= MAX_CHAIN {
            let (cur, from) = chain.keys[chain.keys.len() - 1];
            let cur_b64 = cur.to_base64();
            let next = statements.iter().find_map(|s| {
                if s.old_key != cur_b64 || s.at <= from {
                    return None;
                }
                let k = PublicKey::from_base64(&s.new_key).ok()?;
                (!chain.contains(&k)).then_some((k, s.at))
            });
            match next {
                Some(n) => chain.keys.push(n),
                None => break,
            }
        }
        chain
    }

    /// The key the instance signs with now.
    pub fn current(&self) -> PublicKey {
        self.keys[self.keys.len() - 1].0
    }

    /// When the current key took over (`None`: it is the first key).
    pub fn current_since(&self) -> Option<i64> {
        let from = self.keys[self.keys.len() - 1].1;
        (from != i64::MIN).then_some(from)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.iter().any(|(k, _)| k == key)
    }

    /// The key valid at `ts`: the last key whose start is ≤ `ts`.
    pub fn key_for(&self, ts: i64) -> PublicKey {
        let mut out = self.keys[0].0;
        for (k, from) in &self.keys {
            if *from <= ts {
                out = *k;
            }
        }
        out
    }

    /// Verifies `ev`'s signature with the key valid at its `origin_ts`. If that fails but
    /// another key of the chain verifies it, the refusal says so (an old key used after its
    /// rotation: what a thief holding a rotated-out key would try).
    pub fn verify_event(&self, ev: &Event) -> Result<(), EventError> {
        let key = self.key_for(ev.origin_ts);
        match ev.verify(&key) {
            Ok(()) => Ok(()),
            Err(e) => {
                let bytes = ev.signing_bytes();
                let other = self
                    .keys
                    .iter()
                    .any(|(k, _)| *k != key && k.verify(&bytes, &ev.signature).is_ok());
                if other {
                    Err(EventError::KeyNotValid(ev.origin_ts))
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// The instance's current signing key, shared by everything that signs or announces it
/// (the write path, the sync engine). Replaced only by a key rotation.
#[derive(Clone)]
pub struct SharedKey(Arc<RwLock<InstanceKey>>);

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedKey({})", self.public().to_base64())
    }
}

impl SharedKey {
    pub fn new(key: InstanceKey) -> Self {
        SharedKey(Arc::new(RwLock::new(key)))
    }

    /// A copy of the current key.
    pub fn get(&self) -> InstanceKey {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn public(&self) -> PublicKey {
        self.0.read().unwrap_or_else(|e| e.into_inner()).public()
    }

    /// Replaces the key; returns the previous one.
    pub fn replace(&self, key: InstanceKey) -> InstanceKey {
        std::mem::replace(&mut *self.0.write().unwrap_or_else(|e| e.into_inner()), key)
    }
}

impl From<KeyError> for RotationError {
    fn from(_: KeyError) -> Self {
        RotationError::Malformed("key")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::EventType;

    fn ev(key: &InstanceKey, inst: &str, ts: i64) -> Event {
        Event::sign_new(
            key,
            inst,
            "general",
            EventType::PostCreated,
            ts,
            "{}".into(),
        )
    }

    #[test]
    fn a_statement_needs_both_signatures() {
        let inst = crate::ids::new_instance_id();
        let (k0, k1) = (InstanceKey::generate(), InstanceKey::generate());
        let s = RotationStatement::sign(&k0, &k1, &inst, 1000);
        assert_eq!(s.verify(), Ok((k0.public(), k1.public())));
        // Signed by a wrong "old" key.
        let thief = InstanceKey::generate();
        let mut forged = RotationStatement::sign(&thief, &k1, &inst, 1000);
        forged.old_key = k0.public().to_base64();
        assert_eq!(forged.verify(), Err(RotationError::OldSignature));
        // Onto a key nobody proved to hold.
        let mut onto = s.clone();
        onto.new_key = thief.public().to_base64();
        assert_eq!(onto.verify(), Err(RotationError::OldSignature));
        let mut t = s.clone();
        t.new_signature = t.old_signature.clone();
        assert_eq!(t.verify(), Err(RotationError::NewSignature));
        let mut t = s.clone();
        t.at += 1;
        assert!(t.verify().is_err());
        let same = RotationStatement::sign(&k0, &k0, &inst, 1000);
        assert!(matches!(same.verify(), Err(RotationError::Malformed(_))));
    }

    #[test]
    fn events_verify_with_the_key_of_their_period() {
        let inst = crate::ids::new_instance_id();
        let (k0, k1, k2) = (
            InstanceKey::generate(),
            InstanceKey::generate(),
            InstanceKey::generate(),
        );
        let s1 = RotationStatement::sign(&k0, &k1, &inst, 1000);
        let s2 = RotationStatement::sign(&k1, &k2, &inst, 2000);
        // Any order; a statement that does not continue the chain is ignored.
        let stray = RotationStatement::sign(&InstanceKey::generate(), &k0, &inst, 10);
        let chain = KeyChain::build(k0.public(), &[s2.clone(), stray, s1.clone()]);
        assert_eq!(chain.len(), 3);
        assert_eq!(chain.current(), k2.public());
        assert_eq!(chain.current_since(), Some(2000));
        assert_eq!(chain.key_for(999), k0.public());
        assert_eq!(chain.key_for(1000), k1.public());
        assert_eq!(chain.key_for(5000), k2.public());
        assert_eq!(chain.verify_event(&ev(&k0, &inst, 999)), Ok(()));
        assert_eq!(chain.verify_event(&ev(&k1, &inst, 1500)), Ok(()));
        assert_eq!(chain.verify_event(&ev(&k2, &inst, 2000)), Ok(()));
        // The old key after its rotation, the new key before it: refused.
        assert_eq!(
            chain.verify_event(&ev(&k0, &inst, 1000)),
            Err(EventError::KeyNotValid(1000))
        );
        assert_eq!(
            chain.verify_event(&ev(&k2, &inst, 1999)),
            Err(EventError::KeyNotValid(1999))
        );
        assert!(matches!(
            chain.verify_event(&ev(&InstanceKey::generate(), &inst, 3000)),
            Err(EventError::Key(KeyError::BadSignature))
        ));
        // A rotation that does not move time forward is not followed.
        let back = RotationStatement::sign(&k1, &k2, &inst, 900);
        let chain = KeyChain::build(k0.public(), &[s1, back]);
        assert_eq!(chain.current(), k1.public());
    }

    #[test]
    fn the_shared_key_is_replaced_for_every_holder() {
        let (k0, k1) = (InstanceKey::generate(), InstanceKey::generate());
        let a = SharedKey::new(k0.clone());
        let b = a.clone();
        let old = a.replace(k1.clone());
        assert_eq!(old.public(), k0.public());
        assert_eq!(b.public(), k1.public());
        assert!(!format!("{a:?}").contains(&k1.seed_hex()));
    }
}
