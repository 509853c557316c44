//! `/v1/devices`.

use crate::error::ApiError;
use crate::http::{self, Req};
use crate::{Ctx, wire};
use dogear_storage::{DeviceId, DeviceKind, UserId};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

#[derive(Deserialize)]
struct NewDevice {
    name: String,
    kind: DeviceKind,
}

pub async fn create(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: NewDevice = req.json()?;
    let d = ctx.app.create_device(user, &b.name, b.kind).await?;
    Ok(http::json(StatusCode::CREATED, &wire::device(&d)))
}

pub async fn list(ctx: &Ctx, user: UserId) -> Result<Response, ApiError> {
    let devices = ctx.app.devices(user).await?;
    let items: Vec<_> = devices.iter().map(wire::device).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn delete(ctx: &Ctx, user: UserId, id: DeviceId) -> Result<Response, ApiError> {
    ctx.app.delete_device(user, id).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}
