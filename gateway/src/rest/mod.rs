//! The REST API: route table and dispatch. Each submodule turns one resource's JSON into
//! calls on `Dogear` and back.

mod accounts;
mod books;
mod devices;
pub mod files;
mod kobo_tokens;
mod progress;
mod shelves;

use crate::error::ApiError;
use crate::http::{self, Req};
use crate::{Ctx, ops};
use dogear_storage::UserId;
use std::str::FromStr;
use warp::http::header::{ALLOW, HeaderValue};
use warp::http::{Method, StatusCode};
use warp::reply::Response;

/// The route template of a path (the `route` label of the metrics), if any.
fn template(segs: &[&str]) -> Option<&'static str> {
    Some(match segs {
        ["health"] => "/health",
        ["ready"] => "/ready",
        ["metrics"] => "/metrics",
        ["v1", "auth", "register"] => "/v1/auth/register",
        ["v1", "auth", "login"] => "/v1/auth/login",
        ["v1", "auth", "refresh"] => "/v1/auth/refresh",
        ["v1", "auth", "logout"] => "/v1/auth/logout",
        ["v1", "users", "me"] => "/v1/users/me",
        ["v1", "devices"] => "/v1/devices",
        ["v1", "devices", _] => "/v1/devices/{id}",
        ["v1", "libraries"] => "/v1/libraries",
        ["v1", "books"] => "/v1/books",
        ["v1", "books", "upload"] => "/v1/books/upload",
        ["v1", "books", _, "file"] => "/v1/books/{id}/file",
        ["v1", "books", _, "cover"] => "/v1/books/{id}/cover",
        ["v1", "imports"] => "/v1/imports",
        ["v1", "imports", _] => "/v1/imports/{id}",
        ["v1", "books", _] => "/v1/books/{id}",
        ["v1", "books", _, "progress"] => "/v1/books/{id}/progress",
        ["v1", "progress", "changes"] => "/v1/progress/changes",
        ["v1", "sync"] => "/v1/sync",
        ["v1", "kobo", "tokens"] => "/v1/kobo/tokens",
        ["v1", "kobo", "tokens", _] => "/v1/kobo/tokens/{id}",
        ["v1", "shelves"] => "/v1/shelves",
        ["v1", "shelves", _] => "/v1/shelves/{id}",
        ["v1", "shelves", _, "books", _] => "/v1/shelves/{id}/books/{book_id}",
        _ => return None,
    })
}

fn allowed(route: &str) -> &'static str {
    match route {
        "/health"
        | "/ready"
        | "/metrics"
        | "/v1/users/me"
        | "/v1/libraries"
        | "/v1/progress/changes"
        | "/v1/sync"
        | "/v1/books/{id}/file"
        | "/v1/books/{id}/cover"
        | "/v1/imports"
        | "/v1/imports/{id}" => "GET",
        "/v1/devices"
        | "/v1/books"
        | "/v1/books/{id}/progress"
        | "/v1/kobo/tokens"
        | "/v1/shelves" => "GET, POST",
        "/v1/kobo/tokens/{id}" => "DELETE",
        "/v1/shelves/{id}" => "GET, PATCH, DELETE",
        "/v1/shelves/{id}/books/{book_id}" => "PUT, DELETE",
        "/v1/devices/{id}" => "DELETE",
        "/v1/books/{id}" => "GET, PATCH, DELETE",
        _ => "POST",
    }
}

pub async fn dispatch(ctx: &Ctx, req: Req) -> (&'static str, Response) {
    let path = req.path.clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some(route) = template(&segs) else {
        return (
            "unmatched",
            http::error(&ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            )),
        );
    };
    let result = route_request(ctx, route, &segs, req).await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            let mut r = http::error(&e);
            if e.status == StatusCode::METHOD_NOT_ALLOWED {
                r.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allowed(route)));
            }
            r
        }
    };
    (route, resp)
}

async fn route_request(
    ctx: &Ctx,
    route: &'static str,
    segs: &[&str],
    req: Req,
) -> Result<Response, ApiError> {
    let m = req.method.clone();
    match (route, m) {
        ("/health", Method::GET) => Ok(ops::health()),
        ("/ready", Method::GET) => Ok(ops::ready(ctx).await),
        ("/metrics", Method::GET) => Ok(ops::metrics(ctx)),
        ("/v1/auth/register", Method::POST) => accounts::register(ctx, req).await,
        ("/v1/auth/login", Method::POST) => accounts::login(ctx, req).await,
        ("/v1/auth/refresh", Method::POST) => accounts::refresh(ctx, req).await,
        ("/v1/auth/logout", Method::POST) => accounts::logout(ctx, req).await,
        ("/v1/users/me", Method::GET) => accounts::me(ctx, auth(ctx, &req)?).await,
        ("/v1/devices", Method::POST) => devices::create(ctx, auth(ctx, &req)?, req).await,
        ("/v1/devices", Method::GET) => devices::list(ctx, auth(ctx, &req)?).await,
        ("/v1/devices/{id}", Method::DELETE) => {
            let user = auth(ctx, &req)?;
            devices::delete(ctx, user, path_id(segs[2], "device")?).await
        }
        ("/v1/libraries", Method::GET) => books::libraries(ctx, auth(ctx, &req)?).await,
        ("/v1/books", Method::POST) => books::create(ctx, auth(ctx, &req)?, req).await,
        ("/v1/books", Method::GET) => books::list(ctx, auth(ctx, &req)?, req).await,
        ("/v1/books/{id}", m) if m == Method::GET || m == Method::PATCH || m == Method::DELETE => {
            let user = auth(ctx, &req)?;
            let id = path_id(segs[2], "book")?;
            match m {
                Method::GET => books::get(ctx, user, id).await,
                Method::PATCH => books::patch(ctx, user, id, req).await,
                _ => books::delete(ctx, user, id).await,
            }
        }
        ("/v1/books/{id}/file", Method::GET) => {
            let user = auth(ctx, &req)?;
            files::file(ctx, user, path_id(segs[2], "book")?, req).await
        }
        ("/v1/books/{id}/cover", Method::GET) => {
            let user = auth(ctx, &req)?;
            files::cover(ctx, user, path_id(segs[2], "book")?, req).await
        }
        ("/v1/imports", Method::GET) => files::jobs(ctx, auth(ctx, &req)?, req).await,
        ("/v1/imports/{id}", Method::GET) => {
            let user = auth(ctx, &req)?;
            files::job(ctx, user, path_id(segs[2], "import")?).await
        }
        ("/v1/books/{id}/progress", m) if m == Method::GET || m == Method::POST => {
            let user = auth(ctx, &req)?;
            let id = path_id(segs[2], "book")?;
            if m == Method::GET {
                progress::get(ctx, user, id).await
            } else {
                progress::post(ctx, user, id, req).await
            }
        }
        ("/v1/progress/changes", Method::GET) => {
            progress::changes(ctx, auth(ctx, &req)?, req).await
        }
        ("/v1/kobo/tokens", Method::POST) => kobo_tokens::create(ctx, auth(ctx, &req)?, req).await,
        ("/v1/kobo/tokens", Method::GET) => kobo_tokens::list(ctx, auth(ctx, &req)?).await,
        ("/v1/kobo/tokens/{id}", Method::DELETE) => {
            let user = auth(ctx, &req)?;
            kobo_tokens::revoke(ctx, user, path_id(segs[3], "kobo token")?).await
        }
        ("/v1/shelves", Method::GET) => shelves::list(ctx, auth(ctx, &req)?).await,
        ("/v1/shelves", Method::POST) => shelves::create(ctx, auth(ctx, &req)?, req).await,
        ("/v1/shelves/{id}", m)
            if m == Method::GET || m == Method::PATCH || m == Method::DELETE =>
        {
            let user = auth(ctx, &req)?;
            let id = path_id(segs[2], "shelf")?;
            match m {
                Method::GET => shelves::get(ctx, user, id).await,
                Method::PATCH => shelves::patch(ctx, user, id, req).await,
                _ => shelves::delete(ctx, user, id).await,
            }
        }
        ("/v1/shelves/{id}/books/{book_id}", m) if m == Method::PUT || m == Method::DELETE => {
            let user = auth(ctx, &req)?;
            let id = path_id(segs[2], "shelf")?;
            let book = path_id(segs[4], "book")?;
            shelves::book(ctx, user, id, book, m == Method::PUT).await
        }
        // Upgrades are taken before REST routing; this is a plain GET (or a trailing slash).
        ("/v1/sync", Method::GET) => Err(ApiError::bad_request(
            "upgrade: /v1/sync needs a WebSocket upgrade request",
        )),
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method {} is not allowed on {route}", req.method),
        )),
    }
}

pub(crate) fn auth(ctx: &Ctx, req: &Req) -> Result<UserId, ApiError> {
    let token = req
        .bearer()
        .ok_or_else(|| ApiError::unauthorized("Authorization: missing bearer token"))?;
    Ok(ctx.app.accounts().authenticate(token)?)
}

/// An id in the path. A malformed one cannot name anything that exists: 404.
fn path_id<T: FromStr>(s: &str, what: &str) -> Result<T, ApiError> {
    T::from_str(s).map_err(|_| ApiError::not_found(what))
}
