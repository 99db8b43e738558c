//! The `/sync/v1` wire messages, shared by the client (outbound) and the server handlers
//! (inbound). docs/PROTOCOL-sync.md specifies them.
//!
//! Secrets (`token`) appear only in the two handshake messages; their `Debug` output
//! redacts them so they cannot leak through logs.

use openhive_core::{Event, Introduction, RotationStatement};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const PROTOCOL_VERSION: u32 = 1;

/// Header carrying the mesh-wide handshake secret.
pub const HANDSHAKE_SECRET_HEADER: &str = "x-handshake-secret";

/// Default and maximum page size of `GET /groups/:hive/events`.
pub const DEFAULT_PULL_LIMIT: i64 = 500;
pub const MAX_PULL_LIMIT: i64 = 1000;

/// Largest batch a sender pushes at once.
pub const PUSH_BATCH: i64 = 500;

/// One member of a group roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    pub instance_id: String,
    pub signing_key: String,
}

/// `GET /sync/v1/identity`: who answers at this endpoint. A responder uses it to confirm that
/// a handshake claiming a configured peer's endpoint really comes from the instance there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityDoc {
    pub protocol_version: u32,
    pub instance_id: String,
    pub instance_name: String,
    pub signing_key: String,
}

/// `POST /sync/v1/handshake` request.
#[derive(Clone, Serialize, Deserialize)]
pub struct HandshakeRequest {
    pub protocol_version: u32,
    pub hive: String,
    pub instance_id: String,
    pub instance_name: String,
    pub signing_key: String,
    pub sync_endpoint: String,
    pub current_seq: i64,
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
    /// Fresh secret the responder presents when calling the initiator for this hive.
    pub token: String,
    /// Rotation statements (docs/PROTOCOL-sync.md, "Key rotation"): the sender's own key
    /// chain and those of its roster. Absent when empty; older peers ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<RotationStatement>,
    /// An introduction vouching for the sender (docs/PROTOCOL-sync.md, "Introductions"):
    /// what lets an instance nobody configured pair. Absent when the sender holds none for
    /// this hive; older peers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduction: Option<Introduction>,
    /// With an introduction: proof that the sender holds `signing_key` (see
    /// [`HandshakeProof`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<HandshakeProof>,
}

/// The initiator's signature, with its current key, over
/// `openhive_core::introduction::handshake_proof_bytes(hive, instance_id, sync_endpoint,
/// token, at)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeProof {
    pub at: i64,
    pub signature: String,
}

impl HandshakeProof {
    /// Signs the proof for one hive's handshake.
    pub fn sign(
        key: &openhive_core::InstanceKey,
        hive: &str,
        instance_id: &str,
        sync_endpoint: &str,
        token: &str,
        at: i64,
    ) -> Self {
        let bytes = openhive_core::introduction::handshake_proof_bytes(
            hive,
            instance_id,
            sync_endpoint,
            token,
            at,
        );
        HandshakeProof {
            at,
            signature: key.sign_b64(&bytes),
        }
    }
}

impl fmt::Debug for HandshakeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeRequest")
            .field("hive", &self.hive)
            .field("instance_id", &self.instance_id)
            .field("sync_endpoint", &self.sync_endpoint)
            .field("current_seq", &self.current_seq)
            .field("roster", &self.roster.len())
            .finish_non_exhaustive()
    }
}

/// `POST /sync/v1/handshake` response.
#[derive(Clone, Serialize, Deserialize)]
pub struct HandshakeResponse {
    pub protocol_version: u32,
    pub hive: String,
    pub instance_id: String,
    pub instance_name: String,
    pub signing_key: String,
    pub current_seq: i64,
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
    /// Fresh secret the initiator presents when calling the responder for this hive.
    pub token: String,
    /// Rotation statements (docs/PROTOCOL-sync.md, "Key rotation"): the sender's own key
    /// chain and those of its roster. Absent when empty; older peers ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<RotationStatement>,
}

impl fmt::Debug for HandshakeResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeResponse")
            .field("hive", &self.hive)
            .field("instance_id", &self.instance_id)
            .field("current_seq", &self.current_seq)
            .field("roster", &self.roster.len())
            .finish_non_exhaustive()
    }
}

/// An event as served by `GET /groups/:hive/events`: the sender's seq plus the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: Event,
}

/// `GET /sync/v1/groups/:hive/events` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsPage {
    pub events: Vec<WireEvent>,
    /// The last seq this page covers (events of the caller's own origin are skipped but
    /// covered); pass it as `since` for the next page.
    pub next_seq: i64,
    pub has_more: bool,
    /// The head of the serving instance's log of the hive when the page was read (what a
    /// puller measures its progress against). Absent from older peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_seq: Option<i64>,
    /// The key chains of the origins of `events` that rotated their key (so a receiver that
    /// has not heard of a rotation yet verifies the events anyway). Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<RotationStatement>,
}

/// `POST /sync/v1/groups/:hive/events` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushRequest {
    pub events: Vec<Event>,
    /// The sender's seq range this batch covers (events it skipped count as covered).
    pub first_seq: i64,
    pub last_seq: i64,
    /// The key chains of the origins of `events` that rotated their key (so a receiver that
    /// has not heard of a rotation yet verifies the events anyway). Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<RotationStatement>,
}

/// `POST /sync/v1/groups/:hive/events` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushResponse {
    /// The receiver's pull cursor for the sender after this batch.
    pub received_seq: i64,
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub waiting_for_key: usize,
    /// The first few rejected events with the reason (at most 20; `rejected` counts them
    /// all), e.g. a bad signature, or a full queue of events waiting for an unknown key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
}

/// One rejected event of a pushed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub id: String,
    pub reason: String,
}

/// Most groups one batched call (`/sync/v1/batch/*`) may name.
pub const MAX_BATCH_GROUPS: usize = 1000;

/// Groups a sender puts in one batched call.
pub const BATCH_GROUPS: usize = 256;

/// One group of `POST /sync/v1/batch/handshake`: the per-hive part of a [`HandshakeRequest`].
#[derive(Clone, Serialize, Deserialize)]
pub struct BatchHandshakeGroup {
    pub hive: String,
    pub current_seq: i64,
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
    /// Fresh secret the responder presents when calling the initiator for this hive.
    pub token: String,
    /// As [`HandshakeRequest::key_rotations`], for this hive's roster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<RotationStatement>,
    /// As [`HandshakeRequest::introduction`], for this hive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduction: Option<Introduction>,
    /// As [`HandshakeRequest::proof`], for this hive's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<HandshakeProof>,
}

impl fmt::Debug for BatchHandshakeGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchHandshakeGroup")
            .field("hive", &self.hive)
            .field("current_seq", &self.current_seq)
            .field("roster", &self.roster.len())
            .finish_non_exhaustive()
    }
}

/// `POST /sync/v1/batch/handshake` request: one initiator, many hives. Each group is
/// accepted or refused on its own, exactly as a [`HandshakeRequest`] for it would be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchHandshakeRequest {
    pub protocol_version: u32,
    pub instance_id: String,
    pub instance_name: String,
    pub signing_key: String,
    pub sync_endpoint: String,
    pub groups: Vec<BatchHandshakeGroup>,
}

impl BatchHandshakeRequest {
    /// The single-hive request for group `g` (what the responder checks and accepts).
    pub fn single(&self, g: BatchHandshakeGroup) -> HandshakeRequest {
        HandshakeRequest {
            protocol_version: self.protocol_version,
            hive: g.hive,
            instance_id: self.instance_id.clone(),
            instance_name: self.instance_name.clone(),
            signing_key: self.signing_key.clone(),
            sync_endpoint: self.sync_endpoint.clone(),
            current_seq: g.current_seq,
            roster: g.roster,
            token: g.token,
            key_rotations: g.key_rotations,
            introduction: g.introduction,
            proof: g.proof,
        }
    }
}

/// A group's refusal inside a batched answer: the status and message the single-hive call
/// would have answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupError {
    pub status: u16,
    pub error: String,
}

/// One group of the answer to a batched handshake: `token` etc. when accepted, `error` when
/// refused.
#[derive(Clone, Serialize, Deserialize)]
pub struct BatchHandshakeAnswer {
    pub hive: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roster: Vec<RosterEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<RotationStatement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<GroupError>,
}

impl fmt::Debug for BatchHandshakeAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchHandshakeAnswer")
            .field("hive", &self.hive)
            .field("current_seq", &self.current_seq)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// `POST /sync/v1/batch/handshake` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchHandshakeResponse {
    pub protocol_version: u32,
    pub instance_id: String,
    pub instance_name: String,
    pub signing_key: String,
    /// One answer per requested group, in request order.
    pub groups: Vec<BatchHandshakeAnswer>,
}

impl BatchHandshakeResponse {
    /// The single-hive answer for an accepted group.
    pub fn single(&self, a: &BatchHandshakeAnswer) -> Option<HandshakeResponse> {
        Some(HandshakeResponse {
            protocol_version: self.protocol_version,
            hive: a.hive.clone(),
            instance_id: self.instance_id.clone(),
            instance_name: self.instance_name.clone(),
            signing_key: self.signing_key.clone(),
            current_seq: a.current_seq?,
            roster: a.roster.clone(),
            token: a.token.clone()?,
            key_rotations: a.key_rotations.clone(),
        })
    }
}

/// One group of `POST /sync/v1/batch/pull`: the hive, the token bound to it, and the caller's
/// cursor.
#[derive(Clone, Serialize, Deserialize)]
pub struct BatchPullGroup {
    pub hive: String,
    pub token: String,
    pub since: i64,
}

impl fmt::Debug for BatchPullGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchPullGroup")
            .field("hive", &self.hive)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

/// `POST /sync/v1/batch/pull` request. `limit` caps the events of the whole answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchPullRequest {
    pub groups: Vec<BatchPullGroup>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// One group of a batched pull's answer: a page (as `GET /groups/:hive/events` answers it) or
/// an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchPage {
    pub hive: String,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub page: Option<EventsPage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<GroupError>,
}

/// `POST /sync/v1/batch/pull` response: the first groups of the request, in order, as far as
/// the event budget reached (groups left out were not served: ask again).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchPullResponse {
    pub groups: Vec<BatchPage>,
}

/// One group of `POST /sync/v1/batch/push`: a [`PushRequest`] for the hive, with the token
/// bound to it.
#[derive(Clone, Serialize, Deserialize)]
pub struct BatchPushGroup {
    pub hive: String,
    pub token: String,
    pub events: Vec<Event>,
    pub first_seq: i64,
    pub last_seq: i64,
    /// As [`PushRequest::key_rotations`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<RotationStatement>,
}

impl fmt::Debug for BatchPushGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchPushGroup")
            .field("hive", &self.hive)
            .field("events", &self.events.len())
            .field("first_seq", &self.first_seq)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

/// `POST /sync/v1/batch/push` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchPushRequest {
    pub groups: Vec<BatchPushGroup>,
}

/// One group of a batched push's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchPushAnswer {
    pub hive: String,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub result: Option<PushResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<GroupError>,
}

/// `POST /sync/v1/batch/push` response: one answer per group, in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchPushResponse {
    pub groups: Vec<BatchPushAnswer>,
}

/// Per-group part of a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatGroup {
    pub seq: i64,
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
    /// A range of the sender's log that holds only entries the receiver originated or
    /// relayed to the sender, starting right after the sender's push cursor for the
    /// receiver: its push covers them without sending them. A receiver whose pull cursor is
    /// inside the range (at or past `after`) moves it to `through` without pulling: after
    /// a pairing, the joining side's log holds only the other side's events, and pulling
    /// them back cost one page per hive. Absent when there is none; older peers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<SkippedRange>,
    /// The sender's pull cursor for the receiver's log of this hive: the sender durably
    /// holds everything up to there, so the receiver's push cursor for it may move there
    /// (as a pull's `since` moves it). This is how a push cursor follows a pull cursor that
    /// moved over a [`HeartbeatGroup::skipped`] range without a pull. Absent when 0; older
    /// peers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<i64>,
}

/// The range `after + 1 ..= through` of a log (see [`HeartbeatGroup::skipped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRange {
    pub after: i64,
    pub through: i64,
}

/// `POST /sync/v1/heartbeat` request and response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub instance_id: String,
    /// The sender's current sync endpoint (lets a peer that moved be found again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_endpoint: Option<String>,
    #[serde(default)]
    pub groups: BTreeMap<String, HeartbeatGroup>,
    /// Gossip (docs/PROTOCOL-sync.md, "Gossip"): peers the sender knows that share a hive
    /// with the receiver, only what is new to it. Absent when empty; older peers ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_peers: Vec<KnownPeer>,
    /// An introduction of the *receiver* signed by the sender (kind `peer`, the hives they
    /// share): what lets the receiver pair with the peers it learns by gossip. Sent when
    /// new or due for refresh; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduction: Option<Introduction>,
}

/// One entry of a heartbeat's `known_peers`: public facts about a peer, never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownPeer {
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub sync_endpoint: String,
    /// A hint: the key is learned from the peer's own handshake, never from gossip.
    pub signing_key: String,
    /// The hives it shares with the sender that the receiver shares too (sorted).
    #[serde(alias = "shared_hives")]
    pub hives: Vec<String>,
    /// Hops this entry may still travel: the receiver stores `ttl - 1` and passes the peer
    /// on only while that is above 0.
    pub ttl: u8,
}

/// One link in a status report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerLinkStatus {
    pub peer_id: String,
    pub instance_id: Option<String>,
    pub name: String,
    pub sync_endpoint: String,
    pub status: String,
    pub state: String,
    pub lag: i64,
    pub last_seq_sent: i64,
    pub last_seq_received: i64,
    pub remote_seq: i64,
    pub events_received: i64,
    pub events_rejected: i64,
    pub failure_count: i64,
    pub last_contact_at: Option<String>,
    pub last_sync_at: Option<String>,
    pub last_error: Option<String>,
    /// `lag` passes `[sync] lag_alert_events`, or the peer has been silent (since its last
    /// contact, or since it was added) longer than `[sync] lag_alert_secs`.
    #[serde(default)]
    pub lagging: bool,
    /// While the link pulls a long way (backfill, resync, snapshot): how far it is
    /// ([`crate::progress`]; known only to the app process running the link). Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::LinkProgress>,
}

/// `GET /sync/v1/groups/:hive/status` response (and the per-group part of admin status).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupStatus {
    pub hive: String,
    pub local_seq: i64,
    /// Events of this hive logged but waiting for a dependency.
    pub pending: i64,
    /// Events of this hive waiting for their origin's key.
    pub unverified: i64,
    /// The lowest cursor of the log's live consumers (peer outboxes...): every event at or
    /// below it has been taken by every reader. `null` if nothing reads the log.
    #[serde(default)]
    pub low_water_mark: Option<i64>,
    pub peers: Vec<PeerLinkStatus>,
}

/// `POST /sync/v1/groups/:hive/leave` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveResponse {
    pub ok: bool,
}

/// `POST /sync/v1/keys`: rotation statements announced by a peer (the rotating instance, or
/// one relaying what it learned).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeysRequest {
    pub key_rotations: Vec<RotationStatement>,
}

/// `POST /sync/v1/keys` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeysResponse {
    /// Statements new here (the instance's key changed, or it is kept for when its first
    /// key is learned).
    pub accepted: usize,
    /// Statements already known.
    pub known: usize,
    pub refused: usize,
    /// Why, per refused statement: `{id: <instance id>, reason}` (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
}

/// At most this many statements per `POST /keys` (and per message carrying them).
pub const MAX_KEY_ROTATIONS: usize = 256;

/// Normalizes a sync endpoint for comparison and storage (no trailing slash).
pub fn normalize_endpoint(s: &str) -> String {
    s.trim().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn debug_never_shows_tokens() {
        let r = HandshakeRequest {
            protocol_version: 1,
            hive: "general".into(),
            instance_id: "inst_a".into(),
            instance_name: "a".into(),
            signing_key: "k".into(),
            sync_endpoint: "http://a/sync/v1".into(),
            current_seq: 0,
            roster: vec![],
            token: "ohs_secret".into(),
            key_rotations: vec![],
            introduction: None,
            proof: None,
        };
        assert!(!format!("{r:?}").contains("ohs_secret"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["token"], "ohs_secret");
    }

    #[test]
    fn wire_event_is_flat() {
        let key = openhive_core::InstanceKey::generate();
        let inst = openhive_core::ids::new_instance_id();
        let ev = Event::sign_new(
            &key,
            &inst,
            "general",
            openhive_core::EventType::PostCreated,
            1,
            "{}".into(),
        );
        let w = WireEvent { seq: 3, event: ev };
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["seq"], 3);
        assert_eq!(v["hive"], "general");
        let back: WireEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, w);
        assert_eq!(normalize_endpoint("http://x/sync/v1/ "), "http://x/sync/v1");
    }
}
