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

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

fn session(status: StatusCode, s: &Session) -> Response {
    http::json(
        status,
        &json!({
            "user": wire::user_brief(&s.user_id, &s.username),
            "access_token": s.access_token,
            "refresh_token": s.refresh_token,
            "expires_in": s.expires_in,
            "token_type": "Bearer",
        }),
    )
}

pub async fn register(ctx: &Ctx, req: Req) -> Result<Response, ApiError> {
    let b: Register = req.json()?;
    let s = ctx
        .app
        .accounts()
        .register(&b.username, &b.password, b.email.as_deref())
        .await?;
    Ok(session(StatusCode::CREATED, &s))
}

pub async fn login(ctx: &Ctx, req: Req) -> Result<Response, ApiError> {
    let b: Login = req.json()?;
    let addr = req.remote.map(|a| a.ip().to_string());
    let s = ctx
        .app
        .accounts()
        .login(&b.username, &b.password, addr.as_deref())
        .await?;
    Ok(session(StatusCode::OK, &s))
}

pub async fn refresh(ctx: &Ctx, req: Req) -> Result<Response, ApiError> {
    let b: RefreshBody = req.json()?;
    let s = ctx.app.accounts().refresh(&b.refresh_token).await?;
    Ok(session(StatusCode::OK, &s))
}

pub async fn logout(ctx: &Ctx, req: Req) -> Result<Response, ApiError> {
    let b: RefreshBody = req.json()?;
    ctx.app.accounts().logout(&b.refresh_token).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
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
    Ok(session(StatusCode::OK, &s))
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
