//! The request as every REST handler sees it, and the few ways a response is built.

use crate::error::ApiError;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::net::SocketAddr;
use warp::Reply;
use warp::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

/// For `#[serde(deserialize_with = "present")]`: tells a field left out (`None`, with
/// `#[serde(default)]`) from one set to null (`Some(None)`).
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub remote: Option<SocketAddr>,
}

impl Req {
    /// The body as `T`; errors name the offending field (`percent: must be between ...`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::field("body", "expected a JSON object"));
        }
        parse_json(&self.body, "body")
    }

    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// `?limit=N`: default 50, 1 to 500.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.q("limit") {
            None => Ok(50),
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=500).contains(n))
                .ok_or_else(|| ApiError::field("limit", "must be an integer from 1 to 500")),
        }
    }

    /// An optional id in the query (`?library_id=`); malformed is 400 naming the key.
    pub fn opt_id<T: std::str::FromStr>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        opt_id(&self.query, key, what)
    }

    pub fn bearer(&self) -> Option<&str> {
        bearer(&self.headers)
    }
}

/// An optional id in a query map; empty counts as absent, malformed is 400 naming the key.
pub fn opt_id<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    key: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    query
        .get(key)
        .filter(|s| !s.is_empty())
        .map(|c| c.parse::<T>().map_err(|_| ApiError::field(key, what)))
        .transpose()
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(warp::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn parse_query(raw: &str) -> Result<HashMap<String, String>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|_| ApiError::field("query", "is not valid URL encoding"))
}

/// Parses one JSON document as `T`. Errors name the offending field (`percent: must be
/// between 0 and 100`), or `root` when the problem is the document as a whole; shared by
/// REST bodies and WebSocket frames so both speak the same error language.
///
/// Every write goes through here, so a body is parsed without tracking where it is first;
/// only a refused one is parsed again, with the path kept, to name the field.
pub fn parse_json<T: DeserializeOwned>(input: &[u8], root: &str) -> Result<T, ApiError> {
    if let Ok(value) = serde_json::from_slice(input) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(input);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { root.to_string() } else { path };
        ApiError::bad_request(format!("{field}: {}", clean(e.inner())))
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("{root}: {}", clean(&e))))?;
    Ok(value)
}

/// serde_json's message without its "at line 1 column 7" tail.
fn clean(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = body.into_response();
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn empty(status: StatusCode) -> Response {
    let mut r = Vec::<u8>::new().into_response();
    *r.status_mut() = status;
    r
}

pub fn error(e: &ApiError) -> Response {
    let mut r = json(e.status(), &e.body());
    if let Some(secs) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
