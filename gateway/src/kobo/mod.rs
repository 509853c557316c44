//! The Kobo store protocol (`docs/protocols/kobo.md`): every request a stock Kobo makes
//! under `/kobo/<token>/`, plus the reading-services calls it makes at the server root.
//! Each is translated into the same `Dogear` calls the REST API makes; nothing here decides
//! what a device gets.
//!
//! Rules from the field: never answer a device call with a 404 or 500 where the store would
//! not (the device aborts the whole sync, silently); unknown paths get `200 {}` and a log
//! line; the token never reaches a log line or a metric label.

mod state;
mod wire;

use crate::Ctx;
use crate::error::ApiError;
use crate::http::{self, Req};
use dogear_actors::AppError;
use dogear_actors::kobo::{KoboFormat, PartOutcome};
use dogear_actors::shelves::ShelfOp;
use dogear_storage::{BookId, KoboToken, ShelfId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use state::KoboStateIn;
use warp::http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

pub use wire::language;

/// The base URL devices reach this server at: configured, else from the request's
/// `X-Forwarded-Proto/Host/Port`, else its `Host`. Default ports are left out, and no
/// internal port is ever added (a Kobo stores these URLs and keeps using them).
pub fn public_base(ctx: &Ctx, headers: &HeaderMap) -> String {
    if let Some(u) = &ctx.settings.public_url {
        return u.clone();
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let proto = first("x-forwarded-proto")
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| "http".into());
    let mut host = first("x-forwarded-host")
        .or_else(|| first("host"))
        .unwrap_or_else(|| "127.0.0.1".into());
    host.retain(|c| !c.is_whitespace() && c != '/' && c != '@');
    if let Some(port) = first("x-forwarded-port").filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        let has_port = host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
        if !has_port {
            host = format!("{host}:{port}");
        }
    }
    for (scheme, default) in [("http", ":80"), ("https", ":443")] {
        if proto == scheme
            && let Some(h) = host.strip_suffix(default)
        {
            host = h.to_string();
        }
    }
    format!("{proto}://{host}")
}

/// The path as it may be logged: the token (a Kobo's, or an OPDS catalog link's) replaced.
pub fn redact(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/opds/t/") {
        return match rest.split_once('/') {
            Some((_, tail)) => format!("/opds/t/{{token}}/{tail}"),
            None => "/opds/t/{token}".into(),
        };
    }
    match path.strip_prefix("/kobo/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, tail)) => format!("/kobo/{{token}}/{tail}"),
            None => "/kobo/{token}".into(),
        },
        None => path.to_string(),
    }
}

fn kobo_json<T: serde::Serialize + ?Sized>(status: StatusCode, v: &T) -> Response {
    let mut r = http::json(status, v);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Sync pages and initialization are large, repetitive JSON and the device asks for gzip
/// (`Accept-Encoding: gzip`): a first sync of 20,000 books is 41 MB of JSON and 2.6 MB
/// compressed (BENCHMARKS.md), which matters on an e-reader's Wi-Fi.
async fn gzip_json(r: Response, headers: &HeaderMap) -> Response {
    use http_body_util::BodyExt;
    use std::io::Write;
    let wants = headers
        .get(warp::http::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.trim().split(';').next() == Some("gzip"))
        });
    let is_json = r
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !wants || !is_json {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    // A JSON body built here is one buffer already: collecting it cannot wait on anything.
    let Ok(collected) = body.collect().await else {
        return http::error(&ApiError::from(AppError::Unavailable(
            "response body".into(),
        )));
    };
    let bytes = collected.to_bytes();
    if bytes.len() < 1024 {
        return Response::from_parts(parts, bytes.into());
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    match enc.write_all(&bytes).and_then(|()| enc.finish()) {
        Ok(z) => {
            parts.headers.insert(
                warp::http::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
            parts.headers.insert(
                warp::http::header::VARY,
                HeaderValue::from_static("accept-encoding"),
            );
            parts.headers.remove(warp::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, z.into())
        }
        Err(_) => Response::from_parts(parts, bytes.into()),
    }
}

fn ok(v: Value) -> Response {
    kobo_json(StatusCode::OK, &v)
}

/// The route label of a Kobo path (the token never is one).
fn template(segs: &[&str]) -> &'static str {
    match segs {
        [] => "/kobo/{token}",
        ["v1", "initialization"] => "/kobo/{token}/v1/initialization",
        ["v1", "auth", _] => "/kobo/{token}/v1/auth/*",
        ["oauth", ..] => "/kobo/{token}/oauth/*",
        ["v1", "library", "sync"] => "/kobo/{token}/v1/library/sync",
        ["v1", "library", "tags", ..] => "/kobo/{token}/v1/library/tags/*",
        ["v1", "library", _, "metadata"] => "/kobo/{token}/v1/library/{id}/metadata",
        ["v1", "library", _, "state"] => "/kobo/{token}/v1/library/{id}/state",
        ["v1", "library", _] => "/kobo/{token}/v1/library/{id}",
        ["download", _, _] => "/kobo/{token}/download/{id}/{format}",
        [_, _, _, _, "image.jpg"] | [_, _, _, _, _, "image.jpg"] => "/kobo/{token}/{image}",
        _ => "/kobo/{token}/*",
    }
}

/// Everything under `/kobo/`.
pub async fn dispatch(ctx: &Ctx, req: Req) -> (&'static str, Response) {
    let path = req.path.clone();
    let mut segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // ["kobo", token, rest...]
    let token = segs.get(1).copied().unwrap_or("");
    segs.drain(..2.min(segs.len()));
    if segs.last() == Some(&"") {
        segs.pop();
    }
    let route = template(&segs);
    let addr = req.remote.map(|a| a.ip().to_string());
    if let Err(e) = ctx
        .app
        .accounts()
        .check_device_token_guesser(addr.as_deref())
    {
        return ("/kobo/{token}/*", http::error(&ApiError::from(e)));
    }
    let dev = match ctx.app.kobo_device(token).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            // One line at debug per wrong token, one warning when an address is cut off:
            // random tokens must not flood the log.
            tracing::debug!("kobo request with an unknown or revoked token");
            if ctx.app.accounts().device_token_failed(addr.as_deref()) {
                tracing::warn!(
                    addr = addr.as_deref().unwrap_or("-"),
                    "too many unknown kobo tokens from one address; refusing it for a while"
                );
            }
            return (
                "/kobo/{token}/*",
                http::error(&ApiError::unauthorized(
                    "kobo token: unknown or revoked; create one with POST /v1/kobo/tokens",
                )),
            );
        }
        Err(e) => return (route, http::error(&ApiError::from(e))),
    };
    let urls = wire::Urls {
        base: public_base(ctx, &req.headers),
        token: token.to_string(),
    };
    let resp = match handle(ctx, &dev, &urls, &segs, &req).await {
        Ok(r) => gzip_json(r, &req.headers).await,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(status = e.status().as_u16(), "kobo request failed");
            }
            http::error(&e)
        }
    };
    (route, resp)
}

async fn handle(
    ctx: &Ctx,
    dev: &KoboToken,
    urls: &wire::Urls,
    segs: &[&str],
    req: &Req,
) -> Result<Response, ApiError> {
    let m = &req.method;
    let get = *m == Method::GET || *m == Method::HEAD;
    match segs {
        [] => Ok(ok(json!({}))),
        ["v1", "initialization"] => Ok(initialization(ctx, urls)),
        ["v1", "auth", "device" | "refresh"] => Ok(auth(req, &urls.token)),
        ["oauth", rest @ ..] if ctx.settings.kobo_local_oauth => Ok(oauth(urls, rest, req)),
        ["v1", "library", "sync"] if get => sync(ctx, dev, urls, req).await,
        ["v1", "library", "tags", rest @ ..] => tags(ctx, dev, rest, req).await,
        ["v1", "library", id, "metadata"] if get => {
            let Some(id) = book_id(id) else {
                return Ok(ok(json!([])));
            };
            Ok(match ctx.app.kobo_book(dev.user_id, id).await? {
                // An array of one: Nickel reads element 0 and never downloads otherwise.
                Some(kb) => ok(json!([wire::metadata(&kb, urls)])),
                None => ok(json!([])),
            })
        }
        ["v1", "library", id, "state"] if get => {
            let Some(id) = book_id(id) else {
                return Ok(ok(json!([])));
            };
            Ok(match ctx.app.kobo_state(dev, id).await? {
                Some(s) => ok(json!([state::reading_state(&s)])),
                None => ok(json!([])),
            })
        }
        ["v1", "library", id, "state"] if *m == Method::PUT => put_state(ctx, dev, id, req).await,
        ["v1", "library", ids] if *m == Method::DELETE => {
            for id in ids.split(',').filter_map(book_id) {
                ctx.app.kobo_archive(dev, id, true).await?;
            }
            Ok(http::empty(StatusCode::NO_CONTENT))
        }
        ["v1", "library", ids]
            if (*m == Method::POST || *m == Method::PUT)
                && book_id(ids.split(',').next().unwrap_or("")).is_some() =>
        {
            // `add_entitlement`: the reader took the book back from the device's archive.
            for id in ids.split(',').filter_map(book_id) {
                ctx.app.kobo_archive(dev, id, false).await?;
            }
            Ok(ok(json!({})))
        }
        ["download", id, format] if get => download(ctx, dev, id, format, req).await,
        [image, w, h, _, "image.jpg"] if get => cover(ctx, dev, image, w, h, false, req).await,
        [image, w, h, _, grey, "image.jpg"] if get => {
            cover(
                ctx,
                dev,
                image,
                w,
                h,
                grey.eq_ignore_ascii_case("true"),
                req,
            )
            .await
        }
        _ => Ok(store_call(segs, req)),
    }
}

fn book_id(s: &str) -> Option<BookId> {
    s.trim().parse().ok()
}

/// Store features Dogear does not have, answered the way devices are known to accept.
fn store_call(segs: &[&str], req: &Req) -> Response {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let v = match segs {
        ["v1", "user", "loyalty", "benefits"] => json!({"Benefits": {}}),
        ["v1", "products", "books", "subscriptions"] => json!([]),
        ["v1", "library", "search"] => json!([]),
        ["v1", "analytics", "gettests"] => {
            let key = body["TestKey"]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    req.headers
                        .get("x-kobo-userkey")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            json!({"Result": "Success", "TestKey": key, "Tests": {}})
        }
        ["v1", "analytics", "event"] => {
            let ids: Vec<Value> = body["Events"]
                .as_array()
                .map(|e| e.iter().filter_map(|e| e.get("Id").cloned()).collect())
                .unwrap_or_default();
            json!({"Result": "Success", "AcceptedEvents": ids, "RejectedEvents": {}})
        }
        // Store features of §5 of the protocol notes: expected, quietly answered.
        [
            "v1",
            "user" | "products" | "deals" | "assets" | "affiliate" | "configuration",
            ..,
        ]
        | [
            "v1",
            "library",
            "downloadkeys" | "downloadlink" | "borrow" | "tags",
        ]
        | ["v2", ..] => {
            tracing::debug!(method = %req.method, path = %redact(&req.path), "kobo store call answered 200 {{}}");
            json!({})
        }
        _ => {
            tracing::info!(
                method = %req.method,
                path = %redact(&req.path),
                "unknown kobo call; answered 200 {{}}"
            );
            json!({})
        }
    };
    ok(v)
}

/// `GET /v1/initialization`: the store's resource map with every store URL pointing here.
fn initialization(ctx: &Ctx, urls: &wire::Urls) -> Response {
    let prefix = urls.prefix();
    let mut res: serde_json::Map<String, Value> =
        serde_json::from_str(include_str!("store_resources.json")).unwrap_or_default();
    for v in res.values_mut() {
        if let Value::String(s) = v
            && let Some(rest) = s.strip_prefix("https://storeapi.kobo.com")
        {
            *s = format!("{prefix}{rest}");
        }
    }
    let set = |res: &mut serde_json::Map<String, Value>, k: &str, v: String| {
        res.insert(k.to_string(), Value::String(v));
    };
    set(&mut res, "image_host", urls.base.clone());
    set(
        &mut res,
        "image_url_template",
        format!("{prefix}/{{ImageId}}/{{Width}}/{{Height}}/false/image.jpg"),
    );
    set(
        &mut res,
        "image_url_quality_template",
        format!("{prefix}/{{ImageId}}/{{Width}}/{{Height}}/{{Quality}}/{{IsGreyscale}}/image.jpg"),
    );
    // Only the host of this one is honoured by the firmware: its calls arrive at the root.
    set(&mut res, "reading_services_host", urls.base.clone());
    if ctx.settings.kobo_local_oauth {
        set(&mut res, "oauth_host", format!("{prefix}/oauth"));
    }
    for flag in [
        "kobo_wishlist_enabled",
        "kobo_subscriptions_enabled",
        "kobo_audiobooks_enabled",
        "instapaper_enabled",
        "kobo_superpoints_enabled",
        "kobo_redeem_enabled",
        "kobo_display_price",
    ] {
        set(&mut res, flag, "False".into());
    }
    let mut r = ok(json!({ "Resources": res }));
    r.headers_mut()
        .insert("x-kobo-apitoken", HeaderValue::from_static("e30="));
    r
}

fn random() -> String {
    dogear_actors::kobo::token::generate()
        .unwrap_or_else(|_| uuid::Uuid::new_v4().simple().to_string())
}

/// `/v1/auth/device` and `/v1/auth/refresh`. The device's identity is the path token; the
/// access token it gets is that same token, because the device sends it (`Authorization`)
/// to the reading services, which it calls at the server root without the path
/// ([`reading_services`]). It is no new secret: it is already in every URL the device uses.
fn auth(req: &Req, token: &str) -> Response {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    ok(json!({
        "AccessToken": token,
        "RefreshToken": random(),
        "TokenType": "Bearer",
        "TrackingId": uuid::Uuid::new_v4().to_string(),
        "UserKey": body["UserKey"].as_str().unwrap_or(""),
    }))
}

/// A complete local OpenID provider for devices without a Kobo account: discovery,
/// authorization code (the device uses PKCE; the code is all it needs back) and tokens.
fn oauth(urls: &wire::Urls, rest: &[&str], req: &Req) -> Response {
    let base = format!("{}/oauth", urls.prefix());
    match rest {
        [".well-known", "openid-configuration"] => ok(json!({
            "issuer": urls.prefix(),
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
        })),
        ["authorize"] => {
            let mut loc = format!("kobo://UserAuthenticated?code={}", random());
            if let Some(state) = req.q("state").filter(|s| s.len() <= 256) {
                loc.push_str("&state=");
                loc.push_str(&crate::http::encode_component(state));
            }
            let mut r = http::empty(StatusCode::FOUND);
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
        ["token"] if req.method == Method::POST => {
            let form: std::collections::HashMap<String, String> =
                serde_urlencoded::from_bytes(&req.body).unwrap_or_default();
            let json_scope = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v["scope"].as_str().map(str::to_string));
            let scope = form
                .get("scope")
                .cloned()
                .or(json_scope)
                .unwrap_or_default();
            // The access token is the path token, as for `/v1/auth/device` (see `auth`).
            let (access, refresh) = (urls.token.clone(), random());
            ok(json!({
                "access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                "expires_in": 3600, "scope": scope,
                "AccessToken": access, "RefreshToken": refresh, "TokenType": "Bearer",
            }))
        }
        ["userinfo"] => ok(json!({"sub": "dogear"})),
        _ => {
            tracing::debug!(path = %redact(&req.path), "kobo oauth path Dogear does not serve");
            ok(json!({}))
        }
    }
}

async fn sync(
    ctx: &Ctx,
    dev: &KoboToken,
    urls: &wire::Urls,
    req: &Req,
) -> Result<Response, ApiError> {
    let sent = req
        .headers
        .get("x-kobo-synctoken")
        .and_then(|v| v.to_str().ok());
    let restart = !wire::is_own_token(sent, dev.device_id);
    let page = ctx
        .app
        .kobo_sync(dev, restart, ctx.settings.kobo_page_size)
        .await?;
    let body = wire::items(&page.items, urls);
    metrics::counter!("dogear_kobo_sync_pages_total").increment(1);
    metrics::counter!("dogear_kobo_sync_entries_total").increment(body.len() as u64);
    let mut r = ok(Value::Array(body));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&wire::sync_token(dev.device_id, page.generation)) {
        h.insert("x-kobo-synctoken", v);
    }
    if page.more {
        h.insert("x-kobo-sync", HeaderValue::from_static("continue"));
    }
    Ok(r)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatePut {
    reading_states: Vec<KoboStateIn>,
}

async fn put_state(ctx: &Ctx, dev: &KoboToken, id: &str, req: &Req) -> Result<Response, ApiError> {
    let body: StatePut = http::parse_json(&req.body, "body")?;
    let Some(input) = body.reading_states.first() else {
        return Err(ApiError::field(
            "ReadingStates",
            "must hold one reading state",
        ));
    };
    let reading = state::parse(input)?;
    let sent_at = reading.at.as_ref().map(|t| t.raw.clone());
    let outcome = match book_id(id) {
        Some(book) => ctx.app.kobo_put_state(dev, book, reading).await?,
        None => None,
    };
    // Each part the device sent gets "Success" when it is what Dogear now holds, and
    // "Ignored" when it changed nothing: a part older than the stored one, a position behind
    // the reader's (the device is offered the newer one at its next sync), or a book Dogear
    // does not have. The protocol has no documented failure result; devices accept
    // "Ignored" (Komga sends it) and drop the change instead of retrying it for ever.
    let (at, taken) = match &outcome {
        Some(o) => {
            let moved =
                o.write.applied || o.write.reason == Some(dogear_storage::Reason::Duplicate);
            (o.at.clone(), Some((o.parts, moved)))
        }
        None => {
            tracing::debug!("kobo reading state for a book Dogear does not have; ignored");
            let at = sent_at.unwrap_or_else(|| {
                dogear_actors::kobo::state::kobo_time(dogear_storage::Timestamp::now())
            });
            (at, None)
        }
    };
    let parts = taken.map(|(p, _)| p).unwrap_or_default();
    // A part's result, for each part the device sent.
    let result_of = |sent: bool, part: Option<PartOutcome>| {
        let ok = matches!((part, taken), (Some(PartOutcome::Applied), Some((_, true))));
        sent.then_some(PartResult {
            result: if ok { "Success" } else { "Ignored" },
        })
    };
    let result = UpdateResult {
        current_bookmark_result: result_of(input.current_bookmark.is_some(), parts.bookmark),
        entitlement_id: id,
        last_modified: &at,
        priority_timestamp: &at,
        statistics_result: result_of(input.statistics.is_some(), parts.statistics),
        status_info_result: result_of(input.status_info.is_some(), parts.status),
    };
    Ok(kobo_json(
        StatusCode::OK,
        &PutAnswer {
            request_result: "Success",
            update_results: [result],
        },
    ))
}

/// The answer to `PUT .../state`, written straight from these structs: every page turn on
/// a Kobo sends one. Fields in the order they have always gone out (alphabetical).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutAnswer<'a> {
    request_result: &'static str,
    update_results: [UpdateResult<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateResult<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    current_bookmark_result: Option<PartResult>,
    entitlement_id: &'a str,
    last_modified: &'a str,
    priority_timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    statistics_result: Option<PartResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_info_result: Option<PartResult>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PartResult {
    result: &'static str,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagBody {
    name: Option<String>,
    #[serde(default)]
    items: Vec<TagItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagItem {
    revision_id: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

/// Items naming books of this user; store books and other item types are left out.
async fn tag_books(ctx: &Ctx, dev: &KoboToken, items: &[TagItem]) -> Result<Vec<BookId>, AppError> {
    let ids: Vec<BookId> = items
        .iter()
        .filter(|i| {
            i.kind
                .as_deref()
                .is_none_or(|k| k == "ProductRevisionTagItem")
        })
        .filter_map(|i| i.revision_id.as_deref().and_then(book_id))
        .collect();
    ctx.app.readable_books(dev.user_id, &ids, None).await
}

/// Collections made on the device become shelves, and the other way round at the next sync.
/// A tag Dogear no longer knows still gets a 2xx: a 404 makes the device retry forever.
async fn tags(ctx: &Ctx, dev: &KoboToken, rest: &[&str], req: &Req) -> Result<Response, ApiError> {
    let body = || -> Result<TagBody, ApiError> {
        if req.body.is_empty() {
            return Ok(TagBody {
                name: None,
                items: Vec::new(),
            });
        }
        http::parse_json(&req.body, "body")
    };
    let user = dev.user_id;
    let forgiving = |r: Result<dogear_storage::Shelf, AppError>| match r {
        Ok(_) | Err(AppError::NotFound(_)) => Ok(()),
        Err(e) => Err(ApiError::from(e)),
    };
    let m = &req.method;
    match rest {
        [] if *m == Method::POST => {
            let b = body()?;
            let name = b
                .name
                .clone()
                .ok_or_else(|| ApiError::field("Name", "is required"))?;
            let books = tag_books(ctx, dev, &b.items).await?;
            let existing = ctx
                .app
                .shelves(user)
                .await?
                .into_iter()
                .find(|s| s.name == name.trim());
            let shelf = match existing {
                Some(s) => {
                    ctx.app
                        .change_shelf(user, ShelfOp::Add { id: s.id, books })
                        .await?
                }
                None => {
                    ctx.app
                        .change_shelf(user, ShelfOp::Create { name, books })
                        .await?
                }
            };
            Ok(kobo_json(StatusCode::CREATED, &json!(shelf.id.to_string())))
        }
        [id] if *m == Method::PUT => {
            let b = body()?;
            let name = b
                .name
                .ok_or_else(|| ApiError::field("Name", "is required"))?;
            if let Some(id) = shelf_id(id) {
                forgiving(
                    ctx.app
                        .change_shelf(user, ShelfOp::Rename { id, name })
                        .await,
                )?;
            }
            Ok(ok(json!({})))
        }
        [id] if *m == Method::DELETE => {
            if let Some(id) = shelf_id(id) {
                forgiving(ctx.app.change_shelf(user, ShelfOp::Delete { id }).await)?;
            }
            Ok(ok(json!({})))
        }
        [id, items] if *m == Method::POST && items.eq_ignore_ascii_case("items") => {
            let b = body()?;
            let books = tag_books(ctx, dev, &b.items).await?;
            if let Some(id) = shelf_id(id) {
                forgiving(ctx.app.change_shelf(user, ShelfOp::Add { id, books }).await)?;
            }
            Ok(kobo_json(StatusCode::CREATED, &json!({})))
        }
        [id, items, "delete"] if *m == Method::POST && items.eq_ignore_ascii_case("items") => {
            let b = body()?;
            let books: Vec<BookId> = b
                .items
                .iter()
                .filter_map(|i| i.revision_id.as_deref().and_then(book_id))
                .collect();
            if let Some(id) = shelf_id(id) {
                forgiving(
                    ctx.app
                        .change_shelf(user, ShelfOp::Remove { id, books })
                        .await,
                )?;
            }
            Ok(ok(json!({})))
        }
        _ => Ok(store_call(&["v1", "library", "tags"], req)),
    }
}

fn shelf_id(s: &str) -> Option<ShelfId> {
    s.trim().parse().ok()
}

async fn download(
    ctx: &Ctx,
    dev: &KoboToken,
    id: &str,
    format: &str,
    req: &Req,
) -> Result<Response, ApiError> {
    let (Some(id), Some(format)) = (book_id(id), KoboFormat::parse(format)) else {
        return Err(ApiError::not_found("file"));
    };
    let (book, file) = ctx.app.kobo_download(dev.user_id, id, format).await?;
    let name = book.kobo_download_name(file.format);
    let mut r = crate::rest::files::serve_file(
        ctx,
        &req.headers,
        &file.location,
        &file.hash,
        "application/epub+zip",
        &name,
    )
    .await?;
    if req.method == Method::HEAD {
        // Headers only (the resuming downloader asks for the size first).
        let mut head = http::empty(r.status());
        *head.headers_mut() = std::mem::take(r.headers_mut());
        r = head;
    }
    Ok(r)
}

async fn cover(
    ctx: &Ctx,
    dev: &KoboToken,
    image: &str,
    w: &str,
    h: &str,
    grey: bool,
    req: &Req,
) -> Result<Response, ApiError> {
    let book = dogear_actors::kobo::KoboBook::book_id_of_image(image)
        .ok_or_else(|| ApiError::not_found("cover"))?;
    let (Ok(w), Ok(h)) = (w.parse::<u32>(), h.parse::<u32>()) else {
        return Err(ApiError::not_found("cover"));
    };
    let (loc, etag) = ctx.app.kobo_cover(dev.user_id, book, w, h, grey).await?;
    crate::rest::files::serve_image(ctx, &req.headers, &loc, &etag).await
}

/// Reading services (`reading_services_host`), called at the server root without the token
/// in the path: the device is known by its `Authorization: Bearer` access token, which
/// Dogear's `/v1/auth/device` gave it (its Kobo token; see [`auth`]). A device that still
/// holds an access token from Kobo's own servers is nobody here: it is told "nothing
/// changed" and "no annotations", which keeps it on its own position when a book is opened.
pub async fn reading_services(ctx: &Ctx, req: &Req) -> (&'static str, Response) {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let dev = match req.bearer() {
        Some(t) if !t.is_empty() && t.len() <= 256 => ctx.app.kobo_device(t).await.ok().flatten(),
        _ => None,
    };
    let book = |id: &str| id.parse::<dogear_storage::BookId>().ok();
    let v = match (segs.as_slice(), &dev) {
        (["api", "v3", "content", "checkforchanges"], _) => json!([]),
        (["api", "v3", "content", id, "annotations"], Some(d)) if req.method == Method::GET => {
            let found = match book(id) {
                Some(b) => ctx.app.kobo_annotations(d.user_id, b).await,
                None => Ok(Vec::new()),
            };
            match found {
                Ok(list) => json!({"annotations": list, "nextPageOffsetToken": null}),
                // A book the reader cannot see has none.
                Err(dogear_actors::AppError::NotFound(_)) => {
                    json!({"annotations": [], "nextPageOffsetToken": null})
                }
                Err(e) => return ("/api/*", http::error(&ApiError::from(e))),
            }
        }
        (["api", "v3", "content", _, "annotations"], None) if req.method == Method::GET => {
            json!({"annotations": [], "nextPageOffsetToken": null})
        }
        (["api", "v3", "content", id, "annotations"], Some(d)) => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            if let Some(b) = book(id) {
                match ctx.app.kobo_put_annotations(d.user_id, b, &body).await {
                    Ok(()) | Err(dogear_actors::AppError::NotFound(_)) => {}
                    Err(e) => return ("/api/*", http::error(&ApiError::from(e))),
                }
            }
            return ("/api/*", http::empty(StatusCode::NO_CONTENT));
        }
        (["api", "v3", "content", _, "annotations"], None) => {
            return ("/api/*", http::empty(StatusCode::NO_CONTENT));
        }
        (["api", "UserStorage", "Metadata"], _) => {
            json!({"continuationToken": null, "metadata": []})
        }
        _ => {
            tracing::debug!(path = %req.path, "kobo reading-services call answered {{}}");
            json!({})
        }
    };
    ("/api/*", ok(v))
}
