use dogear_storage::StoreError;
use std::borrow::Cow;
use thiserror::Error;

/// Every way a request can fail in the domain. The gateway maps each variant to exactly one
/// HTTP status and error code (`gateway/src/error.rs`); the strings here are client-safe,
/// except `Unavailable`'s, which is only logged.
/// Serializable, with owned texts, because a node answers for an actor on another node.
#[derive(Debug, Clone, Error, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AppError {
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("{0}")]
    Unauthorized(Cow<'static, str>),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    #[error("registration is closed on this server")]
    RegistrationClosed,
    #[error("{0} not found")]
    NotFound(Cow<'static, str>),
    #[error("username is already taken")]
    UsernameTaken,
    #[error("event_id was already used with a different body")]
    IdempotencyMismatch,
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    #[error("too many attempts; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable(String),
    // New variants go last: errors cross between nodes by position, and a node of the
    // previous build must read what it knows the same way.
    #[error("this invite code is not valid: it may be mistyped, expired, used up or revoked")]
    InvalidInvite,
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
}

impl AppError {
    pub fn bad(field: &str, message: impl Into<String>) -> AppError {
        AppError::BadRequest {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::NotFound(Cow::Borrowed("record")),
            StoreError::Conflict(_) | StoreError::VersionConflict { .. } => {
                AppError::Conflict(Cow::Borrowed("the record changed meanwhile; retry"))
            }
            StoreError::Unavailable(m) | StoreError::Corrupt(m) => AppError::Unavailable(m),
        }
    }
}
