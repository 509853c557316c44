//! A Kobo's highlights, notes and bookmarks ("dogears"), which it sends to its reading
//! services (`PATCH /api/v3/content/{book}/annotations`) and reads back when a book is opened
//! (`GET`), as Dogear's annotations: the same documents every other client reads and writes
//! (`crate::docs`). The device's place (`location.span`) is kept as the annotation's `kobo`
//! locator and sent back exactly; an annotation made elsewhere reaches the Kobo on the span
//! of the KEPUB at its percentage (`position::locate`), the same estimate its reading
//! position gets.

use crate::app::Dogear;
use crate::docs::{
    AnnotationFields, AnnotationKind, Colour, DocChange, DocOutcome, DocWrite, KoboSpan, Locators,
};
use crate::error::AppError;
use dogear_storage::{
    BookId, DocId, DocKind, DocQuery, Format, Percent, Timestamp, UserDoc, UserId,
};
use serde_json::{Value, json};

/// The id of a device's annotation as a document id: its own when it is a UUID (a Kobo's
/// are), else one derived from it, the same every time.
pub fn doc_id(kobo_id: &str) -> DocId {
    if let Ok(id) = kobo_id.parse() {
        return id;
    }
    let h = crate::auth::sha256_hex(&format!("kobo-annotation\0{kobo_id}"));
    let hex = &h[..32];
    let uuid = format!(
        "{}-{}-4{}-8{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    );
    uuid.parse().unwrap_or_else(|_| DocId::generate())
}

fn colour(name: &str) -> Option<Colour> {
    match name.trim().to_ascii_lowercase().as_str() {
        "yellow" | "0" => Some(Colour::Yellow),
        "green" | "3" => Some(Colour::Green),
        "blue" | "2" => Some(Colour::Blue),
        "pink" | "red" | "1" => Some(Colour::Pink),
        "purple" => Some(Colour::Purple),
        "orange" => Some(Colour::Orange),
        _ => None,
    }
}

fn colour_name(c: Colour) -> &'static str {
    match c {
        Colour::Yellow => "yellow",
        Colour::Green => "green",
        Colour::Blue => "blue",
        Colour::Pink => "pink",
        Colour::Purple => "purple",
        Colour::Orange => "orange",
    }
}

/// One of the device's `updatedAnnotations` as an annotation's fields and the device's
/// time of the change; `None` if it is not one (no id, no place).
pub fn from_kobo(a: &Value) -> Option<(DocId, AnnotationFields, Option<Timestamp>)> {
    let id = a["id"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 256)?;
    let span = &a["location"]["span"];
    let s = |k: &str| span[k].as_str().map(str::to_string);
    let kobo = KoboSpan {
        chapter_filename: s("chapterFilename")?,
        chapter_progress: span["chapterProgress"].as_f64(),
        chapter_title: s("chapterTitle"),
        start_path: s("startPath")?,
        start_char: span["startChar"].as_i64(),
        end_path: s("endPath").or_else(|| s("startPath"))?,
        end_char: span["endChar"].as_i64(),
    };
    let kind = match a["type"].as_str().unwrap_or("highlight") {
        "note" => AnnotationKind::Note,
        "dogear" | "bookmark" => AnnotationKind::Bookmark,
        _ => AnnotationKind::Highlight,
    };
    let text = |k: &str| a[k].as_str().filter(|t| !t.is_empty()).map(str::to_string);
    let chapter = kobo.chapter_title.clone();
    let fields = AnnotationFields {
        kind,
        locator: Locators {
            kobo: Some(kobo),
            ..Default::default()
        },
        colour: a["highlightColor"].as_str().and_then(colour),
        text: text("highlightedText"),
        note: text("noteText"),
        chapter,
    };
    let at = a["clientLastModifiedUtc"]
        .as_str()
        .and_then(Timestamp::parse);
    Some((doc_id(id), fields, at))
}

/// An annotation as the device reads it, on `span` (its own, or one found for it).
pub fn to_kobo(doc: &UserDoc, f: &AnnotationFields, span: &KoboSpan) -> Value {
    let kind = match f.kind {
        AnnotationKind::Highlight => "highlight",
        AnnotationKind::Note => "note",
        AnnotationKind::Bookmark => "dogear",
    };
    json!({
        "id": doc.id,
        "type": kind,
        "highlightColor": f.colour.map(colour_name),
        "highlightedText": f.text,
        "noteText": f.note,
        "clientLastModifiedUtc": crate::kobo::state::kobo_time(doc.updated_at),
        "location": {"span": {
            "chapterFilename": span.chapter_filename,
            "chapterProgress": span.chapter_progress.unwrap_or(0.0),
            "chapterTitle": span.chapter_title,
            "startPath": span.start_path,
            "startChar": span.start_char.unwrap_or(0),
            "endPath": span.end_path,
            "endChar": span.end_char.unwrap_or(0),
        }},
    })
}

/// A span path as Nickel writes them (`span#kobo\.3\.2`) for a span id (`kobo.3.2`).
fn span_path(id: &str) -> String {
    format!("span#{}", id.replace('.', "\\."))
}

impl Dogear {
    /// The reader's live annotations of `book` that a Kobo can place: their own span, or one
    /// found in the book's KEPUB at their percentage.
    pub async fn kobo_annotations(
        &self,
        user: UserId,
        book: BookId,
    ) -> Result<Vec<Value>, AppError> {
        let b = self.book(user, book).await?;
        let docs = self
            .docs(DocQuery {
                user,
                kind: DocKind::Annotation,
                book: Some(book),
                after: 0,
                deleted: false,
                limit: crate::docs::MAX_PAGE,
            })
            .await?;
        let kepub = b.meta.format(Format::Kepub).cloned();
        let mut out = Vec::new();
        for d in docs {
            let Ok(f) = serde_json::from_str::<AnnotationFields>(&d.body) else {
                continue;
            };
            let span = match (&f.locator.kobo, f.locator.percent, &kepub) {
                (Some(k), _, _) => Some(k.clone()),
                (None, Some(p), Some(kepub)) => self.kobo_span_at(kepub, p).await,
                _ => None,
            };
            if let Some(span) = span {
                out.push(to_kobo(&d, &f, &span));
            }
        }
        Ok(out)
    }

    async fn kobo_span_at(&self, kepub: &dogear_storage::BookFile, p: Percent) -> Option<KoboSpan> {
        let found = self.kepub_place(kepub, p.get()).await?;
        Some(KoboSpan {
            chapter_filename: found.source.clone(),
            chapter_progress: Some(found.document_percent / 100.0),
            chapter_title: None,
            start_path: span_path(&found.span),
            start_char: Some(0),
            end_path: span_path(&found.span),
            end_char: Some(0),
        })
    }

    /// What a Kobo sent: its new and changed annotations and the ids it deleted. A change
    /// made on the device before the annotation last changed elsewhere loses to that.
    pub async fn kobo_put_annotations(
        &self,
        user: UserId,
        book: BookId,
        body: &Value,
    ) -> Result<(), AppError> {
        self.book(user, book).await?;
        let mut writes = Vec::new();
        for a in body["updatedAnnotations"].as_array().into_iter().flatten() {
            let Some((id, fields, at)) = from_kobo(a) else {
                continue;
            };
            let current = self.store.doc(user, id).await?;
            if let (Some(c), Some(at)) = (&current, at)
                && c.updated_at > at
                && c.deleted_at.is_none()
            {
                continue;
            }
            let Ok(fields) = serde_json::to_string(&fields) else {
                continue;
            };
            writes.push(DocWrite {
                kind: DocKind::Annotation,
                id: Some(id),
                base_version: Some(current.as_ref().map_or(0, |c| c.version)),
                book_id: Some(Some(book)),
                change: DocChange::Put(fields),
            });
        }
        for id in body["deletedAnnotationIds"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(id) = id.as_str() else { continue };
            let id = doc_id(id);
            if self
                .store
                .doc(user, id)
                .await?
                .is_some_and(|d| d.deleted_at.is_none())
            {
                writes.push(DocWrite {
                    kind: DocKind::Annotation,
                    id: Some(id),
                    base_version: None,
                    book_id: None,
                    change: DocChange::Delete,
                });
            }
        }
        for chunk in writes.chunks(crate::docs::MAX_PUSH) {
            for r in self.write_docs(user, chunk.to_vec()).await? {
                match r {
                    // Changed elsewhere meanwhile: the newer one stays.
                    Ok(DocOutcome::Applied(_)) | Ok(DocOutcome::Conflict(_)) => {}
                    Err(e) => tracing::debug!(error = %e, "a kobo annotation was not stored"),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kobo_annotation_round_trips() {
        let a = json!({
            "id": "8b1a6f8e-5c2d-4c41-9a4e-3d2f1e0b9c7a",
            "type": "note",
            "highlightColor": "Yellow",
            "highlightedText": "To be, or not to be",
            "noteText": "the question",
            "clientLastModifiedUtc": "2026-12-03T07:28:28.1230000Z",
            "location": {"span": {
                "chapterFilename": "OEBPS/act3.xhtml", "chapterProgress": 0.25,
                "chapterTitle": "Act III", "startPath": "span#kobo\\.12\\.1", "startChar": 4,
                "endPath": "span#kobo\\.12\\.2", "endChar": 10
            }}
        });
        let (id, f, at) = from_kobo(&a).unwrap();
        assert_eq!(id.to_string(), "8b1a6f8e-5c2d-4c41-9a4e-3d2f1e0b9c7a");
        assert_eq!(f.kind, AnnotationKind::Note);
        assert_eq!(f.colour, Some(Colour::Yellow));
        assert!(at.is_some());
        let doc = UserDoc {
            user_id: UserId::generate(),
            kind: DocKind::Annotation,
            id,
            book_id: None,
            version: 1,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            deleted_at: None,
            change_seq: 1,
            body: String::new(),
        };
        let back = to_kobo(&doc, &f, f.locator.kobo.as_ref().unwrap());
        assert_eq!(back["location"], a["location"]);
        assert_eq!(back["noteText"], "the question");
        assert_eq!(back["type"], "note");
        assert_eq!(doc_id("not-a-uuid"), doc_id("not-a-uuid"));
        assert_ne!(doc_id("not-a-uuid"), doc_id("not-a-uuid2"));
        assert!(from_kobo(&json!({"id": "x"})).is_none());
        assert_eq!(span_path("kobo.3.2"), "span#kobo\\.3\\.2");
    }
}
