//! Key rotation of this instance (`POST /api/v1/admin/instance/rotate-key`).
//!
//! One write transaction, on the writer thread (where every local event is signed):
//! take a time from the write path's clock (`HiveService::tick`: later than every event
//! signed so far), make a new key, sign the rotation statement with the old and the new key,
//! write the new key to `instance.key.next` (0600, fsynced), record the statement
//! (`keys::accept_rotation`: our chain now ends at the new key) and the new public key
//! (`instance_meta.signing_key`), then swap the shared key: every event signed after this
//! closure, in this transaction or a later one, is signed by the new key with a later time.
//! After the commit, `instance.key.next` is renamed over `instance.key` (the old private key
//! is gone) and the statement is announced to every peer (`POST /sync/v1/keys`, awaited).
//!
//! Crash safety: a crash before the commit leaves `instance.key.next` behind and the database
//! on the old key (the next start deletes the file); after the commit but before the rename,
//! the database names the new key and the next start renames the file (see
//! `identity::finish_rotation`). If the commit itself fails, the old key is put back.
//!
//! Several app processes (PostgreSQL): only the process that rotates swaps its key; the
//! others must be restarted (they load the new key file), see docs/PROTOCOL-sync.md.

use crate::app::AppState;
use crate::identity::{self, META_SIGNING_KEY};
use openhive_core::{InstanceKey, RotationStatement, time};
use openhive_store::{StoreError, db, keys};

/// Why a rotation failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("writing the new key: {0}")]
    KeyFile(String),
    #[error("the rotation statement was refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub statement: RotationStatement,
    /// Peers that took the announcement at once.
    pub announced_to: usize,
}

/// One rotation at a time per process.
static ROTATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn rotate_key(state: &AppState) -> Result<Rotated, RotateError> {
    let _one = ROTATING.lock().await;
    let shared = state.identity.key.clone();
    let old = shared.get();
    let data_dir = state.identity.data_dir.clone();
    let instance_id = state.identity.instance_id.clone();
    let svc = state.hives.clone();
    let (sh, dd) = (shared.clone(), data_dir.clone());
    let res = state
        .store
        .write(move |tx| -> Result<RotationStatement, RotateError> {
            let old = sh.get();
            let new = InstanceKey::generate();
            let at = svc.tick();
            let statement = RotationStatement::sign(&old, &new, &instance_id, at);
            identity::write_next_key(&dd, &new).map_err(|e| RotateError::KeyFile(e.to_string()))?;
            match keys::accept_rotation(tx, &statement, None, time::now_ms())? {
                keys::Rotation::Rotated => {}
                other => return Err(RotateError::Refused(format!("{other:?}"))),
            }
            db::meta_set(tx, META_SIGNING_KEY, &statement.new_key)?;
            sh.replace(new);
            Ok(statement)
        })
        .await;
    let statement = match res {
        Ok(s) => s,
        Err(e) => {
            // Nothing committed: the old key stays (put back if the closure had swapped it
            // and the commit failed), and the new key's file goes.
            if shared.public() != old.public() {
                shared.replace(old);
            }
            identity::discard_next_key(&data_dir);
            return Err(e);
        }
    };
    if let Err(e) = identity::install_next_key(&data_dir) {
        // The next start completes it (the database names the new key).
        tracing::error!(error = %e, "renaming the rotated key file; the next start completes it");
    }
    tracing::info!(
        at = statement.at,
        new_key = %statement.new_key,
        "rotated the instance signing key"
    );
    let announced_to = state
        .sync
        .send_keys(std::slice::from_ref(&statement), None)
        .await;
    Ok(Rotated {
        statement,
        announced_to,
    })
}
