//! The instance's identity, persisted in the data directory and the database:
//!
//! - `instance_meta.instance_id`: the instance id, created once, reused on every start;
//! - `<data_dir>/instance.key` (0600): the Ed25519 seed as hex; its public half is recorded
//!   in `instance_meta.signing_key` so a swapped key file is caught at start-up;
//! - `<data_dir>/instance.key.next` (0600): only during a key rotation (see
//!   [`crate::rotation`]); reconciled at start with what the database says;
//! - `<data_dir>/token-seal.key` (0600): the secret sealing stored outbound peer tokens,
//!   created at the first start of a version with key rotation as the secret the instance
//!   key derived until then (so tokens sealed before still open, and a rotation changes
//!   nothing about sealing);
//! - `<data_dir>/admin.key` (0600): the admin key accepted in `X-Admin-Key`. Only its path is
//!   ever printed; the process keeps only its hash;
//! - the built-in admin agent `local` (no API key), used by local auth mode; its id is in
//!   `instance_meta.local_agent_id`;
//! - the data directory itself is 0700 ([`restrict_data_dir`]); key files found readable by
//!   others are made 0600 when read.

use crate::config::Config;
use openhive_core::ids::{self, Kind};
use openhive_core::{InstanceKey, SharedKey, time};
use openhive_store::{Store, StoreError, agents, db};
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub const INSTANCE_KEY_FILE: &str = "instance.key";
/// A rotated-to key, written before the rotation commits; renamed over [`INSTANCE_KEY_FILE`]
/// after (or at the next start, if the database says the rotation committed).
pub const NEXT_KEY_FILE: &str = "instance.key.next";
/// The secret sealing the tokens we present to peers (derived once from the first instance
/// key, so a key rotation does not change it).
pub const SEAL_KEY_FILE: &str = "token-seal.key";
pub const ADMIN_KEY_FILE: &str = "admin.key";
pub const DB_FILE: &str = "openhive.db";
pub const LOCAL_AGENT_NAME: &str = "local";

const META_INSTANCE_ID: &str = "instance_id";
pub(crate) const META_SIGNING_KEY: &str = "signing_key";
const META_LOCAL_AGENT: &str = "local_agent_id";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError {
    let path = path.to_path_buf();
    move |source| IdentityError::Io {
        action,
        path,
        source,
    }
}

/// Who this instance is. `Debug` never shows secrets.
pub struct Identity {
    pub instance_id: String,
    /// Display name, from `[instance] name`.
    pub name: String,
    /// The current signing key, shared with the write path and the sync engine (a key
    /// rotation replaces it for all of them).
    pub key: SharedKey,
    /// The secret sealing stored outbound peer tokens ([`SEAL_KEY_FILE`]).
    seal_secret: [u8; 32],
    /// Id of the built-in admin agent `local`.
    pub local_agent_id: String,
    pub data_dir: PathBuf,
    admin_key_hash: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("instance_id", &self.instance_id)
            .field("name", &self.name)
            .field("key", &self.key)
            .field("local_agent_id", &self.local_agent_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Constant-time check of a presented admin key.
    pub fn admin_key_matches(&self, presented: &str) -> bool {
        let h = ids::hash_secret(presented);
        constant_time_eq(h.as_bytes(), self.admin_key_hash.as_bytes())
    }

    /// The secret sealing stored outbound peer tokens.
    pub fn seal_secret(&self) -> &[u8; 32] {
        &self.seal_secret
    }

    /// Path of the admin key file.
    pub fn admin_key_path(&self) -> PathBuf {
        self.data_dir.join(ADMIN_KEY_FILE)
    }

    /// Loads the identity, creating whatever is missing (first start). Blocking.
    pub fn load_or_create(config: &Config, store: &Store) -> Result<Identity, IdentityError> {
        let data_dir = config.server.data_dir.clone();
        let key_path = data_dir.join(INSTANCE_KEY_FILE);
        finish_rotation(&data_dir, store)?;
        let key = match read_secret_file(&key_path)? {
            Some(hex) => InstanceKey::from_seed_hex(&hex).map_err(|_| {
                IdentityError::Invalid(format!(
                    "{} is not a valid instance key (64 hex characters)",
                    key_path.display()
                ))
            })?,
            None => {
                let key = InstanceKey::generate();
                write_secret_file(&key_path, &key.seed_hex())?;
                tracing::info!(path = %key_path.display(), "created instance signing key");
                key
            }
        };

        let seal_path = data_dir.join(SEAL_KEY_FILE);
        let seal_secret = match read_secret_file(&seal_path)? {
            Some(h) => hex::decode(&h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    IdentityError::Invalid(format!(
                        "{} is not a 32-byte hex secret",
                        seal_path.display()
                    ))
                })?,
            None => {
                // What the instance key derived before this file existed: tokens sealed by
                // an older version still open.
                let s = key.derive_secret(TOKEN_SEAL_PURPOSE);
                write_secret_file(&seal_path, &hex::encode(s))?;
                s
            }
        };

        let admin_path = data_dir.join(ADMIN_KEY_FILE);
        let admin_key = match read_secret_file(&admin_path)? {
            Some(k) if !k.is_empty() => k,
            Some(_) => {
                return Err(IdentityError::Invalid(format!(
                    "{} is empty; delete it to generate a new admin key",
                    admin_path.display()
                )));
            }
            None => {
                let k = ids::new_secret_token("ohadm_");
                write_secret_file(&admin_path, &k)?;
                tracing::info!(
                    path = %admin_path.display(),
                    "created admin key; send its contents in the X-Admin-Key header for admin routes"
                );
                k
            }
        };
        let admin_key_hash = ids::hash_secret(&admin_key);
        drop(admin_key);

        let public = key.public().to_base64();
        let key_file = key_path.display().to_string();
        let (instance_id, local_agent_id) =
            store.write_blocking(move |tx| -> Result<_, IdentityError> {
                let instance_id = match db::meta_get(tx, META_INSTANCE_ID)? {
                    Some(id) => id,
                    None => {
                        let id = ids::new_instance_id();
                        db::meta_set(tx, META_INSTANCE_ID, &id)?;
                        tracing::info!(instance_id = %id, "created instance id");
                        id
                    }
                };
                match db::meta_get(tx, META_SIGNING_KEY)? {
                    Some(k) if k != public => {
                        return Err(IdentityError::Invalid(format!(
                            "{} does not hold the key this database was created with; \
                             restore the original key file",
                            key_file
                        )));
                    }
                    Some(_) => {}
                    None => db::meta_set(tx, META_SIGNING_KEY, &public)?,
                }
                let local_agent_id = ensure_local_agent(tx, &instance_id)?;
                Ok((instance_id, local_agent_id))
            })?;

        Ok(Identity {
            instance_id,
            name: config.instance.name.clone(),
            key: SharedKey::new(key),
            seal_secret,
            local_agent_id,
            data_dir,
            admin_key_hash,
        })
    }
}

/// What the token sealing secret was derived for (before [`SEAL_KEY_FILE`] existed).
const TOKEN_SEAL_PURPOSE: &str = "peer-token-sealing";

/// Completes or abandons a key rotation interrupted between writing [`NEXT_KEY_FILE`] and
/// renaming it into place: if the database recorded its key, the rotation committed and the
/// file becomes the instance key; otherwise it never happened and the file goes.
fn finish_rotation(data_dir: &Path, store: &Store) -> Result<(), IdentityError> {
    let next_path = data_dir.join(NEXT_KEY_FILE);
    let Some(hex) = read_secret_file(&next_path)? else {
        return Ok(());
    };
    let next = InstanceKey::from_seed_hex(&hex).ok();
    let recorded = store.read_blocking(|c| db::meta_get(c, META_SIGNING_KEY))?;
    match next {
        Some(k) if recorded.as_deref() == Some(k.public().to_base64().as_str()) => {
            install_next_key(data_dir)?;
            tracing::info!("completed a key rotation interrupted before its key file was renamed");
        }
        _ => {
            std::fs::remove_file(&next_path).map_err(io_err("removing", &next_path))?;
            tracing::info!("removed the key file of a key rotation that did not commit");
        }
    }
    Ok(())
}

/// Writes the key of a rotation in progress ([`NEXT_KEY_FILE`], 0600, fsynced).
pub(crate) fn write_next_key(data_dir: &Path, key: &InstanceKey) -> Result<(), IdentityError> {
    write_secret_file(&data_dir.join(NEXT_KEY_FILE), &key.seed_hex())
}

/// Removes [`NEXT_KEY_FILE`] (a rotation that did not commit).
pub(crate) fn discard_next_key(data_dir: &Path) {
    let _ = std::fs::remove_file(data_dir.join(NEXT_KEY_FILE));
}

/// Renames [`NEXT_KEY_FILE`] over [`INSTANCE_KEY_FILE`] (the old key is gone for good) and
/// syncs the directory.
pub(crate) fn install_next_key(data_dir: &Path) -> Result<(), IdentityError> {
    let next = data_dir.join(NEXT_KEY_FILE);
    let key = data_dir.join(INSTANCE_KEY_FILE);
    std::fs::rename(&next, &key).map_err(io_err("renaming into place", &key))?;
    if let Ok(d) = std::fs::File::open(data_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates the built-in admin agent `local` if it does not exist yet.
fn ensure_local_agent(
    tx: &openhive_store::Conn<'_>,
    instance_id: &str,
) -> Result<String, IdentityError> {
    if let Some(id) = db::meta_get(tx, META_LOCAL_AGENT)?
        && agents::get_by_id(tx, &id)?.is_some()
    {
        return Ok(id);
    }
    let id = ids::new_id(Kind::Agent, instance_id);
    let row = agents::create_local(
        tx,
        &agents::NewLocalAgent {
            id: id.clone(),
            name: LOCAL_AGENT_NAME.into(),
            instance_id: instance_id.into(),
            api_key_hash: None,
            description: "Built-in administrator used by local auth mode".into(),
            metadata: None,
            is_admin: true,
        },
        time::now_ms(),
    )
    .map_err(|e| match e {
        StoreError::Conflict(_) => IdentityError::Invalid(format!(
            "a registered agent is already called {LOCAL_AGENT_NAME:?}; \
             the built-in local agent cannot be created"
        )),
        e => e.into(),
    })?;
    db::meta_set(tx, META_LOCAL_AGENT, &row.id)?;
    Ok(row.id)
}

/// Makes the data directory the owner's only (0700): it holds the keys and, on SQLite, the
/// database. Files in it are created 0600 (keys here, the database by its engine).
pub fn restrict_data_dir(dir: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)
            .map_err(io_err("reading", dir))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err("restricting the permissions of", dir))?;
        }
    }
    Ok(())
}

fn read_secret_file(path: &Path) -> Result<Option<String>, IdentityError> {
    #[cfg(unix)]
    {
        // A key file left readable by others (copied in, or by hand) is made private.
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err("restricting the permissions of", path))?;
        }
    }
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

/// Writes `contents` to `path` atomically with mode 0600 (temp file, fsync, rename).
fn write_secret_file(path: &Path, contents: &str) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(io_err("writing", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err("renaming into place", path))?;
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
