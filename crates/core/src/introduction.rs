//! Introductions: how an instance nobody configured is allowed to pair.
//!
//! An [`Introduction`] is a statement signed by an *issuer* — the MAP hub an instance
//! registered with (kind [`IntroductionKind::Hub`]) or an instance that already shares the
//! hive (kind [`IntroductionKind::Peer`], for peers found by gossip) — saying: "the instance
//! `subject`, with key `subject_key`, reached at `subject_endpoint`, may pair for `hives`
//! until `expires_at`". A handshake may carry one; the responder accepts the handshake without
//! the mesh secret or a configured peer when the introduction verifies and its issuer is one
//! it trusts for that kind (docs/PROTOCOL-sync.md, "Introductions"). Which issuers are trusted
//! is the sync crate's policy; this module only builds, signs and checks the statement.
//!
//! Signed bytes (UTF-8, hives sorted and joined by `,`):
//!
//! ```text
//! openhive-introduction/1\n<kind>\n<issuer>\n<subject>\n<subject_key>\n<subject_endpoint>\n<hives>\n<issued_at>\n<expires_at>
//! ```

use crate::signing::{InstanceKey, PublicKey};
use serde::{Deserialize, Serialize};

pub const INTRODUCTION_DOMAIN: &str = "openhive-introduction/1";

/// At most this many hives in one introduction.
pub const MAX_INTRODUCTION_HIVES: usize = 1000;

/// The hive wildcard: the introduction covers every hive (only a hub's is meaningful).
pub const ANY_HIVE: &str = "*";

/// Who signs an introduction, which decides which key must verify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntroductionKind {
    /// The MAP hub the receiver is registered with vouches for a registered swarm.
    Hub,
    /// An instance that shares the hive vouches for another one it holds a link with.
    Peer,
}

impl IntroductionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IntroductionKind::Hub => "hub",
            IntroductionKind::Peer => "peer",
        }
    }
}

/// "`issuer` vouches that `subject` may pair for `hives` until `expires_at`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introduction {
    pub kind: IntroductionKind,
    /// Instance id of the signer (the hub's instance id for a hub introduction).
    pub issuer: String,
    /// Instance id vouched for.
    pub subject: String,
    /// The subject's signing key (standard base64 SPKI), the one its handshake presents.
    pub subject_key: String,
    /// The subject's sync endpoint, the one its handshake presents.
    pub subject_endpoint: String,
    /// Hive names covered (sorted, unique); [`ANY_HIVE`] covers every hive.
    pub hives: Vec<String>,
    /// Milliseconds since the epoch, on the issuer's clock.
    pub issued_at: i64,
    pub expires_at: i64,
    /// The issuer's signature over [`Introduction::signing_bytes`].
    pub signature: String,
}

/// Why an introduction is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntroductionError {
    #[error("malformed introduction: {0}")]
    Malformed(&'static str),
    #[error("introduction signature does not verify with its issuer's key")]
    Signature,
    #[error("introduction expired")]
    Expired,
    #[error("introduction does not cover this handshake: {0}")]
    Mismatch(&'static str),
}

/// What the subject claims in its handshake, to be matched against the introduction.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub instance_id: &'a str,
    pub signing_key: &'a str,
    pub sync_endpoint: &'a str,
    pub hive: &'a str,
}

impl Introduction {
    /// Signs an introduction. `hives` is sorted and deduplicated.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        key: &InstanceKey,
        kind: IntroductionKind,
        issuer: &str,
        subject: &str,
        subject_key: &str,
        subject_endpoint: &str,
        mut hives: Vec<String>,
        issued_at: i64,
        expires_at: i64,
    ) -> Self {
        hives.sort();
        hives.dedup();
        let mut i = Introduction {
            kind,
            issuer: issuer.to_string(),
            subject: subject.to_string(),
            subject_key: subject_key.to_string(),
            subject_endpoint: subject_endpoint.to_string(),
            hives,
            issued_at,
            expires_at,
            signature: String::new(),
        };
        i.signature = key.sign_b64(&i.signing_bytes());
        i
    }

    /// The exact bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        format!(
            "{INTRODUCTION_DOMAIN}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.kind.as_str(),
            self.issuer,
            self.subject,
            self.subject_key,
            self.subject_endpoint,
            self.hives.join(","),
            self.issued_at,
            self.expires_at
        )
        .into_bytes()
    }

    /// Whether the introduction names `hive` (or the wildcard).
    pub fn covers(&self, hive: &str) -> bool {
        self.hives.iter().any(|h| h == hive || h == ANY_HIVE)
    }

    /// Checks the statement's form: ids, key, endpoint, hive names, times. Cheap; do it
    /// before looking up the issuer's key.
    pub fn check_form(&self) -> Result<(), IntroductionError> {
        use IntroductionError::Malformed;
        if crate::ids::instance_suffix(&self.issuer).is_none() {
            return Err(Malformed("issuer"));
        }
        if crate::ids::instance_suffix(&self.subject).is_none() {
            return Err(Malformed("subject"));
        }
        if self.issuer == self.subject {
            return Err(Malformed("an instance cannot introduce itself"));
        }
        if PublicKey::from_base64(&self.subject_key).is_err() {
            return Err(Malformed("subject_key"));
        }
        if self.subject_endpoint.is_empty()
            || self.subject_endpoint.len() > 2048
            || self.subject_endpoint.chars().any(char::is_control)
        {
            return Err(Malformed("subject_endpoint"));
        }
        if self.hives.is_empty() || self.hives.len() > MAX_INTRODUCTION_HIVES {
            return Err(Malformed("hives"));
        }
        let sorted = self.hives.windows(2).all(|w| w[0] < w[1]);
        if !sorted {
            return Err(Malformed("hives must be sorted and unique"));
        }
        if self
            .hives
            .iter()
            .any(|h| h != ANY_HIVE && crate::validate::hive_name(h).is_err())
        {
            return Err(Malformed("hives"));
        }
        if self.issued_at < 0 || self.expires_at < self.issued_at {
            return Err(Malformed("issued_at/expires_at"));
        }
        Ok(())
    }

    /// Full check against the issuer's key, the time and the handshake it comes with: form,
    /// signature, `now` ≤ `expires_at`, and the subject's id, key and endpoint and the
    /// hive equal to the handshake's.
    pub fn verify(
        &self,
        issuer_key: &PublicKey,
        claim: Claim<'_>,
        now: i64,
    ) -> Result<(), IntroductionError> {
        self.check_form()?;
        issuer_key
            .verify(&self.signing_bytes(), &self.signature)
            .map_err(|_| IntroductionError::Signature)?;
        if now > self.expires_at {
            return Err(IntroductionError::Expired);
        }
        if self.subject != claim.instance_id {
            return Err(IntroductionError::Mismatch("instance_id"));
        }
        if self.subject_key != claim.signing_key {
            return Err(IntroductionError::Mismatch("signing_key"));
        }
        if self.subject_endpoint != claim.sync_endpoint {
            return Err(IntroductionError::Mismatch("sync_endpoint"));
        }
        if !self.covers(claim.hive) {
            return Err(IntroductionError::Mismatch("hive"));
        }
        Ok(())
    }
}

/// Domain of a handshake's proof of possession.
pub const HANDSHAKE_PROOF_DOMAIN: &str = "openhive-handshake/1";

/// How far a handshake proof's `at` may be from the receiver's clock (ms).
pub const HANDSHAKE_PROOF_WINDOW_MS: i64 = 5 * 60 * 1000;

/// The bytes an introduced initiator signs with its current key to prove it holds the key
/// its handshake (and its introduction) names: an introduction is a public statement, so
/// whoever copies one must not be able to pair in its subject's name.
pub fn handshake_proof_bytes(
    hive: &str,
    instance_id: &str,
    sync_endpoint: &str,
    token: &str,
    at: i64,
) -> Vec<u8> {
    format!("{HANDSHAKE_PROOF_DOMAIN}\n{hive}\n{instance_id}\n{sync_endpoint}\n{token}\n{at}")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "inst_aaaaaaaaaaaa";
    const SUBJECT: &str = "inst_bbbbbbbbbbbb";
    const EP: &str = "http://127.0.0.1:4001/sync/v1";

    fn intro(key: &InstanceKey, subject_key: &str, hives: &[&str]) -> Introduction {
        Introduction::sign(
            key,
            IntroductionKind::Peer,
            ISSUER,
            SUBJECT,
            subject_key,
            EP,
            hives.iter().map(|h| h.to_string()).collect(),
            1_000,
            2_000,
        )
    }

    fn claim<'a>(key: &'a str, hive: &'a str) -> Claim<'a> {
        Claim {
            instance_id: SUBJECT,
            signing_key: key,
            sync_endpoint: EP,
            hive,
        }
    }

    #[test]
    fn a_signed_introduction_verifies_for_its_subject_and_hive() {
        let issuer = InstanceKey::generate();
        let subject = InstanceKey::generate().public().to_base64();
        let i = intro(&issuer, &subject, &["lab", "eng", "eng"]);
        assert_eq!(i.hives, vec!["eng", "lab"], "sorted and deduplicated");
        assert_eq!(
            i.verify(&issuer.public(), claim(&subject, "eng"), 1_500),
            Ok(())
        );
        assert_eq!(
            i.verify(&issuer.public(), claim(&subject, "lab"), 2_000),
            Ok(())
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let issuer = InstanceKey::generate();
        let subject = InstanceKey::generate().public().to_base64();
        let other = InstanceKey::generate();
        let i = intro(&issuer, &subject, &["eng"]);
        assert_eq!(
            i.verify(&other.public(), claim(&subject, "eng"), 1_500),
            Err(IntroductionError::Signature)
        );
        assert_eq!(
            i.verify(&issuer.public(), claim(&subject, "eng"), 2_001),
            Err(IntroductionError::Expired)
        );
        assert_eq!(
            i.verify(&issuer.public(), claim(&subject, "ops"), 1_500),
            Err(IntroductionError::Mismatch("hive"))
        );
        let k2 = other.public().to_base64();
        assert_eq!(
            i.verify(&issuer.public(), claim(&k2, "eng"), 1_500),
            Err(IntroductionError::Mismatch("signing_key"))
        );
        let mut c = claim(&subject, "eng");
        c.sync_endpoint = "http://evil/sync/v1";
        assert_eq!(
            i.verify(&issuer.public(), c, 1_500),
            Err(IntroductionError::Mismatch("sync_endpoint"))
        );
        // Any change to a signed field breaks the signature.
        let mut t = i.clone();
        t.expires_at = 9_999;
        assert_eq!(
            t.verify(&issuer.public(), claim(&subject, "eng"), 1_500),
            Err(IntroductionError::Signature)
        );
        let mut k = i.clone();
        k.kind = IntroductionKind::Hub;
        assert_eq!(
            k.verify(&issuer.public(), claim(&subject, "eng"), 1_500),
            Err(IntroductionError::Signature)
        );
    }

    #[test]
    fn malformed_introductions_are_refused_before_the_signature() {
        let issuer = InstanceKey::generate();
        let subject = InstanceKey::generate().public().to_base64();
        let mut i = intro(&issuer, &subject, &["eng"]);
        i.hives = vec!["b_b".into(), "a-a".into()];
        assert!(matches!(
            i.check_form(),
            Err(IntroductionError::Malformed(_))
        ));
        let mut j = intro(&issuer, &subject, &["eng"]);
        j.subject = ISSUER.into();
        assert!(matches!(
            j.check_form(),
            Err(IntroductionError::Malformed(_))
        ));
        let k = intro(&issuer, &subject, &[]);
        assert!(matches!(
            k.check_form(),
            Err(IntroductionError::Malformed(_))
        ));
        let w = intro(&issuer, &subject, &[ANY_HIVE]);
        assert!(w.check_form().is_ok() && w.covers("anything"));
    }
}
