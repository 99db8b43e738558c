//! Token refusal, both directions.
//!
//! - We refuse: [`authenticate`] answers every `/sync/v1` call but the handshake. A missing
//!   token, or one we never issued (or revoked, or whose link is `left`), is 401.
//! - We are refused: a peer answering 401 (classified as [`crate::error::LinkError::Refused`])
//!   no longer knows the token we presented. [`forget_refused`] forgets it and puts the link
//!   back to `handshaking`, so its worker handshakes again. The link worker and the heartbeat
//!   both use it; each records the failed call itself.
//!
//! Invariants:
//! - forgets only the token that was refused: if the link already holds another one (the
//!   peer handshook with us while our call was in flight, and that token is fresh), nothing
//!   changes;
//! - never revokes a token *we* issued (those die by rotation or `leave`) and never reopens a
//!   `left` link;
//! - tokens never appear in logs or errors (stored tokens are compared, not printed).

use crate::engine::SyncHandle;
use crate::error::SyncError;
use openhive_store::sync_state::{self, PeerRow};
use openhive_store::{Conn, StoreError};

/// A caller authenticated by a sync token.
#[derive(Debug, Clone)]
pub struct PeerAuth {
    pub peer_id: String,
    pub peer_instance_id: String,
    /// The hive the token is bound to (local id).
    pub hive_id: String,
}

/// Checks a bearer token. `None` or an unknown token → 401.
pub async fn authenticate(h: &SyncHandle, token: Option<&str>) -> Result<PeerAuth, SyncError> {
    if !h.enabled() {
        return Err(SyncError::disabled());
    }
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(SyncError::Unauthorized(
            "Missing Authorization header. Provide a sync token.".into(),
        ));
    };
    let token = token.to_string();
    let found = h
        .store()
        .read_point(
            move |c| -> Result<Option<(String, String, Option<PeerRow>)>, StoreError> {
                let Some((peer_id, hive_id)) =
                    sync_state::authenticate(c, &token, openhive_core::time::now_ms())?
                else {
                    return Ok(None);
                };
                let peer = sync_state::peer_by_id(c, &peer_id)?;
                Ok(Some((peer_id, hive_id, peer)))
            },
        )
        .await?;
    match found {
        Some((peer_id, hive_id, Some(peer))) => Ok(PeerAuth {
            peer_id,
            peer_instance_id: peer.instance_id.unwrap_or_default(),
            hive_id,
        }),
        _ => Err(SyncError::Unauthorized(
            "Invalid or expired sync token".into(),
        )),
    }
}

/// The peer refused `refused`, the token we presented for (peer, hive): forgets it and puts
/// the link back to `handshaking`, unless the link meanwhile holds another token or is
/// `left`. Inside the caller's write transaction. Returns true if it forgot the token.
pub(crate) fn forget_refused(
    tx: &Conn<'_>,
    peer_id: &str,
    hive_id: &str,
    refused: &str,
) -> Result<bool, StoreError> {
    let Some(link) = sync_state::link(tx, peer_id, hive_id)? else {
        return Ok(false);
    };
    if link.state == sync_state::LinkState::Left || link.token_out.as_deref() != Some(refused) {
        return Ok(false);
    }
    sync_state::set_token_out(tx, peer_id, hive_id, None)?;
    sync_state::set_link_state(tx, peer_id, hive_id, sync_state::LinkState::Handshaking)?;
    Ok(true)
}

/// Logs the outcome of [`forget_refused`].
pub(crate) fn log_forgotten(forgot: bool) {
    if forgot {
        tracing::info!("peer refused our token; handshaking again");
    } else {
        tracing::info!("peer refused a token we no longer use; keeping the current one");
    }
}
