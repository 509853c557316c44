//! The JSON shapes of the REST API (`docs/api.md`), and their conversions from domain records.
//! Field names here are the contract: add fields, never rename or drop them.

use dogear_actors::FeedCursor;
use dogear_actors::progress::ProgressWrite;
use dogear_actors::user_actor::{ProgressView, WriteOutcome};
use dogear_storage::{
    Book, BookAfter, BookSort, Device, DevicePosition, EventId, ImportJob, Library, Locator,
    Percent, ProgressState, ReadStatus, Role, Timestamp, User,
};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn user_brief(u_id: &dogear_storage::UserId, username: &str) -> Value {
    json!({"id": u_id, "username": username})
}

pub fn me(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "display_name": u.display_name,
        "is_admin": u.is_admin,
        "visibility": u.visibility,
        "created_at": u.created_at,
    })
}

/// An account as administrators see it.
pub fn account(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "display_name": u.display_name,
        "is_admin": u.is_admin,
        "disabled": u.disabled_at.is_some(),
        "disabled_at": u.disabled_at,
        "created_at": u.created_at,
    })
}

/// A reader's record of a book (`/v1/books/{id}/mine`).
pub fn user_book(b: &dogear_storage::UserBook) -> Value {
    json!({
        "book_id": b.book_id,
        "status": b.status,
        "status_source": b.status_source,
        "status_at": b.status_at,
        "started_at": b.started_at,
        "finished_at": b.finished_at,
        "rating": b.rating,
        "review": b.review,
        "favourite": b.favourite,
        "loaned_to": b.loaned_to,
        "loaned_at": b.loaned_at,
        "returned_at": b.returned_at,
        "updated_at": (b.version > 0).then_some(b.updated_at),
        "version": b.version,
    })
}

pub fn device(d: &Device) -> Value {
    json!({"id": d.id, "name": d.name, "kind": d.kind, "created_at": d.created_at})
}

pub fn library(l: &Library, role: Role) -> Value {
    json!({
        "id": l.id,
        "name": l.name,
        "kind": l.kind,
        "role": role,
        "owner_id": l.owner_id,
        "pending_owner_id": l.pending_owner,
        "created_at": l.created_at,
    })
}

pub fn book(b: &Book) -> Value {
    let m = &b.meta;
    let formats: Vec<Value> = m
        .formats
        .iter()
        .map(|f| json!({"format": f.format, "size": f.size, "hash": f.hash}))
        .collect();
    json!({
        "id": b.id,
        "library_id": b.library_id,
        "title": b.title,
        "subtitle": m.subtitle,
        "authors": b.authors,
        "author_sorts": m.author_sorts,
        "title_sort": m.title_sort,
        "language": b.language,
        "languages": m.languages,
        "identifiers": b.identifiers,
        "series": m.series,
        "series_index": m.series_index,
        "publisher": m.publisher,
        "published": m.published,
        "description": m.description,
        "tags": m.tags,
        "rating": m.rating,
        "formats": formats,
        "has_cover": m.cover.is_some(),
        "cover_etag": m.cover.as_ref().map(|c| c.etag.clone()),
        "source": m.source(),
        "added_at": b.added_at,
        "updated_at": b.updated_at,
        "version": b.version,
    })
}

pub fn job(j: &ImportJob) -> Value {
    json!({
        "job_id": j.id,
        "state": j.state,
        "book_id": j.book_id,
        "duplicate_of": j.duplicate_of,
        "error": j.error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
        "warnings": j.warnings.iter().map(|w| json!({"code": w.code, "message": w.message})).collect::<Vec<_>>(),
        "filename": j.filename,
        "source": j.source,
        "library_id": j.library_id,
        "attempts": j.attempts,
        "created_at": j.created_at,
        "updated_at": j.updated_at,
    })
}

/// A book-list cursor: the plain id for the default order (as before), else
/// `<sort>~<id>~<key, base64url>`.
pub fn book_cursor(sort: BookSort, after: &BookAfter) -> String {
    use base64::Engine;
    match sort {
        BookSort::Id => after.id.to_string(),
        _ => format!(
            "{}~{}~{}",
            sort_name(sort),
            after.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after.key.as_bytes())
        ),
    }
}

pub fn sort_name(s: BookSort) -> &'static str {
    match s {
        BookSort::Id => "id",
        BookSort::Title => "title",
        BookSort::Author => "author",
        BookSort::Added => "added",
        BookSort::Series => "series",
    }
}

pub fn parse_book_cursor(sort: BookSort, c: &str) -> Option<BookAfter> {
    use base64::Engine;
    if sort == BookSort::Id {
        return Some(BookAfter {
            key: String::new(),
            id: c.parse().ok()?,
        });
    }
    let mut parts = c.splitn(3, '~');
    let (s, id, key) = (parts.next()?, parts.next()?, parts.next()?);
    if s != sort_name(sort) {
        return None;
    }
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key)
        .ok()?;
    Some(BookAfter {
        key: String::from_utf8(key).ok()?,
        id: id.parse().ok()?,
    })
}

pub fn state(s: &ProgressState) -> Value {
    json!({
        "book_id": s.book_id,
        "percent": s.percent,
        "locator": s.locator,
        "status": s.status,
        "device_id": s.device_id,
        "client_ts": s.client_ts,
        "updated_at": s.updated_at,
        "version": s.version,
    })
}

pub fn write_outcome(o: &WriteOutcome) -> Value {
    let mut v = json!({"applied": o.applied, "state": state(&o.state)});
    if let Some(r) = o.reason {
        v["reason"] = json!(r);
    }
    if let Some((sent, used)) = o.clamped {
        // The client's clock was too far ahead: say which time was used instead.
        v["clamped"] = json!({"field": "client_ts", "sent": sent, "used": used});
    }
    v
}

fn position(p: &DevicePosition) -> Value {
    json!({"device_id": p.device_id, "percent": p.percent, "locator": p.locator, "client_ts": p.client_ts})
}

pub fn progress_view(v: &ProgressView) -> Value {
    json!({
        "state": v.state.as_ref().map(state),
        "devices": v.devices.iter().map(position).collect::<Vec<_>>(),
    })
}

/// The body of `POST /v1/books/{id}/progress`, and (with `book_id`) of a WebSocket
/// `progress` frame.
#[derive(Deserialize)]
pub struct ProgressBody {
    pub event_id: EventId,
    pub device_id: dogear_storage::DeviceId,
    pub percent: Percent,
    #[serde(default)]
    pub locator: Option<Locator>,
    #[serde(default)]
    pub status: Option<ReadStatus>,
    pub client_ts: Timestamp,
    #[serde(default)]
    pub rewind: Option<bool>,
}

impl ProgressBody {
    pub fn into_write(self, book_id: dogear_storage::BookId) -> ProgressWrite {
        ProgressWrite {
            event_id: self.event_id,
            book_id,
            device_id: self.device_id,
            percent: self.percent,
            locator: self.locator,
            status: self.status,
            client_ts: self.client_ts,
            rewind: self.rewind.unwrap_or(false),
        }
    }
}

/// A changes-feed cursor: opaque to clients; to us a log seq (`"17"`) or a place inside the
/// initial snapshot (`"snap.17.<book id>"`).
pub fn cursor(c: FeedCursor) -> String {
    match c {
        FeedCursor::Log(seq) => seq.to_string(),
        FeedCursor::Snapshot { head, after } => format!("snap.{head}.{after}"),
    }
}

pub fn parse_cursor(field: &str, s: &str) -> Result<FeedCursor, crate::error::ApiError> {
    let bad = || crate::error::ApiError::field(field, "is not a valid cursor");
    if let Some(rest) = s.strip_prefix("snap.") {
        let (head, after) = rest.split_once('.').ok_or_else(bad)?;
        return Ok(FeedCursor::Snapshot {
            head: head.parse().map_err(|_| bad())?,
            after: after.parse().map_err(|_| bad())?,
        });
    }
    s.parse::<u64>().map(FeedCursor::Log).map_err(|_| bad())
}
