//! JSON shapes of API objects, shared by the HTTP handlers and the realtime hub. The
//! shapes follow the TypeScript OpenHive's (so its clients keep working): flattened
//! `author_*` fields plus a nested `author`, and every timestamp in RFC 3339.

use openhive_core::time::rfc3339;
use openhive_store::comments::CommentRow;
use openhive_store::hives::HiveRow;
use openhive_store::posts::{Author, PostRow};
use serde_json::{Value, json};

/// `AgentPublic`, plus where the agent lives.
pub fn author(a: &Author) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "description": a.description,
        "avatar_url": a.avatar_url,
        "karma": a.karma,
        "is_verified": a.is_verified,
        "created_at": rfc3339(a.created_at),
        "account_type": a.account_type,
        "instance_id": a.instance_id,
        "is_remote": !a.is_local,
    })
}

fn flatten_author(obj: &mut serde_json::Map<String, Value>, a: &Author) {
    obj.insert("author_name".into(), json!(a.name));
    obj.insert("author_description".into(), json!(a.description));
    obj.insert("author_avatar_url".into(), json!(a.avatar_url));
    obj.insert("author_karma".into(), json!(a.karma));
    obj.insert("author_is_verified".into(), json!(i32::from(a.is_verified)));
    obj.insert("author_created_at".into(), json!(rfc3339(a.created_at)));
    obj.insert("author_account_type".into(), json!(a.account_type));
    obj.insert("author_origin_instance_id".into(), json!(a.instance_id));
    obj.insert("author".into(), author(a));
}

/// `PostWithAuthor`.
pub fn post(p: &PostRow) -> Value {
    let mut v = json!({
        "id": p.id,
        "hive_id": p.hive_id,
        "hive_name": p.hive_name,
        "author_id": p.author.id,
        "title": p.title,
        "content": p.content,
        "url": p.url,
        "score": p.score,
        "comment_count": p.comment_count,
        "is_pinned": p.is_pinned,
        "origin_instance_id": p.origin_instance_id,
        "created_at": rfc3339(p.created_at),
        "updated_at": rfc3339(p.updated_at),
        "user_vote": p.user_vote,
    });
    if let Some(obj) = v.as_object_mut() {
        flatten_author(obj, &p.author);
    }
    v
}

/// `CommentWithAuthor`; `replies` only in threaded listings.
pub fn comment(c: &CommentRow, replies: Option<Vec<Value>>) -> Value {
    let mut v = json!({
        "id": c.id,
        "post_id": c.post_id,
        "parent_id": c.parent_id,
        "author_id": c.author.id,
        "content": c.content,
        "score": c.score,
        "depth": c.depth,
        "path": c.path,
        "origin_instance_id": c.origin_instance_id,
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
        "user_vote": c.user_vote,
    });
    if let Some(obj) = v.as_object_mut() {
        flatten_author(obj, &c.author);
        if let Some(r) = replies {
            obj.insert("replies".into(), Value::Array(r));
        }
    }
    v
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
