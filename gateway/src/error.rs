//! Every error a client can see, declared once: the HTTP status and the stable `code` for
//! each. Messages name the field; nothing here ever carries SQL, paths or backtraces.

use dogear_actors::AppError;
use serde_json::json;
use warp::http::StatusCode;

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for `429` (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn field(field: &str, message: &str) -> ApiError {
        ApiError::bad_request(format!("{field}: {message}"))
    }
    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        use StatusCode as S;
        let (status, code) = match &e {
            AppError::BadRequest { .. } => (S::BAD_REQUEST, "bad_request"),
            AppError::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized"),
            AppError::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials"),
            AppError::Forbidden(_) => (S::FORBIDDEN, "forbidden"),
            AppError::RegistrationClosed => (S::FORBIDDEN, "registration_closed"),
            AppError::NotFound(_) => (S::NOT_FOUND, "not_found"),
            AppError::UsernameTaken => (S::CONFLICT, "username_taken"),
            AppError::IdempotencyMismatch => (S::CONFLICT, "idempotency_mismatch"),
            AppError::Conflict(_) => (S::CONFLICT, "conflict"),
            AppError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let message = match &e {
            AppError::Unavailable(detail) => {
                // The detail may hold SQL or paths: log it, never send it.
                tracing::error!(%detail, "request failed: unavailable");
                "the service is unavailable; retry shortly".to_string()
            }
            other => other.to_string(),
        };
        let retry_after = match e {
            AppError::RateLimited { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        };
        ApiError {
            status,
            code,
            message,
            retry_after,
        }
    }
}
