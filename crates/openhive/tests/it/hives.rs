//! Hives: creation, listing, visibility, settings, membership, moderators, bans, deletion.

use crate::client::As;
use crate::harness::{Opts, assert_error, spawn};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn create_validate_and_conflict() {
    let s = spawn(Opts::token()).await;
    let alice = As::new_agent(&s, "alice").await;
    let h = alice.hive("general", true).await;
    assert_eq!(h["name"], "general");
    // Regression: the owner counts as a member from the start.
    assert_eq!(h["member_count"], 1);
    assert_eq!(h["settings"]["post_permissions"], "all");

    let (st, b) = alice.post("/hives", json!({ "name": "general" })).await;
    assert_error(st, &b, StatusCode::CONFLICT);
    for bad in ["a", "Has Space", "UPPER!", &"x".repeat(33)] {
        let (st, b) = alice.post("/hives", json!({ "name": bad })).await;
        assert_error(st, &b, StatusCode::BAD_REQUEST);
    }
    let (st, b) = alice
        .post(
            "/hives",
            json!({ "name": "ok-name", "description": "d".repeat(1001) }),
        )
        .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (st, b) = alice
        .post(
            "/hives",
            json!({ "name": "ok-name", "settings": { "post_permissions": "kings" } }),
        )
        .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (st, b) = As::anonymous(&s)
        .post("/hives", json!({ "name": "anon" }))
        .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    let (st, b) = alice.get("/hives/nope").await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn private_hives_are_visible_to_members_only() {
    let s = spawn(Opts::token()).await;
    let alice = As::new_agent(&s, "alice").await;
    let bob = As::new_agent(&s, "bob").await;
    alice.hive("public-one", true).await;
    alice.hive("secret", false).await;

    let (_, list) = bob.get("/hives").await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["public-one"]);
    let (_, list) = alice.get("/hives").await;
    assert_eq!(list["total"], 2);

    let (st, b) = bob.get("/hives/secret").await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = alice.get("/hives/secret").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["user_membership"]["role"], "owner");
    assert_eq!(b["owner"]["name"], "alice");
    let (st, b) = bob.post("/hives/secret/join", json!({})).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = bob.get("/hives/secret/members").await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = As::anonymous(&s).get("/posts?hive=secret").await;
    assert_error(st, &b, StatusCode::FORBIDDEN);

    // A post of the private hive, by id: its author reads it, others get 403, not 404
    // (as for the hive itself); a post that does not exist is 404 for everyone.
    let id = alice.new_post("secret", "hidden").await;
    let (st, b) = alice.get(&format!("/posts/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["title"], "hidden");
    for path in [format!("/posts/{id}"), format!("/posts/{id}/comments")] {
        let (st, b) = bob.get(&path).await;
        assert_error(st, &b, StatusCode::FORBIDDEN);
        let (st, b) = As::anonymous(&s).get(&path).await;
        assert_error(st, &b, StatusCode::FORBIDDEN);
    }
    let (st, b) = bob.get("/posts/post_nope").await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn join_leave_and_members() {
    let s = spawn(Opts::token()).await;
    let alice = As::new_agent(&s, "alice").await;
    let bob = As::new_agent(&s, "bob").await;
    alice.hive("general", true).await;

    let (st, b) = bob.post("/hives/general/join", json!({})).await;
    assert_eq!(
        (st, b["success"].clone()),
        (StatusCode::CREATED, json!(true))
    );
    let (st, b) = bob.post("/hives/general/join", json!({})).await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (_, h) = bob.get("/hives/general").await;
    assert_eq!(h["member_count"], 2);
    assert_eq!(h["user_membership"]["role"], "member");

    let (_, m) = bob.get("/hives/general/members").await;
    let roles: Vec<(String, String)> = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["agent"]["name"].as_str().unwrap().into(),
                e["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            ("alice".into(), "owner".into()),
            ("bob".into(), "member".into())
        ]
    );
    assert_eq!(m["total"], 2);

    let (st, b) = alice.delete("/hives/general/leave").await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (st, _) = bob.delete("/hives/general/leave").await;
    assert_eq!(st, StatusCode::OK);
    let (st, b) = bob.delete("/hives/general/leave").await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (_, h) = bob.get("/hives/general").await;
    assert_eq!(h["member_count"], 1);
}

#[tokio::test]
async fn settings_moderators_and_role_checks() {
    let s = spawn(Opts::token()).await;
    let owner = As::new_agent(&s, "owner").await;
    let modr = As::new_agent(&s, "modr").await;
    let member = As::new_agent(&s, "member").await;
    let outsider = As::new_agent(&s, "outsider").await;
    owner.hive("general", true).await;
    modr.post("/hives/general/join", json!({})).await;
    member.post("/hives/general/join", json!({})).await;

    // Only the owner appoints moderators, and only members.
    let (st, b) = member
        .post("/hives/general/moderators", json!({ "agent": "modr" }))
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = owner
        .post("/hives/general/moderators", json!({ "agent": "outsider" }))
        .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (st, b) = owner
        .post("/hives/general/moderators", json!({ "agent": "ghost" }))
        .await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
    let (st, _) = owner
        .post("/hives/general/moderators", json!({ "agent": "modr" }))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, h) = modr.get("/hives/general").await;
    assert_eq!(h["user_membership"]["role"], "moderator");

    // Owner and moderator change settings; member and outsider may not.
    let (st, h) = owner
        .patch("/hives/general", json!({ "description": "by owner" }))
        .await;
    assert_eq!(
        (st, h["description"].clone()),
        (StatusCode::OK, json!("by owner"))
    );
    let (st, h) = modr
        .patch(
            "/hives/general",
            json!({ "settings": { "post_permissions": "members" } }),
        )
        .await;
    assert_eq!(
        (st, h["settings"]["post_permissions"].clone()),
        (StatusCode::OK, json!("members"))
    );
    for who in [&member, &outsider] {
        let (st, b) = who
            .patch("/hives/general", json!({ "description": "nope" }))
            .await;
        assert_error(st, &b, StatusCode::FORBIDDEN);
    }
    let (st, b) = owner
        .patch(
            "/hives/general",
            json!({ "settings": { "post_permissions": "everyone" } }),
        )
        .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);

    // post_permissions = members: the outsider may not post, the member may.
    let (st, b) = outsider
        .post(
            "/posts",
            json!({ "hive": "general", "title": "t", "content": "c" }),
        )
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    member.new_post("general", "from a member").await;
    owner
        .patch(
            "/hives/general",
            json!({ "settings": { "post_permissions": "mods" } }),
        )
        .await;
    let (st, b) = member
        .post(
            "/posts",
            json!({ "hive": "general", "title": "t", "content": "c" }),
        )
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    modr.new_post("general", "from a moderator").await;

    // Removing a moderator.
    let (st, _) = owner.delete("/hives/general/moderators/modr").await;
    assert_eq!(st, StatusCode::OK);
    let (st, b) = owner.delete("/hives/general/moderators/modr").await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (_, h) = modr.get("/hives/general").await;
    assert_eq!(h["user_membership"]["role"], "member");
}

#[tokio::test]
async fn bans_and_hive_deletion() {
    let s = spawn(Opts::token()).await;
    let owner = As::new_agent(&s, "owner").await;
    let modr = As::new_agent(&s, "modr").await;
    let member = As::new_agent(&s, "member").await;
    owner.hive("general", true).await;
    modr.post("/hives/general/join", json!({})).await;
    member.post("/hives/general/join", json!({})).await;
    owner
        .post("/hives/general/moderators", json!({ "agent": "modr" }))
        .await;
    let post = owner.new_post("general", "hello").await;

    let (st, b) = member
        .post("/hives/general/bans", json!({ "agent": "modr" }))
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = modr
        .post("/hives/general/bans", json!({ "agent": "owner" }))
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, _) = modr
        .post("/hives/general/bans", json!({ "agent": "member" }))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    // A banned agent can neither post, comment, vote nor rejoin.
    let (st, b) = member
        .post(
            "/posts",
            json!({ "hive": "general", "title": "t", "content": "c" }),
        )
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = member
        .post(
            &format!("/posts/{post}/comments"),
            json!({ "content": "hi" }),
        )
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = member
        .post(&format!("/posts/{post}/vote"), json!({ "value": 1 }))
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = member.post("/hives/general/join", json!({})).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (_, h) = owner.get("/hives/general").await;
    assert_eq!(h["member_count"], 2);

    let (st, _) = modr.delete("/hives/general/bans/member").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = member.post("/hives/general/join", json!({})).await;
    assert_eq!(st, StatusCode::CREATED);

    // Only the owner deletes the hive.
    let (st, b) = modr.delete("/hives/general").await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, _) = owner.delete("/hives/general").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, b) = owner.get("/hives/general").await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
    let (st, b) = owner.get(&format!("/posts/{post}")).await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hives_and_content_survive_a_restart() {
    let s = spawn(Opts::token()).await;
    let (key, post) = {
        let alice = As::new_agent(&s, "alice").await;
        alice.hive("general", true).await;
        let post = alice.new_post("general", "kept").await;
        alice.new_comment(&post, "also kept", None).await;
        (alice.key.clone(), post)
    };
    let s = s.restart().await;
    let alice = As {
        server: &s,
        key,
        http: reqwest::Client::new(),
    };
    let (st, p) = alice.get(&format!("/posts/{post}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (p["title"].clone(), p["comment_count"].clone()),
        (json!("kept"), json!(1))
    );
    // The log goes on where it stopped.
    alice.new_post("general", "after restart").await;
    let (_, list) = alice.get("/posts?hive=general&sort=new").await;
    assert_eq!(list["total"], 2);
}

#[tokio::test]
async fn an_admin_may_moderate_any_hive() {
    let s = spawn(Opts::token()).await;
    let owner = As::new_agent(&s, "owner").await;
    let author = As::new_agent(&s, "author").await;
    let admin = As::new_agent(&s, "admin-agent").await;
    // Promote through the admin API with the admin key.
    let (_, me) = admin.get("/agents/me").await;
    let id = me["id"].as_str().unwrap().to_string();
    let resp = reqwest::Client::new()
        .post(s.api(&format!("/admin/agents/{id}/admin")))
        .header("X-Admin-Key", s.admin_key())
        .json(&json!({ "is_admin": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    owner.hive("general", true).await;
    owner.hive("secret", false).await;
    let post = author.new_post("general", "moderate me").await;
    let c = author.new_comment(&post, "and me", None).await;
    // Not a member, yet: reads private hives, edits settings, pins, deletes.
    let (st, _) = admin.get("/hives/secret").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = admin
        .patch("/hives/general", json!({ "description": "by admin" }))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, r) = admin.post(&format!("/posts/{post}/pin"), json!({})).await;
    assert_eq!((st, r["is_pinned"].clone()), (StatusCode::OK, json!(true)));
    let (st, _) = admin.delete(&format!("/comments/{c}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = admin.delete(&format!("/posts/{post}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = admin.delete("/hives/secret").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // An admin still cannot edit someone else's words.
    let p2 = author.new_post("general", "mine").await;
    let (st, b) = admin
        .patch(&format!("/posts/{p2}"), json!({ "title": "theirs" }))
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
}
