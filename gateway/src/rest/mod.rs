//! The REST API: one route table and its dispatch. Each submodule turns one resource's JSON
//! into calls on `Dogear` and back.
//!
//! [`ROUTES`] is the only place a route is declared: the dispatcher, the `Allow` header of a
//! `405`, the `route` label of the metrics and the test that keeps `docs/openapi.yaml` complete
//! all read it.

mod accounts;
mod books;
mod devices;
mod docs;
pub use docs::doc as doc_json;
pub mod files;
mod kobo_tokens;
mod koreader;
mod libraries;
mod mine;
mod opds_tokens;
mod progress;
mod reader;
mod shelves;
mod social;

use crate::error::{ApiError, Code};
use crate::http::{self, Req};
use crate::{Ctx, ops};
use dogear_storage::{DocKind, RelationKind, UserId};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use warp::http::Method;
use warp::http::header::{ALLOW, HeaderValue};
use warp::reply::Response;

/// What a handler returns: a boxed future, so handlers of every shape fit one table.
type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>;
type Handler = for<'a> fn(&'a Ctx, Params, Req) -> Reply<'a>;

/// One route: a method, a path template (`{name}` matches one segment) and its handler.
pub struct Route {
    pub method: Method,
    pub template: &'static str,
    /// `None` for the two routes taken before the table because they need the raw request:
    /// uploads (the body is streamed to disk) and the WebSocket upgrade.
    handler: Option<Handler>,
}

/// The values of a template's `{...}` segments, in order.
pub struct Params(Vec<String>);

impl Params {
    /// Parameter `i` as text (a user name).
    fn text(&self, i: usize) -> &str {
        self.0.get(i).map(String::as_str).unwrap_or_default()
    }

    /// Parameter `i` as an id. A malformed id cannot name anything that exists: `404`.
    fn id<T: FromStr>(&self, i: usize, what: &str) -> Result<T, ApiError> {
        self.0
            .get(i)
            .and_then(|s| T::from_str(s).ok())
            .ok_or_else(|| ApiError::not_found(what))
    }
}

macro_rules! route {
    ($method:ident $template:literal, |$ctx:ident, $p:ident, $req:ident| $body:expr) => {
        Route {
            method: Method::$method,
            template: $template,
            handler: Some({
                #[allow(unused_variables)]
                fn handler<'a>($ctx: &'a Ctx, $p: Params, $req: Req) -> Reply<'a> {
                    Box::pin(async move { $body })
                }
                handler as Handler
            }),
        }
    };
    ($method:ident $template:literal, taken_before_the_table) => {
        Route {
            method: Method::$method,
            template: $template,
            handler: None,
        }
    };
}

/// Every REST route Dogear serves. The Kobo store protocol (`/kobo/<token>/...`) and the
/// reading-services calls (`/api/...`) are the device's protocol, routed in `crate::kobo`.
pub static ROUTES: &[Route] = &[
    route!(GET "/health", |ctx, p, req| Ok(ops::health())),
    route!(GET "/ready", |ctx, p, req| Ok(ops::ready(ctx).await)),
    route!(GET "/metrics", |ctx, p, req| Ok(ops::metrics(ctx))),
    route!(GET "/v1/cluster", |ctx, p, req| ops::cluster(ctx, auth(ctx, &req)?).await),
    route!(POST "/v1/auth/register", |ctx, p, req| accounts::register(ctx, req).await),
    route!(POST "/v1/auth/login", |ctx, p, req| accounts::login(ctx, req).await),
    route!(POST "/v1/auth/refresh", |ctx, p, req| accounts::refresh(ctx, req).await),
    route!(POST "/v1/auth/logout", |ctx, p, req| accounts::logout(ctx, req).await),
    route!(GET "/v1/users/me", |ctx, p, req| accounts::me(ctx, auth(ctx, &req)?).await),
    route!(PATCH "/v1/users/me", |ctx, p, req| {
        accounts::update_me(ctx, auth(ctx, &req)?, req).await
    }),
    route!(DELETE "/v1/users/me", |ctx, p, req| {
        accounts::delete_me(ctx, auth(ctx, &req)?, req).await
    }),
    route!(POST "/v1/users/me/password", |ctx, p, req| {
        accounts::change_password(ctx, auth(ctx, &req)?, req).await
    }),
    route!(GET "/v1/users/me/export", |ctx, p, req| {
        accounts::export(ctx, auth(ctx, &req)?).await
    }),
    route!(GET "/v1/users/me/following", |ctx, p, req| {
        social::list(ctx, auth(ctx, &req)?, RelationKind::Follow, false).await
    }),
    route!(GET "/v1/users/me/followers", |ctx, p, req| {
        social::list(ctx, auth(ctx, &req)?, RelationKind::Follow, true).await
    }),
    route!(DELETE "/v1/users/me/followers/{username}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        social::remove_follower(ctx, user, p.text(0)).await
    }),
    route!(GET "/v1/users/me/follow-requests", |ctx, p, req| {
        social::list(ctx, auth(ctx, &req)?, RelationKind::Request, true).await
    }),
    route!(POST "/v1/users/me/follow-requests/{username}/approve", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        social::answer(ctx, user, p.text(0), true).await
    }),
    route!(POST "/v1/users/me/follow-requests/{username}/reject", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        social::answer(ctx, user, p.text(0), false).await
    }),
    route!(GET "/v1/users/me/blocks", |ctx, p, req| {
        social::list(ctx, auth(ctx, &req)?, RelationKind::Block, false).await
    }),
    route!(GET "/v1/users/{username}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        social::get(ctx, user, p.text(0)).await
    }),
    route!(POST "/v1/users/{username}/follow", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        social::follow(ctx, user, p.text(0)).await
    }),
    route!(DELETE "/v1/users/{username}/follow", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        social::unfollow(ctx, user, p.text(0)).await
    }),
    route!(POST "/v1/users/{username}/block", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        social::block(ctx, user, p.text(0), true).await
    }),
    route!(DELETE "/v1/users/{username}/block", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        social::block(ctx, user, p.text(0), false).await
    }),
    route!(GET "/v1/admin/users", |ctx, p, req| {
        accounts::admin_list(ctx, auth(ctx, &req)?).await
    }),
    route!(POST "/v1/admin/users/{id}/disable", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        accounts::admin_disable(ctx, user, p.id(0, "user")?, true).await
    }),
    route!(POST "/v1/admin/users/{id}/enable", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        accounts::admin_disable(ctx, user, p.id(0, "user")?, false).await
    }),
    route!(POST "/v1/admin/users/{id}/password", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        accounts::admin_reset_password(ctx, user, p.id(0, "user")?, req).await
    }),
    route!(DELETE "/v1/admin/users/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        accounts::admin_delete(ctx, user, p.id(0, "user")?).await
    }),
    route!(POST "/v1/devices", |ctx, p, req| devices::create(ctx, auth(ctx, &req)?, req).await),
    route!(GET "/v1/devices", |ctx, p, req| devices::list(ctx, auth(ctx, &req)?).await),
    route!(DELETE "/v1/devices/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        devices::delete(ctx, user, p.id(0, "device")?).await
    }),
    route!(GET "/v1/libraries", |ctx, p, req| books::libraries(ctx, auth(ctx, &req)?).await),
    route!(POST "/v1/libraries", |ctx, p, req| {
        libraries::create(ctx, auth(ctx, &req)?, req).await
    }),
    route!(POST "/v1/libraries/join", |ctx, p, req| {
        libraries::join(ctx, auth(ctx, &req)?, req).await
    }),
    route!(GET "/v1/libraries/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::get(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(PATCH "/v1/libraries/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::rename(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(DELETE "/v1/libraries/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::delete(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(GET "/v1/libraries/{id}/members", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::members(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(PATCH "/v1/libraries/{id}/members/{user_id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        let ids = (p.id(0, "library")?, p.id(1, "member")?);
        libraries::set_role(ctx, user, ids, req).await
    }),
    route!(DELETE "/v1/libraries/{id}/members/{user_id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        let ids = (p.id(0, "library")?, p.id(1, "member")?);
        libraries::remove_member(ctx, user, ids, req).await
    }),
    route!(POST "/v1/libraries/{id}/invites", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::create_invite(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(GET "/v1/libraries/{id}/invites", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::invites(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(DELETE "/v1/libraries/{id}/invites/{invite_id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        let ids = (p.id(0, "library")?, p.id(1, "invite")?);
        libraries::revoke_invite(ctx, user, ids, req).await
    }),
    route!(POST "/v1/libraries/{id}/transfer", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::offer(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(POST "/v1/libraries/{id}/transfer/accept", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::accept(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(GET "/v1/libraries/{id}/changes", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::changes(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(GET "/v1/libraries/{id}/audit", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        libraries::audit(ctx, user, p.id(0, "library")?, req).await
    }),
    route!(POST "/v1/books", |ctx, p, req| books::create(ctx, auth(ctx, &req)?, req).await),
    route!(GET "/v1/books", |ctx, p, req| books::list(ctx, auth(ctx, &req)?, req).await),
    route!(POST "/v1/books/upload", taken_before_the_table),
    route!(GET "/v1/books/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        books::get(ctx, user, p.id(0, "book")?).await
    }),
    route!(PATCH "/v1/books/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        books::patch(ctx, user, p.id(0, "book")?, req).await
    }),
    route!(DELETE "/v1/books/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        books::delete(ctx, user, p.id(0, "book")?).await
    }),
    route!(GET "/v1/books/{id}/file", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        files::file(ctx, user, p.id(0, "book")?, req).await
    }),
    route!(GET "/v1/books/{id}/cover", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        files::cover(ctx, user, p.id(0, "book")?, req).await
    }),
    route!(GET "/v1/facets/{kind}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        books::facets(ctx, user, p.text(0), req).await
    }),
    route!(GET "/v1/books/{id}/reader", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        reader::open(ctx, user, p.id(0, "book")?).await
    }),
    route!(GET "/v1/imports", |ctx, p, req| files::jobs(ctx, auth(ctx, &req)?, req).await),
    route!(GET "/v1/imports/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        files::job(ctx, user, p.id(0, "import")?).await
    }),
    route!(GET "/v1/books/{id}/mine", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        mine::get(ctx, user, p.id(0, "book")?).await
    }),
    route!(PUT "/v1/books/{id}/mine", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        mine::write(ctx, user, p.id(0, "book")?, req, true).await
    }),
    route!(PATCH "/v1/books/{id}/mine", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        mine::write(ctx, user, p.id(0, "book")?, req, false).await
    }),
    route!(POST "/v1/books/mine/batch", |ctx, p, req| {
        mine::batch(ctx, auth(ctx, &req)?, req).await
    }),
    route!(POST "/v1/notes", |ctx, p, req| {
        docs::create(ctx, auth(ctx, &req)?, DocKind::Note, None, req).await
    }),
    route!(GET "/v1/notes", |ctx, p, req| {
        docs::list(ctx, auth(ctx, &req)?, DocKind::Note, None, req).await
    }),
    route!(POST "/v1/notes/push", |ctx, p, req| {
        docs::push(ctx, auth(ctx, &req)?, DocKind::Note, req).await
    }),
    route!(GET "/v1/notes/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::get(ctx, user, DocKind::Note, p.id(0, "note")?).await
    }),
    route!(PATCH "/v1/notes/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::patch(ctx, user, DocKind::Note, p.id(0, "note")?, req).await
    }),
    route!(DELETE "/v1/notes/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::delete(ctx, user, DocKind::Note, p.id(0, "note")?, req).await
    }),
    route!(POST "/v1/todos", |ctx, p, req| {
        docs::create(ctx, auth(ctx, &req)?, DocKind::Todo, None, req).await
    }),
    route!(GET "/v1/todos", |ctx, p, req| {
        docs::list(ctx, auth(ctx, &req)?, DocKind::Todo, None, req).await
    }),
    route!(POST "/v1/todos/push", |ctx, p, req| {
        docs::push(ctx, auth(ctx, &req)?, DocKind::Todo, req).await
    }),
    route!(GET "/v1/todos/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::get(ctx, user, DocKind::Todo, p.id(0, "todo")?).await
    }),
    route!(PATCH "/v1/todos/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::patch(ctx, user, DocKind::Todo, p.id(0, "todo")?, req).await
    }),
    route!(DELETE "/v1/todos/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::delete(ctx, user, DocKind::Todo, p.id(0, "todo")?, req).await
    }),
    route!(POST "/v1/books/{id}/annotations", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        let book = p.id(0, "book")?;
        docs::create(ctx, user, DocKind::Annotation, Some(book), req).await
    }),
    route!(GET "/v1/books/{id}/annotations", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        let book = p.id(0, "book")?;
        docs::list(ctx, user, DocKind::Annotation, Some(book), req).await
    }),
    route!(GET "/v1/books/{id}/annotations/export", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::export(ctx, user, p.id(0, "book")?, req).await
    }),
    route!(GET "/v1/annotations", |ctx, p, req| {
        docs::list(ctx, auth(ctx, &req)?, DocKind::Annotation, None, req).await
    }),
    route!(POST "/v1/annotations/push", |ctx, p, req| {
        docs::push(ctx, auth(ctx, &req)?, DocKind::Annotation, req).await
    }),
    route!(GET "/v1/annotations/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::get(ctx, user, DocKind::Annotation, p.id(0, "annotation")?).await
    }),
    route!(PATCH "/v1/annotations/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::patch(ctx, user, DocKind::Annotation, p.id(0, "annotation")?, req).await
    }),
    route!(DELETE "/v1/annotations/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        docs::delete(ctx, user, DocKind::Annotation, p.id(0, "annotation")?, req).await
    }),
    route!(GET "/v1/books/{id}/progress", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        progress::get(ctx, user, p.id(0, "book")?).await
    }),
    route!(POST "/v1/books/{id}/progress", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        progress::post(ctx, user, p.id(0, "book")?, req).await
    }),
    route!(GET "/v1/progress/changes", |ctx, p, req| {
        progress::changes(ctx, auth(ctx, &req)?, req).await
    }),
    // Upgrades are taken before the table; what reaches it is a plain GET.
    route!(GET "/v1/sync", |ctx, p, req| Err(ApiError::bad_request(
        "upgrade: /v1/sync needs a WebSocket upgrade request",
    ))),
    route!(POST "/v1/kobo/tokens", |ctx, p, req| {
        kobo_tokens::create(ctx, auth(ctx, &req)?, req).await
    }),
    route!(GET "/v1/kobo/tokens", |ctx, p, req| kobo_tokens::list(ctx, auth(ctx, &req)?).await),
    route!(DELETE "/v1/kobo/tokens/{device_id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        kobo_tokens::revoke(ctx, user, p.id(0, "kobo token")?).await
    }),
    route!(POST "/v1/koreader/credentials", |ctx, p, req| {
        koreader::create(ctx, auth(ctx, &req)?, req).await
    }),
    route!(GET "/v1/koreader/credentials", |ctx, p, req| {
        koreader::list(ctx, auth(ctx, &req)?).await
    }),
    route!(DELETE "/v1/koreader/credentials/{device_id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        koreader::revoke(ctx, user, p.id(0, "koreader login")?).await
    }),
    route!(POST "/v1/opds/tokens", |ctx, p, req| {
        opds_tokens::create(ctx, auth(ctx, &req)?, req).await
    }),
    route!(GET "/v1/opds/tokens", |ctx, p, req| {
        opds_tokens::list(ctx, auth(ctx, &req)?).await
    }),
    route!(DELETE "/v1/opds/tokens/{device_id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        opds_tokens::revoke(ctx, user, p.id(0, "opds token")?).await
    }),
    route!(GET "/v1/shelves", |ctx, p, req| shelves::list(ctx, auth(ctx, &req)?).await),
    route!(POST "/v1/shelves", |ctx, p, req| shelves::create(ctx, auth(ctx, &req)?, req).await),
    route!(GET "/v1/shelves/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        shelves::get(ctx, user, p.id(0, "shelf")?).await
    }),
    route!(PATCH "/v1/shelves/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        shelves::patch(ctx, user, p.id(0, "shelf")?, req).await
    }),
    route!(DELETE "/v1/shelves/{id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        shelves::delete(ctx, user, p.id(0, "shelf")?).await
    }),
    route!(GET "/v1/shelves/{id}/books", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        shelves::books(ctx, user, p.id(0, "shelf")?, req).await
    }),
    route!(PUT "/v1/shelves/{id}/books/{book_id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        shelves::book(ctx, user, p.id(0, "shelf")?, p.id(1, "book")?, true).await
    }),
    route!(DELETE "/v1/shelves/{id}/books/{book_id}", |ctx, p, req| {
        let user = auth(ctx, &req)?;
        shelves::book(ctx, user, p.id(0, "shelf")?, p.id(1, "book")?, false).await
    }),
];

/// The template `segs` matches and its parameters; the most literal template wins, so
/// `/v1/books/upload` is not `/v1/books/{id}`.
fn find(segs: &[&str]) -> Option<(&'static str, Params)> {
    /// Each route's template split once into segments (every request is matched against all).
    static SPLIT: std::sync::LazyLock<Vec<Vec<&'static str>>> = std::sync::LazyLock::new(|| {
        ROUTES
            .iter()
            .map(|r| r.template.trim_start_matches('/').split('/').collect())
            .collect()
    });
    let mut best: Option<(usize, &'static str, Params)> = None;
    for (r, parts) in ROUTES.iter().zip(SPLIT.iter()) {
        if parts.len() != segs.len() {
            continue;
        }
        let fits = parts
            .iter()
            .zip(segs)
            .all(|(t, s)| t.starts_with('{') || t == s);
        let literal = parts.iter().filter(|t| !t.starts_with('{')).count();
        if fits && best.as_ref().is_none_or(|(n, ..)| literal > *n) {
            let params = parts
                .iter()
                .zip(segs)
                .filter(|(t, _)| t.starts_with('{'))
                .map(|(_, s)| (*s).to_string())
                .collect();
            best = Some((literal, r.template, Params(params)));
        }
    }
    best.map(|(_, t, p)| (t, p))
}

/// The methods a template has, for `Allow`.
fn allowed(template: &str) -> String {
    const ORDER: [Method; 5] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let mut methods: Vec<&Method> = ROUTES
        .iter()
        .filter(|r| r.template == template)
        .map(|r| &r.method)
        .collect();
    methods.sort_by_key(|m| ORDER.iter().position(|o| o == *m));
    let names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
    names.join(", ")
}

/// The route template of a path (the `route` label of the metrics), if any.
pub fn template(path: &str) -> Option<&'static str> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    find(&segs).map(|(t, _)| t)
}

pub async fn dispatch(ctx: &Ctx, req: Req) -> (&'static str, Response) {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let Some((template, params)) = find(&segs) else {
        return (
            "unmatched",
            http::error(&ApiError::new(Code::NotFound, "no such route")),
        );
    };
    let route = ROUTES
        .iter()
        .find(|r| r.template == template && r.method == req.method);
    let result = match route.and_then(|r| r.handler) {
        Some(handler) => handler(ctx, params, req).await,
        // Only uploads have no handler, and they are taken before the table.
        None if route.is_some() => Err(ApiError::new(Code::NotFound, "no such route")),
        None => Err(ApiError::new(
            Code::MethodNotAllowed,
            format!("method {} is not allowed on {template}", req.method),
        )),
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            let mut r = http::error(&e);
            if e.code == Code::MethodNotAllowed
                && let Ok(v) = HeaderValue::from_str(&allowed(template))
            {
                r.headers_mut().insert(ALLOW, v);
            }
            r
        }
    };
    (template, resp)
}

pub(crate) fn auth(ctx: &Ctx, req: &Req) -> Result<UserId, ApiError> {
    let token = req
        .bearer()
        .ok_or_else(|| ApiError::unauthorized("Authorization: missing bearer token"))?;
    Ok(ctx.app.accounts().authenticate(token)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_over_parameters() {
        assert_eq!(template("/v1/books/upload"), Some("/v1/books/upload"));
        assert_eq!(template("/v1/books/x"), Some("/v1/books/{id}"));
        assert_eq!(
            template("/v1/books/x/progress/"),
            Some("/v1/books/{id}/progress")
        );
        assert_eq!(template("/v1/nope"), None);
        assert_eq!(allowed("/v1/books/{id}"), "GET, PATCH, DELETE");
    }

    #[test]
    fn every_route_is_declared_once() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.template == b.template),
                    "{} {} twice",
                    a.method,
                    a.template
                );
            }
        }
    }
}
