//! Posts: CRUD, role checks, validation, votes, pins, listings and cursor paging.

use crate::client::As;
use crate::harness::{Opts, assert_error, spawn};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;

/// The 201 of a created post is built without reading the row back
/// (`openhive_store::posts::fresh`): it must be exactly what a read of the post returns.
#[tokio::test]
async fn a_created_post_is_answered_as_it_reads() {
    let s = spawn(Opts::token()).await;
    let owner = As::new_agent(&s, "owner").await;
    let author = As::new_agent(&s, "author").await;
    owner.hive("general", true).await;
    // Karma, so the author's columns are not all defaults.
    let earlier = author.new_post("general", "earlier").await;
    let (st, _) = owner
        .post(&format!("/posts/{earlier}/vote"), json!({ "value": 1 }))
        .await;
    assert_eq!(st, StatusCode::OK);
    for body in [
        json!({ "hive": "general", "title": "Both", "content": "body", "url": "https://example.org/x" }),
        json!({ "hive": "GENERAL", "title": "Content only", "content": "body" }),
        json!({ "hive": "general", "title": "Url only", "url": "https://example.org/y" }),
    ] {
        let (st, created) = author.post("/posts", body).await;
        assert_eq!(st, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap();
        let (st, read) = author.get(&format!("/posts/{id}")).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(created, read);
        assert_eq!(read["author"]["karma"], 1, "{read}");
    }
}

#[tokio::test]
async fn post_crud_and_role_checks() {
    let s = spawn(Opts::token()).await;
    let owner = As::new_agent(&s, "owner").await;
    let author = As::new_agent(&s, "author").await;
    let other = As::new_agent(&s, "other").await;
    owner.hive("general", true).await;

    let (st, p) = author
        .post("/posts", json!({ "hive": "general", "title": "Hi", "content": "body", "url": "https://example.org/x" }))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["author"]["name"], "author");
    assert_eq!(p["author_name"], "author");
    assert_eq!(p["hive_name"], "general");
    assert!(id.starts_with("post_"));

    // Validation.
    for body in [
        json!({ "hive": "general", "title": "no body" }),
        json!({ "hive": "general", "title": "", "content": "x" }),
        json!({ "hive": "general", "title": "t".repeat(301), "content": "x" }),
        json!({ "hive": "general", "title": "t", "url": "ftp://nope" }),
        json!({ "hive": "general", "title": "t", "content": "c", "extra": 1 }),
    ] {
        let (st, b) = author.post("/posts", body.clone()).await;
        assert_error(st, &b, StatusCode::BAD_REQUEST);
    }
    let (st, b) = author
        .post(
            "/posts",
            json!({ "hive": "missing", "title": "t", "content": "c" }),
        )
        .await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
    let (st, b) = As::anonymous(&s)
        .post(
            "/posts",
            json!({ "hive": "general", "title": "t", "content": "c" }),
        )
        .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);

    // Only the author edits.
    let (st, b) = other
        .patch(&format!("/posts/{id}"), json!({ "title": "hijack" }))
        .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, p) = author
        .patch(&format!("/posts/{id}"), json!({ "title": "Edited" }))
        .await;
    assert_eq!(
        (st, p["title"].clone(), p["content"].clone()),
        (StatusCode::OK, json!("Edited"), json!("body"))
    );
    let (_, p) = other.get(&format!("/posts/{id}")).await;
    assert_eq!(p["title"], "Edited");

    // Delete: not by another member; by the author; the owner deletes others' posts.
    let (st, b) = other.delete(&format!("/posts/{id}")).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, _) = author.delete(&format!("/posts/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, b) = author.get(&format!("/posts/{id}")).await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
    let (st, b) = author
        .patch(&format!("/posts/{id}"), json!({ "title": "zombie" }))
        .await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
    let id2 = other.new_post("general", "second").await;
    let (st, _) = owner.delete(&format!("/posts/{id2}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn votes_toggle_and_flip() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    let b = As::new_agent(&s, "bob").await;
    a.hive("general", true).await;
    let id = a.new_post("general", "vote on me").await;
    let path = format!("/posts/{id}/vote");

    let (_, r) = b.post(&path, json!({ "value": 1 })).await;
    assert_eq!(r, json!({ "score": 1, "user_vote": 1 }));
    let (_, r) = b.post(&path, json!({ "value": -1 })).await;
    assert_eq!(r, json!({ "score": -1, "user_vote": -1 }));
    // Repeating the same vote removes it.
    let (_, r) = b.post(&path, json!({ "value": -1 })).await;
    assert_eq!(r, json!({ "score": 0, "user_vote": null }));
    let (_, r) = b.post(&path, json!({ "value": 1 })).await;
    assert_eq!(r, json!({ "score": 1, "user_vote": 1 }));
    let (_, r) = a.post(&path, json!({ "value": 1 })).await;
    assert_eq!(r["score"], 2);
    let (_, p) = b.get(&format!("/posts/{id}")).await;
    assert_eq!(
        (p["score"].clone(), p["user_vote"].clone()),
        (json!(2), json!(1))
    );
    // Karma follows the score of the author's content.
    let (_, me) = a.get("/agents/me").await;
    assert_eq!(me["karma"], 2);
    // Another agent's vote changes alice's karma: her next request sees it, though her row
    // was just read (and kept by the caller cache).
    let (_, r) = b.post(&path, json!({ "value": -1 })).await;
    assert_eq!(r["score"], 0);
    let (_, me) = a.get("/agents/me").await;
    assert_eq!(me["karma"], 0);

    for bad in [
        json!({ "value": 0 }),
        json!({ "value": 2 }),
        json!({ "value": "up" }),
        json!({}),
    ] {
        let (st, body) = b.post(&path, bad).await;
        assert_error(st, &body, StatusCode::BAD_REQUEST);
    }
    let (st, body) = b.post("/posts/post_nope/vote", json!({ "value": 1 })).await;
    assert_error(st, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pins_need_a_moderator() {
    let s = spawn(Opts::token()).await;
    let owner = As::new_agent(&s, "owner").await;
    let member = As::new_agent(&s, "member").await;
    owner.hive("general", true).await;
    member.post("/hives/general/join", json!({})).await;
    let id = member.new_post("general", "pin me").await;
    let (st, b) = member.post(&format!("/posts/{id}/pin"), json!({})).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (_, r) = owner.post(&format!("/posts/{id}/pin"), json!({})).await;
    assert_eq!(r, json!({ "is_pinned": true }));
    let (_, p) = member.get(&format!("/posts/{id}")).await;
    assert_eq!(p["is_pinned"], true);
    let (_, r) = owner.post(&format!("/posts/{id}/pin"), json!({})).await;
    assert_eq!(r, json!({ "is_pinned": false }));
}

#[tokio::test]
async fn listings_sort_and_validate() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    let b = As::new_agent(&s, "bob").await;
    a.hive("general", true).await;
    let p1 = a.new_post("general", "one").await;
    let p2 = a.new_post("general", "two").await;
    let p3 = a.new_post("general", "three").await;
    b.post(&format!("/posts/{p1}/vote"), json!({ "value": 1 }))
        .await;
    a.post(&format!("/posts/{p1}/vote"), json!({ "value": 1 }))
        .await;
    b.post(&format!("/posts/{p3}/vote"), json!({ "value": -1 }))
        .await;

    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (st, new) = a.get("/posts?hive=general&sort=new").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ids(&new), vec![p3.clone(), p2.clone(), p1.clone()]);
    let (_, top) = a.get("/posts?hive=general&sort=top").await;
    assert_eq!(ids(&top), vec![p1.clone(), p2.clone(), p3.clone()]);
    // Hot works (the reference answers 500) and ranks the upvoted post first.
    let (st, hot) = a.get("/posts?hive=general").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ids(&hot)[0], p1);
    assert_eq!(hot["total"], 3);
    let (_, page) = a.get("/posts?hive=general&sort=new&limit=1&offset=1").await;
    assert_eq!(ids(&page), vec![p2]);

    for q in [
        "sort=best",
        "limit=0",
        "limit=101",
        "offset=-1",
        "limit=x",
        "sort=new&cursor=garbage",
    ] {
        let (st, body) = a.get(&format!("/posts?hive=general&{q}")).await;
        assert_error(st, &body, StatusCode::BAD_REQUEST);
    }
}

/// Paging by cursor neither skips nor repeats posts while new posts keep arriving.
#[tokio::test]
async fn cursor_paging_is_stable_under_concurrent_writes() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    a.hive("general", true).await;
    let mut expected = HashSet::new();
    for i in 0..23 {
        expected.insert(a.new_post("general", &format!("p{i}")).await);
    }
    for sort in ["new", "top", "hot"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("/posts?hive=general&sort={sort}&limit=5&cursor={c}"),
                None => format!("/posts?hive=general&sort={sort}&limit=5"),
            };
            let (st, page) = a.get(&q).await;
            assert_eq!(st, StatusCode::OK, "{page}");
            for p in page["data"].as_array().unwrap() {
                seen.push(p["id"].as_str().unwrap().to_string());
            }
            // A concurrent writer adds posts between pages: they are newer than every
            // cursor position, so they never shift the remaining pages.
            a.new_post("general", &format!("late {sort}")).await;
            if !page["has_more"].as_bool().unwrap() {
                assert!(page["cursor"].is_null());
                break;
            }
            cursor = Some(page["cursor"].as_str().unwrap().to_string());
        }
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: a post was repeated");
        assert!(expected.is_subset(&unique), "{sort}: a post was skipped");
        let (_, all) = a.get("/posts?hive=general&sort=new&since=0&limit=1").await;
        assert!(all["total"].as_i64().unwrap() >= 23);
        // Remember the late posts too, for the next sort.
        expected = unique;
    }
}
