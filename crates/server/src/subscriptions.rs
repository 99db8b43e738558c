//! Pull subscriptions (Pattern 1), the polling side: ONE task polls every due subscription
//! through the remote's public feed (`GET /api/v1/feed/all?hive=&sort=new&since=&limit=`,
//! paging with `cursor` while `has_more`, or with `offset` when the remote answers the
//! reference's shape without them), and hands each page to
//! [`HiveService::mirror_page`](crate::service::HiveService::mirror_page), which stores the
//! posts and the new cursor in one transaction.
//!
//! Invariants:
//! - one task for all subscriptions: it reads which are due (`next_poll_at`), polls up to
//!   `concurrency` of them at once, each for at most `max_pages_per_round` pages, then
//!   sleeps until the next one is due or it is woken ([`Wake`]); a paused subscription is
//!   a row, nothing else;
//! - the cursor never moves except with the posts it covers (see `service::mirror`);
//! - a failed poll records `last_error`, counts a consecutive failure and is retried after
//!   `backoff_initial_ms * 2^(failures-1)`, capped at `backoff_max_secs`;
//! - in an instance of several app processes, only the holder of the `subscriptions` lease
//!   polls;
//! - every poll runs in a span with the subscription id, the remote and the hives.

use crate::config::SubscriptionsConfig;
use crate::service::{HiveService, MirrorPage, MirroredPost};
use openhive_core::ids::{self, Kind};
use openhive_core::payload::AgentRef;
use openhive_core::time;
use openhive_store::Store;
use openhive_store::subscriptions::{self, PassState, SubscriptionRow};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// The lease that makes one app process the poller.
pub const LEASE: &str = "subscriptions";
/// How long the worker sleeps at most (it then looks again: subscriptions created or
/// resumed through another app process of the instance).
const IDLE_RECHECK: Duration = Duration::from_secs(10);
/// Timeout of one feed request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest feed page read (100 posts of 40 000 characters fit).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Wakes the worker (a subscription was created, resumed, or asked to poll now).
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Normalizes a remote instance's base URL: no trailing `/`, no trailing `/api/v1`.
pub fn normalize_remote_url(url: &str) -> String {
    let mut u = url.trim().trim_end_matches('/').to_string();
    if let Some(stripped) = u.strip_suffix("/api/v1") {
        u = stripped.trim_end_matches('/').to_string();
    }
    u
}

/// The retry delay after `failures` consecutive failures (≥ 1).
pub fn backoff_delay(cfg: &SubscriptionsConfig, failures: i64) -> Duration {
    let exp = u32::try_from((failures - 1).clamp(0, 30)).unwrap_or(30);
    let d = Duration::from_millis(cfg.backoff_initial_ms).saturating_mul(1u32 << exp);
    d.min(Duration::from_secs(cfg.backoff_max_secs))
}

/// One page of a remote feed, read leniently (our shape and the reference's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedPage {
    pub posts: Vec<MirroredPost>,
    /// Items in the page, readable or not (offset paging moves by this).
    pub items: usize,
    /// Items that could not be read as a post (logged, skipped).
    pub unreadable: usize,
    /// The remote's `has_more`, when it sends one.
    pub has_more: Option<bool>,
    /// The remote's keyset `cursor`, when it sends one.
    pub cursor: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn instant(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| time::parse_iso8601(s.trim())),
        _ => None,
    }
}

/// The author of a remote post as a remote-agent snapshot. An agent of another OpenHive
/// instance (an `agt_<inst>_…` id in the namespace of the `instance_id` the feed names)
/// keeps its id; any other gets a stable id derived from the remote and its id there.
fn author_of(item: &Value, source_url: &str, me: &str) -> AgentRef {
    let a = item.get("author").filter(|a| a.is_object());
    let field = |nested: &str, flat: &str| {
        a.and_then(|a| a.get(nested))
            .and_then(text)
            .or_else(|| item.get(flat).and_then(text))
            .filter(|s| !s.is_empty())
    };
    let remote_id = field("id", "author_id").unwrap_or_else(|| "unknown".into());
    let name = field("name", "author_name").unwrap_or_else(|| remote_id.clone());
    let avatar_url = field("avatar_url", "author_avatar_url")
        .filter(|u| openhive_core::validate::url(u).is_ok());
    let inst = field("instance_id", "author_origin_instance_id")
        .filter(|i| ids::instance_suffix(i).is_some() && i != me);
    match inst {
        Some(i) if ids::is_in_namespace(&remote_id, Kind::Agent, &i) => AgentRef {
            instance_id: i,
            agent_id: remote_id,
            name,
            avatar_url,
        },
        inst => AgentRef {
            instance_id: inst.unwrap_or_else(|| source_url.to_string()),
            agent_id: format!(
                "agt_mirror_{}",
                &ids::hash_secret(&format!("{source_url}\n{remote_id}"))[..24]
            ),
            name,
            avatar_url,
        },
    }
}

/// Reads a feed response: `{data: [...], cursor?, has_more?}` (also a bare array, or
/// `posts` instead of `data`). Posts need an `id`, a `title` and a `created_at` (RFC 3339
/// or ms); the rest is optional.
pub fn parse_feed(body: &Value, source_url: &str, me: &str) -> Result<FeedPage, String> {
    let items = body
        .get("data")
        .or_else(|| body.get("posts"))
        .or(Some(body))
        .and_then(Value::as_array)
        .ok_or("the feed response holds no data array")?;
    let mut page = FeedPage {
        items: items.len(),
        has_more: body.get("has_more").and_then(Value::as_bool),
        cursor: body
            .get("cursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        ..FeedPage::default()
    };
    for item in items {
        let post = (|| {
            let post_id = item.get("id").and_then(text).filter(|s| !s.is_empty())?;
            let title = item.get("title").and_then(Value::as_str)?.to_string();
            let created_at = item.get("created_at").and_then(instant)?;
            Some(MirroredPost {
                post_id,
                title,
                content: item
                    .get("content")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                url: item
                    .get("url")
                    .and_then(Value::as_str)
                    .filter(|u| openhive_core::validate::url(u).is_ok())
                    .map(str::to_string),
                author: author_of(item, source_url, me),
                created_at,
            })
        })();
        match post {
            Some(p) => page.posts.push(p),
            None => page.unreadable += 1,
        }
    }
    Ok(page)
}

/// The posts of `page` to store and where the subscription stands after them, given where
/// it stood (`pass`). Returns (posts, next state, whether the pass is complete). Posts at
/// or below `since - lookback` are dropped (seen, or too old to look for again); the pass
/// ends with the first page holding a post at or below the watermark, or the last page.
pub fn advance(
    pass: &PassState,
    page: FeedPage,
    limit: usize,
    lookback_ms: i64,
) -> (Vec<MirroredPost>, PassState, bool) {
    let floor = pass.since_ms.map(|s| s.saturating_sub(lookback_ms));
    // The pass ends on the page that reaches the watermark: what lies below was seen by
    // earlier passes (the lookback re-reads at most the rest of that page).
    let reached_floor = pass
        .since_ms
        .is_some_and(|s| page.posts.iter().any(|p| p.created_at <= s));
    let newest = page.posts.iter().map(|p| p.created_at).max();
    let pass_max = match (pass.pass_max_ms, newest) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let more = page.items > 0 && !reached_floor && page.has_more.unwrap_or(page.items >= limit);
    let posts: Vec<MirroredPost> = page
        .posts
        .into_iter()
        .filter(|p| floor.is_none_or(|f| p.created_at > f))
        .collect();
    if more {
        let (pass_cursor, pass_offset) = match page.cursor {
            Some(c) if page.has_more.is_some() => (Some(c), 0),
            _ => (
                None,
                pass.pass_offset
                    .saturating_add(i64::try_from(page.items).unwrap_or(i64::MAX)),
            ),
        };
        let next = PassState {
            since_ms: pass.since_ms,
            pass_cursor,
            pass_offset,
            pass_max_ms: pass_max,
        };
        (posts, next, false)
    } else {
        let since_ms = match (pass.since_ms, pass_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let next = PassState {
            since_ms,
            pass_cursor: None,
            pass_offset: 0,
            pass_max_ms: None,
        };
        (posts, next, true)
    }
}

/// What the worker needs.
#[derive(Clone)]
pub struct Worker {
    pub store: Store,
    pub hives: HiveService,
    pub config: SubscriptionsConfig,
    pub wake: Wake,
}

impl Worker {
    /// Starts the one polling task.
    pub fn spawn(self) -> anyhow::Result<JoinHandle<()>> {
        openhive_sync::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(4)
            .user_agent(concat!(
                "openhive-subscriptions/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(tokio::spawn(async move { self.run(http).await }))
    }

    async fn run(self, http: reqwest::Client) {
        let mut leased = false;
        loop {
            if !leased {
                let store = self.store.clone();
                leased = matches!(
                    tokio::task::spawn_blocking(move || store.backend().try_lease(LEASE)).await,
                    Ok(Ok(true))
                );
                if !leased {
                    self.idle(IDLE_RECHECK).await;
                    continue;
                }
            }
            let now = time::now_ms();
            let limit = i64::from(self.config.concurrency).saturating_mul(4);
            let due = match self
                .store
                .read(move |c| subscriptions::due(c, now, limit))
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "reading due subscriptions");
                    self.idle(Duration::from_secs(5)).await;
                    continue;
                }
            };
            if due.is_empty() {
                let next = self
                    .store
                    .read(subscriptions::next_due_at)
                    .await
                    .ok()
                    .flatten();
                let wait = next
                    .map(|t| Duration::from_millis(u64::try_from(t - now).unwrap_or(0)))
                    .unwrap_or(IDLE_RECHECK)
                    .min(IDLE_RECHECK);
                self.idle(wait).await;
                continue;
            }
            use futures::StreamExt;
            let http = &http;
            let this = &self;
            futures::stream::iter(due)
                .for_each_concurrent(self.config.concurrency as usize, |sub| async move {
                    let span = tracing::info_span!(
                        "subscription",
                        id = %sub.id,
                        remote = %sub.remote_url,
                        remote_hive = %sub.remote_hive_name,
                        hive = %sub.local_hive_name,
                    );
                    this.round(http, sub).instrument(span).await;
                })
                .await;
        }
    }

    /// Sleeps for `d` or until woken.
    async fn idle(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.wake.0.notified() => {}
        }
    }

    /// One round of one subscription: up to `max_pages_per_round` pages.
    async fn round(&self, http: &reqwest::Client, sub: SubscriptionRow) {
        let limit = self.config.page_limit as usize;
        let lookback_ms =
            i64::try_from(self.config.lookback_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut pass = sub.pass.clone();
        for _ in 0..self.config.max_pages_per_round {
            let page = match self.fetch(http, &sub, &pass).await {
                Ok(p) => p,
                Err(e) => return self.failed(&sub, e).await,
            };
            if page.unreadable > 0 {
                tracing::warn!(
                    unreadable = page.unreadable,
                    "skipping feed items without id, title or created_at"
                );
            }
            let (posts, next, complete) = advance(&pass, page, limit, lookback_ms);
            let report = self
                .hives
                .mirror_page(MirrorPage {
                    subscription_id: sub.id.clone(),
                    posts,
                    pass: next.clone(),
                })
                .await;
            match report {
                Ok(Some(r)) => {
                    tracing::debug!(
                        added = r.added,
                        known = r.known,
                        invalid = r.invalid,
                        complete,
                        "page mirrored"
                    );
                    if r.added > 0 {
                        tracing::info!(added = r.added, "mirrored remote posts");
                    }
                }
                Ok(None) => return, // deleted or paused meanwhile
                Err(e) => {
                    return self
                        .failed(&sub, format!("storing mirrored posts: {e}"))
                        .await;
                }
            }
            pass = next;
            if complete {
                let now = time::now_ms();
                return self
                    .schedule(&sub, now.saturating_add(sub.sync_interval_ms))
                    .await;
            }
        }
        // The pass goes on: due again at once, behind the others that are due.
        self.schedule(&sub, time::now_ms()).await;
    }

    async fn schedule(&self, sub: &SubscriptionRow, at: i64) {
        let id = sub.id.clone();
        let now = time::now_ms();
        if let Err(e) = self
            .store
            .write(move |tx| subscriptions::schedule(tx, &id, at, now))
            .await
        {
            tracing::error!(error = %e, "scheduling the next poll");
        }
    }

    async fn failed(&self, sub: &SubscriptionRow, error: String) {
        let failures = sub.failure_count.saturating_add(1);
        let delay = backoff_delay(&self.config, failures);
        tracing::warn!(%error, failures, retry_in_ms = delay.as_millis() as u64, "subscription poll failed");
        let id = sub.id.clone();
        let now = time::now_ms();
        let at = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let error: String = error.chars().take(500).collect();
        if let Err(e) = self
            .store
            .write(move |tx| subscriptions::record_failure(tx, &id, &error, at, now))
            .await
        {
            tracing::error!(error = %e, "recording a failed poll");
        }
    }

    /// GETs one page of the remote feed.
    async fn fetch(
        &self,
        http: &reqwest::Client,
        sub: &SubscriptionRow,
        pass: &PassState,
    ) -> Result<FeedPage, String> {
        let url = format!("{}/api/v1/feed/all", sub.remote_url);
        let mut query: Vec<(&str, String)> = vec![
            ("hive", sub.remote_hive_name.clone()),
            ("sort", "new".into()),
            ("limit", self.config.page_limit.to_string()),
        ];
        if let Some(since) = pass.since_ms {
            let lookback =
                i64::try_from(self.config.lookback_secs.saturating_mul(1000)).unwrap_or(0);
            query.push((
                "since",
                time::rfc3339(since.saturating_sub(lookback).max(0)),
            ));
        }
        match &pass.pass_cursor {
            Some(c) => query.push(("cursor", c.clone())),
            None if pass.pass_offset > 0 => query.push(("offset", pass.pass_offset.to_string())),
            None => {}
        }
        let target = reqwest::Url::parse_with_params(&url, &query)
            .map_err(|e| format!("bad remote URL {url}: {e}"))?;
        let resp = http
            .get(target)
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {}", describe(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| body.chars().take(200).collect());
            return Err(format!("{url} answered {status}: {message}"));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(format!("{url} answered a page over {MAX_BODY_BYTES} bytes"));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("reading {url}: {}", describe(&e)))?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(format!("{url} answered a page over {MAX_BODY_BYTES} bytes"));
        }
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{url} answered something that is not JSON: {e}"))?;
        parse_feed(&body, &sub.remote_url, self.hives.instance_id())
            .map_err(|e| format!("{url}: {e}"))
    }
}

/// A transport error with its causes, without the URL (the caller names it).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn post(id: &str, ts: i64) -> MirroredPost {
        MirroredPost {
            post_id: id.into(),
            title: "t".into(),
            content: None,
            url: None,
            author: AgentRef {
                instance_id: "http://r".into(),
                agent_id: "agt_mirror_x".into(),
                name: "x".into(),
                avatar_url: None,
            },
            created_at: ts,
        }
    }

    fn page(posts: Vec<MirroredPost>, has_more: Option<bool>, cursor: Option<&str>) -> FeedPage {
        FeedPage {
            items: posts.len(),
            posts,
            unreadable: 0,
            has_more,
            cursor: cursor.map(Into::into),
        }
    }

    #[test]
    fn a_pass_follows_the_cursor_then_moves_the_watermark() {
        let start = PassState::default();
        let (posts, next, done) = advance(
            &start,
            page(
                vec![post("a", 30), post("b", 20)],
                Some(true),
                Some("n:20:b"),
            ),
            2,
            0,
        );
        assert_eq!(posts.len(), 2);
        assert!(!done);
        assert_eq!(next.pass_cursor.as_deref(), Some("n:20:b"));
        assert_eq!(next.pass_max_ms, Some(30));
        assert_eq!(next.since_ms, None);
        let (_, next, done) = advance(&next, page(vec![post("c", 10)], Some(false), None), 2, 0);
        assert!(done);
        assert_eq!(
            next,
            PassState {
                since_ms: Some(30),
                ..PassState::default()
            }
        );
    }

    #[test]
    fn without_cursor_or_has_more_it_pages_by_offset_and_stops_at_the_watermark() {
        let pass = PassState {
            since_ms: Some(100),
            ..PassState::default()
        };
        // A full page, all newer than the floor: go on by offset.
        let (posts, next, done) = advance(
            &pass,
            page(vec![post("a", 300), post("b", 200)], None, None),
            2,
            50,
        );
        assert_eq!(posts.len(), 2);
        assert!(!done);
        assert_eq!(next.pass_offset, 2);
        // A page reaching below the floor (100 - 50): old posts dropped, the pass ends.
        let (posts, next, done) = advance(
            &next,
            page(vec![post("c", 60), post("d", 40)], None, None),
            2,
            50,
        );
        assert!(done);
        assert_eq!(
            posts.iter().map(|p| p.post_id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(next.since_ms, Some(300));
        assert!(!next.in_progress());
    }

    #[test]
    fn an_empty_page_ends_the_pass_and_keeps_the_watermark() {
        let pass = PassState {
            since_ms: Some(100),
            ..PassState::default()
        };
        let (posts, next, done) = advance(&pass, page(vec![], None, None), 100, 0);
        assert!(posts.is_empty() && done);
        assert_eq!(next.since_ms, Some(100));
    }

    #[test]
    fn feeds_of_both_shapes_are_read() {
        let me = "inst_me";
        let ours = json!({
            "data": [{"id": "post_abc_1", "title": "T", "content": "C", "url": null,
                      "created_at": "2026-11-28T10:00:00.000Z",
                      "author": {"id": "agt_abc_9", "name": "alice", "instance_id": "inst_abc"}}],
            "cursor": "n:1:post_abc_1", "has_more": true
        });
        let p = parse_feed(&ours, "http://r", me).unwrap();
        assert_eq!(p.has_more, Some(true));
        assert_eq!(p.posts[0].author.agent_id, "agt_abc_9");
        assert_eq!(p.posts[0].author.instance_id, "inst_abc");
        let reference = json!({
            "data": [{"id": "9f1c", "title": "T", "content": null,
                      "created_at": "2026-11-28 10:00:00", "author_name": "bob",
                      "author": {"id": "u1", "name": "bob"}},
                     {"id": "no-title", "created_at": 5}],
            "limit": 25, "offset": 0
        });
        let p = parse_feed(&reference, "http://r", me).unwrap();
        assert_eq!(p.items, 2);
        assert_eq!(p.unreadable, 1);
        assert_eq!(p.has_more, None);
        let a = &p.posts[0].author;
        assert!(a.agent_id.starts_with("agt_mirror_"), "{a:?}");
        assert_eq!(a.instance_id, "http://r");
        assert_eq!(a.name, "bob");
        // Stable: the same remote author gets the same id again.
        assert_eq!(
            parse_feed(&reference, "http://r", me).unwrap().posts[0].author,
            *a
        );
        assert!(parse_feed(&json!({"error": "x"}), "http://r", me).is_err());
    }

    #[test]
    fn an_agent_claiming_our_namespace_is_not_taken_at_its_word() {
        let me = "inst_me";
        let body = json!([{"id": "p", "title": "T", "created_at": 1,
                           "author": {"id": "agt_me_1", "name": "x", "instance_id": "inst_me"}}]);
        let a = &parse_feed(&body, "http://r", me).unwrap().posts[0].author;
        assert!(a.agent_id.starts_with("agt_mirror_"));
        assert_eq!(a.instance_id, "http://r");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = SubscriptionsConfig {
            backoff_initial_ms: 100,
            backoff_max_secs: 1,
            ..SubscriptionsConfig::default()
        };
        assert_eq!(backoff_delay(&cfg, 1), Duration::from_millis(100));
        assert_eq!(backoff_delay(&cfg, 2), Duration::from_millis(200));
        assert_eq!(backoff_delay(&cfg, 4), Duration::from_millis(800));
        assert_eq!(backoff_delay(&cfg, 5), Duration::from_secs(1));
        assert_eq!(backoff_delay(&cfg, 500), Duration::from_secs(1));
    }

    #[test]
    fn remote_urls_are_normalized() {
        assert_eq!(normalize_remote_url("http://h:1/"), "http://h:1");
        assert_eq!(normalize_remote_url(" http://h:1/api/v1/ "), "http://h:1");
    }
}
