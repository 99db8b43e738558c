//! JSON shapes of API objects, shared by the HTTP handlers and the realtime hub. The
//! shapes follow the TypeScript OpenHive's (so its clients keep working): flattened
//! `author_*` fields plus a nested `author`, and every timestamp in RFC 3339.

use openhive_core::time::rfc3339;
use openhive_store::comments::CommentRow;
use openhive_store::hives::HiveRow;
use openhive_store::posts::{Author, PostRow};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::{Value, json};
use std::borrow::Borrow;

/// `AgentPublic`, plus where the agent lives.
pub fn author(a: &Author) -> Value {
    to_value(AuthorJson(a))
}

/// `PostWithAuthor`.
pub fn post(p: &PostRow) -> Value {
    to_value(PostJson(p))
}

/// `CommentWithAuthor`; `replies` only in threaded listings.
pub fn comment(c: &CommentRow, replies: Option<Vec<Value>>) -> Value {
    to_value(CommentJson(c, replies))
}

/// A shape as a `Value`, for callers that add to it or nest it. Our `Serialize` impls only
/// write strings, numbers, booleans and nulls, which a `Value` always holds.
fn to_value(shape: impl Serialize) -> Value {
    serde_json::to_value(shape).unwrap_or(Value::Null)
}

/// [`author`], written straight to the serializer.
pub struct AuthorJson<'a>(pub &'a Author);

impl Serialize for AuthorJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.0;
        let mut m = s.serialize_struct("AgentPublic", 10)?;
        m.serialize_field("id", &a.id)?;
        m.serialize_field("name", &a.name)?;
        m.serialize_field("description", &a.description)?;
        m.serialize_field("avatar_url", &a.avatar_url)?;
        m.serialize_field("karma", &a.karma)?;
        m.serialize_field("is_verified", &a.is_verified)?;
        m.serialize_field("created_at", &rfc3339(a.created_at))?;
        m.serialize_field("account_type", &a.account_type)?;
        m.serialize_field("instance_id", &a.instance_id)?;
        m.serialize_field("is_remote", &!a.is_local)?;
        m.end()
    }
}

/// The flattened `author_*` fields and the nested `author` of a post or comment.
const AUTHOR_FIELDS: usize = 9;

fn author_fields<M: SerializeStruct>(m: &mut M, a: &Author) -> Result<(), M::Error> {
    m.serialize_field("author_name", &a.name)?;
    m.serialize_field("author_description", &a.description)?;
    m.serialize_field("author_avatar_url", &a.avatar_url)?;
    m.serialize_field("author_karma", &a.karma)?;
    m.serialize_field("author_is_verified", &i32::from(a.is_verified))?;
    m.serialize_field("author_created_at", &rfc3339(a.created_at))?;
    m.serialize_field("author_account_type", &a.account_type)?;
    m.serialize_field("author_origin_instance_id", &a.instance_id)?;
    m.serialize_field("author", &AuthorJson(a))
}

/// [`post`], written straight to the serializer: a response body without a `Value` tree
/// (a map of owned keys and values) built first. Holds the row or a reference to it.
pub struct PostJson<P>(pub P);

impl<P: Borrow<PostRow>> Serialize for PostJson<P> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0.borrow();
        let mut m = s.serialize_struct("PostWithAuthor", 14 + AUTHOR_FIELDS)?;
        m.serialize_field("id", &p.id)?;
        m.serialize_field("hive_id", &p.hive_id)?;
        m.serialize_field("hive_name", &p.hive_name)?;
        m.serialize_field("author_id", &p.author.id)?;
        m.serialize_field("title", &p.title)?;
        m.serialize_field("content", &p.content)?;
        m.serialize_field("url", &p.url)?;
        m.serialize_field("score", &p.score)?;
        m.serialize_field("comment_count", &p.comment_count)?;
        m.serialize_field("is_pinned", &p.is_pinned)?;
        m.serialize_field("origin_instance_id", &p.origin_instance_id)?;
        m.serialize_field("created_at", &rfc3339(p.created_at))?;
        m.serialize_field("updated_at", &rfc3339(p.updated_at))?;
        m.serialize_field("user_vote", &p.user_vote)?;
        author_fields(&mut m, &p.author)?;
        m.end()
    }
}

/// [`comment`], written straight to the serializer (see [`PostJson`]).
pub struct CommentJson<C>(pub C, pub Option<Vec<Value>>);

impl<C: Borrow<CommentRow>> Serialize for CommentJson<C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0.borrow();
        let replies = usize::from(self.1.is_some());
        let mut m = s.serialize_struct("CommentWithAuthor", 12 + AUTHOR_FIELDS + replies)?;
        m.serialize_field("id", &c.id)?;
        m.serialize_field("post_id", &c.post_id)?;
        m.serialize_field("parent_id", &c.parent_id)?;
        m.serialize_field("author_id", &c.author.id)?;
        m.serialize_field("content", &c.content)?;
        m.serialize_field("score", &c.score)?;
        m.serialize_field("depth", &c.depth)?;
        m.serialize_field("path", &c.path)?;
        m.serialize_field("origin_instance_id", &c.origin_instance_id)?;
        m.serialize_field("created_at", &rfc3339(c.created_at))?;
        m.serialize_field("updated_at", &rfc3339(c.updated_at))?;
        m.serialize_field("user_vote", &c.user_vote)?;
        author_fields(&mut m, &c.author)?;
        if let Some(r) = &self.1 {
            m.serialize_field("replies", r)?;
        }
        m.end()
    }
}

/// Builds the reply tree of a post's visible comments. `rows` is already sorted; children
/// keep that order under their parent.
pub fn comment_tree(rows: &[CommentRow]) -> Vec<Value> {
    use std::collections::HashMap;
    let mut children: HashMap<Option<&str>, Vec<&CommentRow>> = HashMap::new();
    for c in rows {
        children.entry(c.parent_id.as_deref()).or_default().push(c);
    }
    fn build<'a>(
        parent: Option<&'a str>,
        children: &HashMap<Option<&'a str>, Vec<&'a CommentRow>>,
    ) -> Vec<Value> {
        children
            .get(&parent)
            .map(|cs| {
                cs.iter()
                    .map(|c| comment(c, Some(build(Some(c.id.as_str()), children))))
                    .collect()
            })
            .unwrap_or_default()
    }
    build(None, &children)
}

/// A hive.
pub fn hive(h: &HiveRow) -> Value {
    json!({
        "id": h.id,
        "name": h.name,
        "description": h.description,
        "owner_id": h.owner_id,
        "owner_instance_id": h.owner_instance_id,
        "deciding_instance_id": h.deciding_instance_id,
        "is_public": h.is_public,
        "settings": {
            "require_verification": h.require_verification,
            "allow_anonymous_read": h.allow_anonymous_read,
            "post_permissions": h.post_permissions.as_str(),
            "owner_succession_secs": h.owner_succession_secs,
        },
        "member_count": h.member_count,
        "created_at": rfc3339(h.created_at),
        "updated_at": rfc3339(h.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author() -> Author {
        Author {
            id: "agt_1".into(),
            name: "alice".into(),
            description: "d".into(),
            avatar_url: None,
            karma: 3,
            is_verified: true,
            created_at: 0,
            account_type: "agent".into(),
            instance_id: "inst_a".into(),
            is_local: false,
        }
    }

    /// The flattened and nested author of the TypeScript OpenHive's shapes.
    fn author_fields(mut v: Value) -> Value {
        let extra = json!({
            "author_name": "alice",
            "author_description": "d",
            "author_avatar_url": null,
            "author_karma": 3,
            "author_is_verified": 1,
            "author_created_at": "1970-01-01T00:00:00.000Z",
            "author_account_type": "agent",
            "author_origin_instance_id": "inst_a",
            "author": {
                "id": "agt_1", "name": "alice", "description": "d", "avatar_url": null,
                "karma": 3, "is_verified": true, "created_at": "1970-01-01T00:00:00.000Z",
                "account_type": "agent", "instance_id": "inst_a", "is_remote": true,
            },
        });
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    }

    #[test]
    fn a_post_has_every_field_of_post_with_author() {
        let p = PostRow {
            id: "pst_1".into(),
            hive_id: "hiv_1".into(),
            hive_name: "general".into(),
            author: author(),
            origin_instance_id: "inst_a".into(),
            title: "t".into(),
            content: Some("c".into()),
            url: None,
            score: 2,
            hot: 1.5,
            comment_count: 4,
            is_pinned: false,
            created_at: 1_000,
            updated_at: 2_000,
            user_vote: Some(1),
        };
        let want = author_fields(json!({
            "id": "pst_1", "hive_id": "hiv_1", "hive_name": "general", "author_id": "agt_1",
            "title": "t", "content": "c", "url": null, "score": 2, "comment_count": 4,
            "is_pinned": false, "origin_instance_id": "inst_a",
            "created_at": "1970-01-01T00:00:01.000Z", "updated_at": "1970-01-01T00:00:02.000Z",
            "user_vote": 1,
        }));
        assert_eq!(post(&p), want);
        // The bytes a handler writes parse to the same object.
        let body = serde_json::to_vec(&PostJson(p)).unwrap_or_default();
        assert_eq!(serde_json::from_slice::<Value>(&body).ok(), Some(want));
    }

    #[test]
    fn a_comment_has_every_field_of_comment_with_author_and_replies_when_threaded() {
        let c = CommentRow {
            id: "cmt_1".into(),
            post_id: "pst_1".into(),
            hive_id: "hiv_1".into(),
            parent_id: None,
            author: author(),
            origin_instance_id: "inst_a".into(),
            content: "c".into(),
            score: 0,
            depth: 0,
            path: "cmt_1".into(),
            created_at: 1_000,
            updated_at: 1_000,
            user_vote: None,
        };
        let want = author_fields(json!({
            "id": "cmt_1", "post_id": "pst_1", "parent_id": null, "author_id": "agt_1",
            "content": "c", "score": 0, "depth": 0, "path": "cmt_1",
            "origin_instance_id": "inst_a", "created_at": "1970-01-01T00:00:01.000Z",
            "updated_at": "1970-01-01T00:00:01.000Z", "user_vote": null,
        }));
        assert_eq!(comment(&c, None), want);
        let mut threaded = want.clone();
        threaded["replies"] = json!([]);
        assert_eq!(comment(&c, Some(vec![])), threaded);
        let body = serde_json::to_vec(&CommentJson(&c, None)).unwrap_or_default();
        assert_eq!(serde_json::from_slice::<Value>(&body).ok(), Some(want));
    }
}
