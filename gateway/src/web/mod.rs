//! The web app: its pages and files, built into the binary from `gateway/web/`, and the
//! parts of a book the reader's frame loads (`/read/{token}/...`). Plain HTML, CSS and
//! JavaScript modules: nothing to build, nothing fetched from elsewhere.
//!
//! Every page is served under a Content-Security-Policy that allows only this server's own
//! scripts; a book's parts under one that allows no script at all and only the book's own
//! images, styles and fonts, in a sandbox, framed only by the app.

use crate::Ctx;
use crate::error::{ApiError, Code};
use crate::http::{self, Req};
use std::collections::HashMap;
use std::sync::LazyLock;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use warp::http::{HeaderValue, Method, StatusCode};
use warp::reply::{Reply, Response};

/// The app's pages: every path the app's own router shows (a reload or a shared link of
/// any of them gets the app, which then draws the page).
const PAGES: &[&str] = &[
    "", "login", "register", "library", "books", "reader", "devices", "account", "shelves",
];

/// Pages: scripts and styles from this server only, covers as blobs fetched with the
/// token, the reader's frame from this server, never framed elsewhere.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; connect-src 'self'; frame-src 'self'; font-src 'self'; \
    manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A book's parts: no script at all, nothing from elsewhere, sandboxed even when opened
/// on their own, framed only by the app.
const PART_CSP: &str = "default-src 'none'; img-src 'self' data:; \
    style-src 'self' 'unsafe-inline'; font-src 'self' data:; media-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox allow-same-origin";

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

macro_rules! assets {
    ($($name:literal => $ct:literal),* $(,)?) => {
        &[$(($name, Asset { body: include_bytes!(concat!("../../web/", $name)), content_type: $ct })),*]
    };
}

static ASSETS: &[(&str, Asset)] = assets![
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "ui.js" => "text/javascript; charset=utf-8",
    "library.js" => "text/javascript; charset=utf-8",
    "book.js" => "text/javascript; charset=utf-8",
    "reader.js" => "text/javascript; charset=utf-8",
    "sync.js" => "text/javascript; charset=utf-8",
    "devices.js" => "text/javascript; charset=utf-8",
    "account.js" => "text/javascript; charset=utf-8",
    "icon.svg" => "image/svg+xml",
];

/// Each file's validator, from its bytes: a new build with a changed file is fetched again.
static ETAGS: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(name, a)| {
            (
                *name,
                format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(a.body)),
            )
        })
        .collect()
});

/// The path with a reader token replaced: the token opens a book, so it never reaches a
/// log line.
pub fn redact(path: &str) -> String {
    match path.strip_prefix("/read/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, part)) => format!("/read/<token>/{part}"),
            None => "/read/<token>".to_string(),
        },
        None => path.to_string(),
    }
}

/// True for the paths this module answers.
pub fn is_web(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    first == "assets" || first == "read" || first == "favicon.ico" || PAGES.contains(&first)
}

pub async fn dispatch(ctx: &Ctx, req: Req) -> (&'static str, Response) {
    let segs: Vec<&str> = req.path.trim_start_matches('/').splitn(3, '/').collect();
    let route: &'static str = match segs.first().copied().unwrap_or("") {
        "assets" => "/assets/{name}",
        "read" => "/read/{token}/{part}",
        "favicon.ico" => "/favicon.ico",
        _ => "/",
    };
    if req.method != Method::GET && req.method != Method::HEAD {
        let mut r = http::error(&ApiError::new(
            Code::MethodNotAllowed,
            format!("method {} is not allowed on {route}", req.method),
        ));
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("GET, HEAD"));
        return (route, r);
    }
    let resp = match route {
        "/assets/{name}" => asset(&req, segs.get(1).copied().unwrap_or("")),
        "/favicon.ico" => asset(&req, "icon.svg"),
        "/read/{token}/{part}" => read(ctx, &req, &segs).await.or_else(|e| {
            // A refused part is still shown in the reader's frame, so the reader sees why
            // (and asks for a new token): framed by this server's pages only, as parts are.
            let mut r = http::error(&e);
            let h = r.headers_mut();
            h.insert(
                "content-security-policy",
                HeaderValue::from_static(PART_CSP),
            );
            h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
            Ok(r)
        }),
        _ => page(&req),
    };
    (route, resp.unwrap_or_else(|e| http::error(&e)))
}

fn asset(req: &Req, name: &str) -> Result<Response, ApiError> {
    let (name, a) = ASSETS
        .iter()
        .find(|(n, _)| *n == name && *n != "index.html")
        .ok_or_else(|| ApiError::not_found("asset"))?;
    Ok(cached(req, name, a, "no-cache"))
}

fn page(req: &Req) -> Result<Response, ApiError> {
    let (name, a) = ASSETS
        .iter()
        .find(|(n, _)| *n == "index.html")
        .ok_or_else(|| ApiError::not_found("page"))?;
    let mut r = cached(req, name, a, "no-cache");
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    Ok(r)
}

/// A file with its validator: `304` when the client has it.
fn cached(req: &Req, name: &str, a: &Asset, cache: &'static str) -> Response {
    let etag = ETAGS.get(name).cloned().unwrap_or_default();
    let fresh = req
        .headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if fresh {
        http::empty(StatusCode::NOT_MODIFIED)
    } else {
        let mut r = a.body.into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
        r
    };
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    r
}

/// `/read/{token}/epub/<path in the book>` or `/read/{token}/page/<n>?width=`.
async fn read(ctx: &Ctx, req: &Req, segs: &[&str]) -> Result<Response, ApiError> {
    let token = segs.get(1).copied().unwrap_or("");
    let part = segs.get(2).copied().unwrap_or("");
    let width = match req.q("width") {
        None => None,
        Some(w) => Some(
            w.parse::<u32>()
                .ok()
                .filter(|w| (100..=4000).contains(w))
                .ok_or_else(|| {
                    ApiError::field("width", "must be a number of pixels, 100 to 4000")
                })?,
        ),
    };
    let p = ctx.app.reader_part(token, part, width).await?;
    let mut r = p.bytes.into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(p.content_type));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(PART_CSP),
    );
    h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
    Ok(r)
}
