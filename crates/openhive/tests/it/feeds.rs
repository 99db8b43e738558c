//! Feeds and search.

use crate::client::As;
use crate::harness::{Opts, assert_error, spawn};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn titles(v: &Value) -> Vec<String> {
    let mut t: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn feeds_follow_membership_follows_and_visibility() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    let b = As::new_agent(&s, "bob").await;
    a.hive("joined", true).await;
    a.hive("other", true).await;
    a.hive("secret", false).await;
    b.post("/hives/joined/join", json!({})).await;
    a.new_post("joined", "in joined").await;
    a.new_post("other", "in other").await;
    a.new_post("secret", "in secret").await;

    let (st, body) = As::anonymous(&s).get("/feed").await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED);
    let (st, home) = b.get("/feed/home").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(titles(&home), vec!["in joined"]);
    let (_, feed) = b.get("/feed").await;
    assert_eq!(titles(&feed), vec!["in joined", "in other"]);
    let (_, all) = As::anonymous(&s).get("/feed/all?sort=new").await;
    assert_eq!(titles(&all), vec!["in joined", "in other"]);
    let (_, all) = a.get("/feed/all").await;
    assert_eq!(titles(&all), vec!["in joined", "in other", "in secret"]);
    let (st, body) = b.get("/feed?sort=nope").await;
    assert_error(st, &body, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn search_finds_everything_it_should_and_nothing_private() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    let b = As::new_agent(&s, "bobcat").await;
    a.patch("/agents/me", json!({ "description": "likes zebras" }))
        .await;
    a.hive("zebra-club", true).await;
    a.hive("secret", false).await;
    let p = a.new_post("zebra-club", "Zebras are striped").await;
    b.new_comment(&p, "zebra stripes confirmed", None).await;
    a.new_post("secret", "secret zebra plans").await;

    let (st, r) = b.get("/search?q=zebra").await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["total"]["posts"], 1, "{r}");
    assert_eq!(r["results"]["posts"][0]["title"], "Zebras are striped");
    assert_eq!(r["total"]["comments"], 1);
    assert_eq!(r["results"]["agents"][0]["name"], "alice");
    assert_eq!(r["results"]["hives"][0]["name"], "zebra-club");
    let (_, r) = a.get("/search?q=zebra&type=posts").await;
    assert_eq!(r["total"]["posts"], 2);
    assert!(r["results"].get("comments").is_none());
    let (_, r) = a.get("/search?q=zebra&type=posts&hive=secret").await;
    assert_eq!(r["total"]["posts"], 1);
    // FTS syntax in the query is neutralised, not an error.
    let (st, _) = a.get("/search?q=%22zeb*%20OR%20(").await;
    assert_eq!(st, StatusCode::OK);

    for q in [
        "",
        "q=",
        &format!("q={}", "x".repeat(201)),
        "q=a&type=posts,bananas",
        "q=a&limit=0",
    ] {
        let (st, body) = a.get(&format!("/search?{q}")).await;
        assert_error(st, &body, StatusCode::BAD_REQUEST);
    }
}

/// `total` of the cross-hive listings is exact however many posts there are (it was a count
/// of matching rows that stopped at 10,000), and counts only live posts in hives the caller
/// reads.
#[tokio::test]
async fn cross_hive_totals_are_exact_past_ten_thousand_posts() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    let b = As::new_agent(&s, "bob").await;
    a.hive("big", true).await;
    a.hive("joined", true).await;
    a.hive("secret", false).await;
    b.post("/hives/joined/join", json!({})).await;
    crate::sync_util::bulk_posts(&s, "big", 10_001).await;
    a.new_post("joined", "kept").await;
    let gone = a.new_post("joined", "deleted").await;
    let (st, _) = a.delete(&format!("/posts/{gone}")).await;
    assert!(st.is_success(), "{st}");
    a.new_post("secret", "private").await;

    let total = |v: &Value| v["total"].as_i64().unwrap();
    let (_, all) = As::anonymous(&s).get("/posts?limit=1").await;
    assert_eq!(total(&all), 10_002, "public hives' live posts");
    let (_, all) = a.get("/feed/all?limit=1").await;
    assert_eq!(total(&all), 10_003, "the owner also reads the private hive");
    let (_, home) = b.get("/feed/home?limit=1").await;
    assert_eq!(total(&home), 1, "bob joined one hive");
    assert_eq!(home["data"][0]["title"], "kept");
}
