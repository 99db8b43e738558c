//! Pull subscriptions (Pattern 1), the write side: creating a subscription with its mirror
//! hive, and storing a polled page of remote posts with the subscription's new cursor.
//!
//! Invariants:
//! - a subscription, its mirror hive's creation and the mirror mark commit together;
//! - a page's posts and the cursor that covers them commit together ([`HiveService::mirror_page`]);
//! - a remote post is copied once, keyed by the remote's id: an id already here (from an
//!   earlier page, a restart, another hive) is skipped, so re-polling is a no-op.

use super::{Actor, HiveService, Result, ServiceError};
use openhive_core::payload::{AgentRef, HiveCreated, HiveSettings, Payload, PostMirrored};
use openhive_store::hives;
use openhive_store::subscriptions::{self, NewSubscription, PassState, SubscriptionRow};
use std::collections::HashSet;

/// A subscription to create (already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewSubscriptionInput {
    pub remote_url: String,
    pub remote_hive_name: String,
    pub local_hive_name: String,
    pub sync_interval_ms: i64,
    pub enabled: bool,
}

/// One remote post, as read from the remote's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredPost {
    pub post_id: String,
    pub title: String,
    pub content: Option<String>,
    pub url: Option<String>,
    pub author: AgentRef,
    pub created_at: i64,
}

/// A polled page: its posts and where the subscription stands once they are stored.
#[derive(Debug, Clone)]
pub struct MirrorPage {
    pub subscription_id: String,
    pub posts: Vec<MirroredPost>,
    pub pass: PassState,
}

/// What storing a page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorReport {
    /// Posts copied now.
    pub added: i64,
    /// Posts already here (earlier pages, restarts, re-polls).
    pub known: i64,
    /// Posts refused by the event rules (too long, control characters...): logged, skipped.
    pub invalid: i64,
}

impl HiveService {
    /// Creates a subscription and its mirror hive (public, owned by `actor`), or reuses a
    /// hive that already mirrors the same remote hive and has no subscription.
    pub async fn subscribe(
        &self,
        actor: &Actor,
        id: String,
        input: NewSubscriptionInput,
    ) -> Result<SubscriptionRow> {
        let owner = self.agent_ref(actor);
        self.write(move |conn, emit| {
            if subscriptions::id_by_remote(conn, &input.remote_url, &input.remote_hive_name)?
                .is_some()
            {
                return Err(ServiceError::Conflict(format!(
                    "a subscription to hive {} on {} already exists",
                    input.remote_hive_name, input.remote_url
                )));
            }
            let now = openhive_core::time::now_ms();
            let hive_id = match hives::get_by_name(conn, &input.local_hive_name)? {
                Some(hive) => {
                    let mirror = subscriptions::mirror_of(conn, &hive.id)?;
                    if mirror.as_ref()
                        != Some(&(input.remote_url.clone(), input.remote_hive_name.clone()))
                    {
                        return Err(ServiceError::Conflict(format!(
                            "hive {} already exists and is not a mirror of hive {} on {}; choose another local_hive_name",
                            input.local_hive_name, input.remote_hive_name, input.remote_url
                        )));
                    }
                    if subscriptions::id_by_local_hive(conn, &hive.id)?.is_some() {
                        return Err(ServiceError::Conflict(format!(
                            "hive {} is already the mirror of another subscription",
                            input.local_hive_name
                        )));
                    }
                    hive.id
                }
                None => {
                    if hives::id_by_name(conn, &input.local_hive_name)?.is_some() {
                        // A log without a visible hive (e.g. a sync group still pending).
                        return Err(ServiceError::Conflict(format!(
                            "hive {} already exists here (a pending sync group?); choose another local_hive_name",
                            input.local_hive_name
                        )));
                    }
                    let hive_id = hives::ensure_log(conn, &input.local_hive_name)?;
                    let mut description = format!(
                        "Read-only mirror of hive {} on {}",
                        input.remote_hive_name, input.remote_url
                    );
                    if description.chars().count() > 1000 {
                        description = description.chars().take(1000).collect();
                    }
                    emit.event(
                        &hive_id,
                        &input.local_hive_name,
                        Payload::HiveCreated(HiveCreated {
                            name: input.local_hive_name.clone(),
                            description,
                            is_public: true,
                            settings: HiveSettings::default(),
                            owner,
                        }),
                    )?;
                    subscriptions::mark_mirror(
                        conn,
                        &hive_id,
                        &input.remote_url,
                        &input.remote_hive_name,
                    )?;
                    hive_id
                }
            };
            subscriptions::insert(
                conn,
                &NewSubscription {
                    id: id.clone(),
                    remote_url: input.remote_url,
                    remote_hive_name: input.remote_hive_name,
                    local_hive_id: hive_id,
                    sync_interval_ms: input.sync_interval_ms,
                    enabled: input.enabled,
                },
                now,
            )?;
            subscriptions::get(conn, &id)?.ok_or(ServiceError::NotFound("subscription"))
        })
        .await
    }

    /// Copies the page's new posts into the subscription's mirror hive (signed by us as
    /// `post_mirrored`, through `ingest`) and moves its cursor, in one transaction (waiting
    /// for room in the write queue: a background worker). `None`: the subscription is gone
    /// or paused.
    pub async fn mirror_page(&self, page: MirrorPage) -> Result<Option<MirrorReport>> {
        self.write_with(true, move |conn, emit| {
            // Gone or paused since the page was asked for: nothing is stored (a resumed
            // subscription asks again from its committed position).
            let Some(sub) = subscriptions::get(conn, &page.subscription_id)?.filter(|s| s.enabled)
            else {
                return Ok(None);
            };
            let ids: Vec<String> = page.posts.iter().map(|p| p.post_id.clone()).collect();
            let mut seen: HashSet<String> = subscriptions::known_posts(conn, &ids)?;
            let mut report = MirrorReport::default();
            for p in page.posts {
                if !seen.insert(p.post_id.clone()) {
                    report.known += 1;
                    continue;
                }
                let post_id = p.post_id.clone();
                let payload = Payload::PostMirrored(PostMirrored {
                    post_id: p.post_id,
                    source_url: sub.remote_url.clone(),
                    source_hive: sub.remote_hive_name.clone(),
                    title: p.title,
                    content: p.content,
                    url: p.url,
                    author: p.author,
                    created_at: p.created_at,
                });
                // A payload the event rules refuse fails before any SQL runs (signing and
                // checking), so skipping it leaves the transaction clean.
                match emit.event(&sub.local_hive_id, &sub.local_hive_name, payload) {
                    Ok(_) => report.added += 1,
                    Err(ServiceError::BadRequest(reason)) => {
                        tracing::warn!(post = %post_id, %reason, "skipping a remote post the event rules refuse");
                        report.invalid += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
            let now = openhive_core::time::now_ms();
            if !subscriptions::record_page(conn, &sub.id, &page.pass, report.added, now)? {
                return Ok(None);
            }
            Ok(Some(report))
        })
        .await
    }
}
