//! `/v1/koreader/credentials`: KOReader logins (one device each) and revoking them.

use crate::error::ApiError;
use crate::http::{self, Req};
use crate::{Ctx, kobo};
use dogear_storage::{DeviceId, UserId};
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

/// `201 {device_id, username, password, sync_url}`: what to type into KOReader's "Progress
/// sync" (custom sync server, then login). The password is shown this once; only a slow hash
/// of its MD5 (the key KOReader sends) is kept.
pub async fn create(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: super::kobo_tokens::NewToken = req.json()?;
    let (device, username, password) = ctx.app.create_koreader_login(user, &b.device_name).await?;
    let base = kobo::public_base(ctx, &req.headers);
    Ok(http::json(
        StatusCode::CREATED,
        &json!({
            "device_id": device.id,
            "device_name": device.name,
            "username": username,
            "password": password,
            "sync_url": format!("{base}/koreader"),
            "created_at": device.created_at,
        }),
    ))
}

pub async fn list(ctx: &Ctx, user: UserId) -> Result<Response, ApiError> {
    let items: Vec<_> = ctx
        .app
        .koreader_logins(user)
        .await?
        .into_iter()
        .map(|(d, l)| {
            json!({
                "device_id": d.id,
                "device_name": d.name,
                "username": l.username,
                "created_at": l.created_at,
            })
        })
        .collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn revoke(ctx: &Ctx, user: UserId, id: DeviceId) -> Result<Response, ApiError> {
    ctx.app.revoke_koreader_login(user, id).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}
