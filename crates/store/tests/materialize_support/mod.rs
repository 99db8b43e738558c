//! Shared fixtures of the `materialize_*` integration tests: three instances with known
//! keys (instance 0 creates the hive, so it is the owner's), replicas opened with
//! `common::open_store()` (SQLite, or PostgreSQL when `OPENHIVE_TEST_PG_URL` is set), signed
//! event builders, and small queries. Events go through `ingest::ingest_remote`, the path
//! peers' events take (verify, log, materialize); `Replica::apply` calls the materializer
//! directly, to hand it an event a second time.
//!
//! It never touches the store's internals beyond its public functions, except `exec`, which
//! writes plain SQL to plant corrupt values.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::*;
use openhive_core::{Event, InstanceKey};
use openhive_store::db::counter_get;
use openhive_store::engine::Value;
use openhive_store::error::Result;
use openhive_store::ingest::{self, BatchReport};
use openhive_store::materialize::{self, Outcome};
use openhive_store::{Store, hives, keys};

pub const HIVE: &str = "general";

pub struct Inst {
    pub id: String,
    pub key: InstanceKey,
    pub agents: Vec<AgentRef>,
}

/// Three instances; instance 0 is the one whose `hive_created` the tests deliver first.
pub struct World {
    pub insts: Vec<Inst>,
}

/// One store holding the hive's log.
pub struct Replica {
    pub store: Store,
    pub hive_id: String,
    /// Last: fields drop in order, and the store closes before its database goes.
    _dir: common::Scratch,
}

impl World {
    pub fn new() -> World {
        let insts = (0..3)
            .map(|i| {
                let id = ids::new_instance_id();
                let agents = (0..2)
                    .map(|j| AgentRef {
                        instance_id: id.clone(),
                        agent_id: ids::new_id(Kind::Agent, &id),
                        name: format!("agent{i}{j}"),
                        avatar_url: None,
                    })
                    .collect();
                Inst {
                    id,
                    key: InstanceKey::generate(),
                    agents,
                }
            })
            .collect();
        World { insts }
    }

    /// A fresh store that knows every instance's key and has the hive's (empty) log.
    pub fn replica(&self) -> Replica {
        let (dir, store) = common::open_store();
        let known: Vec<(String, openhive_core::PublicKey)> = self
            .insts
            .iter()
            .map(|i| (i.id.clone(), i.key.public()))
            .collect();
        let hive_id = store
            .write_blocking(move |tx| -> Result<String> {
                for (id, key) in &known {
                    keys::learn(tx, id, key, None, 0)?;
                }
                hives::ensure_log(tx, HIVE)
            })
            .unwrap();
        Replica {
            _dir: dir,
            store,
            hive_id,
        }
    }

    pub fn agent(&self, inst: usize, agent: usize) -> AgentRef {
        self.insts[inst].agents[agent].clone()
    }

    pub fn sign(&self, inst: usize, ts: i64, p: Payload) -> Event {
        let i = &self.insts[inst];
        Event::sign_new(&i.key, &i.id, HIVE, p.event_type(), ts, p.to_json())
    }

    // ── Builders ────────────────────────────────────────────────────────────

    /// `hive_created` by instance `inst`, owned by its agent 0.
    pub fn created(&self, inst: usize, ts: i64) -> Event {
        self.sign(
            inst,
            ts,
            Payload::HiveCreated(HiveCreated {
                name: HIVE.into(),
                description: format!("from {inst}"),
                is_public: true,
                settings: HiveSettings::default(),
                owner: self.agent(inst, 0),
            }),
        )
    }

    pub fn post_by(&self, author: AgentRef, inst: usize, ts: i64, title: &str) -> (String, Event) {
        let id = ids::new_id(Kind::Post, &self.insts[inst].id);
        let ev = self.repost(&id, author, inst, ts, title);
        (id, ev)
    }

    /// A post by agent `agent` of instance `inst`.
    pub fn post(&self, inst: usize, agent: usize, ts: i64, title: &str) -> (String, Event) {
        self.post_by(self.agent(inst, agent), inst, ts, title)
    }

    /// A `post_created` for an existing post id (a re-signed copy: another event id).
    pub fn repost(&self, id: &str, author: AgentRef, inst: usize, ts: i64, title: &str) -> Event {
        self.sign(
            inst,
            ts,
            Payload::PostCreated(PostCreated {
                post_id: id.into(),
                title: title.into(),
                content: Some("body".into()),
                url: None,
                author,
            }),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn edit_post(
        &self,
        inst: usize,
        agent: usize,
        ts: i64,
        post: &str,
        title: Option<&str>,
        content: Option<&str>,
        url: Option<&str>,
    ) -> Event {
        self.sign(
            inst,
            ts,
            Payload::PostUpdated(PostUpdated {
                post_id: post.into(),
                title: title.map(Into::into),
                content: content.map(Into::into),
                url: url.map(Into::into),
                updated_by: self.agent(inst, agent),
            }),
        )
    }

    pub fn delete_post(&self, inst: usize, agent: usize, ts: i64, post: &str) -> Event {
        self.sign(
            inst,
            ts,
            Payload::PostDeleted(PostDeleted {
                post_id: post.into(),
                deleted_by: self.agent(inst, agent),
                reason: None,
            }),
        )
    }

    pub fn comment(
        &self,
        inst: usize,
        agent: usize,
        ts: i64,
        post: &str,
        parent: Option<&str>,
    ) -> (String, Event) {
        let id = ids::new_id(Kind::Comment, &self.insts[inst].id);
        let ev = self.recomment(&id, inst, agent, ts, post, parent, "hi");
        (id, ev)
    }

    /// A `comment_created` for a given comment id.
    #[allow(clippy::too_many_arguments)]
    pub fn recomment(
        &self,
        id: &str,
        inst: usize,
        agent: usize,
        ts: i64,
        post: &str,
        parent: Option<&str>,
        content: &str,
    ) -> Event {
        self.sign(
            inst,
            ts,
            Payload::CommentCreated(CommentCreated {
                comment_id: id.into(),
                post_id: post.into(),
                parent_comment_id: parent.map(Into::into),
                content: content.into(),
                author: self.agent(inst, agent),
            }),
        )
    }

    pub fn edit_comment(
        &self,
        inst: usize,
        agent: usize,
        ts: i64,
        comment: &str,
        content: &str,
    ) -> Event {
        self.sign(
            inst,
            ts,
            Payload::CommentUpdated(CommentUpdated {
                comment_id: comment.into(),
                content: content.into(),
                updated_by: self.agent(inst, agent),
            }),
        )
    }

    pub fn delete_comment(&self, inst: usize, agent: usize, ts: i64, comment: &str) -> Event {
        self.sign(
            inst,
            ts,
            Payload::CommentDeleted(CommentDeleted {
                comment_id: comment.into(),
                deleted_by: self.agent(inst, agent),
                reason: None,
            }),
        )
    }

    /// A vote by agent `agent` of instance `inst`.
    pub fn vote(
        &self,
        inst: usize,
        agent: usize,
        ts: i64,
        target_type: TargetType,
        target: &str,
        value: i8,
    ) -> Event {
        self.sign(
            inst,
            ts,
            Payload::VoteCast(VoteCast {
                target_type,
                target_id: target.into(),
                voter: VoterRef {
                    instance_id: self.insts[inst].id.clone(),
                    agent_id: self.insts[inst].agents[agent].agent_id.clone(),
                },
                value,
            }),
        )
    }

    /// A setting change by agent 0 of `inst`.
    pub fn setting(
        &self,
        inst: usize,
        ts: i64,
        key: &str,
        value: serde_json::Value,
        prev: Option<&Event>,
    ) -> Event {
        self.sign(
            inst,
            ts,
            Payload::HiveSettingChanged(HiveSettingChanged {
                key: key.into(),
                value,
                prev: prev.map(|e| e.id.clone()),
                changed_by: self.agent(inst, 0),
            }),
        )
    }

    /// A membership change of `agent` made by agent 0 of `inst`.
    pub fn membership(
        &self,
        inst: usize,
        ts: i64,
        agent: AgentRef,
        action: MembershipAction,
        prev: Option<&Event>,
    ) -> Event {
        self.sign(
            inst,
            ts,
            Payload::MembershipChanged(MembershipChanged {
                agent,
                action,
                prev: prev.map(|e| e.id.clone()),
                by: self.agent(inst, 0),
            }),
        )
    }

    /// A moderator change of `agent` made by agent 0 of `inst`.
    pub fn moderator(
        &self,
        inst: usize,
        ts: i64,
        agent: AgentRef,
        action: ModeratorAction,
        prev: Option<&Event>,
    ) -> Event {
        self.sign(
            inst,
            ts,
            Payload::ModeratorChanged(ModeratorChanged {
                agent,
                action,
                prev: prev.map(|e| e.id.clone()),
                by: self.agent(inst, 0),
            }),
        )
    }

    /// A pin change of `post` made by agent 0 of `inst`.
    pub fn pin(
        &self,
        inst: usize,
        ts: i64,
        post: &str,
        pinned: bool,
        prev: Option<&Event>,
    ) -> Event {
        self.sign(
            inst,
            ts,
            Payload::PostPinned(PostPinned {
                post_id: post.into(),
                pinned,
                prev: prev.map(|e| e.id.clone()),
                by: self.agent(inst, 0),
            }),
        )
    }

    pub fn hive_deleted(&self, inst: usize, ts: i64) -> Event {
        self.sign(
            inst,
            ts,
            Payload::HiveDeleted(HiveDeleted {
                by: self.agent(inst, 0),
            }),
        )
    }
}

impl Replica {
    /// Delivers a batch as a peer would (one write transaction).
    pub fn deliver(&self, events: &[Event]) -> Result<BatchReport> {
        let (hive, events) = (self.hive_id.clone(), events.to_vec());
        self.store.write_blocking(move |tx| {
            ingest::ingest_remote(tx, &hive, HIVE, &events, "inst_peer", 0)
        })
    }

    /// [`Replica::deliver`], which must succeed and reject nothing.
    pub fn deliver_ok(&self, events: &[Event]) -> BatchReport {
        let report = self.deliver(events).unwrap();
        assert_eq!(report.rejected, 0, "{:?}", report.rejections);
        report
    }

    /// Hands one event to the materializer directly (not through the log's dedup).
    pub fn apply(&self, ev: &Event) -> Outcome {
        let (hive, ev) = (self.hive_id.clone(), ev.clone());
        self.store
            .write_blocking(move |tx| {
                let p = Payload::parse_and_check(&ev).unwrap();
                materialize::apply(tx, &hive, &ev, &p)
            })
            .unwrap()
    }

    /// Runs plain SQL on the writer (to plant corrupt values); parameters are text.
    pub fn exec(&self, sql: &'static str, params: &[&str]) -> usize {
        let params: Vec<Value> = params.iter().map(|p| Value::Text(p.to_string())).collect();
        self.store
            .write_blocking(move |c| -> Result<usize> {
                Ok(c.execute(sql, openhive_store::engine::params_from_iter(&params))?)
            })
            .unwrap()
    }

    /// One value of one row; `?1` is bound to `arg`.
    pub fn value(&self, sql: &'static str, arg: &str) -> Value {
        let arg = arg.to_string();
        self.store
            .read_blocking(move |c| -> Result<Value> {
                Ok(c.query_row(sql, [&arg], |r| r.get::<_, Value>(0))?)
            })
            .unwrap()
    }

    pub fn int(&self, sql: &'static str, arg: &str) -> i64 {
        match self.value(sql, arg) {
            Value::Int(i) => i,
            other => panic!("{sql}: not an integer: {other:?}"),
        }
    }

    pub fn real(&self, sql: &'static str, arg: &str) -> f64 {
        match self.value(sql, arg) {
            Value::Real(f) => f,
            Value::Int(i) => i as f64,
            other => panic!("{sql}: not a real: {other:?}"),
        }
    }

    pub fn text(&self, sql: &'static str, arg: &str) -> Option<String> {
        match self.value(sql, arg) {
            Value::Text(t) => Some(t),
            Value::Null => None,
            other => panic!("{sql}: not text: {other:?}"),
        }
    }

    pub fn count(&self, sql: &'static str, arg: &str) -> i64 {
        self.int(sql, arg)
    }

    pub fn post_count(&self) -> i64 {
        self.int("SELECT post_count FROM hives WHERE id = ?1", &self.hive_id)
    }

    pub fn ignored(&self) -> i64 {
        self.store
            .read_blocking(|c| counter_get(c, ingest::IGNORED))
            .unwrap()
    }

    /// (pending, unverified) waiting events.
    pub fn waiting(&self) -> (i64, i64) {
        self.store.read_blocking(ingest::waiting_counts).unwrap()
    }

    pub fn digest(&self) -> String {
        let hive = self.hive_id.clone();
        self.store
            .read_blocking(move |c| materialize::state_digest(c, &hive))
            .unwrap()
    }
}

/// The changes of an applied outcome (panics on Waiting/Ignored).
pub fn changes(o: &Outcome) -> &[materialize::Change] {
    match o {
        Outcome::Applied { changes, .. } => changes,
        other => panic!("not applied: {other:?}"),
    }
}
