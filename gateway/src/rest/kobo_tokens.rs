//! `/v1/kobo/tokens`: connecting a Kobo (one token per device) and revoking it.

use crate::error::ApiError;
use crate::http::{self, Req};
use crate::{Ctx, kobo};
use dogear_storage::{Device, DeviceId, Timestamp, UserId};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

/// The body that makes a device with a credential (a Kobo token, a KOReader login, an OPDS
/// link): its name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    pub(super) device_name: String,
}

/// `201 {device_id, token, api_endpoint}`: `api_endpoint` is the exact value for
/// `api_endpoint=` in `[OneStoreServices]` of the Kobo's `eReader.conf`. The token is shown
/// this once; only its hash is kept.
pub async fn create(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: NewToken = req.json()?;
    let (device, token) = ctx.app.create_kobo_token(user, &b.device_name).await?;
    let base = kobo::public_base(ctx, &req.headers);
    Ok(http::json(
        StatusCode::CREATED,
        &json!({
            "device_id": device.id,
            "device_name": device.name,
            "token": token,
            "api_endpoint": format!("{base}/kobo/{token}"),
            "created_at": device.created_at,
        }),
    ))
}

pub async fn list(ctx: &Ctx, user: UserId) -> Result<Response, ApiError> {
    let tokens = ctx.app.kobo_tokens(user).await?;
    Ok(listed(tokens.into_iter().map(|(d, t)| (d, t.created_at))))
}

/// `200 {items: [{device_id, device_name, created_at}], next_cursor: null}`: devices that
/// hold a token (a Kobo's, an OPDS link's), never the token.
pub(super) fn listed(tokens: impl Iterator<Item = (Device, Timestamp)>) -> Response {
    let items: Vec<_> = tokens
        .map(|(d, at)| json!({"device_id": d.id, "device_name": d.name, "created_at": at}))
        .collect();
    http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    )
}

pub async fn revoke(ctx: &Ctx, user: UserId, id: DeviceId) -> Result<Response, ApiError> {
    ctx.app.revoke_kobo_token(user, id).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}
