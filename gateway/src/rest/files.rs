//! Books in and out: uploads (streamed to disk, never held in memory), import jobs, and
//! file and cover downloads with ranges and validators.

use crate::error::{ApiError, Code};
use crate::http::{self, Req};
use crate::{Ctx, wire};
use bytes::{Buf, Bytes};
use dogear_storage::{
    BookId, FileLocation, Format, JobId, JobState, LibraryId, ObjectError, UserId,
};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWriteExt;
use warp::Reply;
use warp::http::StatusCode;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::reply::Response;

fn too_large(max: u64) -> ApiError {
    ApiError::too_large(format!(
        "body: the file is larger than the {max} bytes this server accepts"
    ))
}

/// `filename="..."` or `filename*=UTF-8''...` from a Content-Disposition value.
pub fn disposition_filename(v: &str) -> Option<String> {
    let mut plain = None;
    for part in v.split(';').map(str::trim) {
        if let Some(rest) = part.strip_prefix("filename*=") {
            let enc = rest.trim_matches('"');
            if let Some(idx) = enc.find("''") {
                let decoded = dogear_actors::import::names::percent_decode(&enc[idx + 2..]);
                if !decoded.is_empty() {
                    return Some(decoded);
                }
            }
        } else if let Some(rest) = part.strip_prefix("filename=") {
            let name = rest.trim().trim_matches('"').replace("\\\"", "\"");
            if !name.is_empty() {
                plain = Some(name);
            }
        }
    }
    plain
}

/// Keeps only the last path component and printable characters: the name is shown to
/// people and used as a metadata fallback, never as a path.
fn clean_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(255).collect();
    let cleaned = cleaned.trim().to_string();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "upload".into()
    } else {
        cleaned
    }
}

/// `POST /v1/books/upload?library_id=`: the raw file (or a multipart form with one file).
pub async fn upload<S, B>(
    ctx: &Ctx,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    mut body: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let token = http::bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("Authorization: missing bearer token"))?;
    let user = ctx.app.accounts().authenticate(token)?;
    let library: Option<LibraryId> = http::opt_id(query, "library_id", "must be a library id")?;
    let library = ctx.app.upload_library(user, library).await?;
    let max = ctx.settings.max_upload_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max
    {
        return Err(too_large(max));
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let boundary = ctype
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
        .then(|| {
            ctype.split(';').map(str::trim).find_map(|p| {
                p.strip_prefix("boundary=")
                    .map(|b| b.trim_matches('"').to_string())
            })
        })
        .flatten();
    if ctype.to_ascii_lowercase().starts_with("multipart/") && boundary.is_none() {
        return Err(ApiError::field(
            "Content-Type",
            "multipart body without a boundary",
        ));
    }
    let mut filename = headers
        .get(header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(disposition_filename)
        .or_else(|| query.get("filename").cloned());
    if boundary.is_none() && filename.is_none() {
        return Err(ApiError::field(
            "Content-Disposition",
            "give the file's name: Content-Disposition: attachment; filename=\"book.epub\"",
        ));
    }
    let staging = ctx.app.importer().settings().staging_dir.clone();
    let raw = staging.join(format!("{}.upload", uuid::Uuid::now_v7()));
    let unavailable = |e: std::io::Error| {
        tracing::error!(error = %e, "staging an upload");
        ApiError::from(dogear_actors::AppError::Unavailable(e.to_string()))
    };
    let mut file = tokio::fs::File::create(&raw).await.map_err(unavailable)?;
    let mut written: u64 = 0;
    let result: Result<(), ApiError> = async {
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|_| ApiError::bad_request("body: could not be read"))?;
            written += chunk.remaining() as u64;
            if written > max {
                return Err(too_large(max));
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                let n = part.len();
                file.write_all(part).await.map_err(unavailable)?;
                chunk.advance(n);
            }
        }
        file.flush().await.map_err(unavailable)?;
        Ok(())
    }
    .await;
    drop(file);
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&raw).await;
        return Err(e);
    }
    let staged = match boundary {
        Some(b) => {
            let out = staging.join(format!("{}.upload", uuid::Uuid::now_v7()));
            let (r, o) = (raw.clone(), out.clone());
            let parsed = tokio::task::spawn_blocking(move || extract_multipart(&r, &o, &b)).await;
            let _ = tokio::fs::remove_file(&raw).await;
            match parsed {
                Ok(Ok(name)) => {
                    filename = Some(name);
                    out
                }
                Ok(Err(e)) => {
                    let _ = tokio::fs::remove_file(&out).await;
                    return Err(e);
                }
                Err(_) => {
                    return Err(ApiError::bad_request(
                        "body: the multipart form could not be read",
                    ));
                }
            }
        }
        None => raw,
    };
    let filename = clean_filename(filename.as_deref().unwrap_or("upload"));
    let job = match ctx
        .app
        .enqueue_upload(user, library, &staged, &filename)
        .await
    {
        Ok(j) => j,
        Err(e) => {
            let _ = tokio::fs::remove_file(&staged).await;
            return Err(e.into());
        }
    };
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"job_id": job.id, "state": job.state}),
    ))
}

/// Copies the first file part of a multipart body at `src` into `dst`, streaming; returns
/// the part's file name.
fn extract_multipart(src: &Path, dst: &Path, boundary: &str) -> Result<String, ApiError> {
    let bad = |m: &str| ApiError::bad_request(format!("body: {m}"));
    let mut input =
        std::io::BufReader::new(std::fs::File::open(src).map_err(|_| bad("unreadable"))?);
    let delim = format!("--{boundary}");
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut fill = |buf: &mut Vec<u8>| -> Result<bool, ApiError> {
        let n = input.read(&mut chunk).map_err(|_| bad("unreadable"))?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    };
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    loop {
        // Find the next part's headers.
        let start = loop {
            if let Some(i) = find(&buf, delim.as_bytes()) {
                break i;
            }
            if buf.len() > 1 << 20 || !fill(&mut buf)? {
                return Err(bad("no file part in the multipart form"));
            }
        };
        buf.drain(..start + delim.len());
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > 64 * 1024 || !fill(&mut buf)? {
                return Err(bad("malformed multipart part headers"));
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let name = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .and_then(|l| disposition_filename(l.split_once(':').map(|x| x.1).unwrap_or("")));
        let Some(name) = name else { continue };
        let end_delim = format!("\r\n--{boundary}");
        let mut out = std::fs::File::create(dst).map_err(|_| bad("cannot stage the file"))?;
        loop {
            if let Some(i) = find(&buf, end_delim.as_bytes()) {
                out.write_all(&buf[..i])
                    .map_err(|_| bad("cannot stage the file"))?;
                return Ok(name);
            }
            let keep = end_delim.len().min(buf.len());
            let flush = buf.len() - keep;
            out.write_all(&buf[..flush])
                .map_err(|_| bad("cannot stage the file"))?;
            buf.drain(..flush);
            if !fill(&mut buf)? {
                return Err(bad("the multipart form ends inside the file"));
            }
        }
    }
}

/// `GET /v1/imports?state=&library_id=&limit=&cursor=`: newest first.
pub async fn jobs(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let limit = req.limit()?;
    let state = match req.q("state").filter(|s| !s.is_empty()) {
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            ApiError::field("state", "must be one of queued, running, done, failed")
        })?),
        None => None,
    };
    let library: Option<LibraryId> = req.opt_id("library_id", "must be a library id")?;
    let before: Option<JobId> = req.opt_id("cursor", "is not a valid cursor")?;
    let (jobs, next) = ctx.app.jobs(user, library, state, before, limit).await?;
    let items: Vec<_> = jobs.iter().map(wire::job).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": next.map(|n| n.to_string())}),
    ))
}

pub async fn job(ctx: &Ctx, user: UserId, id: JobId) -> Result<Response, ApiError> {
    let job = ctx.app.job(user, id).await?;
    Ok(http::json(StatusCode::OK, &wire::job(&job)))
}

/// `GET /v1/books/{id}/file?format=`: the original (or KEPUB), with ranges.
pub async fn file(ctx: &Ctx, user: UserId, id: BookId, req: Req) -> Result<Response, ApiError> {
    let format = match req.q("format").filter(|s| !s.is_empty()) {
        Some(f) => Some(
            Format::parse(f)
                .ok_or_else(|| ApiError::field("format", "must be one of epub, kepub, pdf, cbz"))?,
        ),
        None => None,
    };
    let format = match format {
        Some(f) => f,
        None => {
            let book = ctx.app.book(user, id).await?;
            book.meta
                .formats
                .iter()
                .find(|f| f.format != Format::Kepub)
                .or(book.meta.formats.first())
                .map(|f| f.format)
                .ok_or_else(|| ApiError::not_found("file"))?
        }
    };
    let (book, f) = ctx.app.book_file(user, id, format).await?;
    let objects = ctx.app.importer().objects();
    if let Some(url) = objects.presigned(&f.location).await {
        let mut r = http::empty(StatusCode::FOUND);
        if let Ok(v) = HeaderValue::from_str(&url) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(r);
    }
    // KOReader's "filename" matching knows the book by the MD5 of this name.
    let name = book.download_name(f.format);
    let extra = [
        (header::CONTENT_DISPOSITION, content_disposition(&name)),
        (header::CACHE_CONTROL, "private, no-cache".to_string()),
    ];
    serve(
        ctx,
        &req.headers,
        &f.location,
        &f.hash,
        f.format.content_type(),
        &extra,
    )
    .await
}

/// `GET /v1/books/{id}/cover?size=thumb|full`.
pub async fn cover(ctx: &Ctx, user: UserId, id: BookId, req: Req) -> Result<Response, ApiError> {
    let thumb = match req.q("size").unwrap_or("full") {
        "full" | "" => false,
        "thumb" => true,
        _ => return Err(ApiError::field("size", "must be thumb or full")),
    };
    let (cover, loc, ct) = ctx.app.book_cover(user, id, thumb).await?;
    let etag = if thumb {
        format!("{}-thumb", cover.etag)
    } else {
        cover.etag.clone()
    };
    let extra = [(
        header::CACHE_CONTROL,
        "private, max-age=31536000".to_string(),
    )];
    serve(ctx, &req.headers, &loc, &etag, ct, &extra).await
}

/// A book file for a device: streamed with ranges and validators, never a redirect (a Kobo
/// follows none reliably), named `name` for the download.
pub(crate) async fn serve_file(
    ctx: &Ctx,
    headers: &HeaderMap,
    loc: &FileLocation,
    etag: &str,
    content_type: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let extra = [
        (header::CONTENT_DISPOSITION, content_disposition(name)),
        (header::CACHE_CONTROL, "private, no-cache".to_string()),
    ];
    serve(ctx, headers, loc, etag, content_type, &extra).await
}

/// A JPEG made for one size of one cover: its etag changes with the cover.
pub(crate) async fn serve_image(
    ctx: &Ctx,
    headers: &HeaderMap,
    loc: &FileLocation,
    etag: &str,
) -> Result<Response, ApiError> {
    let extra = [(
        header::CACHE_CONTROL,
        "private, max-age=31536000".to_string(),
    )];
    serve(ctx, headers, loc, etag, "image/jpeg", &extra).await
}

fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = http::encode_component(name);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `Range: bytes=a-b | a- | -n` (one range). `Ok(None)`: serve everything.
fn parse_range(v: &str, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        start..end
    };
    if range.start >= range.end || range.start >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// A stream warp can send: the object store's stream made `Sync` by a mutex nobody
/// contends (only the body's poller touches it).
struct SyncStream(
    std::sync::Mutex<futures_util::stream::BoxStream<'static, Result<Bytes, ObjectError>>>,
);

impl Stream for SyncStream {
    type Item = Result<Bytes, ObjectError>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().0.get_mut() {
            Ok(s) => s.poll_next_unpin(cx),
            Err(_) => Poll::Ready(None),
        }
    }
}

fn object_error(e: ObjectError) -> ApiError {
    match e {
        ObjectError::NotFound => ApiError::not_found("file"),
        other => ApiError::from(dogear_actors::AppError::Unavailable(other.to_string())),
    }
}

pub(crate) async fn serve(
    ctx: &Ctx,
    headers: &HeaderMap,
    loc: &FileLocation,
    etag: &str,
    content_type: &str,
    extra: &[(header::HeaderName, String)],
) -> Result<Response, ApiError> {
    let objects = ctx.app.importer().objects();
    let etag = format!("\"{etag}\"");
    let matches = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    };
    let with_headers = |mut r: Response| {
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        for (k, v) in extra {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k.clone(), v);
            }
        }
        r
    };
    if matches(header::IF_NONE_MATCH) {
        return Ok(with_headers(http::empty(StatusCode::NOT_MODIFIED)));
    }
    let size = objects.size(loc).await.map_err(object_error)?;
    // A Range with a stale If-Range gets the whole (new) file.
    let if_range_ok = headers.get(header::IF_RANGE).is_none() || matches(header::IF_RANGE);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if if_range_ok => match parse_range(v, size) {
            Ok(r) => r,
            Err(()) => {
                let mut r = http::error(&ApiError::new(
                    Code::RangeNotSatisfiable,
                    format!("Range: the file has {size} bytes"),
                ));
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(r);
            }
        },
        _ => None,
    };
    let partial = range.is_some();
    let read = if size == 0 {
        None
    } else {
        Some(
            objects
                .read(loc, range.clone())
                .await
                .map_err(object_error)?,
        )
    };
    let mut r = match read {
        Some(read) => {
            let len = read.range.end - read.range.start;
            let mut r =
                warp::reply::stream(SyncStream(std::sync::Mutex::new(read.body))).into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            if partial
                && let Ok(v) = HeaderValue::from_str(&format!(
                    "bytes {}-{}/{}",
                    read.range.start,
                    read.range.end - 1,
                    read.total
                ))
            {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        None => http::empty(StatusCode::OK),
    };
    *r.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(with_headers(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=0-1000", 100), Ok(Some(0..100)));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-2", 100), Err(()));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }

    #[test]
    fn filenames() {
        assert_eq!(
            disposition_filename("attachment; filename=\"a b.epub\"").as_deref(),
            Some("a b.epub")
        );
        assert_eq!(
            disposition_filename("attachment; filename*=UTF-8''H%C4%B1zl%C4%B1.epub").as_deref(),
            Some("Hızlı.epub")
        );
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename(".."), "upload");
    }
}
