//! KOReader's progress sync (`docs/protocols/kosync.md`), as the stock "Progress sync"
//! plugin calls it: under `/koreader` (or any prefix a user types, `//` and a trailing slash
//! tolerated), credentials in `x-auth-user`/`x-auth-key` on every call, answers in the
//! reference server's statuses and bodies. Every answer is a JSON object with exactly
//! `Content-Type: application/json` (some KOReader versions decode nothing else), and a `PUT`
//! answers `200` even when the write did not move the position (any other status makes
//! KOReader queue the write and retry it for weeks).

use crate::Ctx;
use crate::http::{self, Req};
use dogear_actors::AppError;
use dogear_actors::kosync::{KosyncPut, KosyncRecord};
use dogear_storage::KoreaderLogin;
use serde_json::{Map, Value, json};
use warp::http::header::{HeaderValue, RETRY_AFTER};
use warp::http::{Method, StatusCode};
use warp::reply::Response;

/// A kosync call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Create,
    Auth,
    Put,
    Get(String),
    Health,
    /// Under `/koreader` but not a call KOReader makes.
    Unknown,
}

impl Call {
    fn route(&self) -> &'static str {
        match self {
            Call::Create => "/koreader/users/create",
            Call::Auth => "/koreader/users/auth",
            Call::Put => "/koreader/syncs/progress",
            Call::Get(_) => "/koreader/syncs/progress/{document}",
            Call::Health => "/koreader/healthcheck",
            Call::Unknown => "/koreader/*",
        }
    }
}

/// The kosync call `method` and `path` stand for, whatever prefix the user typed before the
/// call's own path; never a path of another protocol (`/v1`, `/kobo`, `/opds`) or of the
/// web app's files and books (`/assets`, `/read`).
pub fn route(method: &Method, path: &str) -> Option<Call> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if matches!(
        segs.first(),
        Some(&"v1" | &"kobo" | &"opds" | &"assets" | &"read")
    ) {
        return None;
    }
    let call = match (method, segs.as_slice()) {
        (&Method::POST, [.., "users", "create"]) => Call::Create,
        (&Method::GET, [.., "users", "auth"]) => Call::Auth,
        (&Method::PUT, [.., "syncs", "progress"]) => Call::Put,
        (&Method::GET, [.., "syncs", "progress", doc]) => Call::Get((*doc).to_string()),
        (&Method::GET, [.., "healthcheck"]) => Call::Health,
        _ if segs.first() == Some(&"koreader") => Call::Unknown,
        _ => return None,
    };
    Some(call)
}

fn answer(status: StatusCode, v: Value) -> Response {
    http::json(status, &v)
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    answer(status, json!({"code": code, "message": message}))
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, 2001, "Unauthorized")
}

fn invalid() -> Response {
    error(StatusCode::FORBIDDEN, 2003, "Invalid request")
}

fn bad_document() -> Response {
    error(
        StatusCode::FORBIDDEN,
        2004,
        "Field 'document' not provided.",
    )
}

/// What KOReader can be told when Dogear fails: the reference server's storage error.
fn failed(e: &AppError) -> Response {
    match e {
        AppError::RateLimited { retry_after_secs } => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                2001,
                &format!("Too many failed sign-ins: try again in {retry_after_secs} seconds."),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert(RETRY_AFTER, v);
            }
            r
        }
        other => {
            tracing::warn!(error = %other, "kosync call failed");
            error(StatusCode::BAD_GATEWAY, 2000, "Unknown server error.")
        }
    }
}

/// A document digest as both calls accept it: what KOReader sends (32 hex digits) and the
/// ids other clients use, without the characters that cannot round-trip in a path.
fn valid_document(d: &str) -> bool {
    (1..=128).contains(&d.len())
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

pub async fn dispatch(ctx: &Ctx, req: Req, call: Call) -> (&'static str, Response) {
    let route = call.route();
    let r = match call {
        Call::Health => answer(StatusCode::OK, json!({"state": "OK"})),
        Call::Unknown => error(StatusCode::NOT_FOUND, 404, "Not found."),
        Call::Create => create(ctx, &req).await,
        Call::Auth => match sign_in(ctx, &req).await {
            Ok(_) => answer(StatusCode::OK, json!({"authorized": "OK"})),
            Err(r) => r,
        },
        Call::Put => match sign_in(ctx, &req).await {
            Ok(login) => put(ctx, &req, &login).await,
            Err(r) => r,
        },
        Call::Get(doc) => match sign_in(ctx, &req).await {
            Ok(login) => get(ctx, &login, &doc).await,
            Err(r) => r,
        },
    };
    (route, r)
}

/// The login of the request's `x-auth-user` and `x-auth-key`; the same `401` for a missing
/// header, an unknown user and a wrong key. While an address or name is over its failure
/// budget, sign-in answers `401` with how long to wait (the message KOReader shows at
/// login), progress calls `429` (KOReader keeps the write and sends it later).
async fn sign_in(ctx: &Ctx, req: &Req) -> Result<KoreaderLogin, Response> {
    let header = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    let (user, key) = (header("x-auth-user"), header("x-auth-key"));
    let addr = req.remote.map(|a| a.ip().to_string());
    match ctx.app.koreader_sign_in(&user, &key, addr.as_deref()).await {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(unauthorized()),
        Err(AppError::RateLimited { retry_after_secs }) if req.path.ends_with("/auth") => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                2001,
                &format!("Too many failed sign-ins: try again in {retry_after_secs} seconds."),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert(RETRY_AFTER, v);
            }
            Err(r)
        }
        Err(e) => Err(failed(&e)),
    }
}

/// The body as a JSON object, or the reference server's `400` code and message.
fn object(req: &Req) -> Result<Map<String, Value>, (u32, &'static str)> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err((104, "Body should be a JSON hash")),
        Err(_) => Err((103, "Could not parse JSON")),
    }
}

/// A string field, or a number's decimal text (old KOReaders sent page numbers as numbers).
fn text(m: &Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn create(ctx: &Ctx, req: &Req) -> Response {
    let m = match object(req) {
        Ok(m) => m,
        Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, message),
    };
    let username = m
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let key = m.get("password").and_then(Value::as_str).unwrap_or("");
    if username.is_empty() || username.contains(':') || key.is_empty() {
        return invalid();
    }
    if !ctx.settings.koreader_registration {
        // 402 is the one failure KOReader shows the message of.
        return error(
            StatusCode::PAYMENT_REQUIRED,
            2005,
            "User registration is disabled. Create a KOReader login in Dogear (Devices, \
             KOReader) and sign in with its username and password.",
        );
    }
    match ctx.app.kosync_register(username, key).await {
        Ok(()) => answer(StatusCode::CREATED, json!({"username": username})),
        Err(AppError::UsernameTaken) => error(
            StatusCode::PAYMENT_REQUIRED,
            2002,
            "Username is already registered.",
        ),
        Err(AppError::RegistrationClosed) => error(
            StatusCode::PAYMENT_REQUIRED,
            2005,
            "User registration is disabled.",
        ),
        Err(AppError::BadRequest { message, .. }) => error(
            StatusCode::PAYMENT_REQUIRED,
            2003,
            &format!("Username {message}."),
        ),
        Err(e) => failed(&e),
    }
}

async fn put(ctx: &Ctx, req: &Req, login: &KoreaderLogin) -> Response {
    let m = match object(req) {
        Ok(m) => m,
        Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, message),
    };
    let document = match m.get("document") {
        Some(Value::String(d)) if valid_document(d) => d.clone(),
        _ => return bad_document(),
    };
    let percentage = match m.get("percentage") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let (Some(percentage), Some(progress), Some(device)) =
        (percentage, text(&m, "progress"), text(&m, "device"))
    else {
        return invalid();
    };
    let device_id = text(&m, "device_id");
    // Bounded so the position fits a locator; KOReader's are far shorter.
    if !percentage.is_finite()
        || progress.len() > 2048
        || device.len() > 256
        || device_id.as_ref().is_some_and(|d| d.len() > 128)
    {
        return invalid();
    }
    let put = KosyncPut {
        document: document.clone(),
        progress,
        percentage,
        device,
        device_id,
    };
    match ctx.app.kosync_put(login, put).await {
        Ok(at) => answer(
            StatusCode::OK,
            json!({"document": document, "timestamp": dogear_actors::kosync::unix_seconds(at)}),
        ),
        Err(AppError::BadRequest { .. }) => invalid(),
        Err(e) => failed(&e),
    }
}

async fn get(ctx: &Ctx, login: &KoreaderLogin, document: &str) -> Response {
    if !valid_document(document) {
        return bad_document();
    }
    match ctx.app.kosync_get(login, document).await {
        Ok(Some(r)) => answer(StatusCode::OK, record(r)),
        // KOReader reads "never synced" from a missing `percentage`: `{}`, never a 404.
        Ok(None) => answer(StatusCode::OK, json!({})),
        Err(e) => failed(&e),
    }
}

fn record(r: KosyncRecord) -> Value {
    let mut v = json!({
        "document": r.document,
        "percentage": r.percentage,
        "progress": r.progress,
        "device": r.device,
        "timestamp": r.timestamp,
    });
    if let (Some(id), Some(m)) = (r.device_id, v.as_object_mut()) {
        m.insert("device_id".into(), Value::String(id));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_under_any_prefix() {
        let get = Method::GET;
        assert_eq!(route(&get, "/koreader/users/auth"), Some(Call::Auth));
        assert_eq!(route(&get, "/koreader//users/auth/"), Some(Call::Auth));
        assert_eq!(route(&get, "//koreader/users//auth"), Some(Call::Auth));
        assert_eq!(route(&get, "/users/auth"), Some(Call::Auth));
        assert_eq!(route(&get, "/api/koreader/users/auth"), Some(Call::Auth));
        assert_eq!(
            route(&get, "/koreader/syncs/progress/abc123"),
            Some(Call::Get("abc123".into()))
        );
        assert_eq!(
            route(&Method::PUT, "/kosync/syncs/progress"),
            Some(Call::Put)
        );
        assert_eq!(
            route(&Method::POST, "/koreader/users/create"),
            Some(Call::Create)
        );
        assert_eq!(route(&get, "/koreader/healthcheck"), Some(Call::Health));
        assert_eq!(route(&get, "/koreader/nope"), Some(Call::Unknown));
        assert_eq!(route(&get, "/v1/users/auth"), None);
        assert_eq!(route(&get, "/kobo/x/users/auth"), None);
        assert_eq!(route(&get, "/health"), None);
        assert_eq!(route(&Method::DELETE, "/users/auth"), None);
    }

    #[test]
    fn documents_both_calls_accept() {
        assert!(valid_document("f34024643c82aec13b2fd5eb2842658a"));
        assert!(valid_document("F34024643C82AEC13B2FD5EB2842658A"));
        assert!(!valid_document(""));
        assert!(!valid_document("a:b"));
        assert!(!valid_document(&"a".repeat(129)));
    }
}
