//! `/v1/notes`, `/v1/todos` and annotations (`/v1/books/{id}/annotations`,
//! `/v1/annotations`): one shape for the three kinds of documents, and the sync protocol of
//! local-first apps (pull by checkpoint, push on a base version; `docs/sync.md`).

use crate::Ctx;
use crate::error::{ApiError, Code};
use crate::http::{self, Req};
use dogear_actors::docs::{DocChange, DocOutcome, DocWrite};
use dogear_storage::{BookId, DocId, DocKind, DocQuery, UserDoc, UserId};
use serde_json::{Map, Value, json};
use warp::http::StatusCode;
use warp::reply::Response;

/// A document as clients see it: its fields at the top level beside `id`, `book_id`,
/// `version`, times, `deleted` and `checkpoint` (its change number, as text).
pub fn doc(d: &UserDoc) -> Value {
    let mut v: Map<String, Value> = serde_json::from_str(&d.body).unwrap_or_default();
    v.insert("id".into(), json!(d.id));
    v.insert("book_id".into(), json!(d.book_id));
    v.insert("version".into(), json!(d.version));
    v.insert("created_at".into(), json!(d.created_at));
    v.insert("updated_at".into(), json!(d.updated_at));
    v.insert("deleted".into(), json!(d.deleted_at.is_some()));
    v.insert("deleted_at".into(), json!(d.deleted_at));
    v.insert("checkpoint".into(), json!(d.change_seq.to_string()));
    Value::Object(v)
}

/// `409` with the document as it is now, for the writer to merge with.
fn conflict(current: &UserDoc) -> Response {
    http::json(
        StatusCode::CONFLICT,
        &json!({
            "error": {
                "code": Code::Conflict.as_str(),
                "message": format!(
                    "base_version: the document is at version {}; merge with `current` and write on it",
                    current.version
                ),
            },
            "current": doc(current),
        }),
    )
}

/// The body as an object, split into what addresses the document and its fields.
struct Parts {
    id: Option<DocId>,
    base_version: Option<u64>,
    book_id: Option<Option<BookId>>,
    deleted: bool,
    fields: Map<String, Value>,
}

fn parts(mut o: Map<String, Value>, at: &str) -> Result<Parts, ApiError> {
    let field = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    let id = match o.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.parse()
                .map_err(|_| ApiError::field(&field("id"), "must be a UUID"))?,
        ),
        Some(_) => return Err(ApiError::field(&field("id"), "must be a UUID")),
    };
    let base_version = match o.remove("base_version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::field(&field("base_version"), "must be a version number (0: new)")
        })?),
    };
    let book_id = match o.remove("book_id") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => {
            Some(Some(s.parse().map_err(|_| {
                ApiError::field(&field("book_id"), "must be a book id")
            })?))
        }
        Some(_) => return Err(ApiError::field(&field("book_id"), "must be a book id")),
    };
    let deleted = match o.remove("deleted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ApiError::field(&field("deleted"), "must be true or false")),
    };
    // What the server sets is ignored when a client sends a document back as it got it.
    for k in [
        "version",
        "created_at",
        "updated_at",
        "deleted_at",
        "checkpoint",
    ] {
        o.remove(k);
    }
    Ok(Parts {
        id,
        base_version,
        book_id,
        deleted,
        fields: o,
    })
}

fn object(req: &Req) -> Result<Map<String, Value>, ApiError> {
    match req.json::<Value>()? {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::field("body", "expected a JSON object")),
    }
}

fn body_of(fields: Map<String, Value>) -> String {
    Value::Object(fields).to_string()
}

/// A field error of a document names the field as the client wrote it.
fn written(
    r: Result<DocOutcome, dogear_actors::AppError>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    match r? {
        DocOutcome::Applied(d) => Ok(http::json(status, &doc(&d))),
        DocOutcome::Conflict(current) => Ok(conflict(&current)),
    }
}

pub async fn create(
    ctx: &Ctx,
    user: UserId,
    kind: DocKind,
    book: Option<BookId>,
    req: Req,
) -> Result<Response, ApiError> {
    if let Some(b) = book {
        ctx.app.book(user, b).await?;
    }
    let p = parts(object(&req)?, "")?;
    let w = DocWrite {
        kind,
        id: p.id,
        base_version: None,
        book_id: match book {
            Some(b) => Some(Some(b)),
            None => p.book_id,
        },
        change: DocChange::Put(body_of(p.fields)),
    };
    written(ctx.app.write_doc(user, w).await, StatusCode::CREATED)
}

pub async fn get(ctx: &Ctx, user: UserId, kind: DocKind, id: DocId) -> Result<Response, ApiError> {
    let d = ctx.app.doc(user, kind, id).await?;
    Ok(http::json(StatusCode::OK, &doc(&d)))
}

pub async fn patch(
    ctx: &Ctx,
    user: UserId,
    kind: DocKind,
    id: DocId,
    req: Req,
) -> Result<Response, ApiError> {
    ctx.app.doc(user, kind, id).await?;
    let p = parts(object(&req)?, "")?;
    let w = DocWrite {
        kind,
        id: Some(id),
        base_version: p.base_version,
        book_id: p.book_id,
        change: DocChange::Patch(body_of(p.fields)),
    };
    written(ctx.app.write_doc(user, w).await, StatusCode::OK)
}

pub async fn delete(
    ctx: &Ctx,
    user: UserId,
    kind: DocKind,
    id: DocId,
    req: Req,
) -> Result<Response, ApiError> {
    ctx.app.doc(user, kind, id).await?;
    let base_version = match req.q("base_version") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| ApiError::field("base_version", "must be a version number"))?,
        ),
    };
    let w = DocWrite {
        kind,
        id: Some(id),
        base_version,
        book_id: None,
        change: DocChange::Delete,
    };
    match ctx.app.write_doc(user, w).await? {
        DocOutcome::Applied(_) => Ok(http::empty(StatusCode::NO_CONTENT)),
        DocOutcome::Conflict(current) => Ok(conflict(&current)),
    }
}

/// A list (`cursor`: live documents, paged) or a pull (`since`: everything written after that
/// checkpoint, deletions included). Both answer `checkpoint`, where the next pull starts.
pub async fn list(
    ctx: &Ctx,
    user: UserId,
    kind: DocKind,
    book: Option<BookId>,
    req: Req,
) -> Result<Response, ApiError> {
    let limit = match req.q("limit") {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=dogear_actors::docs::MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::field("limit", "must be an integer from 1 to 1000"))?,
    };
    let seq = |k: &str| -> Result<Option<u64>, ApiError> {
        match req.q(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::field(k, "must be a checkpoint this server gave")),
        }
    };
    let (since, cursor) = (seq("since")?, seq("cursor")?);
    if since.is_some() && cursor.is_some() {
        return Err(ApiError::field("since", "give since or cursor, not both"));
    }
    let pull = since.is_some();
    let after = since.or(cursor).unwrap_or(0);
    let book = match book {
        Some(b) => Some(b),
        None => req.opt_id("book_id", "must be a book id")?,
    };
    let docs = ctx
        .app
        .docs(DocQuery {
            user,
            kind,
            book,
            after,
            deleted: pull,
            limit: limit + 1,
        })
        .await?;
    let more = docs.len() > limit;
    let page = &docs[..docs.len().min(limit)];
    let checkpoint = page.last().map_or(after, |d| d.change_seq).to_string();
    let items: Vec<Value> = page.iter().map(doc).collect();
    let mut body = json!({"items": items, "checkpoint": checkpoint, "has_more": more});
    if !pull {
        body["next_cursor"] = if more { json!(checkpoint) } else { Value::Null };
    }
    Ok(http::json(StatusCode::OK, &body))
}

/// Many changes, each applied on its own against its `base_version`: a result per change,
/// `applied` with the document as stored, or `conflict` with the current one.
pub async fn push(ctx: &Ctx, user: UserId, kind: DocKind, req: Req) -> Result<Response, ApiError> {
    let mut o = object(&req)?;
    let Some(Value::Array(changes)) = o.remove("changes") else {
        return Err(ApiError::field("changes", "must be a list of changes"));
    };
    if let Some(k) = o.keys().next() {
        return Err(ApiError::field(k, "unknown field"));
    }
    if changes.len() > dogear_actors::docs::MAX_PUSH {
        return Err(ApiError::field("changes", "must hold at most 500 changes"));
    }
    let mut writes = Vec::with_capacity(changes.len());
    let mut ids = Vec::with_capacity(changes.len());
    for (i, c) in changes.into_iter().enumerate() {
        let at = format!("changes[{i}]");
        let Value::Object(c) = c else {
            return Err(ApiError::field(&at, "must be an object"));
        };
        let p = parts(c, &at)?;
        let id =
            p.id.ok_or_else(|| ApiError::field(&format!("{at}.id"), "is required in a push"))?;
        ids.push(id);
        writes.push(DocWrite {
            kind,
            id: Some(id),
            // A change without a base was made on nothing: a new document.
            base_version: Some(p.base_version.unwrap_or(0)),
            book_id: p.book_id,
            change: if p.deleted {
                DocChange::Delete
            } else {
                DocChange::Put(body_of(p.fields))
            },
        });
    }
    let results = ctx.app.write_docs(user, writes).await?;
    let out: Vec<Value> = results
        .into_iter()
        .zip(ids)
        .map(|(r, id)| match r {
            Ok(DocOutcome::Applied(d)) => {
                json!({"id": id, "status": "applied", "document": doc(&d)})
            }
            Ok(DocOutcome::Conflict(d)) => {
                json!({"id": id, "status": "conflict", "current": doc(&d)})
            }
            Err(e) => {
                let e = ApiError::from(e);
                json!({"id": id, "status": "error", "error": e.body()["error"]})
            }
        })
        .collect();
    Ok(http::json(StatusCode::OK, &json!({"results": out})))
}

/// A book's live annotations in reading order (by page, then percent, then CFI, then when
/// made), as Markdown or JSON.
pub async fn export(ctx: &Ctx, user: UserId, book: BookId, req: Req) -> Result<Response, ApiError> {
    use warp::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
    let b = ctx.app.book(user, book).await?;
    let format = req.q("format").unwrap_or("md");
    if format != "md" && format != "json" {
        return Err(ApiError::field("format", "must be md or json"));
    }
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = ctx
            .app
            .docs(DocQuery {
                user,
                kind: DocKind::Annotation,
                book: Some(book),
                after,
                deleted: false,
                limit: dogear_actors::docs::MAX_PAGE,
            })
            .await?;
        after = page.last().map_or(after, |d| d.change_seq);
        let done = page.len() < dogear_actors::docs::MAX_PAGE;
        all.extend(page);
        if done {
            break;
        }
    }
    let mut items: Vec<Value> = all.iter().map(doc).collect();
    let key = |v: &Value| {
        (
            v["locator"]["page"].as_u64().unwrap_or(u64::MAX),
            (v["locator"]["percent"].as_f64().unwrap_or(f64::MAX) * 1000.0) as u64,
            v["locator"]["cfi"].as_str().unwrap_or("").to_string(),
            v["created_at"].as_str().unwrap_or("").to_string(),
        )
    };
    items.sort_by_key(key);
    let slug: String = b
        .title
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .take(80)
        .collect();
    let (bytes, ct, ext) = if format == "json" {
        let v = json!({"book": {"id": b.id, "title": b.title, "authors": b.authors}, "annotations": items});
        (
            serde_json::to_vec_pretty(&v).unwrap_or_default(),
            "application/json",
            "json",
        )
    } else {
        (
            markdown(&b.title, &b.authors, &items).into_bytes(),
            "text/markdown; charset=utf-8",
            "md",
        )
    };
    let mut r = http::empty(StatusCode::OK);
    *r.body_mut() = bytes.into();
    if let Ok(v) = HeaderValue::from_str(ct) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"annotations-{}.{ext}\"",
        slug.trim_matches('-')
    )) {
        r.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// Markdown a reader can paste anywhere: each highlight quoted, its note below, its place.
fn markdown(title: &str, authors: &[String], items: &[Value]) -> String {
    let quote = |s: &str| -> String {
        s.lines()
            .map(|l| format!("> {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = format!("# {title}\n");
    if !authors.is_empty() {
        out.push_str(&format!("\n*{}*\n", authors.join(", ")));
    }
    let mut chapter = String::new();
    for a in items {
        let ch = a["chapter"].as_str().unwrap_or("");
        if !ch.is_empty() && ch != chapter {
            out.push_str(&format!("\n## {ch}\n"));
            chapter = ch.to_string();
        }
        out.push('\n');
        let kind = a["kind"].as_str().unwrap_or("highlight");
        if let Some(t) = a["text"].as_str().filter(|t| !t.is_empty()) {
            out.push_str(&quote(t));
            out.push('\n');
        } else if kind == "bookmark" {
            out.push_str("- Bookmark\n");
        }
        if let Some(n) = a["note"].as_str().filter(|n| !n.is_empty()) {
            out.push_str(&format!("\n{n}\n"));
        }
        let mut place = Vec::new();
        if let Some(p) = a["locator"]["page"].as_u64() {
            place.push(format!("page {p}"));
        }
        if let Some(p) = a["locator"]["percent"].as_f64() {
            place.push(format!("{p:.0} %"));
        }
        if let Some(c) = a["colour"].as_str() {
            place.push(c.to_string());
        }
        if let Some(t) = a["created_at"].as_str() {
            place.push(t.get(..10).unwrap_or(t).to_string());
        }
        out.push_str(&format!("\n<sub>{}</sub>\n", place.join(" · ")));
    }
    out
}
