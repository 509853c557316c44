//! `/v1/auth/*`, `/v1/users/me` (the account people manage themselves) and
//! `/v1/admin/users` (administrators).

use crate::error::ApiError;
use crate::http::present;
use crate::http::{self, Req};
use crate::{Ctx, wire};
use dogear_actors::auth::Session;
use dogear_storage::UserId;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

#[derive(Deserialize)]
struct Register {
    username: String,
    password: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RefreshBody {
    refresh_token: Option<String>,
}

/// The cookie that holds a browser's refresh token (`HttpOnly`: page scripts never see it).
const COOKIE: &str = "dogear_refresh";
/// The routes the cookie is sent to, and only those: one cookie per path.
const COOKIE_PATHS: [&str; 2] = ["/v1/auth/refresh", "/v1/auth/logout"];
/// The header a browser's page sends to ask for (and to use) the cookie. A page on another
/// site cannot send it without a CORS preflight, which Dogear never grants: with
/// `SameSite=Strict`, this is the cookie's CSRF protection.
const SESSION_HEADER: &str = "x-dogear-session";

/// Whether the caller asked for its refresh token in a cookie (a browser's page).
fn wants_cookie(req: &Req) -> bool {
    req.headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cookie"))
}

/// Served over HTTPS (directly configured, or as a proxy in front says).
fn https(ctx: &Ctx, req: &Req) -> bool {
    crate::kobo::public_base(ctx, &req.headers).starts_with("https://")
}

fn set_cookies(resp: &mut Response, value: &str, max_age: i64, secure: bool) {
    for path in COOKIE_PATHS {
        let cookie = format!(
            "{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if secure { "; Secure" } else { "" }
        );
        if let Ok(v) = warp::http::HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(warp::http::header::SET_COOKIE, v);
        }
    }
}

/// A session as JSON; for a page that asked for the cookie, the refresh token goes in the
/// cookie instead of the body.
fn session(ctx: &Ctx, req: &Req, status: StatusCode, s: &Session) -> Response {
    let cookie = wants_cookie(req);
    let mut body = json!({
        "user": wire::user_brief(&s.user_id, &s.username),
        "access_token": s.access_token,
        "refresh_token": s.refresh_token,
        "expires_in": s.expires_in,
        "token_type": "Bearer",
    });
    if cookie {
        body["refresh_token"] = serde_json::Value::Null;
    }
    let mut resp = http::json(status, &body);
    if cookie {
        let ttl = ctx.app.accounts().settings().refresh_ttl_secs;
        set_cookies(&mut resp, &s.refresh_token, ttl, https(ctx, req));
    }
    resp
}

/// The refresh token of a request: in the body (apps), or in the cookie (a page, which must
/// send the session header and, when its browser says where it comes from, come from here).
fn refresh_token(ctx: &Ctx, req: &Req) -> Result<String, ApiError> {
    let body: RefreshBody = if req.body.is_empty() {
        RefreshBody::default()
    } else {
        req.json()?
    };
    if let Some(t) = body.refresh_token {
        return Ok(t);
    }
    let from_cookie = req
        .headers
        .get_all(warp::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string());
    let Some(token) = from_cookie else {
        return Err(ApiError::field(
            "refresh_token",
            "missing: send it in the body, or the session cookie with X-Dogear-Session",
        ));
    };
    if !wants_cookie(req) {
        return Err(ApiError::new(
            crate::error::Code::Forbidden,
            "X-Dogear-Session: cookie is required with the session cookie",
        ));
    }
    if let Some(origin) = req.headers.get("origin").and_then(|v| v.to_str().ok()) {
        let here = crate::kobo::public_base(ctx, &req.headers);
        if origin.trim_end_matches('/') != here.trim_end_matches('/') {
            return Err(ApiError::new(
                crate::error::Code::Forbidden,
                "Origin: the session cookie is only accepted from this server's pages",
            ));
        }
    }
    Ok(token)
}

pub async fn register(ctx: &Ctx, req: Req) -> Result<Response, ApiError> {
    let b: Register = req.json()?;
    let s = ctx
        .app
        .accounts()
        .register(&b.username, &b.password, b.email.as_deref())
        .await?;
    Ok(session(ctx, &req, StatusCode::CREATED, &s))
}

pub async fn login(ctx: &Ctx, req: Req) -> Result<Response, ApiError> {
    let b: Login = req.json()?;
    let addr = req.remote.map(|a| a.ip().to_string());
    let s = ctx
        .app
        .accounts()
        .login(&b.username, &b.password, addr.as_deref())
        .await?;
    Ok(session(ctx, &req, StatusCode::OK, &s))
}

pub async fn refresh(ctx: &Ctx, req: Req) -> Result<Response, ApiError> {
    let token = refresh_token(ctx, &req)?;
    let s = ctx.app.accounts().refresh(&token).await?;
    Ok(session(ctx, &req, StatusCode::OK, &s))
}

pub async fn logout(ctx: &Ctx, req: Req) -> Result<Response, ApiError> {
    let token = refresh_token(ctx, &req)?;
    ctx.app.accounts().logout(&token).await?;
    let mut resp = http::empty(StatusCode::NO_CONTENT);
    if wants_cookie(&req) {
        set_cookies(&mut resp, "", 0, https(ctx, &req));
    }
    Ok(resp)
}

pub async fn me(ctx: &Ctx, user: UserId) -> Result<Response, ApiError> {
    let u = ctx.app.me(user).await?;
    Ok(http::json(StatusCode::OK, &wire::me(&u)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    #[serde(default)]
    username: Option<String>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    #[serde(default)]
    visibility: Option<dogear_storage::Visibility>,
}

pub async fn update_me(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: ProfileBody = req.json()?;
    let patch = dogear_actors::account::ProfilePatch {
        username: b.username,
        email: b.email,
        display_name: b.display_name,
        visibility: b.visibility,
    };
    let u = ctx.app.update_profile(user, patch).await?;
    Ok(http::json(StatusCode::OK, &wire::me(&u)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// Changes the password; every session ends, and the caller gets a new one.
pub async fn change_password(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: PasswordBody = req.json()?;
    let addr = req.remote.map(|a| a.ip().to_string());
    let s = ctx
        .app
        .change_password(user, &b.current_password, &b.new_password, addr.as_deref())
        .await?;
    Ok(session(ctx, &req, StatusCode::OK, &s))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    password: String,
}

pub async fn delete_me(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: DeleteBody = req.json()?;
    let addr = req.remote.map(|a| a.ip().to_string());
    ctx.app
        .delete_account(user, Some(&b.password), addr.as_deref())
        .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub async fn export(ctx: &Ctx, user: UserId) -> Result<Response, ApiError> {
    use warp::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
    let u = ctx.app.me(user).await?;
    let bytes = ctx.app.export_account(user).await?;
    let mut r = http::empty(StatusCode::OK);
    *r.body_mut() = bytes.into();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    // The user name is [a-z0-9_.-] only: nothing to escape.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"dogear-{}-export.zip\"",
        u.username
    )) {
        r.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

pub async fn admin_list(ctx: &Ctx, user: UserId) -> Result<Response, ApiError> {
    let users = ctx.app.admin_users(Some(user)).await?;
    let items: Vec<_> = users.iter().map(wire::account).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn admin_disable(
    ctx: &Ctx,
    user: UserId,
    target: UserId,
    disabled: bool,
) -> Result<Response, ApiError> {
    let u = ctx
        .app
        .admin_set_disabled(Some(user), target, disabled)
        .await?;
    Ok(http::json(StatusCode::OK, &wire::account(&u)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    new_password: String,
}

pub async fn admin_reset_password(
    ctx: &Ctx,
    user: UserId,
    target: UserId,
    req: Req,
) -> Result<Response, ApiError> {
    let b: ResetBody = req.json()?;
    ctx.app
        .admin_reset_password(Some(user), target, &b.new_password)
        .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub async fn admin_delete(ctx: &Ctx, user: UserId, target: UserId) -> Result<Response, ApiError> {
    ctx.app.admin_delete(Some(user), target).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}
