//! `/v1/shelves`: a user's shelves (Kobo collections on the device, both ways).

use crate::Ctx;
use crate::error::ApiError;
use crate::http::{self, Req};
use dogear_actors::shelves::ShelfOp;
use dogear_storage::{BookId, LibraryId, Shelf, ShelfId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::Response;

pub fn shelf_json(s: &Shelf) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "book_ids": s.books,
        "library_id": s.library_id,
        "public": s.public,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewShelf {
    name: String,
    #[serde(default)]
    book_ids: Vec<BookId>,
    /// A shelf of this library (owner or editor) instead of the caller's own.
    #[serde(default)]
    library_id: Option<LibraryId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShelfPatch {
    #[serde(default)]
    name: Option<String>,
    /// Shown on the owner's profile.
    #[serde(default)]
    public: Option<bool>,
}

pub async fn list(ctx: &Ctx, user: UserId) -> Result<Response, ApiError> {
    let items: Vec<Value> = ctx
        .app
        .shelves(user)
        .await?
        .iter()
        .map(shelf_json)
        .collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn create(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: NewShelf = req.json()?;
    if let Some(library) = b.library_id {
        let s = ctx
            .app
            .create_library_shelf(user, library, &b.name, &b.book_ids)
            .await?;
        return Ok(http::json(StatusCode::CREATED, &shelf_json(&s)));
    }
    let books = ctx
        .app
        .readable_books(user, &b.book_ids, Some("book_ids"))
        .await?;
    let s = ctx
        .app
        .change_shelf(
            user,
            ShelfOp::Create {
                name: b.name,
                books,
            },
        )
        .await?;
    Ok(http::json(StatusCode::CREATED, &shelf_json(&s)))
}

pub async fn get(ctx: &Ctx, user: UserId, id: ShelfId) -> Result<Response, ApiError> {
    let s = ctx.app.shelf(user, id).await?;
    Ok(http::json(StatusCode::OK, &shelf_json(&s)))
}

pub async fn patch(ctx: &Ctx, user: UserId, id: ShelfId, req: Req) -> Result<Response, ApiError> {
    let b: ShelfPatch = req.json()?;
    if b.name.is_none() && b.public.is_none() {
        return Err(ApiError::field("body", "give name or public"));
    }
    let mut s = ctx.app.shelf(user, id).await?;
    if let Some(name) = b.name {
        s = ctx
            .app
            .change_shelf(user, ShelfOp::Rename { id, name })
            .await?;
    }
    if let Some(public) = b.public {
        s = ctx
            .app
            .change_shelf(user, ShelfOp::SetPublic { id, public })
            .await?;
    }
    Ok(http::json(StatusCode::OK, &shelf_json(&s)))
}

pub async fn delete(ctx: &Ctx, user: UserId, id: ShelfId) -> Result<Response, ApiError> {
    ctx.app.change_shelf(user, ShelfOp::Delete { id }).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `PUT` puts the book on the shelf, `DELETE` takes it off; both answer the shelf.
pub async fn book(
    ctx: &Ctx,
    user: UserId,
    id: ShelfId,
    book: BookId,
    put: bool,
) -> Result<Response, ApiError> {
    let op = if put {
        ctx.app.book(user, book).await?;
        ShelfOp::Add {
            id,
            books: vec![book],
        }
    } else {
        ShelfOp::Remove {
            id,
            books: vec![book],
        }
    };
    let s = ctx.app.change_shelf(user, op).await?;
    Ok(http::json(StatusCode::OK, &shelf_json(&s)))
}

/// `GET /v1/shelves/{id}/books`: the shelf's books in its order, paged (`cursor` is the
/// position to go on from).
pub async fn books(ctx: &Ctx, user: UserId, id: ShelfId, req: Req) -> Result<Response, ApiError> {
    let limit = req.limit()?;
    let from: usize = match req.q("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::field("cursor", "is not a valid cursor for this shelf"))?,
    };
    let shelf = ctx.app.shelf(user, id).await?;
    let start = from.min(shelf.books.len());
    let end = start.saturating_add(limit).min(shelf.books.len());
    let books = ctx
        .app
        .books_in_order(user, &shelf.books[start..end])
        .await?;
    let items: Vec<Value> = books.iter().map(crate::wire::book).collect();
    let next = (end < shelf.books.len()).then(|| end.to_string());
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": next}),
    ))
}
