//! Outbound `/sync/v1` calls. One pooled `reqwest::Client` per engine (connections are
//! reused; loopback HTTP without keep-alive is ~8x slower). Every call has its own timeout:
//! handshake 10 s, push 10 s, pull 30 s, heartbeat 5 s.
//!
//! Tokens travel only in the `Authorization` header and are never logged.
//!
//! TLS: `https://` peer endpoints are reached over rustls (on ring), certificates verified
//! against the system's roots plus, if configured, the CA certificates of
//! [`ClientOptions::ca_file`] (`[sync] ca_file`). Verification cannot be turned off.

use crate::protocol::*;
use std::path::PathBuf;
use std::time::Duration;

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
pub const PULL_TIMEOUT: Duration = Duration::from_secs(30);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// Batched calls cover many hives: a longer deadline.
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an outbound call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The peer answered with a non-2xx status.
    #[error("peer answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// `Retry-After` seconds, for 429.
        retry_after: Option<u64>,
    },
    /// Connection refused, timeout, reset...
    #[error("peer unreachable: {0}")]
    Transport(String),
    /// The peer answered 2xx with a body we could not read.
    #[error("bad response from peer: {0}")]
    Decode(String),
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How the client reaches peers, besides the handshake secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// PEM file of CA certificates trusted for `https://` endpoints, besides the system's.
    pub ca_file: Option<PathBuf>,
}

tokio::task_local! {
    static OPTIONS: ClientOptions;
}

impl ClientOptions {
    /// Runs `f` (the engine's start) with `self` as the options every [`SyncClient::new`]
    /// inside it uses.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        OPTIONS.scope(self, f).await
    }

    /// The options of the enclosing [`ClientOptions::scope`], or the defaults.
    fn current() -> ClientOptions {
        OPTIONS.try_with(Clone::clone).unwrap_or_default()
    }
}

/// Installs ring as the process's rustls crypto provider (once; a provider installed
/// before stays). Every reqwest client of the process needs one before it is built: the
/// binary calls this first thing, and so does [`SyncClient::new`].
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[derive(Clone)]
pub struct SyncClient {
    http: reqwest::Client,
    handshake_secret: Option<String>,
}

impl SyncClient {
    /// The pooled HTTP client (same TLS roots), for the MAP hub client.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl std::fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient").finish_non_exhaustive()
    }
}

/// Checks the cursor a pulled page claims: the pull cursor moves to `next_seq`, so it must
/// not go back, nor further than one page of the peer's gap-free log can cover (at most
/// `limit` seqs after `since`), and every event must lie in the range it covers. A page
/// that claims more is refused, like an unreadable one.
pub fn check_page(since: i64, limit: i64, page: &EventsPage) -> Result<(), ClientError> {
    let max = since.saturating_add(limit.clamp(1, MAX_PULL_LIMIT));
    if page.next_seq < since || page.next_seq > max {
        return Err(ClientError::Decode(format!(
            "page claims next_seq {} for since={since}, limit={limit}",
            page.next_seq
        )));
    }
    if let Some(e) = page
        .events
        .iter()
        .find(|e| e.seq <= since || e.seq > page.next_seq)
    {
        return Err(ClientError::Decode(format!(
            "page holds seq {} outside {since}..={}",
            e.seq, page.next_seq
        )));
    }
    Ok(())
}

/// A batched answer names the requested groups in request order: all of them, or (`prefix`)
/// the first ones.
pub fn check_answers<'a>(
    asked: impl Iterator<Item = &'a str>,
    answered: impl ExactSizeIterator<Item = &'a str>,
    prefix: bool,
) -> Result<(), ClientError> {
    let asked: Vec<&str> = asked.collect();
    let n = answered.len();
    if n > asked.len() || (!prefix && n != asked.len()) {
        return Err(ClientError::Decode(format!(
            "batched answer holds {n} groups for {} asked",
            asked.len()
        )));
    }
    if let Some((a, b)) = asked.iter().zip(answered).find(|(a, b)| *a != b) {
        return Err(ClientError::Decode(format!(
            "batched answer names group {b:?} where {a:?} was asked"
        )));
    }
    Ok(())
}

fn transport(e: reqwest::Error) -> ClientError {
    // reqwest's Display includes the URL but never headers, so tokens cannot leak here.
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    // The causes say why (refused, reset, certificate not trusted...).
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    ClientError::Transport(text)
}

impl SyncClient {
    /// A client with the options of the enclosing [`ClientOptions::scope`] (the defaults
    /// outside one).
    pub fn new(handshake_secret: Option<String>) -> Result<Self, ClientError> {
        Self::with_options(handshake_secret, &ClientOptions::current())
    }

    pub fn with_options(
        handshake_secret: Option<String>,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("openhive-sync/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Transport(format!("reading CA file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ClientError::Transport(format!("CA file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(ClientError::Transport(format!(
                    "CA file {} holds no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(SyncClient {
            http,
            handshake_secret,
        })
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .or_else(|| v.get("error"))
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| body.chars().take(200).collect());
            return Err(ClientError::Status {
                status: status.as_u16(),
                message,
                retry_after,
            });
        }
        let bytes = resp.bytes().await.map_err(transport)?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn handshake(
        &self,
        endpoint: &str,
        body: &HandshakeRequest,
    ) -> Result<HandshakeResponse, ClientError> {
        let mut req = self
            .http
            .post(format!("{endpoint}/handshake"))
            .timeout(HANDSHAKE_TIMEOUT)
            .json(body);
        if let Some(s) = &self.handshake_secret {
            req = req.header(HANDSHAKE_SECRET_HEADER, s);
        }
        self.send(req).await
    }

    /// `GET {endpoint}/identity` (no credentials).
    pub async fn identity(&self, endpoint: &str) -> Result<IdentityDoc, ClientError> {
        let req = self
            .http
            .get(format!("{endpoint}/identity"))
            .timeout(HEARTBEAT_TIMEOUT);
        self.send(req).await
    }

    pub async fn pull(
        &self,
        endpoint: &str,
        token: &str,
        hive: &str,
        since: i64,
        limit: i64,
    ) -> Result<EventsPage, ClientError> {
        let req = self
            .http
            .get(format!(
                "{endpoint}/groups/{hive}/events?since={since}&limit={limit}"
            ))
            .bearer_auth(token)
            .timeout(PULL_TIMEOUT);
        let page: EventsPage = self.send(req).await?;
        check_page(since, limit, &page)?;
        Ok(page)
    }

    pub async fn push(
        &self,
        endpoint: &str,
        token: &str,
        hive: &str,
        body: &PushRequest,
    ) -> Result<PushResponse, ClientError> {
        let req = self
            .http
            .post(format!("{endpoint}/groups/{hive}/events"))
            .bearer_auth(token)
            .timeout(PUSH_TIMEOUT)
            .json(body);
        self.send(req).await
    }

    /// `POST /batch/handshake`: one handshake for many hives.
    pub async fn batch_handshake(
        &self,
        endpoint: &str,
        body: &BatchHandshakeRequest,
    ) -> Result<BatchHandshakeResponse, ClientError> {
        let mut req = self
            .http
            .post(format!("{endpoint}/batch/handshake"))
            .timeout(BATCH_TIMEOUT)
            .json(body);
        if let Some(s) = &self.handshake_secret {
            req = req.header(HANDSHAKE_SECRET_HEADER, s);
        }
        let resp: BatchHandshakeResponse = self.send(req).await?;
        check_answers(
            body.groups.iter().map(|g| g.hive.as_str()),
            resp.groups.iter().map(|g| g.hive.as_str()),
            false,
        )?;
        Ok(resp)
    }

    /// `POST /batch/pull`: pages of many hives in one call. `auth` is the token of any
    /// group of the request (each group also carries its own).
    pub async fn batch_pull(
        &self,
        endpoint: &str,
        auth: &str,
        body: &BatchPullRequest,
    ) -> Result<BatchPullResponse, ClientError> {
        let req = self
            .http
            .post(format!("{endpoint}/batch/pull"))
            .bearer_auth(auth)
            .timeout(PULL_TIMEOUT)
            .json(body);
        let resp: BatchPullResponse = self.send(req).await?;
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
    }

    /// `POST /batch/push`: batches for many hives in one call.
    pub async fn batch_push(
        &self,
        endpoint: &str,
        auth: &str,
        body: &BatchPushRequest,
    ) -> Result<BatchPushResponse, ClientError> {
        let req = self
            .http
            .post(format!("{endpoint}/batch/push"))
            .bearer_auth(auth)
            .timeout(PUSH_TIMEOUT)
            .json(body);
        let resp: BatchPushResponse = self.send(req).await?;
        check_answers(
            body.groups.iter().map(|g| g.hive.as_str()),
            resp.groups.iter().map(|g| g.hive.as_str()),
            false,
        )?;
        Ok(resp)
    }

    pub async fn heartbeat(
        &self,
        endpoint: &str,
        token: Option<&str>,
        body: &Heartbeat,
    ) -> Result<Heartbeat, ClientError> {
        let mut req = self
            .http
            .post(format!("{endpoint}/heartbeat"))
            .timeout(HEARTBEAT_TIMEOUT)
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    /// `POST {endpoint}/keys`: announces rotation statements.
    pub async fn keys(
        &self,
        endpoint: &str,
        token: &str,
        body: &KeysRequest,
    ) -> Result<KeysResponse, ClientError> {
        let req = self
            .http
            .post(format!("{endpoint}/keys"))
            .bearer_auth(token)
            .timeout(HEARTBEAT_TIMEOUT)
            .json(body);
        self.send(req).await
    }

    pub async fn leave(
        &self,
        endpoint: &str,
        token: &str,
        hive: &str,
    ) -> Result<LeaveResponse, ClientError> {
        let req = self
            .http
            .post(format!("{endpoint}/groups/{hive}/leave"))
            .bearer_auth(token)
            .timeout(LEAVE_TIMEOUT);
        self.send(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(next_seq: i64, seqs: &[i64]) -> EventsPage {
        let key = openhive_core::InstanceKey::generate();
        let inst = openhive_core::ids::new_instance_id();
        EventsPage {
            events: seqs
                .iter()
                .map(|s| WireEvent {
                    seq: *s,
                    event: openhive_core::Event::sign_new(
                        &key,
                        &inst,
                        "general",
                        openhive_core::EventType::PostCreated,
                        1,
                        "{}".into(),
                    ),
                })
                .collect(),
            next_seq,
            has_more: false,
            head_seq: None,
            key_rotations: vec![],
        }
    }

    #[test]
    fn pulled_pages_cannot_claim_an_absurd_cursor() {
        assert!(check_page(10, 500, &page(12, &[11, 12])).is_ok());
        assert!(check_page(10, 500, &page(510, &[])).is_ok());
        assert!(check_page(10, 500, &page(10, &[])).is_ok());
        assert!(check_page(10, 500, &page(i64::MAX, &[11])).is_err());
        assert!(check_page(10, 500, &page(511, &[])).is_err());
        assert!(check_page(10, 500, &page(9, &[])).is_err());
        assert!(check_page(10, 500, &page(12, &[13])).is_err());
        assert!(check_page(10, 500, &page(12, &[10])).is_err());
        // A limit above the protocol's maximum is served as the maximum.
        assert!(check_page(0, 1_000_000, &page(MAX_PULL_LIMIT + 1, &[])).is_err());
    }
}
