//! `GET /v1/books/{id}/reader`: a book as the web reader opens it. Its parts are served
//! under `/read/{token}/...` (`crate::web::read`), where the frame the book renders in can
//! reach them without an `Authorization` header.

use crate::Ctx;
use crate::error::ApiError;
use crate::http;
use dogear_storage::{BookId, UserId};
use warp::http::StatusCode;
use warp::reply::Response;

pub async fn open(ctx: &Ctx, user: UserId, id: BookId) -> Result<Response, ApiError> {
    let book = ctx.app.reader(user, id).await?;
    let mut v = serde_json::to_value(&book)
        .map_err(|e| ApiError::from(dogear_actors::error::AppError::Unavailable(e.to_string())))?;
    v["base"] = serde_json::Value::String(format!("/read/{}/", book.token));
    Ok(http::json(StatusCode::OK, &v))
}
