//! `/v1/books/{id}/progress` and `/v1/progress/changes`.

use crate::Ctx;
use crate::error::ApiError;
use crate::http::{self, Req};
use crate::wire::{self, ProgressBody};
use dogear_storage::{BookId, UserId};
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

pub async fn post(ctx: &Ctx, user: UserId, book: BookId, req: Req) -> Result<Response, ApiError> {
    let body: ProgressBody = req.json()?;
    let outcome = ctx
        .app
        .write_progress(user, body.into_write(book), None)
        .await?;
    Ok(http::json(StatusCode::OK, &wire::write_outcome(&outcome)))
}

pub async fn get(ctx: &Ctx, user: UserId, book: BookId) -> Result<Response, ApiError> {
    let view = ctx.app.progress(user, book).await?;
    Ok(http::json(StatusCode::OK, &wire::progress_view(&view)))
}

pub async fn changes(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let limit = req.limit()?;
    let after = req
        .q("cursor")
        .filter(|s| !s.is_empty())
        .map(|c| wire::parse_cursor("cursor", c))
        .transpose()?;
    let (items, next) = ctx.app.changes(user, after, limit).await?;
    let items: Vec<_> = items.iter().map(|(_, s)| wire::state(s)).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": wire::cursor(next)}),
    ))
}
