//! OPDS catalogs (`docs/protocols/opds.md`): OPDS 1.2 (Atom) under `/opds/v1.2/` and OPDS
//! 2.0 (JSON) under `/opds/v2/`, the same tree in both. Each request is answered from the
//! same `Dogear` calls the REST API makes, for the reader who signed in (HTTP Basic), so a
//! catalog shows exactly what that reader's REST API would. A feed is built once as a
//! [`model::Feed`] and written out by [`atom`] or [`json`]; nothing here decides what a
//! reader may see.

mod atom;
mod feeds;
mod json;
mod model;

use crate::Ctx;
use crate::http::Req;
use dogear_storage::UserId;
use warp::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, LINK, WWW_AUTHENTICATE,
};
use warp::http::{Method, StatusCode};
use warp::reply::{Reply, Response};

/// The two catalog versions, each a tree of the same feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    fn segment(self) -> &'static str {
        match self {
            Version::V1 => "v1.2",
            Version::V2 => "v2",
        }
    }
}

/// Whether a path is the catalogs'.
pub fn is_opds(path: &str) -> bool {
    path == "/opds" || path.starts_with("/opds/")
}

/// `%XX` sequences decoded, leniently: what a client did not encode is taken as it came,
/// and bytes that are not UTF-8 become U+FFFD, never an error.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a request asked for and who asked, as the feed builders see it.
pub(crate) struct Call<'a> {
    pub ctx: &'a Ctx,
    pub req: &'a Req,
    pub user: UserId,
    pub version: Version,
    /// Absolute URL of this version's root, without a trailing slash.
    pub root: String,
    /// The path below the root, decoded segment by segment.
    pub path: Vec<String>,
}

impl Call<'_> {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.req.q(key).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Whether the client is a Kobo (it gets KEPUB links first).
    pub fn is_kobo(&self) -> bool {
        self.req
            .headers
            .get(warp::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ua| ua.contains("Kobo"))
    }
}

const REALM: &str = "Basic realm=\"Dogear\", charset=\"UTF-8\"";

pub async fn dispatch(ctx: &Ctx, req: Req) -> (&'static str, Response) {
    let mut segs: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(1)
        .map(percent_decode)
        .collect();
    // `/opds/t/<token>/...`: signed in by the token in the URL instead of a password.
    let token = if segs.first().map(String::as_str) == Some("t") && segs.len() > 1 {
        let t = segs[1].clone();
        segs.drain(..2);
        Some(t)
    } else {
        None
    };
    let version = match segs.first().map(String::as_str) {
        Some("v1.2") => Version::V1,
        Some("v2") => Version::V2,
        _ => {
            return (
                "/opds/*",
                text(
                    StatusCode::NOT_FOUND,
                    "No catalog here: OPDS 1.2 is at /opds/v1.2/catalog, OPDS 2.0 at /opds/v2/catalog.",
                ),
            );
        }
    };
    let route = match version {
        Version::V1 => "/opds/v1.2/*",
        Version::V2 => "/opds/v2/*",
    };
    if req.method != Method::GET && req.method != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Catalogs are read with GET.",
        );
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("GET, HEAD"));
        return (route, r);
    }
    let base = crate::kobo::public_base(ctx, &req.headers);
    let root = match &token {
        Some(t) => format!("{base}/opds/t/{t}/{}", version.segment()),
        None => format!("{base}/opds/{}", version.segment()),
    };
    // The authentication document is read before signing in (Thorium shows a login page
    // from it).
    if version == Version::V2 && segs.get(1).map(String::as_str) == Some("auth") {
        return (route, json::auth_document(&root));
    }
    let signed = match &token {
        Some(t) => by_token(ctx, &req, t).await,
        None => sign_in(ctx, &req).await,
    };
    let user = match signed {
        Ok(u) => u,
        Err(r) => return (route, *r),
    };
    let call = Call {
        ctx,
        req: &req,
        user,
        version,
        root,
        path: segs[1..].to_vec(),
    };
    let r = match feeds::answer(&call).await {
        Ok(r) => r,
        Err(e) => error(e),
    };
    (route, r)
}

/// The reader of an `Authorization: Basic` header, checked as a login is (the same failure
/// budgets) and trusted for a minute after; every failure is `401` with the challenge that
/// makes apps ask for a password.
async fn sign_in(ctx: &Ctx, req: &Req) -> Result<UserId, Box<Response>> {
    use base64::Engine;
    let header = req
        .headers
        .get(warp::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoded) = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
    else {
        return Err(Box::new(challenge(&req.path)));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let Some((name, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Err(Box::new(challenge(&req.path)));
    };
    let addr = req.remote.map(|a| a.ip().to_string());
    match ctx
        .app
        .basic_sign_in(name.trim(), password, addr.as_deref())
        .await
    {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(Box::new(challenge(&req.path))),
        Err(e) => Err(Box::new(crate::http::error(&crate::error::ApiError::from(
            e,
        )))),
    }
}

/// The reader of a token in the URL; a wrong one is `401` (and counted: an address that
/// guesses is refused for a while, as with Kobo tokens).
async fn by_token(ctx: &Ctx, req: &Req, token: &str) -> Result<UserId, Box<Response>> {
    let addr = req.remote.map(|a| a.ip().to_string());
    let refuse =
        |e: dogear_actors::AppError| Box::new(crate::http::error(&crate::error::ApiError::from(e)));
    ctx.app
        .accounts()
        .check_device_token_guesser(addr.as_deref())
        .map_err(refuse)?;
    match ctx.app.opds_device(token).await {
        Ok(Some(t)) => Ok(t.user_id),
        Ok(None) => {
            if ctx.app.accounts().device_token_failed(addr.as_deref()) {
                tracing::warn!(
                    addr = addr.as_deref().unwrap_or("-"),
                    "too many unknown OPDS tokens from one address; refusing it for a while"
                );
            }
            Err(Box::new(text(
                StatusCode::UNAUTHORIZED,
                "This catalog link was revoked or never existed.",
            )))
        }
        Err(e) => Err(refuse(e)),
    }
}

/// `401` with a Basic challenge, and for OPDS 2 apps the authentication document's link.
fn challenge(path: &str) -> Response {
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "Sign in with your Dogear user name and password.",
    );
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    if path.contains("/v2") {
        r.headers_mut().insert(
            LINK,
            HeaderValue::from_static(
                "</opds/v2/auth>; rel=\"http://opds-spec.org/auth/document\"; type=\"application/opds-authentication+json\"",
            ),
        );
    }
    r
}

fn text(status: StatusCode, message: &str) -> Response {
    let mut r = message.to_string().into_response();
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An error as a catalog app can show it: plain text with the REST API's status.
fn error(e: crate::error::ApiError) -> Response {
    let mut r = crate::http::error(&e);
    if e.status() == StatusCode::NOT_FOUND {
        r = text(StatusCode::NOT_FOUND, "Not found.");
    }
    r
}

/// A feed's bytes with its media type and a strong validator: the same request for the
/// same content is answered `304`.
pub(crate) fn document(req: &Req, content_type: &'static str, body: Vec<u8>) -> Response {
    let tag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&body));
    let matches = req
        .headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut r = if matches {
        let mut r = Vec::<u8>::new().into_response();
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = body.into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    if let Ok(v) = HeaderValue::from_str(&tag) {
        r.headers_mut().insert(ETAG, v);
    }
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_is_lenient() {
        assert_eq!(percent_decode("Jane%20Austen"), "Jane Austen");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%FF"), "\u{fffd}");
        assert_eq!(percent_decode("raw é"), "raw é");
        assert_eq!(percent_decode("%é"), "%é");
        assert_eq!(percent_decode("%2"), "%2");
    }
}
