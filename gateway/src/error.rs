//! Every error a client can see, declared once: the stable `code`, its HTTP status and what it
//! means (the same table `docs/api.md` lists; a test keeps the two equal). Messages name the
//! field; nothing here ever carries SQL, paths or backtraces.

use dogear_actors::AppError;
use serde_json::json;
use warp::http::StatusCode;

macro_rules! codes {
    ($($variant:ident = $code:literal, $status:ident, $meaning:literal;)*) => {
        /// A stable error code; its status and meaning come from the table below.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code { $($variant),* }

        impl Code {
            /// Every code, in the order `docs/api.md` lists them.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code),* }
            }
            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status),* }
            }
            /// When a client gets it, for the documentation.
            pub fn meaning(self) -> &'static str {
                match self { $(Code::$variant => $meaning),* }
            }
        }
    };
}

codes! {
    BadRequest = "bad_request", BAD_REQUEST,
        "malformed JSON, a wrong type, a missing or out-of-range field, a bad query parameter; the message names the field";
    Unauthorized = "unauthorized", UNAUTHORIZED,
        "a missing, expired, forged or revoked access token, refresh token or device token";
    InvalidCredentials = "invalid_credentials", UNAUTHORIZED,
        "login with a wrong username or password (the same answer for both)";
    Forbidden = "forbidden", FORBIDDEN,
        "the caller can see the thing but lacks the role to change it";
    RegistrationClosed = "registration_closed", FORBIDDEN,
        "registration is closed on this server (`auth.registration = \"closed\"`)";
    NotFound = "not_found", NOT_FOUND,
        "no such route, or a thing that does not exist or that the caller may not see";
    InvalidInvite = "invalid_invite", NOT_FOUND,
        "an invite code that is mistyped, expired, used up or revoked (the same answer for each)";
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED,
        "the route exists but not with this method; `Allow` lists the methods it has";
    UsernameTaken = "username_taken", CONFLICT,
        "registration with a username someone already has";
    IdempotencyMismatch = "idempotency_mismatch", CONFLICT,
        "an `event_id` or `Idempotency-Key` seen before, sent again with a different body";
    Conflict = "conflict", CONFLICT,
        "the request contradicts the current state (a name already in use, a book in another library)";
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE,
        "a JSON body over the limit (1 MiB) or an upload over `import.max_upload_bytes`";
    RangeNotSatisfiable = "range_not_satisfiable", RANGE_NOT_SATISFIABLE,
        "a `Range` outside the file; `Content-Range: bytes */SIZE` gives its size";
    RateLimited = "rate_limited", TOO_MANY_REQUESTS,
        "too many failed logins or device-token guesses; `Retry-After` says when to try again";
    Unavailable = "unavailable", SERVICE_UNAVAILABLE,
        "storage or the object store failed; retry later (the detail is logged, never sent)";
}

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Seconds, for `429` (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::BadRequest, message)
    }
    pub fn field(field: &str, message: &str) -> ApiError {
        ApiError::bad_request(format!("{field}: {message}"))
    }
    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(Code::Unauthorized, message)
    }
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(Code::NotFound, format!("{what} not found"))
    }
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::PayloadTooLarge, message)
    }
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        let code = match &e {
            AppError::BadRequest { .. } => Code::BadRequest,
            AppError::Unauthorized(_) => Code::Unauthorized,
            AppError::InvalidCredentials => Code::InvalidCredentials,
            AppError::Forbidden(_) => Code::Forbidden,
            AppError::RegistrationClosed => Code::RegistrationClosed,
            AppError::NotFound(_) => Code::NotFound,
            AppError::UsernameTaken => Code::UsernameTaken,
            AppError::IdempotencyMismatch | AppError::IdempotencyKeyReused => {
                Code::IdempotencyMismatch
            }
            AppError::Conflict(_) => Code::Conflict,
            AppError::InvalidInvite => Code::InvalidInvite,
            AppError::RateLimited { .. } => Code::RateLimited,
            AppError::Unavailable(_) => Code::Unavailable,
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
            code,
            message,
            retry_after,
        }
    }
}
