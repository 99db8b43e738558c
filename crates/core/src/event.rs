//! The event envelope and its signature.
//!
//! Signed bytes (UTF-8), fields joined by `\n`, payload last and verbatim:
//!
//! ```text
//! openhive-event/1\n<id>\n<event_type>\n<origin_instance_id>\n<origin_ts>\n<hive>\n<payload>
//! ```
//!
//! `origin_ts` is decimal milliseconds. None of the first six fields may contain a newline
//! (checked by [`Event::check_envelope`]), so the layout is unambiguous. The payload is an
//! opaque JSON string: it is stored and forwarded exactly as received and never
//! re-serialized before verifying.

use crate::ids::{self, Kind};
use crate::signing::{InstanceKey, KeyError, PublicKey};
use serde::{Deserialize, Serialize};

pub const SIGNING_DOMAIN: &str = "openhive-event/1";

/// Maximum payload size accepted from anyone (bytes).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

macro_rules! event_types {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every kind of change to a hive.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(EventType::$variant),)* _ => None }
            }
        }
    };
}

event_types! {
    HiveCreated => "hive_created",
    HiveDeleted => "hive_deleted",
    HiveSettingChanged => "hive_setting_changed",
    MembershipChanged => "membership_changed",
    ModeratorChanged => "moderator_changed",
    PostCreated => "post_created",
    PostUpdated => "post_updated",
    PostDeleted => "post_deleted",
    PostPinned => "post_pinned",
    CommentCreated => "comment_created",
    CommentUpdated => "comment_updated",
    CommentDeleted => "comment_deleted",
    VoteCast => "vote_cast",
    PostMirrored => "post_mirrored",
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("malformed envelope: {0}")]
    Envelope(&'static str),
    #[error("payload does not match the event type: {0}")]
    Payload(String),
    #[error("event claims authority it does not have: {0}")]
    Authority(&'static str),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Signed by a key of the origin that is not the one valid at the event's `origin_ts`
    /// (a rotated-out key used after its rotation, or a new key before it).
    #[error("signed with a key of the origin that is not valid at origin_ts {0} (key rotation)")]
    KeyNotValid(i64),
}

/// A signed event, as stored in every instance's log and sent between instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub hive: String,
    pub event_type: EventType,
    pub origin_instance_id: String,
    pub origin_ts: i64,
    /// Opaque JSON text; what the signature covers.
    pub payload: String,
    pub signature: String,
}

impl Event {
    /// Builds and signs a new event from this instance.
    pub fn sign_new(
        key: &InstanceKey,
        origin_instance_id: &str,
        hive: &str,
        event_type: EventType,
        origin_ts: i64,
        payload: String,
    ) -> Event {
        let id = ids::new_id(Kind::Event, origin_instance_id);
        let mut ev = Event {
            id,
            hive: hive.to_string(),
            event_type,
            origin_instance_id: origin_instance_id.to_string(),
            origin_ts,
            payload,
            signature: String::new(),
        };
        ev.signature = key.sign_b64(&ev.signing_bytes());
        ev
    }

    /// The exact bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let ts = self.origin_ts.to_string();
        let parts: [&str; 7] = [
            SIGNING_DOMAIN,
            &self.id,
            self.event_type.as_str(),
            &self.origin_instance_id,
            &ts,
            &self.hive,
            &self.payload,
        ];
        let len = parts.iter().map(|p| p.len() + 1).sum();
        let mut out = Vec::with_capacity(len);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(p.as_bytes());
        }
        out
    }

    /// Structural checks that need no key: well-formed ids, the id in the origin's namespace,
    /// sizes. Cheap; run before anything else.
    pub fn check_envelope(&self) -> Result<(), EventError> {
        if ids::instance_suffix(&self.origin_instance_id).is_none() {
            return Err(EventError::Envelope("origin_instance_id"));
        }
        if !ids::is_in_namespace(&self.id, Kind::Event, &self.origin_instance_id) {
            return Err(EventError::Envelope("id is not in the origin's namespace"));
        }
        if crate::validate::hive_name(&self.hive).is_err() {
            return Err(EventError::Envelope("hive"));
        }
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(EventError::Envelope("payload too large"));
        }
        if self.origin_ts < 0 {
            return Err(EventError::Envelope("origin_ts"));
        }
        Ok(())
    }

    /// Signature check against the origin's key (ZIP-215: `crate::signing`).
    pub fn verify(&self, origin_key: &PublicKey) -> Result<(), EventError> {
        origin_key.verify(&self.signing_bytes(), &self.signature)?;
        Ok(())
    }

    /// [`Event::verify`] of many events, each with its key, in one batch: the same answers,
    /// aligned with `events`, for a fraction of the CPU ([`crate::signing::verify_each`]).
    pub fn verify_each(events: &[(&Event, &PublicKey)]) -> Vec<bool> {
        let bytes: Vec<Vec<u8>> = events.iter().map(|(e, _)| e.signing_bytes()).collect();
        let items: Vec<(&[u8], &str, &PublicKey)> = events
            .iter()
            .zip(&bytes)
            .map(|((e, k), b)| (b.as_slice(), e.signature.as_str(), *k))
            .collect();
        crate::signing::verify_each(&items)
    }

    /// The full acceptance rule for an event from anywhere: envelope, signature, then the
    /// payload's authority claims. Returns the parsed payload.
    pub fn accept(&self, origin_key: &PublicKey) -> Result<crate::payload::Payload, EventError> {
        self.check_envelope()?;
        self.verify(origin_key)?;
        crate::payload::Payload::parse_and_check(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &InstanceKey, inst: &str) -> Event {
        Event::sign_new(
            key,
            inst,
            "general",
            EventType::PostCreated,
            1_700_000_000_000,
            r#"{"x":1}"#.to_string(),
        )
    }

    #[test]
    fn every_envelope_field_is_covered_by_the_signature() {
        let key = InstanceKey::generate();
        let inst = ids::new_instance_id();
        let ev = sample(&key, &inst);
        assert_eq!(ev.verify(&key.public()), Ok(()));
        type Mutation = Box<dyn Fn(&mut Event)>;
        let mutations: Vec<Mutation> = vec![
            Box::new(|e| e.id.push('x')),
            Box::new(|e| e.hive = "other".into()),
            Box::new(|e| e.event_type = EventType::PostDeleted),
            Box::new(|e| e.origin_instance_id.push('x')),
            Box::new(|e| e.origin_ts += 1),
            Box::new(|e| e.payload = r#"{"x":2}"#.into()),
            Box::new(|e| e.payload = r#"{"x": 1}"#.into()),
        ];
        for m in mutations {
            let mut e = ev.clone();
            m(&mut e);
            assert!(e.verify(&key.public()).is_err(), "{e:?}");
        }
    }

    #[test]
    fn envelope_rejects_foreign_namespace() {
        let key = InstanceKey::generate();
        let a = ids::new_instance_id();
        let b = ids::new_instance_id();
        let mut ev = sample(&key, &a);
        assert_eq!(ev.check_envelope(), Ok(()));
        ev.origin_instance_id = b;
        assert!(ev.check_envelope().is_err());
    }

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
            let json = serde_json::to_string(t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
    }
}

#[cfg(test)]
mod vector {
    use super::*;

    /// The test vector of docs/PROTOCOL.md §"Test vector".
    pub(super) fn vector_event() -> (InstanceKey, Event) {
        let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
        let key = InstanceKey::from_seed(&seed);
        let ev = Event {
            id: "evt_abcdefghjkmn_01jd0000000000000000000000".into(),
            hive: "general".into(),
            event_type: EventType::PostCreated,
            origin_instance_id: "inst_abcdefghjkmn".into(),
            origin_ts: 1_795_797_811_094,
            payload: r#"{"post_id":"post_abcdefghjkmn_01jd0000000000000000000001","title":"Hello","content":"héllo wörld","url":null,"author":{"instance_id":"inst_abcdefghjkmn","agent_id":"agt_abcdefghjkmn_01jd0000000000000000000002","name":"alice"}}"#.into(),
            signature: String::new(),
        };
        (key, ev)
    }

    #[test]
    fn protocol_test_vector() {
        let (key, mut ev) = vector_event();
        let bytes = ev.signing_bytes();
        assert!(bytes.starts_with(b"openhive-event/1\nevt_abcdefghjkmn_01jd"));
        let sig = key.sign_b64(&bytes);
        println!("public key: {}\nsignature: {sig}", key.public().to_base64());
        assert_eq!(sig, VECTOR_SIGNATURE);
        ev.signature = sig;
        assert_eq!(ev.check_envelope(), Ok(()));
        assert!(ev.accept(&key.public()).is_ok());
    }

    pub(super) const VECTOR_SIGNATURE: &str =
        "+0msYRuFoTb0eU2vrNUacaw+amNJIUUPImOM8jjp33QByLN3M4Wnsxl/lARw1yvaR3v18om14J2ISjS+1JZhAQ==";
}
