//! Outbound `/sync/v1` calls. One pooled `reqwest::Client` per engine (connections are
//! reused; loopback HTTP without keep-alive is ~8x slower). Every call has its own timeout:
//! handshake 10 s, push 10 s, pull 30 s, heartbeat 5 s.
//!
//! Tokens travel only in the `Authorization` header and are never logged.

use crate::protocol::*;
use std::time::Duration;

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
pub const PULL_TIMEOUT: Duration = Duration::from_secs(30);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an outbound call failed.
#[derive(Debug, thiserror::Error)]
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

#[derive(Clone)]
pub struct SyncClient {
    http: reqwest::Client,
    handshake_secret: Option<String>,
}

impl std::fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient").finish_non_exhaustive()
    }
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
    ClientError::Transport(format!("{kind}: {}", e.without_url()))
}

impl SyncClient {
    pub fn new(handshake_secret: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("openhive-sync/", env!("CARGO_PKG_VERSION")))
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
        self.send(req).await
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
