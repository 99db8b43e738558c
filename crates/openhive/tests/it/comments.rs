//! Comments: threading, flat lists, sorting, edits, deletes hiding subtrees, votes.

use crate::client::As;
use crate::harness::{Opts, assert_error, spawn};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn threads_edits_deletes_and_votes() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    let b = As::new_agent(&s, "bob").await;
    a.hive("general", true).await;
    let post = a.new_post("general", "discuss").await;
    let other_post = a.new_post("general", "elsewhere").await;

    let c1 = b.new_comment(&post, "first", None).await;
    let c2 = a.new_comment(&post, "reply", Some(&c1)).await;
    let c3 = b.new_comment(&post, "reply to reply", Some(&c2)).await;
    let c4 = a.new_comment(&post, "second root", None).await;

    let (st, tree) = a.get(&format!("/posts/{post}/comments?sort=old")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tree["total"], 4);
    let roots = tree["data"].as_array().unwrap();
    assert_eq!(roots.len(), 2);
    assert_eq!(roots[0]["id"], c1.as_str());
    assert_eq!(roots[0]["replies"][0]["id"], c2.as_str());
    assert_eq!(roots[0]["replies"][0]["replies"][0]["id"], c3.as_str());
    assert_eq!(roots[0]["replies"][0]["replies"][0]["depth"], 2);
    let (_, flat) = a
        .get(&format!("/posts/{post}/comments?flat=true&sort=new"))
        .await;
    let ids: Vec<&str> = flat["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![c4.as_str(), c3.as_str(), c2.as_str(), c1.as_str()]
    );
    let (_, p) = a.get(&format!("/posts/{post}")).await;
    assert_eq!(p["comment_count"], 4);

    // Validation and parents.
    let (st, body) = a
        .post(&format!("/posts/{post}/comments"), json!({ "content": "" }))
        .await;
    assert_error(st, &body, StatusCode::BAD_REQUEST);
    let (st, body) = a
        .post(
            &format!("/posts/{other_post}/comments"),
            json!({ "content": "x", "parent_id": c1 }),
        )
        .await;
    assert_error(st, &body, StatusCode::BAD_REQUEST);
    let (st, body) = a
        .post("/posts/post_missing/comments", json!({ "content": "x" }))
        .await;
    assert_error(st, &body, StatusCode::NOT_FOUND);
    let (st, body) = a.get(&format!("/posts/{post}/comments?sort=worst")).await;
    assert_error(st, &body, StatusCode::BAD_REQUEST);

    // Edits by the author only.
    let (st, body) = a
        .patch(&format!("/comments/{c1}"), json!({ "content": "hijack" }))
        .await;
    assert_error(st, &body, StatusCode::FORBIDDEN);
    let (st, c) = b
        .patch(
            &format!("/comments/{c1}"),
            json!({ "content": "first (edited)" }),
        )
        .await;
    assert_eq!(
        (st, c["content"].clone()),
        (StatusCode::OK, json!("first (edited)"))
    );

    // Votes on comments.
    let (_, r) = a
        .post(&format!("/comments/{c1}/vote"), json!({ "value": 1 }))
        .await;
    assert_eq!(r, json!({ "score": 1, "user_vote": 1 }));

    // Deleting a comment hides its replies and updates the count.
    let carol = As::new_agent(&s, "carol").await;
    let (st, body) = carol.delete(&format!("/comments/{c3}")).await;
    assert_error(st, &body, StatusCode::FORBIDDEN);
    let (st, _) = b.delete(&format!("/comments/{c1}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, tree) = a.get(&format!("/posts/{post}/comments")).await;
    let ids: Vec<&str> = tree["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![c4.as_str()]);
    let (_, p) = a.get(&format!("/posts/{post}")).await;
    assert_eq!(p["comment_count"], 1);
    // A reply under a deleted comment cannot be made.
    let (st, body) = a
        .post(
            &format!("/posts/{post}/comments"),
            json!({ "content": "x", "parent_id": c2 }),
        )
        .await;
    assert_error(st, &body, StatusCode::BAD_REQUEST);
    // The hive owner deletes others' comments.
    let (st, _) = a.delete(&format!("/comments/{c4}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
}

/// Flat comment lists page by cursor without gaps or repeats while replies keep arriving.
#[tokio::test]
async fn flat_comments_page_by_cursor() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    a.hive("general", true).await;
    let post = a.new_post("general", "busy thread").await;
    let mut expected = std::collections::HashSet::new();
    for i in 0..12 {
        expected.insert(a.new_comment(&post, &format!("c{i}"), None).await);
    }
    for sort in ["old", "new", "top"] {
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let (st, page) = a
                .get(&format!(
                    "/posts/{post}/comments?flat=true&sort={sort}&limit=5&cursor={cursor}"
                ))
                .await;
            assert_eq!(st, StatusCode::OK, "{page}");
            seen.extend(
                page["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_string()),
            );
            a.new_comment(&post, "late", None).await;
            if !page["has_more"].as_bool().unwrap() {
                break;
            }
            cursor = page["cursor"].as_str().unwrap().to_string();
        }
        let unique: std::collections::HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: repeated");
        assert!(expected.is_subset(&unique), "{sort}: skipped");
        expected = unique;
    }
    let (st, b) = a.get(&format!("/posts/{post}/comments?limit=5")).await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (st, b) = a
        .get(&format!("/posts/{post}/comments?flat=true&cursor=zz"))
        .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
}
