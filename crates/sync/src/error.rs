//! Error types of the crate.
//!
//! - [`SyncError`]: the crate boundary. The server maps each variant to one HTTP status.
//! - [`PeerInputError`]: data a peer sent that we do not accept (its fault: a malformed or
//!   conflicting handshake). Never a storage failure.
//! - [`LinkError`] (crate-internal): why a step of a link worker failed. The worker decides
//!   what to do with a `match` on it (forget a refused token, wait out a 429, back off);
//!   `anyhow` appears only at the worker's edge, to log and record the failure with context.
//!
//! Input and corruption stay apart: peer or caller input is [`SyncError::BadRequest`] /
//! [`SyncError::Conflict`] / [`PeerInputError`]; storage failures are
//! [`SyncError::Store`] / [`LinkError::Store`], where the store itself tells caller input
//! ([`StoreError::Invalid`]) from stored data that does not decode ([`StoreError::Corrupt`]).

use crate::client::ClientError;
use openhive_store::StoreError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// 401: no token, or a token we never issued (or revoked).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed (token bound to another group, handshake not
    /// permitted, source address not allowed).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such group or peer, or sync disabled.
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicting identity (an instance id already known with another key).
    #[error("{0}")]
    Conflict(String),
    /// 400: malformed request (caller or peer input).
    #[error("{0}")]
    BadRequest(String),
    /// 429: the peer exceeded its event rate; retry after this many seconds.
    #[error("sync rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 503: a new link refused for lack of room (`max_gossip_peers` gossip peers for the
    /// hive already); the initiator may retry later.
    #[error("{0}")]
    Full(String),
    /// Storage failed (500, or what the store's own variant says: `Invalid` input is 422,
    /// `Overloaded` 503, `Corrupt` stored data 500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncError {
    /// 404 for every `/sync/v1` call while sync is disabled.
    pub(crate) fn disabled() -> SyncError {
        SyncError::NotFound("Hive Sync is disabled on this instance".into())
    }

    /// The HTTP status of this error as the server answers it; also a group's status inside
    /// a batched answer. Internal failures are not detailed to peers.
    pub fn status(&self) -> u16 {
        match self {
            SyncError::Unauthorized(_) => 401,
            SyncError::Forbidden(_) => 403,
            SyncError::NotFound(_) | SyncError::Store(StoreError::NotFound(_)) => 404,
            SyncError::Conflict(_) | SyncError::Store(StoreError::Conflict(_)) => 409,
            SyncError::BadRequest(_) => 400,
            SyncError::Store(StoreError::Invalid(_)) => 422,
            SyncError::RateLimited { .. } => 429,
            SyncError::Store(StoreError::Overloaded) | SyncError::Full(_) => 503,
            SyncError::Store(_) => 500,
        }
    }

    /// This error as one group's part of a batched answer.
    pub(crate) fn group_error(&self) -> crate::protocol::GroupError {
        let error = match self {
            SyncError::Store(e) if self.status() == 500 => {
                tracing::error!(error = %e, "a group of a batched sync call failed");
                "internal error".to_string()
            }
            e => e.to_string(),
        };
        crate::protocol::GroupError {
            status: self.status(),
            error,
        }
    }
}

/// Handshake data from the other side that we refuse. Whichever side we are, this is the
/// peer's fault, never a storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerInputError {
    /// Malformed or unsupported (bad protocol version, id, key, endpoint or token).
    #[error("{0}")]
    Malformed(String),
    /// A conflicting identity: another key for an instance id we know, or our own id.
    #[error("{0}")]
    Conflict(String),
}

impl From<PeerInputError> for SyncError {
    fn from(e: PeerInputError) -> Self {
        match e {
            PeerInputError::Malformed(m) => SyncError::BadRequest(m),
            PeerInputError::Conflict(m) => SyncError::Conflict(m),
        }
    }
}

/// Why a step of a link worker (handshake, pull, push) failed. The worker matches on it:
/// `Refused` forgets the token (the next step handshakes again), `RateLimited` waits and is
/// a contact, everything else is a failure that backs off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The peer answered 401: it does not know the token we presented.
    #[error("peer refused our token")]
    Refused(#[source] ClientError),
    /// The peer answered 429: wait this long, then try again.
    #[error("peer rate-limited us; retry after {0:?}")]
    RateLimited(Duration),
    /// The call failed otherwise: unreachable, timeout, a non-2xx answer other than
    /// 401/429, or a 2xx body we could not read.
    #[error(transparent)]
    Transport(ClientError),
    /// The peer answered with handshake data we refuse.
    #[error(transparent)]
    PeerInput(#[from] PeerInputError),
    /// Local storage failed while `what`.
    #[error("{what}")]
    Store {
        what: &'static str,
        #[source]
        source: StoreError,
    },
    /// A background task of the step (the pull prefetch) died.
    #[error("{0}")]
    Task(String),
    /// The engine is shutting down.
    #[error("engine shutting down")]
    Shutdown,
}

/// Longest `Retry-After` a worker honours; a peer asking for more is asked again then.
const MAX_RETRY_AFTER_SECS: u64 = 300;

impl From<ClientError> for LinkError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Status { status: 401, .. } => LinkError::Refused(e),
            ClientError::Status {
                status: 429,
                retry_after,
                ..
            } => LinkError::RateLimited(Duration::from_secs(
                retry_after.unwrap_or(1).clamp(1, MAX_RETRY_AFTER_SECS),
            )),
            e => LinkError::Transport(e),
        }
    }
}

impl LinkError {
    /// A group's refusal inside a batched answer, classified as the same status answering
    /// the single-hive call would be.
    pub(crate) fn of_group(e: &crate::protocol::GroupError) -> LinkError {
        LinkError::from(ClientError::Status {
            status: e.status,
            message: e.error.clone(),
            retry_after: None,
        })
    }

    /// A storage failure while `what`.
    pub(crate) fn store(what: &'static str) -> impl FnOnce(StoreError) -> LinkError {
        move |source| LinkError::Store { what, source }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn status(status: u16, retry_after: Option<u64>) -> ClientError {
        ClientError::Status {
            status,
            message: "m".into(),
            retry_after,
        }
    }

    #[test]
    fn client_errors_classify_by_status() {
        assert!(matches!(
            LinkError::from(status(401, None)),
            LinkError::Refused(_)
        ));
        assert!(matches!(
            LinkError::from(status(429, Some(7))),
            LinkError::RateLimited(d) if d == Duration::from_secs(7)
        ));
        // Missing, zero or absurd Retry-After values are bounded.
        assert!(matches!(
            LinkError::from(status(429, None)),
            LinkError::RateLimited(d) if d == Duration::from_secs(1)
        ));
        assert!(matches!(
            LinkError::from(status(429, Some(0))),
            LinkError::RateLimited(d) if d == Duration::from_secs(1)
        ));
        assert!(matches!(
            LinkError::from(status(429, Some(86_400))),
            LinkError::RateLimited(d) if d == Duration::from_secs(300)
        ));
        for s in [400, 403, 404, 409, 500, 503] {
            assert!(matches!(
                LinkError::from(status(s, None)),
                LinkError::Transport(_)
            ));
        }
        assert!(matches!(
            LinkError::from(ClientError::Transport("connect".into())),
            LinkError::Transport(_)
        ));
    }

    #[test]
    fn failure_text_keeps_the_peer_answer() {
        // What the worker records as `last_error` (anyhow chain at its edge).
        let e = anyhow::Error::new(LinkError::from(status(403, None))).context("handshake");
        assert_eq!(format!("{e:#}"), "handshake: peer answered 403: m");
        let e = anyhow::Error::new(LinkError::from(status(401, None))).context("pull");
        assert_eq!(
            format!("{e:#}"),
            "pull: peer refused our token: peer answered 401: m"
        );
        let e = anyhow::Error::new(LinkError::store("reading the outbox")(StoreError::Corrupt(
            "x".into(),
        )))
        .context("push");
        assert_eq!(
            format!("{e:#}"),
            "push: reading the outbox: corrupt stored data: x"
        );
    }

    #[test]
    fn peer_input_maps_to_client_errors() {
        assert!(matches!(
            SyncError::from(PeerInputError::Malformed("m".into())),
            SyncError::BadRequest(_)
        ));
        assert!(matches!(
            SyncError::from(PeerInputError::Conflict("c".into())),
            SyncError::Conflict(_)
        ));
    }
}
