//! `/v1/books/{id}/mine` and `/v1/books/mine/batch`: a reader's own record of each book.

use crate::error::ApiError;
use crate::http::present;
use crate::http::{self, Req};
use crate::{Ctx, wire};
use dogear_actors::mine::{BatchItem, ItemResult, MinePatch};
use dogear_storage::{BookId, BookStatus, Rating, Timestamp, UserId};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::http::header::HeaderValue;
use warp::reply::Response;

macro_rules! mine_body {
    ($name:ident { $($field:ident: $ty:ty),* }) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($field: $ty,)*
            #[serde(default, deserialize_with = "present")]
            status: Option<Option<BookStatus>>,
            #[serde(default, deserialize_with = "present")]
            started_at: Option<Option<Timestamp>>,
            #[serde(default, deserialize_with = "present")]
            finished_at: Option<Option<Timestamp>>,
            #[serde(default, deserialize_with = "present")]
            rating: Option<Option<Rating>>,
            #[serde(default, deserialize_with = "present")]
            review: Option<Option<String>>,
            #[serde(default)]
            favourite: Option<bool>,
            #[serde(default, deserialize_with = "present")]
            loaned_to: Option<Option<String>>,
            #[serde(default, deserialize_with = "present")]
            loaned_at: Option<Option<Timestamp>>,
            #[serde(default, deserialize_with = "present")]
            returned_at: Option<Option<Timestamp>>,
        }

        impl $name {
            fn patch(self) -> MinePatch {
                MinePatch {
                    status: self.status,
                    started_at: self.started_at,
                    finished_at: self.finished_at,
                    rating: self.rating,
                    review: self.review,
                    favourite: self.favourite,
                    loaned_to: self.loaned_to,
                    loaned_at: self.loaned_at,
                    returned_at: self.returned_at,
                }
            }
        }
    };
}

mine_body!(MineBody {});
mine_body!(ItemBody { book_id: BookId });

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    items: Vec<ItemBody>,
}

pub async fn get(ctx: &Ctx, user: UserId, book: BookId) -> Result<Response, ApiError> {
    let r = ctx.app.mine(user, book).await?;
    Ok(http::json(StatusCode::OK, &wire::user_book(&r)))
}

/// `PUT` replaces the whole record (fields left out are cleared); `PATCH` changes the fields
/// given (`null` clears one).
pub async fn write(
    ctx: &Ctx,
    user: UserId,
    book: BookId,
    req: Req,
    whole: bool,
) -> Result<Response, ApiError> {
    // Hide the book from outsiders before looking at their body.
    ctx.app.mine(user, book).await?;
    let body: MineBody = req.json()?;
    let patch = if whole {
        MinePatch::full(body.patch())
    } else {
        body.patch()
    };
    let r = ctx.app.patch_mine(user, book, patch).await?;
    Ok(http::json(StatusCode::OK, &wire::user_book(&r)))
}

pub async fn batch(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let key = match req.headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?
                .to_string(),
        ),
    };
    let body: BatchBody = req.json()?;
    let items: Vec<BatchItem> = body
        .items
        .into_iter()
        .map(|i| BatchItem {
            book_id: i.book_id,
            patch: i.patch(),
        })
        .collect();
    let ids: Vec<BookId> = items.iter().map(|i| i.book_id).collect();
    let answer = ctx.app.mine_batch(user, key, items).await?;
    let results: Vec<_> = answer
        .results
        .iter()
        .zip(ids)
        .map(|(r, id)| match r {
            ItemResult::Done(b) => {
                json!({"book_id": id, "status": 200, "mine": wire::user_book(b)})
            }
            ItemResult::Refused(e) => {
                let e = ApiError::from(e.clone());
                json!({"book_id": id, "status": e.status().as_u16(), "error": e.body()["error"]})
            }
        })
        .collect();
    let mut resp = http::json(
        StatusCode::OK,
        &json!({"results": results, "replayed": answer.replayed}),
    );
    if answer.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}
