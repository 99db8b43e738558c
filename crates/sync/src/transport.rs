//! The engine's outbound calls, behind a trait: the engine never calls reqwest directly.
//!
//! [`Transport`] is every `/sync/v1` call the engine makes to a peer (handshake, identity,
//! pull, push, the batched three, heartbeat, keys, leave). In production it is
//! [`SyncClient`] (HTTP, per-call timeouts, TLS: `crate::client`); the simulation
//! (`crate::sim`) plugs in an in-memory network that calls the peer's
//! [`crate::inbound`] / [`crate::inbound_batch`] functions directly.
//!
//! Contract of an implementation: the answers are checked as [`SyncClient`] checks them
//! (a pulled page's cursor, [`crate::client::check_page`]; a batched answer's groups,
//! [`crate::client::check_answers`]); a refusal is [`ClientError::Status`] with the status
//! the HTTP layer would answer; a call that did not get through (or whose answer was lost)
//! is [`ClientError::Transport`].

use crate::client::{ClientError, SyncClient};
use crate::protocol::*;
use futures::future::BoxFuture;

/// A call's result.
pub type Call<'a, T> = BoxFuture<'a, Result<T, ClientError>>;

/// The outbound side of `/sync/v1` (see the module docs).
pub trait Transport: Send + Sync + 'static {
    /// `POST {endpoint}/handshake` (with the mesh secret, if configured).
    fn handshake<'a>(
        &'a self,
        endpoint: &'a str,
        body: &'a HandshakeRequest,
    ) -> Call<'a, HandshakeResponse>;

    /// `GET {endpoint}/identity` (no credentials).
    fn identity<'a>(&'a self, endpoint: &'a str) -> Call<'a, IdentityDoc>;

    /// `GET {endpoint}/groups/{hive}/events?since&limit`.
    fn pull<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        hive: &'a str,
        since: i64,
        limit: i64,
    ) -> Call<'a, EventsPage>;

    /// `POST {endpoint}/groups/{hive}/events`.
    fn push<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        hive: &'a str,
        body: &'a PushRequest,
    ) -> Call<'a, PushResponse>;

    /// `POST {endpoint}/batch/handshake`.
    fn batch_handshake<'a>(
        &'a self,
        endpoint: &'a str,
        body: &'a BatchHandshakeRequest,
    ) -> Call<'a, BatchHandshakeResponse>;

    /// `POST {endpoint}/batch/pull`.
    fn batch_pull<'a>(
        &'a self,
        endpoint: &'a str,
        auth: &'a str,
        body: &'a BatchPullRequest,
    ) -> Call<'a, BatchPullResponse>;

    /// `POST {endpoint}/batch/push`.
    fn batch_push<'a>(
        &'a self,
        endpoint: &'a str,
        auth: &'a str,
        body: &'a BatchPushRequest,
    ) -> Call<'a, BatchPushResponse>;

    /// `POST {endpoint}/heartbeat`.
    fn heartbeat<'a>(
        &'a self,
        endpoint: &'a str,
        token: Option<&'a str>,
        body: &'a Heartbeat,
    ) -> Call<'a, Heartbeat>;

    /// `POST {endpoint}/keys`.
    fn keys<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        body: &'a KeysRequest,
    ) -> Call<'a, KeysResponse>;

    /// `POST {endpoint}/groups/{hive}/leave`.
    fn leave<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        hive: &'a str,
    ) -> Call<'a, LeaveResponse>;
}

/// HTTP: the methods of [`SyncClient`], unchanged.
impl Transport for SyncClient {
    fn handshake<'a>(
        &'a self,
        endpoint: &'a str,
        body: &'a HandshakeRequest,
    ) -> Call<'a, HandshakeResponse> {
        Box::pin(SyncClient::handshake(self, endpoint, body))
    }

    fn identity<'a>(&'a self, endpoint: &'a str) -> Call<'a, IdentityDoc> {
        Box::pin(SyncClient::identity(self, endpoint))
    }

    fn pull<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        hive: &'a str,
        since: i64,
        limit: i64,
    ) -> Call<'a, EventsPage> {
        Box::pin(SyncClient::pull(self, endpoint, token, hive, since, limit))
    }

    fn push<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        hive: &'a str,
        body: &'a PushRequest,
    ) -> Call<'a, PushResponse> {
        Box::pin(SyncClient::push(self, endpoint, token, hive, body))
    }

    fn batch_handshake<'a>(
        &'a self,
        endpoint: &'a str,
        body: &'a BatchHandshakeRequest,
    ) -> Call<'a, BatchHandshakeResponse> {
        Box::pin(SyncClient::batch_handshake(self, endpoint, body))
    }

    fn batch_pull<'a>(
        &'a self,
        endpoint: &'a str,
        auth: &'a str,
        body: &'a BatchPullRequest,
    ) -> Call<'a, BatchPullResponse> {
        Box::pin(SyncClient::batch_pull(self, endpoint, auth, body))
    }

    fn batch_push<'a>(
        &'a self,
        endpoint: &'a str,
        auth: &'a str,
        body: &'a BatchPushRequest,
    ) -> Call<'a, BatchPushResponse> {
        Box::pin(SyncClient::batch_push(self, endpoint, auth, body))
    }

    fn heartbeat<'a>(
        &'a self,
        endpoint: &'a str,
        token: Option<&'a str>,
        body: &'a Heartbeat,
    ) -> Call<'a, Heartbeat> {
        Box::pin(SyncClient::heartbeat(self, endpoint, token, body))
    }

    fn keys<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        body: &'a KeysRequest,
    ) -> Call<'a, KeysResponse> {
        Box::pin(SyncClient::keys(self, endpoint, token, body))
    }

    fn leave<'a>(
        &'a self,
        endpoint: &'a str,
        token: &'a str,
        hive: &'a str,
    ) -> Call<'a, LeaveResponse> {
        Box::pin(SyncClient::leave(self, endpoint, token, hive))
    }
}
