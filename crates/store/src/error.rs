use crate::engine::DbError;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(DbError),
    #[error("database pool error: {0}")]
    Pool(String),
    #[error("migration {version} failed: {source}")]
    Migration { version: u32, source: DbError },
    #[error("database schema version {found} is newer than this binary supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller's input does not fit (bad cursor, unknown hive in a request...).
    #[error("invalid data: {0}")]
    Invalid(String),
    /// A stored value does not decode: the database holds something this binary did not
    /// write. Never answered as a client error.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The write queue is full; try again shortly.
    #[error("the server is busy; retry shortly")]
    Overloaded,
    #[error("storage task failed: {0}")]
    Task(String),
}

impl From<DbError> for StoreError {
    /// A column that does not decode is stored data this binary did not write: corruption,
    /// not a database failure.
    fn from(e: DbError) -> Self {
        match e.kind() {
            crate::engine::DbErrorKind::Decode => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Db(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
