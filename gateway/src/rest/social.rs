//! `/v1/users/{username}` (profiles), following and blocking.

use crate::Ctx;
use crate::error::ApiError;
use crate::http;
use dogear_actors::social::{Profile, ProfileBook};
use dogear_storage::{RelationKind, UserId};
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::Response;

fn book(b: &ProfileBook) -> Value {
    json!({
        "id": b.id,
        "title": b.title,
        "authors": b.authors,
        "status": b.record.status,
        "finished_at": b.record.finished_at,
        "rating": b.record.rating,
        "review": b.record.review,
    })
}

fn profile(p: &Profile) -> Value {
    let u = &p.user;
    let mut v = json!({
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "visibility": u.visibility,
        "you_follow": p.you_follow.map(|s| s.as_str()),
        "follows_you": p.follows_you,
        "visible": p.data.is_some(),
    });
    if let Some(d) = &p.data {
        v["followers_count"] = json!(d.followers);
        v["following_count"] = json!(d.following);
        v["shelves"] = json!(
            d.shelves
                .iter()
                .map(|(s, books)| json!({
                    "id": s.id,
                    "name": s.name,
                    "books": books.iter().map(book).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        );
        v["finished"] = json!(d.finished.iter().map(book).collect::<Vec<_>>());
        v["ratings"] = json!(d.rated.iter().map(book).collect::<Vec<_>>());
    }
    v
}

pub async fn get(ctx: &Ctx, user: UserId, name: &str) -> Result<Response, ApiError> {
    let p = ctx.app.profile(user, name).await?;
    Ok(http::json(StatusCode::OK, &profile(&p)))
}

pub async fn follow(ctx: &Ctx, user: UserId, name: &str) -> Result<Response, ApiError> {
    let state = ctx.app.follow(user, name).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"username": name, "state": state.as_str()}),
    ))
}

pub async fn unfollow(ctx: &Ctx, user: UserId, name: &str) -> Result<Response, ApiError> {
    ctx.app.unfollow(user, name).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `following`, `followers`, `follow-requests` (asking the caller) and `blocks`.
pub async fn list(
    ctx: &Ctx,
    user: UserId,
    kind: RelationKind,
    incoming: bool,
) -> Result<Response, ApiError> {
    let list = ctx.app.relations(user, kind, incoming).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|r| {
            let id = if incoming {
                r.relation.from
            } else {
                r.relation.to
            };
            json!({
                "id": id,
                "username": r.username,
                "display_name": r.display_name,
                "since": r.relation.created_at,
            })
        })
        .collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn answer(
    ctx: &Ctx,
    user: UserId,
    name: &str,
    approve: bool,
) -> Result<Response, ApiError> {
    ctx.app.answer_request(user, name, approve).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub async fn remove_follower(ctx: &Ctx, user: UserId, name: &str) -> Result<Response, ApiError> {
    ctx.app.remove_follower(user, name).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub async fn block(ctx: &Ctx, user: UserId, name: &str, on: bool) -> Result<Response, ApiError> {
    if on {
        ctx.app.block(user, name).await?;
    } else {
        ctx.app.unblock(user, name).await?;
    }
    Ok(http::empty(StatusCode::NO_CONTENT))
}
