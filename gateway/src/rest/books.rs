//! `/v1/libraries` and `/v1/books` (the metadata-only core; files arrive with imports).

use crate::error::ApiError;
use crate::http::present;
use crate::http::{self, Req};
use crate::{Ctx, wire};
use dogear_actors::books::{BookPatch, NewBook};
use dogear_storage::{BookId, BookQuery, BookSort, LibraryId, UserId};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use warp::http::StatusCode;
use warp::reply::Response;

#[derive(Deserialize)]
struct CreateBody {
    title: String,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    identifiers: BTreeMap<String, String>,
    #[serde(default)]
    library_id: Option<LibraryId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    authors: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    language: Option<Option<String>>,
    #[serde(default)]
    identifiers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present")]
    series: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    series_index: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    publisher: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    published: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    /// When the edit was made on the client, and on which of the caller's devices: shared
    /// edits merge field by field on them (later wins, then the greater device id).
    #[serde(default)]
    client_ts: Option<dogear_storage::Timestamp>,
    #[serde(default)]
    device_id: Option<dogear_storage::DeviceId>,
}

pub async fn libraries(ctx: &Ctx, user: UserId) -> Result<Response, ApiError> {
    let libs = ctx.app.libraries(user).await?;
    let items: Vec<_> = libs.iter().map(|(l, r)| wire::library(l, *r)).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn create(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: CreateBody = req.json()?;
    let new = NewBook {
        title: b.title,
        authors: b.authors,
        language: b.language,
        identifiers: b.identifiers,
    };
    let book = ctx.app.create_book(user, b.library_id, new).await?;
    Ok(http::json(StatusCode::CREATED, &wire::book(&book)))
}

pub async fn list(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let limit = req.limit()?;
    let sort = match req.q("sort").unwrap_or("") {
        "" => BookSort::Id,
        "title" => BookSort::Title,
        "author" => BookSort::Author,
        "added" => BookSort::Added,
        "series" => BookSort::Series,
        _ => {
            return Err(ApiError::field(
                "sort",
                "must be one of title, author, added, series",
            ));
        }
    };
    let after = req
        .q("cursor")
        .filter(|s| !s.is_empty())
        .map(|c| {
            wire::parse_book_cursor(sort, c).ok_or_else(|| {
                ApiError::field("cursor", "is not a valid cursor for this sort order")
            })
        })
        .transpose()?;
    let library: Option<LibraryId> = req.opt_id("library_id", "must be a library id")?;
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match req.q(k).map(str::trim).filter(|s| !s.is_empty()) {
            Some(v) if v.len() > 512 => Err(ApiError::field(k, "must be at most 512 bytes")),
            v => Ok(v.map(str::to_string)),
        }
    };
    let flag = |k: &str| -> Result<Option<bool>, ApiError> {
        match req.q(k) {
            None | Some("") => Ok(None),
            Some("true") | Some("1") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(_) => Err(ApiError::field(k, "must be true or false")),
        }
    };
    let status = match req.q("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(dogear_storage::BookStatus::parse(s).ok_or_else(|| {
            ApiError::field(
                "status",
                "must be one of want_to_read, reading, finished, abandoned",
            )
        })?),
    };
    let format = match req.q("format").filter(|s| !s.is_empty()) {
        None => None,
        Some(f) => Some(
            dogear_storage::Format::parse(f)
                .ok_or_else(|| ApiError::field("format", "must be one of epub, kepub, pdf, cbz"))?,
        ),
    };
    let mine = dogear_storage::MineFilter {
        user: Some(user),
        status,
        favourite: flag("favourite")?,
        rated: flag("rated")?,
    };
    let query = BookQuery {
        mine: (!mine.is_empty()).then_some(mine),
        q: text("q")?,
        author: text("author")?,
        series: text("series")?,
        tag: text("tag")?,
        format,
        descending: match req.q("order").unwrap_or("") {
            "" | "asc" => false,
            "desc" => sort != BookSort::Id,
            _ => return Err(ApiError::field("order", "must be asc or desc")),
        },
        sort,
        after,
        limit,
        ..Default::default()
    };
    let (books, next) = ctx.app.list_books(user, library, query).await?;
    let items: Vec<_> = books.iter().map(wire::book).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": next.map(|n| wire::book_cursor(sort, &n))}),
    ))
}

pub async fn get(ctx: &Ctx, user: UserId, id: BookId) -> Result<Response, ApiError> {
    let book = ctx.app.book(user, id).await?;
    Ok(http::json(StatusCode::OK, &wire::book(&book)))
}

pub async fn patch(ctx: &Ctx, user: UserId, id: BookId, req: Req) -> Result<Response, ApiError> {
    // Hide the book's existence from outsiders before looking at their body.
    ctx.app.book(user, id).await?;
    let b: PatchBody = req.json()?;
    let patch = BookPatch {
        title: b.title,
        authors: b.authors,
        language: b.language,
        identifiers: b.identifiers,
        series: b.series,
        series_index: b.series_index,
        publisher: b.publisher,
        published: b.published,
        description: b.description,
        tags: b.tags,
        clock: None,
    };
    let patch = BookPatch {
        clock: match (b.client_ts, b.device_id) {
            (None, None) => None,
            (at, device) => {
                if let Some(d) = device
                    && !ctx.app.has_device(user, d).await?
                {
                    return Err(ApiError::field("device_id", "is not one of your devices"));
                }
                Some(dogear_storage::FieldClock {
                    at: at.unwrap_or_else(dogear_storage::Timestamp::now),
                    device,
                })
            }
        },
        ..patch
    };
    let book = ctx.app.update_book(user, id, patch).await?;
    Ok(http::json(StatusCode::OK, &wire::book(&book)))
}

pub async fn delete(ctx: &Ctx, user: UserId, id: BookId) -> Result<Response, ApiError> {
    ctx.app.delete_book(user, id).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `GET /v1/facets/{kind}`: every author, series, tag or language of the caller's books
/// (or one library's) with how many books have it: what a filter offers.
pub async fn facets(ctx: &Ctx, user: UserId, kind: &str, req: Req) -> Result<Response, ApiError> {
    let facet = match kind {
        "authors" => dogear_storage::BookFacet::Author,
        "series" => dogear_storage::BookFacet::Series,
        "tags" => dogear_storage::BookFacet::Tag,
        "languages" => dogear_storage::BookFacet::Language,
        _ => return Err(ApiError::not_found("facet")),
    };
    let library: Option<LibraryId> = req.opt_id("library_id", "must be a library id")?;
    let list = ctx.app.book_facets(user, library, facet).await?;
    let items: Vec<_> = list
        .iter()
        .map(|(value, count)| json!({"value": value, "count": count}))
        .collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    ))
}
