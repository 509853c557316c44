//! `/v1/opds/tokens`: catalog URLs with a token in them, for OPDS apps that cannot send a
//! password (and apps that fetch covers without one), one device each; revoking them.

use crate::error::ApiError;
use crate::http::{self, Req};
use crate::{Ctx, kobo};
use dogear_storage::{DeviceId, UserId};
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

/// `201 {device_id, device_name, token, catalog_v1, catalog_v2, created_at}`: the catalog
/// URLs to give the app. The token is shown this once; only its hash is kept.
pub async fn create(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: super::kobo_tokens::NewToken = req.json()?;
    let (device, token) = ctx.app.create_opds_token(user, &b.device_name).await?;
    let base = kobo::public_base(ctx, &req.headers);
    Ok(http::json(
        StatusCode::CREATED,
        &json!({
            "device_id": device.id,
            "device_name": device.name,
            "token": token,
            "catalog_v1": format!("{base}/opds/t/{token}/v1.2/catalog"),
            "catalog_v2": format!("{base}/opds/t/{token}/v2/catalog"),
            "created_at": device.created_at,
        }),
    ))
}

pub async fn list(ctx: &Ctx, user: UserId) -> Result<Response, ApiError> {
    let tokens = ctx.app.opds_tokens(user).await?;
    Ok(super::kobo_tokens::listed(
        tokens.into_iter().map(|(d, t)| (d, t.created_at)),
    ))
}

pub async fn revoke(ctx: &Ctx, user: UserId, id: DeviceId) -> Result<Response, ApiError> {
    ctx.app.revoke_opds_token(user, id).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}
