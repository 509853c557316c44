use thiserror::Error;

/// Errors every backend maps its own failures onto. Callers branch on the variant, never on
/// the text, and the text never reaches a client (it may hold SQL or paths).
#[derive(Debug, Error)]
pub enum StoreError {
    /// The record asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken (the string names the rule, e.g. `username`).
    #[error("conflict on {0}")]
    Conflict(&'static str),
    /// The write carried a version the stored record no longer has: another owner wrote first.
    #[error("version conflict: expected {expected}, found {found}")]
    VersionConflict { expected: u64, found: u64 },
    /// The backend could not be reached or refused to work (disk full, closed, timed out).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded: a bug or a corrupted store.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}
