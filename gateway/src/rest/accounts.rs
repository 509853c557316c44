//! `/v1/auth/*` and `/v1/users/me`.

use crate::error::ApiError;
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
