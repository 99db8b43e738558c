//! Event payloads, and the authority each event may claim.
//!
//! The authority rule is checked from the event alone, so every instance reaches the same
//! decision whatever else it has seen (see docs/PROTOCOL.md "Authority"):
//! - an instance speaks only for its own agents: every `author`, `voter`, `updated_by`,
//!   `deleted_by`, `changed_by`, `by` names the event's origin instance, and a join or leave
//!   names an agent of the origin;
//! - an instance creates only ids in its own namespace (posts, comments);
//! - whether the acting agent held the role (author, moderator, owner) is checked by the
//!   origin when it signs; receivers additionally check, once the target exists, that edits
//!   come from the target's author (immutable, so order-independent).

use crate::event::{Event, EventError, EventType};
use crate::hive::PostPermissions;
use crate::ids::{self, Kind};
use crate::validate;
use serde::{Deserialize, Serialize};

/// A snapshot of an agent, embedded in events instead of a foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    pub instance_id: String,
    pub agent_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterRef {
    pub instance_id: String,
    pub agent_id: String,
}

/// Hive settings carried by `hive_created` and changed key by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiveSettings {
    #[serde(default)]
    pub require_verification: bool,
    #[serde(default = "yes")]
    pub allow_anonymous_read: bool,
    #[serde(default)]
    pub post_permissions: PostPermissions,
}

fn yes() -> bool {
    true
}

impl Default for HiveSettings {
    fn default() -> Self {
        HiveSettings {
            require_verification: false,
            allow_anonymous_read: true,
            post_permissions: PostPermissions::All,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiveCreated {
    pub name: String,
    pub description: String,
    pub is_public: bool,
    pub settings: HiveSettings,
    pub owner: AgentRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiveDeleted {
    pub by: AgentRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiveSettingChanged {
    /// A [`SettingKey`](crate::hive::SettingKey), checked with its value by
    /// [`validate::setting`] (kept as text: the payload is what the peer sent).
    pub key: String,
    pub value: serde_json::Value,
    /// The event id of the value the origin saw when it made this change (None: initial).
    #[serde(default)]
    pub prev: Option<String>,
    pub changed_by: AgentRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipAction {
    Join,
    Leave,
    Ban,
    Unban,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChanged {
    pub agent: AgentRef,
    pub action: MembershipAction,
    #[serde(default)]
    pub prev: Option<String>,
    pub by: AgentRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeratorAction {
    Add,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeratorChanged {
    pub agent: AgentRef,
    pub action: ModeratorAction,
    #[serde(default)]
    pub prev: Option<String>,
    pub by: AgentRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostCreated {
    pub post_id: String,
    pub title: String,
    pub content: Option<String>,
    pub url: Option<String>,
    pub author: AgentRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostUpdated {
    pub post_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub updated_by: AgentRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostDeleted {
    pub post_id: String,
    pub deleted_by: AgentRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostPinned {
    pub post_id: String,
    pub pinned: bool,
    #[serde(default)]
    pub prev: Option<String>,
    pub by: AgentRef,
}

/// A post of a remote hive copied into a local read-only mirror hive by a pull
/// subscription (Pattern 1). The signing instance vouches for the copy; the post keeps the
/// id the remote gave it (one id everywhere), so it is the only payload whose `post_id` is
/// *not* in the signer's namespace, and its author is a remote agent the signer does not
/// speak for (a display snapshot: name, avatar, where it lives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostMirrored {
    pub post_id: String,
    /// Base URL of the remote instance the post was read from.
    pub source_url: String,
    /// The remote hive's name.
    pub source_hive: String,
    pub title: String,
    pub content: Option<String>,
    pub url: Option<String>,
    /// The remote author; `instance_id` is the remote's instance id when it tells, else
    /// `source_url`.
    pub author: AgentRef,
    /// When the remote says the post was created (ms).
    pub created_at: i64,
}

/// The longest id a mirrored post may keep.
pub const MAX_MIRRORED_ID_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentCreated {
    pub comment_id: String,
    pub post_id: String,
    pub parent_comment_id: Option<String>,
    pub content: String,
    pub author: AgentRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentUpdated {
    pub comment_id: String,
    pub content: String,
    pub updated_by: AgentRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentDeleted {
    pub comment_id: String,
    pub deleted_by: AgentRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetType {
    Post,
    Comment,
}

impl TargetType {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Post => "post",
            TargetType::Comment => "comment",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteCast {
    pub target_type: TargetType,
    pub target_id: String,
    pub voter: VoterRef,
    /// 1, -1, or 0 to remove the vote.
    pub value: i8,
}

/// A parsed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    HiveCreated(HiveCreated),
    HiveDeleted(HiveDeleted),
    HiveSettingChanged(HiveSettingChanged),
    MembershipChanged(MembershipChanged),
    ModeratorChanged(ModeratorChanged),
    PostCreated(PostCreated),
    PostUpdated(PostUpdated),
    PostDeleted(PostDeleted),
    PostPinned(PostPinned),
    CommentCreated(CommentCreated),
    CommentUpdated(CommentUpdated),
    CommentDeleted(CommentDeleted),
    VoteCast(VoteCast),
    PostMirrored(PostMirrored),
}

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, EventError> {
    serde_json::from_str(s).map_err(|e| EventError::Payload(e.to_string()))
}

fn speaks_for(agent_instance: &str, ev: &Event, what: &'static str) -> Result<(), EventError> {
    if agent_instance == ev.origin_instance_id {
        Ok(())
    } else {
        Err(EventError::Authority(what))
    }
}

fn own_id(id: &str, kind: Kind, ev: &Event, what: &'static str) -> Result<(), EventError> {
    if ids::is_in_namespace(id, kind, &ev.origin_instance_id) {
        Ok(())
    } else {
        Err(EventError::Authority(what))
    }
}

/// The rules of a mirrored post: a foreign id (never one in the signer's own namespace,
/// which only its `post_created` may use), a foreign author (never one of the signer's
/// agents), and the same limits on text as any post.
fn check_mirrored(p: &PostMirrored, ev: &Event) -> Result<(), EventError> {
    if p.post_id.is_empty()
        || p.post_id.chars().count() > MAX_MIRRORED_ID_CHARS
        || p.post_id
            .chars()
            .any(|c| c.is_whitespace() || c == ':' || validate::is_forbidden_char(c))
    {
        return Err(bad(
            "post_id must be 1-200 characters without spaces, ':' or control characters",
        ));
    }
    if ids::is_in_namespace(&p.post_id, Kind::Post, &ev.origin_instance_id) {
        return Err(EventError::Authority("post_id"));
    }
    if p.author.instance_id == ev.origin_instance_id
        || ids::is_in_namespace(&p.author.agent_id, Kind::Agent, &ev.origin_instance_id)
    {
        return Err(EventError::Authority("author"));
    }
    if p.author.agent_id.is_empty() || p.author.agent_id.chars().count() > MAX_MIRRORED_ID_CHARS {
        return Err(bad("author id must be 1-200 characters"));
    }
    validate::text(&p.author.agent_id, "author id").map_err(|e| bad(&e))?;
    validate::text(&p.author.instance_id, "author instance").map_err(|e| bad(&e))?;
    validate::text(&p.author.name, "author name").map_err(|e| bad(&e))?;
    validate::url(&p.source_url).map_err(|e| bad(&e))?;
    validate::text(&p.source_hive, "source_hive").map_err(|e| bad(&e))?;
    validate::post_title(&p.title).map_err(|e| bad(&e))?;
    if let Some(c) = &p.content {
        validate::post_content(c).map_err(|e| bad(&e))?;
    }
    if let Some(u) = &p.url {
        validate::url(u).map_err(|e| bad(&e))?;
    }
    if p.created_at < 0 {
        return Err(bad("created_at must not be negative"));
    }
    Ok(())
}

fn bad(msg: &str) -> EventError {
    EventError::Payload(msg.to_string())
}

impl Payload {
    /// Serializes a payload to the JSON text that will be signed.
    pub fn to_json(&self) -> String {
        let r = match self {
            Payload::HiveCreated(p) => serde_json::to_string(p),
            Payload::HiveDeleted(p) => serde_json::to_string(p),
            Payload::HiveSettingChanged(p) => serde_json::to_string(p),
            Payload::MembershipChanged(p) => serde_json::to_string(p),
            Payload::ModeratorChanged(p) => serde_json::to_string(p),
            Payload::PostCreated(p) => serde_json::to_string(p),
            Payload::PostUpdated(p) => serde_json::to_string(p),
            Payload::PostDeleted(p) => serde_json::to_string(p),
            Payload::PostPinned(p) => serde_json::to_string(p),
            Payload::CommentCreated(p) => serde_json::to_string(p),
            Payload::CommentUpdated(p) => serde_json::to_string(p),
            Payload::CommentDeleted(p) => serde_json::to_string(p),
            Payload::VoteCast(p) => serde_json::to_string(p),
            Payload::PostMirrored(p) => serde_json::to_string(p),
        };
        // Serializing these plain structs cannot fail.
        r.unwrap_or_default()
    }

    pub fn event_type(&self) -> EventType {
        match self {
            Payload::HiveCreated(_) => EventType::HiveCreated,
            Payload::HiveDeleted(_) => EventType::HiveDeleted,
            Payload::HiveSettingChanged(_) => EventType::HiveSettingChanged,
            Payload::MembershipChanged(_) => EventType::MembershipChanged,
            Payload::ModeratorChanged(_) => EventType::ModeratorChanged,
            Payload::PostCreated(_) => EventType::PostCreated,
            Payload::PostUpdated(_) => EventType::PostUpdated,
            Payload::PostDeleted(_) => EventType::PostDeleted,
            Payload::PostPinned(_) => EventType::PostPinned,
            Payload::CommentCreated(_) => EventType::CommentCreated,
            Payload::CommentUpdated(_) => EventType::CommentUpdated,
            Payload::CommentDeleted(_) => EventType::CommentDeleted,
            Payload::VoteCast(_) => EventType::VoteCast,
            Payload::PostMirrored(_) => EventType::PostMirrored,
        }
    }

    /// Parses the payload of `ev` for its type and checks the authority it claims.
    pub fn parse_and_check(ev: &Event) -> Result<Payload, EventError> {
        let s = ev.payload.as_str();
        let p = match ev.event_type {
            EventType::HiveCreated => {
                let p: HiveCreated = parse(s)?;
                if p.name != ev.hive {
                    return Err(bad("name differs from the event's hive"));
                }
                speaks_for(&p.owner.instance_id, ev, "owner")?;
                validate::hive_description(&p.description).map_err(|e| bad(&e))?;
                // settings.post_permissions is typed: `parse(s)` refused any other value.
                Payload::HiveCreated(p)
            }
            EventType::HiveDeleted => {
                let p: HiveDeleted = parse(s)?;
                speaks_for(&p.by.instance_id, ev, "by")?;
                Payload::HiveDeleted(p)
            }
            EventType::HiveSettingChanged => {
                let p: HiveSettingChanged = parse(s)?;
                speaks_for(&p.changed_by.instance_id, ev, "changed_by")?;
                validate::setting(&p.key, &p.value).map_err(|e| bad(&e))?;
                Payload::HiveSettingChanged(p)
            }
            EventType::MembershipChanged => {
                let p: MembershipChanged = parse(s)?;
                speaks_for(&p.by.instance_id, ev, "by")?;
                if matches!(p.action, MembershipAction::Join | MembershipAction::Leave) {
                    speaks_for(&p.agent.instance_id, ev, "agent")?;
                }
                Payload::MembershipChanged(p)
            }
            EventType::ModeratorChanged => {
                let p: ModeratorChanged = parse(s)?;
                speaks_for(&p.by.instance_id, ev, "by")?;
                Payload::ModeratorChanged(p)
            }
            EventType::PostCreated => {
                let p: PostCreated = parse(s)?;
                own_id(&p.post_id, Kind::Post, ev, "post_id")?;
                speaks_for(&p.author.instance_id, ev, "author")?;
                validate::text(&p.author.name, "author name").map_err(|e| bad(&e))?;
                validate::post_title(&p.title).map_err(|e| bad(&e))?;
                if let Some(c) = &p.content {
                    validate::post_content(c).map_err(|e| bad(&e))?;
                }
                Payload::PostCreated(p)
            }
            EventType::PostUpdated => {
                let p: PostUpdated = parse(s)?;
                // Only the author edits, and authors live on the post's origin instance.
                own_id(&p.post_id, Kind::Post, ev, "post_id")?;
                speaks_for(&p.updated_by.instance_id, ev, "updated_by")?;
                if let Some(t) = &p.title {
                    validate::post_title(t).map_err(|e| bad(&e))?;
                }
                if let Some(c) = &p.content {
                    validate::post_content(c).map_err(|e| bad(&e))?;
                }
                Payload::PostUpdated(p)
            }
            EventType::PostDeleted => {
                let p: PostDeleted = parse(s)?;
                speaks_for(&p.deleted_by.instance_id, ev, "deleted_by")?;
                Payload::PostDeleted(p)
            }
            EventType::PostPinned => {
                let p: PostPinned = parse(s)?;
                speaks_for(&p.by.instance_id, ev, "by")?;
                Payload::PostPinned(p)
            }
            EventType::CommentCreated => {
                let p: CommentCreated = parse(s)?;
                own_id(&p.comment_id, Kind::Comment, ev, "comment_id")?;
                speaks_for(&p.author.instance_id, ev, "author")?;
                validate::text(&p.author.name, "author name").map_err(|e| bad(&e))?;
                validate::comment_content(&p.content).map_err(|e| bad(&e))?;
                if p.parent_comment_id.as_deref() == Some(p.comment_id.as_str()) {
                    return Err(bad("a comment cannot be its own parent"));
                }
                Payload::CommentCreated(p)
            }
            EventType::CommentUpdated => {
                let p: CommentUpdated = parse(s)?;
                own_id(&p.comment_id, Kind::Comment, ev, "comment_id")?;
                speaks_for(&p.updated_by.instance_id, ev, "updated_by")?;
                validate::comment_content(&p.content).map_err(|e| bad(&e))?;
                Payload::CommentUpdated(p)
            }
            EventType::CommentDeleted => {
                let p: CommentDeleted = parse(s)?;
                speaks_for(&p.deleted_by.instance_id, ev, "deleted_by")?;
                Payload::CommentDeleted(p)
            }
            EventType::VoteCast => {
                let p: VoteCast = parse(s)?;
                speaks_for(&p.voter.instance_id, ev, "voter")?;
                if !(-1..=1).contains(&p.value) {
                    return Err(bad("value must be 1, -1 or 0"));
                }
                Payload::VoteCast(p)
            }
            EventType::PostMirrored => {
                let p: PostMirrored = parse(s)?;
                check_mirrored(&p, ev)?;
                Payload::PostMirrored(p)
            }
        };
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::InstanceKey;

    fn agent(inst: &str) -> AgentRef {
        AgentRef {
            instance_id: inst.into(),
            agent_id: format!("agt_{}_1", &inst[5..]),
            name: "alice".into(),
            avatar_url: None,
        }
    }

    fn signed(inst: &str, p: &Payload) -> Event {
        Event::sign_new(
            &InstanceKey::generate(),
            inst,
            "general",
            p.event_type(),
            1,
            p.to_json(),
        )
    }

    #[test]
    fn an_instance_cannot_post_as_another_instances_agent() {
        let a = ids::new_instance_id();
        let b = ids::new_instance_id();
        let p = Payload::PostCreated(PostCreated {
            post_id: ids::new_id(Kind::Post, &a),
            title: "t".into(),
            content: None,
            url: None,
            author: agent(&b),
        });
        let ev = signed(&a, &p);
        assert_eq!(
            Payload::parse_and_check(&ev),
            Err(EventError::Authority("author"))
        );
    }

    #[test]
    fn an_instance_cannot_create_ids_in_another_namespace() {
        let a = ids::new_instance_id();
        let b = ids::new_instance_id();
        let p = Payload::PostCreated(PostCreated {
            post_id: ids::new_id(Kind::Post, &b),
            title: "t".into(),
            content: None,
            url: None,
            author: agent(&a),
        });
        assert_eq!(
            Payload::parse_and_check(&signed(&a, &p)),
            Err(EventError::Authority("post_id"))
        );
    }

    #[test]
    fn payload_round_trips() {
        let a = ids::new_instance_id();
        let p = Payload::VoteCast(VoteCast {
            target_type: TargetType::Post,
            target_id: "post_x_1".into(),
            voter: VoterRef {
                instance_id: a.clone(),
                agent_id: "agt".into(),
            },
            value: -1,
        });
        assert_eq!(Payload::parse_and_check(&signed(&a, &p)), Ok(p));
    }

    #[test]
    fn vote_values_are_bounded() {
        let a = ids::new_instance_id();
        let json = format!(
            r#"{{"target_type":"post","target_id":"x","voter":{{"instance_id":"{a}","agent_id":"z"}},"value":5}}"#
        );
        let ev = Event::sign_new(
            &InstanceKey::generate(),
            &a,
            "general",
            EventType::VoteCast,
            1,
            json,
        );
        assert!(Payload::parse_and_check(&ev).is_err());
    }
}
