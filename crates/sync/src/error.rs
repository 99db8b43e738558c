//! The error type of the crate boundary. The server maps each variant to one HTTP status.

use openhive_store::StoreError;

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
    /// 400: malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// 429: the peer exceeded its event rate; retry after this many seconds.
    #[error("sync rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 500.
    #[error(transparent)]
    Store(#[from] StoreError),
}
