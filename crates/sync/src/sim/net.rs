//! The in-memory network of the engine simulation: endpoint → instance, and a
//! [`Transport`] per instance that delivers each call to the target's real
//! [`crate::inbound`] / [`crate::inbound_batch`] function, with the same authentication as
//! the HTTP layer (`crates/server/src/http/sync_protocol.rs`: the bearer token first, the
//! handshake secret header, the bound hive), and the same answer checks as
//! [`crate::client::SyncClient`].
//!
//! Request and answer cross as JSON bytes (serialized, then parsed again on the other side):
//! nothing is shared by reference and the bytes counted are the bodies HTTP would carry
//! (headers and the HTTP envelope are not counted; a GET counts its path and query).
//!
//! Faults: each message (a request, an answer) is lost with probability `loss` (seeded
//! RNG); a partition cuts the instances in sides that cannot reach each other; an instance
//! can be taken down (calls to it fail) and brought back. A lost or cut call is a
//! [`ClientError::Transport`], as a connection failure or a timeout is over HTTP; a lost
//! answer means the target did the work but the caller does not know. There are no
//! timeouts: a call takes `latency` of virtual time each way and the target's work.
//!
//! Observation ([`Deliveries`]): which instance received which event from which peer, to
//! check that no event loops and that none is pushed back to the peer it came from.

use crate::client::{ClientError, check_answers, check_page};
use crate::engine::SyncHandle;
use crate::error::SyncError;
use crate::inbound;
use crate::inbound_batch;
use crate::protocol::*;
use crate::transport::{Call, Transport};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Messages and bytes one instance sent (requests it made, answers it gave).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    pub messages: u64,
    pub bytes: u64,
    /// Requests made, by call (`push`, `batch_pull`, `heartbeat`...).
    pub calls: BTreeMap<&'static str, u64>,
}

impl Traffic {
    /// What was sent between `before` and `self`.
    pub fn since(&self, before: &Traffic) -> Traffic {
        let mut calls = self.calls.clone();
        for (k, v) in &before.calls {
            if let Some(c) = calls.get_mut(k) {
                *c = c.saturating_sub(*v);
            }
        }
        calls.retain(|_, v| *v > 0);
        Traffic {
            messages: self.messages.saturating_sub(before.messages),
            bytes: self.bytes.saturating_sub(before.bytes),
            calls,
        }
    }
}

/// Who received which event from whom (instances by index; `LOCAL`: created there).
#[derive(Debug, Default)]
pub struct Deliveries {
    /// (instance, event id) → where the instance first got it from.
    first_from: HashMap<(usize, String), usize>,
    /// (instance, event id) → receptions (including the first).
    received: HashMap<(usize, String), u32>,
    /// (instance, from, event id) → receptions over that link, by call.
    per_link: HashMap<(usize, usize, String), Vec<&'static str>>,
    /// Every event pushed: (from, to, event id). Whether one went back to the peer it came
    /// from is the sender's log's say (`received_from`): see [`Deliveries::pushes`].
    pushes: Vec<(usize, usize, String)>,
}

/// The `from` of an event created on the instance itself.
pub const LOCAL: usize = usize::MAX;

impl Deliveries {
    fn local(&mut self, at: usize, id: &str) {
        self.first_from.entry((at, id.to_string())).or_insert(LOCAL);
    }

    fn received(&mut self, at: usize, from: usize, id: &str, call: &'static str) {
        self.first_from.entry((at, id.to_string())).or_insert(from);
        *self.received.entry((at, id.to_string())).or_default() += 1;
        self.per_link
            .entry((at, from, id.to_string()))
            .or_default()
            .push(call);
    }

    fn pushing(&mut self, from: usize, to: usize, id: &str) {
        self.pushes.push((from, to, id.to_string()));
    }

    /// Every event pushed since the last [`Deliveries::clear`]: (from, to, event id).
    pub fn pushes(&self) -> &[(usize, usize, String)] {
        &self.pushes
    }

    /// Per instance: receptions of an event it already held (duplicates).
    pub fn duplicates(&self, nodes: usize) -> Vec<u64> {
        let mut out = vec![0u64; nodes];
        for ((at, id), n) in &self.received {
            let local = self.first_from.get(&(*at, id.clone())) == Some(&LOCAL);
            let dup = if local { *n } else { n.saturating_sub(1) };
            if let Some(o) = out.get_mut(*at) {
                *o += u64::from(dup);
            }
        }
        out
    }

    /// Per instance: the most receptions of one event (bounded by its links if nothing
    /// loops).
    pub fn max_receptions(&self, nodes: usize) -> Vec<u32> {
        let mut out = vec![0u32; nodes];
        for ((at, _), n) in &self.received {
            if let Some(o) = out.get_mut(*at) {
                *o = (*o).max(*n);
            }
        }
        out
    }

    /// Events received more than once over one link: (instance, from, event, the calls
    /// that carried it).
    pub fn repeated_on_a_link(&self) -> Vec<(usize, usize, String, Vec<&'static str>)> {
        let mut v: Vec<_> = self
            .per_link
            .iter()
            .filter(|(_, n)| n.len() > 1)
            .map(|((at, from, id), n)| (*at, *from, id.clone(), n.clone()))
            .collect();
        v.sort();
        v
    }

    /// Forgets everything (a new phase).
    pub fn clear(&mut self) {
        *self = Deliveries::default();
    }
}

struct State {
    endpoints: HashMap<String, usize>,
    /// `None`: down.
    nodes: Vec<Option<SyncHandle>>,
    /// Partition side of each instance (`None`: no partition).
    sides: Option<Vec<u8>>,
    loss: f64,
    latency: (Duration, Duration),
    rng: StdRng,
    traffic: Vec<Traffic>,
    lost: u64,
    cut: u64,
    deliveries: Deliveries,
}

/// The network (see the module docs). Cheap to share (`Arc`).
pub struct SimNet {
    state: Mutex<State>,
}

impl SimNet {
    /// A network for `endpoints` (instance `i` answers at `endpoints[i]`, down until
    /// [`SimNet::up`]); message losses and latencies drawn from `seed`.
    pub fn new(endpoints: &[String], seed: u64) -> Arc<SimNet> {
        Arc::new(SimNet {
            state: Mutex::new(State {
                endpoints: endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.trim_end_matches('/').to_string(), i))
                    .collect(),
                nodes: vec![None; endpoints.len()],
                sides: None,
                loss: 0.0,
                latency: (Duration::from_millis(5), Duration::from_millis(50)),
                rng: StdRng::seed_from_u64(seed),
                traffic: vec![Traffic::default(); endpoints.len()],
                lost: 0,
                cut: 0,
                deliveries: Deliveries::default(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The transport of instance `from` (its engine's outbound calls).
    pub fn transport(self: &Arc<Self>, from: usize, secret: Option<String>) -> Arc<SimTransport> {
        Arc::new(SimTransport {
            net: self.clone(),
            from,
            secret,
        })
    }

    /// Instance `i` answers with this engine.
    pub fn up(&self, i: usize, h: SyncHandle) {
        if let Some(n) = self.lock().nodes.get_mut(i) {
            *n = Some(h);
        }
    }

    /// Instance `i` stops answering; returns its engine (to shut it down).
    pub fn down(&self, i: usize) -> Option<SyncHandle> {
        self.lock().nodes.get_mut(i).and_then(Option::take)
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.lock().nodes.get(i).is_some_and(Option::is_some)
    }

    /// Probability that a message is lost.
    pub fn set_loss(&self, p: f64) {
        self.lock().loss = p.clamp(0.0, 1.0);
    }

    /// One-way latency range of a message (uniform).
    pub fn set_latency(&self, min: Duration, max: Duration) {
        self.lock().latency = (min, max.max(min));
    }

    /// Cuts the network: instances of different sides cannot reach each other. `None` heals.
    pub fn partition(&self, sides: Option<Vec<u8>>) {
        self.lock().sides = sides;
    }

    /// What each instance sent so far.
    pub fn traffic(&self) -> Vec<Traffic> {
        self.lock().traffic.clone()
    }

    /// Messages lost, and calls refused by a partition or a down instance, so far.
    pub fn faults(&self) -> (u64, u64) {
        let s = self.lock();
        (s.lost, s.cut)
    }

    /// Records an event created on instance `at`.
    pub fn note_local(&self, at: usize, event_id: &str) {
        self.lock().deliveries.local(at, event_id);
    }

    /// Runs `f` over the delivery record.
    pub fn with_deliveries<T>(&self, f: impl FnOnce(&mut Deliveries) -> T) -> T {
        f(&mut self.lock().deliveries)
    }

    /// The one-way delay of the next message, and whether it is lost.
    fn draw(&self) -> (Duration, bool) {
        let mut s = self.lock();
        let (lo, hi) = s.latency;
        let span = hi.saturating_sub(lo).as_micros() as u64;
        let d = lo
            + Duration::from_micros(if span == 0 {
                0
            } else {
                s.rng.random_range(0..=span)
            });
        let p = s.loss;
        let lost = p > 0.0 && s.rng.random_bool(p);
        if lost {
            s.lost += 1;
        }
        (d, lost)
    }

    /// The target instance if `from` can reach it now.
    fn reach(&self, from: usize, endpoint: &str) -> Result<(usize, SyncHandle), ClientError> {
        let mut s = self.lock();
        let Some(&to) = s.endpoints.get(endpoint.trim_end_matches('/')) else {
            s.cut += 1;
            return Err(ClientError::Transport(format!(
                "connect: no instance at {endpoint}"
            )));
        };
        let cut = s
            .sides
            .as_ref()
            .is_some_and(|sides| sides.get(from) != sides.get(to));
        let h = s.nodes.get(to).cloned().flatten();
        match h {
            Some(h) if !cut => Ok((to, h)),
            _ => {
                s.cut += 1;
                Err(ClientError::Transport("connect: connection refused".into()))
            }
        }
    }

    fn count(&self, who: usize, bytes: usize, call: Option<&'static str>) {
        let mut s = self.lock();
        if let Some(t) = s.traffic.get_mut(who) {
            t.messages += 1;
            t.bytes += bytes as u64;
            if let Some(c) = call {
                *t.calls.entry(c).or_default() += 1;
            }
        }
    }
}

/// One instance's [`Transport`] over a [`SimNet`].
pub struct SimTransport {
    net: Arc<SimNet>,
    from: usize,
    /// The mesh secret this instance presents (`[sync] handshake_secret`).
    secret: Option<String>,
}

/// A refusal as the HTTP layer answers it.
fn refusal(e: SyncError) -> ClientError {
    let status = e.status();
    let retry_after = match &e {
        SyncError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
        _ => None,
    };
    let message = if status == 500 {
        "internal error".to_string()
    } else {
        e.to_string()
    };
    ClientError::Status {
        status,
        message,
        retry_after,
    }
}

fn lost() -> ClientError {
    ClientError::Transport("request: connection reset (message lost)".into())
}

impl SimTransport {
    /// One call: `request` crosses as JSON to the target, which runs `serve` on it (in its
    /// own task, as a server would), and the answer crosses back as JSON. `on_request` sees
    /// the request as the target received it (before `serve`), `on_answer` the answer as
    /// the caller received it.
    #[allow(clippy::too_many_arguments)]
    async fn call<Q, A, F, Fut>(
        &self,
        name: &'static str,
        endpoint: &str,
        request: &Q,
        on_request: impl FnOnce(&Q, &mut Deliveries, usize, usize),
        serve: F,
        on_answer: impl FnOnce(&A, &mut Deliveries, usize, usize),
    ) -> Result<A, ClientError>
    where
        Q: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(SyncHandle, Q) -> Fut + Send + 'static,
        Fut: Future<Output = Result<A, SyncError>> + Send + 'static,
    {
        let net = &self.net;
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        net.count(self.from, body.len(), Some(name));
        let (delay, lost_request) = net.draw();
        tokio::time::sleep(delay).await;
        let (to, target) = net.reach(self.from, endpoint)?;
        if lost_request {
            return Err(lost());
        }
        let received: Q =
            serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))?;
        net.with_deliveries(|d| on_request(&received, d, self.from, to));
        let served = tokio::spawn(async move {
            let answer = serve(target, received).await?;
            serde_json::to_vec(&answer).map_err(|e| SyncError::BadRequest(e.to_string()))
        })
        .await;
        let answer = match served {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                let e = refusal(e);
                net.count(to, e.to_string().len(), None);
                return Err(e);
            }
            // The target's task panicked: a 500 without a body.
            Err(_) => {
                net.count(to, 0, None);
                return Err(ClientError::Status {
                    status: 500,
                    message: "internal error".into(),
                    retry_after: None,
                });
            }
        };
        net.count(to, answer.len(), None);
        let (delay, lost_answer) = net.draw();
        tokio::time::sleep(delay).await;
        // The caller may have been cut from the target (or the target gone) meanwhile.
        if lost_answer || net.reach(self.from, endpoint).is_err() {
            return Err(lost());
        }
        let a: A =
            serde_json::from_slice(&answer).map_err(|e| ClientError::Decode(e.to_string()))?;
        net.with_deliveries(|d| on_answer(&a, d, self.from, to));
        Ok(a)
    }
}

fn nothing<T>(_: &T, _: &mut Deliveries, _: usize, _: usize) {}

/// A request without a body (a GET, a bodyless POST): what crosses is its path.
#[derive(Serialize, serde::Deserialize)]
struct Path(String);

impl Transport for SimTransport {
    fn handshake<'a>(
        &'a self,
        endpoint: &'a str,
        body: &'a HandshakeRequest,
    ) -> Call<'a, HandshakeResponse> {
        let secret = self.secret.clone();
        Box::pin(self.call(
            "handshake",
            endpoint,
            body,
            nothing,
            move |h, req| async move { inbound::handshake(&h, secret.as_deref(), req).await },
            nothing,
        ))
    }

    fn identity<'a>(&'a self, endpoint: &'a str) -> Call<'a, IdentityDoc> {
        Box::pin(async move {
            let path = Path("/identity".into());
            self.call(
                "identity",
                endpoint,
                &path,
                nothing,
                |h, _| async move { Ok(inbound::identity(&h)) },
                nothing,
            )
            .await
        })
    }

    fn pull<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        hive: &'a str,
        since: i64,
        limit: i64,
    ) -> Call<'a, EventsPage> {
        let (token, hive_name) = (token.to_string(), hive.to_string());
        Box::pin(async move {
            let path = Path(format!("/groups/{hive}/events?since={since}&limit={limit}"));
            let page: EventsPage = self
                .call(
                    "pull",
                    endpoint,
                    &path,
                    nothing,
                    move |h, _| async move {
                        let auth = inbound::authenticate(&h, Some(&token)).await?;
                        inbound::pull_events(&h, &auth, &hive_name, Some(since), Some(limit)).await
                    },
                    |page: &EventsPage, d, from, to| {
                        for e in &page.events {
                            d.received(from, to, &e.event.id, "pull");
                        }
                    },
                )
                .await?;
            check_page(since, limit, &page)?;
            Ok(page)
        })
    }

    fn push<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        hive: &'a str,
        body: &'a PushRequest,
    ) -> Call<'a, PushResponse> {
        let (token, hive) = (token.to_string(), hive.to_string());
        Box::pin(self.call(
            "push",
            endpoint,
            body,
            |req: &PushRequest, d, from, to| {
                for e in &req.events {
                    d.pushing(from, to, &e.id);
                    d.received(to, from, &e.id, "push");
                }
            },
            move |h, req| async move {
                let auth = inbound::authenticate(&h, Some(&token)).await?;
                inbound::push_events(&h, &auth, &hive, req).await
            },
            nothing,
        ))
    }

    fn batch_handshake<'a>(
        &'a self,
        endpoint: &'a str,
        body: &'a BatchHandshakeRequest,
    ) -> Call<'a, BatchHandshakeResponse> {
        let secret = self.secret.clone();
        Box::pin(async move {
            let resp: BatchHandshakeResponse = self
                .call(
                    "batch_handshake",
                    endpoint,
                    body,
                    nothing,
                    move |h, req| async move {
                        inbound_batch::handshake(&h, secret.as_deref(), req).await
                    },
                    nothing,
                )
                .await?;
            check_answers(
                body.groups.iter().map(|g| g.hive.as_str()),
                resp.groups.iter().map(|g| g.hive.as_str()),
                false,
            )?;
            Ok(resp)
        })
    }

    fn batch_pull<'a>(
        &'a self,
        endpoint: &'a str,
        auth: &'a str,
        body: &'a BatchPullRequest,
    ) -> Call<'a, BatchPullResponse> {
        let token = auth.to_string();
        Box::pin(async move {
            let resp: BatchPullResponse = self
                .call(
                    "batch_pull",
                    endpoint,
                    body,
                    nothing,
                    move |h, req| async move {
                        let auth = inbound::authenticate(&h, Some(&token)).await?;
                        inbound_batch::pull(&h, &auth, req).await
                    },
                    |resp: &BatchPullResponse, d, from, to| {
                        for g in &resp.groups {
                            for e in g.page.iter().flat_map(|p| &p.events) {
                                d.received(from, to, &e.event.id, "batch_pull");
                            }
                        }
                    },
                )
                .await?;
            check_answers(
                body.groups.iter().map(|g| g.hive.as_str()),
                resp.groups.iter().map(|g| g.hive.as_str()),
                true,
            )?;
            let limit = body.limit.unwrap_or(DEFAULT_PULL_LIMIT);
            for (g, a) in body.groups.iter().zip(&resp.groups) {
                if let Some(page) = &a.page {
                    check_page(g.since, limit, page)?;
                }
            }
            Ok(resp)
        })
    }

    fn batch_push<'a>(
        &'a self,
        endpoint: &'a str,
        auth: &'a str,
        body: &'a BatchPushRequest,
    ) -> Call<'a, BatchPushResponse> {
        let token = auth.to_string();
        Box::pin(async move {
            let resp: BatchPushResponse = self
                .call(
                    "batch_push",
                    endpoint,
                    body,
                    |req: &BatchPushRequest, d, from, to| {
                        for e in req.groups.iter().flat_map(|g| &g.events) {
                            d.pushing(from, to, &e.id);
                            d.received(to, from, &e.id, "batch_push");
                        }
                    },
                    move |h, req| async move {
                        let auth = inbound::authenticate(&h, Some(&token)).await?;
                        inbound_batch::push(&h, &auth, req).await
                    },
                    nothing,
                )
                .await?;
            check_answers(
                body.groups.iter().map(|g| g.hive.as_str()),
                resp.groups.iter().map(|g| g.hive.as_str()),
                false,
            )?;
            Ok(resp)
        })
    }

    fn heartbeat<'a>(
        &'a self,
        endpoint: &'a str,
        token: Option<&'a str>,
        body: &'a Heartbeat,
    ) -> Call<'a, Heartbeat> {
        let token = token.map(str::to_string);
        Box::pin(self.call(
            "heartbeat",
            endpoint,
            body,
            nothing,
            move |h, req| async move {
                let auth = inbound::authenticate(&h, token.as_deref()).await?;
                inbound::heartbeat(&h, &auth, req).await
            },
            nothing,
        ))
    }

    fn keys<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        body: &'a KeysRequest,
    ) -> Call<'a, KeysResponse> {
        let token = token.to_string();
        Box::pin(self.call(
            "keys",
            endpoint,
            body,
            nothing,
            move |h, req| async move {
                let auth = inbound::authenticate(&h, Some(&token)).await?;
                inbound::keys(&h, &auth, req).await
            },
            nothing,
        ))
    }

    fn leave<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        hive: &'a str,
    ) -> Call<'a, LeaveResponse> {
        let (token, hive_name) = (token.to_string(), hive.to_string());
        Box::pin(async move {
            let path = Path(format!("/groups/{hive}/leave"));
            self.call(
                "leave",
                endpoint,
                &path,
                nothing,
                move |h, _| async move {
                    let auth = inbound::authenticate(&h, Some(&token)).await?;
                    inbound::leave(&h, &auth, &hive_name).await
                },
                nothing,
            )
            .await
        })
    }
}
