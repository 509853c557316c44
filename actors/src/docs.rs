//! Notes, todos and annotations: small documents a reader writes from any device, that apps
//! may also keep offline. Each has a version; a change names the version it was made on
//! (`base_version`), and a change made on an older one is not applied: the writer gets the
//! current document back to merge (`DocOutcome::Conflict`), nothing is overwritten
//! silently. Every write takes the user's next change number, so "everything after
//! checkpoint N" (tombstones included) is a complete pull.
//!
//! The user's actor decides and stores each write, so two devices writing at once are put in
//! one order; what each kind holds is checked here.

use crate::app::Dogear;
use crate::error::AppError;
use crate::messages::{UserOp, UserReply};
use crate::placement::reply;
use dogear_storage::{
    BookId, DocId, DocKind, DocQuery, Percent, Store, StoreError, Timestamp, UserDoc, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The most documents one push takes, and one page of a pull at most.
pub const MAX_PUSH: usize = 500;
pub const MAX_PAGE: usize = 1000;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteFields {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TodoFields {
    pub title: String,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub due_at: Option<Timestamp>,
}

/// What an annotation marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationKind {
    Highlight,
    Bookmark,
    Note,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    Yellow,
    Green,
    Blue,
    Pink,
    Purple,
    Orange,
}

/// A place in a Kobo's KEPUB: the chapter's file and the span path and character where the
/// marked text starts and ends, as the device sends them (`location.span`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KoboSpan {
    pub chapter_filename: String,
    #[serde(default)]
    pub chapter_progress: Option<f64>,
    #[serde(default)]
    pub chapter_title: Option<String>,
    pub start_path: String,
    #[serde(default)]
    pub start_char: Option<i64>,
    pub end_path: String,
    #[serde(default)]
    pub end_char: Option<i64>,
}

/// Where an annotation is, in every form some client understands; at least one is given.
/// Each client reads the form it knows: the web an EPUB CFI, a Kobo its span, KOReader an
/// XPointer, PDF and comic readers a page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locators {
    #[serde(default)]
    pub cfi: Option<String>,
    #[serde(default)]
    pub kobo: Option<KoboSpan>,
    #[serde(default)]
    pub xpointer: Option<String>,
    /// 1-based page of a PDF or comic.
    #[serde(default)]
    pub page: Option<u32>,
    #[serde(default)]
    pub percent: Option<Percent>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationFields {
    pub kind: AnnotationKind,
    pub locator: Locators,
    #[serde(default)]
    pub colour: Option<Colour>,
    /// The marked text.
    #[serde(default)]
    pub text: Option<String>,
    /// The reader's note on it.
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub chapter: Option<String>,
}

fn text(field: &str, s: &str, max: usize) -> Result<(), AppError> {
    if s.len() > max {
        return Err(AppError::bad(field, format!("must be at most {max} bytes")));
    }
    Ok(())
}

/// Parses and checks the fields of a `kind` document; errors name the field.
pub fn check_fields(kind: DocKind, fields: &Value) -> Result<String, AppError> {
    fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, AppError> {
        serde_path_to_error::deserialize(v.clone()).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "body".to_string()
            } else {
                path
            };
            AppError::bad(&field, e.inner().to_string())
        })
    }
    let canonical = match kind {
        DocKind::Note => {
            let n: NoteFields = parse(fields)?;
            text("title", &n.title, 512)?;
            text("body", &n.body, 256 * 1024)?;
            serde_json::to_string(&n)
        }
        DocKind::Todo => {
            let t: TodoFields = parse(fields)?;
            if t.title.trim().is_empty() {
                return Err(AppError::bad("title", "must not be empty"));
            }
            text("title", &t.title, 512)?;
            serde_json::to_string(&t)
        }
        DocKind::Annotation => {
            let a: AnnotationFields = parse(fields)?;
            let l = &a.locator;
            if l.cfi.is_none()
                && l.kobo.is_none()
                && l.xpointer.is_none()
                && l.page.is_none()
                && l.percent.is_none()
            {
                return Err(AppError::bad(
                    "locator",
                    "must give at least one of cfi, kobo, xpointer, page, percent",
                ));
            }
            for (f, v) in [("locator.cfi", &l.cfi), ("locator.xpointer", &l.xpointer)] {
                if let Some(v) = v {
                    text(f, v, 4096)?;
                }
            }
            if let Some(k) = &l.kobo {
                for (f, v) in [
                    ("locator.kobo.chapter_filename", &k.chapter_filename),
                    ("locator.kobo.start_path", &k.start_path),
                    ("locator.kobo.end_path", &k.end_path),
                ] {
                    text(f, v, 1024)?;
                }
            }
            if l.page == Some(0) {
                return Err(AppError::bad("locator.page", "pages count from 1"));
            }
            for (f, v) in [("text", &a.text), ("note", &a.note)] {
                if let Some(v) = v {
                    text(f, v, 64 * 1024)?;
                }
            }
            if let Some(c) = &a.chapter {
                text("chapter", c, 1024)?;
            }
            serde_json::to_string(&a)
        }
    };
    canonical.map_err(|e| AppError::Unavailable(format!("document fields: {e}")))
}

/// What a write does to a document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DocChange {
    /// Every field, as JSON (fields left out take their defaults).
    Put(String),
    /// The fields to change, as a JSON object (`null` resets one).
    Patch(String),
    Delete,
}

/// One write: the document (`None`: a new one with an id Dogear makes), the version it was
/// made on (`None`: on whatever is current), its book (`Some(None)`: none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocWrite {
    pub kind: DocKind,
    pub id: Option<DocId>,
    pub base_version: Option<u64>,
    pub book_id: Option<Option<BookId>>,
    pub change: DocChange,
}

/// What became of a write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DocOutcome {
    /// Stored as this (or already so: nothing changed).
    Applied(UserDoc),
    /// Made on an older version (or a new document whose id exists): not applied; the
    /// current document, to merge with and push again on its version.
    Conflict(UserDoc),
}

/// The document after `w` is applied to `current` (`None`: it does not exist yet), or a
/// conflict; `Ok(None)` when nothing changes.
pub fn decide(
    user: UserId,
    id: DocId,
    current: Option<&UserDoc>,
    w: &DocWrite,
    now: Timestamp,
) -> Result<Result<Option<UserDoc>, UserDoc>, AppError> {
    if let Some(c) = current
        && c.kind != w.kind
    {
        return Err(AppError::Conflict(Cow::Owned(format!(
            "id: this id is a {} of yours",
            c.kind
        ))));
    }
    let version = current.map_or(0, |c| c.version);
    match (w.base_version, current) {
        (Some(base), Some(c)) if base != version => return Ok(Err(c.clone())),
        (Some(b), None) if b > 0 => return Err(AppError::NotFound(Cow::Borrowed("document"))),
        (None, Some(c)) if matches!(w.change, DocChange::Put(_)) && w.id.is_some() => {
            // A create with an id that exists: the writer has not seen it.
            return Ok(Err(c.clone()));
        }
        (None, None) if !matches!(w.change, DocChange::Put(_)) => {
            return Err(AppError::NotFound(Cow::Borrowed("document")));
        }
        _ => {}
    }
    let (body, deleted_at) = match &w.change {
        DocChange::Put(fields) => {
            let v: Value =
                serde_json::from_str(fields).map_err(|e| AppError::bad("body", e.to_string()))?;
            (check_fields(w.kind, &v)?, None)
        }
        DocChange::Patch(patch) => {
            let Some(c) = current else {
                return Err(AppError::NotFound(Cow::Borrowed("document")));
            };
            let mut merged: Map<String, Value> =
                serde_json::from_str(&c.body).map_err(|e| AppError::Unavailable(e.to_string()))?;
            let patch: Map<String, Value> =
                serde_json::from_str(patch).map_err(|e| AppError::bad("body", e.to_string()))?;
            for (k, v) in patch {
                if v.is_null() {
                    merged.remove(&k);
                } else {
                    merged.insert(k, v);
                }
            }
            (check_fields(w.kind, &Value::Object(merged))?, None)
        }
        DocChange::Delete => match current {
            Some(c) => (c.body.clone(), Some(c.deleted_at.unwrap_or(now))),
            None => return Err(AppError::NotFound(Cow::Borrowed("document"))),
        },
    };
    let book_id = match w.book_id {
        Some(b) => b,
        None => current.and_then(|c| c.book_id),
    };
    if w.kind == DocKind::Annotation && book_id.is_none() {
        return Err(AppError::bad("book_id", "an annotation is of a book"));
    }
    if let Some(c) = current
        && c.body == body
        && c.deleted_at.is_some() == deleted_at.is_some()
        && c.book_id == book_id
    {
        return Ok(Ok(None));
    }
    Ok(Ok(Some(UserDoc {
        user_id: user,
        kind: w.kind,
        id,
        book_id,
        version: version + 1,
        created_at: current.map_or(now, |c| c.created_at),
        updated_at: now,
        deleted_at,
        change_seq: 0,
        body,
    })))
}

/// Reads a document through the store (`None` for another kind or nobody's).
pub async fn read(
    store: &dyn Store,
    user: UserId,
    kind: DocKind,
    id: DocId,
) -> Result<Option<UserDoc>, StoreError> {
    Ok(store.doc(user, id).await?.filter(|d| d.kind == kind))
}

impl Dogear {
    /// Applies writes of one kind in order, each on its own (a push); a result for each.
    pub async fn write_docs(
        &self,
        user: UserId,
        writes: Vec<DocWrite>,
    ) -> Result<Vec<Result<DocOutcome, AppError>>, AppError> {
        if writes.len() > MAX_PUSH {
            return Err(AppError::bad("changes", "must hold at most 500 changes"));
        }
        reply!(
            self.placement.ask_user(user, UserOp::Docs(writes)).await,
            UserReply::Docs
        )
    }

    /// One write; its conflict is `Ok(Conflict)`, its refusal an error.
    pub async fn write_doc(&self, user: UserId, w: DocWrite) -> Result<DocOutcome, AppError> {
        self.write_docs(user, vec![w])
            .await?
            .pop()
            .unwrap_or_else(|| Err(AppError::Unavailable("a write without its result".into())))
    }

    /// A live document of the user (tombstones are `404`).
    pub async fn doc(&self, user: UserId, kind: DocKind, id: DocId) -> Result<UserDoc, AppError> {
        read(&*self.store, user, kind, id)
            .await?
            .filter(|d| d.deleted_at.is_none())
            .ok_or(AppError::NotFound(Cow::Borrowed("document")))
    }

    /// The user's documents of `q.kind` after change `q.after`, in change order; the
    /// annotations of one book only while the user can read it.
    pub async fn docs(&self, mut q: DocQuery) -> Result<Vec<UserDoc>, AppError> {
        if let Some(b) = q.book {
            self.book(q.user, b).await?;
        }
        q.limit = q.limit.clamp(1, MAX_PAGE);
        Ok(self.store.docs(&q).await?)
    }
}
