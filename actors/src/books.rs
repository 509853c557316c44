//! Book metadata edits and the rules they must satisfy.

use crate::edits::merge_field;
use crate::error::AppError;
use dogear_storage::{Book, FieldClock};
use std::collections::BTreeMap;

/// A metadata-only book as `POST /v1/books` creates it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct NewBook {
    pub title: String,
    pub authors: Vec<String>,
    pub language: Option<String>,
    pub identifiers: BTreeMap<String, String>,
}

/// `PATCH /v1/books/{id}`: only the fields given change. `language: Some(None)` clears it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct BookPatch {
    pub title: Option<String>,
    pub authors: Option<Vec<String>>,
    pub language: Option<Option<String>>,
    pub identifiers: Option<BTreeMap<String, String>>,
    pub series: Option<Option<String>>,
    pub series_index: Option<Option<f64>>,
    pub publisher: Option<Option<String>>,
    pub published: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    /// The client time and device of the edit (`client_ts`, `device_id`); `None`: the
    /// server's time, no device. Each field merges on it (`crate::edits`).
    pub clock: Option<FieldClock>,
}

/// `s` without control characters (NUL, escapes, ...): what imported metadata is cleaned to.
/// Line breaks and tabs survive only where `keep_lines` (descriptions).
pub fn without_controls(s: &str, keep_lines: bool) -> String {
    s.chars()
        .filter(|&c| !c.is_control() || (keep_lines && matches!(c, '\n' | '\r' | '\t')))
        .collect()
}

/// Refuses control characters in a one-line field a client sent: a NUL in a title breaks
/// every consumer downstream (C strings, file names, terminals, Kobo firmware).
fn no_controls(field: &str, s: &str, keep_lines: bool) -> Result<(), AppError> {
    if s.chars()
        .any(|c| c.is_control() && !(keep_lines && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(AppError::bad(field, "must not contain control characters"));
    }
    Ok(())
}

/// Optional text of at most `max` bytes; blank means none.
fn validate_text(field: &str, v: &Option<String>, max: usize) -> Result<Option<String>, AppError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.len() > max => {
            Err(AppError::bad(field, format!("must be at most {max} bytes")))
        }
        Some(t) => {
            no_controls(field, t, field == "description")?;
            Ok(Some(t.to_string()))
        }
    }
}

pub fn validate_tags(tags: &[String]) -> Result<Vec<String>, AppError> {
    if tags.len() > 128 {
        return Err(AppError::bad("tags", "at most 128 tags"));
    }
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim();
        if t.is_empty() || t.len() > 256 {
            return Err(AppError::bad("tags", "each tag must be 1-256 bytes"));
        }
        no_controls("tags", t, false)?;
        if !out.iter().any(|o| o.eq_ignore_ascii_case(t)) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

pub fn validate_title(t: &str) -> Result<String, AppError> {
    let t = t.trim();
    if t.is_empty() || t.len() > 1024 {
        return Err(AppError::bad("title", "must be 1-1024 bytes of text"));
    }
    no_controls("title", t, false)?;
    Ok(t.to_string())
}

pub fn validate_authors(a: &[String]) -> Result<Vec<String>, AppError> {
    if a.len() > 64 {
        return Err(AppError::bad("authors", "at most 64 authors"));
    }
    a.iter()
        .map(|s| {
            let s = s.trim();
            if s.is_empty() || s.len() > 512 {
                Err(AppError::bad("authors", "each author must be 1-512 bytes"))
            } else {
                no_controls("authors", s, false)?;
                Ok(s.to_string())
            }
        })
        .collect()
}

pub fn validate_language(l: &str) -> Result<String, AppError> {
    // BCP 47 tags: letters, digits and hyphens, short.
    let ok =
        !l.is_empty() && l.len() <= 35 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(AppError::bad(
            "language",
            "must be a BCP 47 language tag such as \"en\"",
        ));
    }
    Ok(l.to_string())
}

pub fn validate_identifiers(ids: &BTreeMap<String, String>) -> Result<(), AppError> {
    if ids.len() > 32 {
        return Err(AppError::bad("identifiers", "at most 32 identifiers"));
    }
    for (k, v) in ids {
        let key_ok = !k.is_empty()
            && k.len() <= 32
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !key_ok {
            return Err(AppError::bad(
                "identifiers",
                format!("key {k:?} must be 1-32 of a-z, 0-9, '_', '-'"),
            ));
        }
        if v.is_empty() || v.len() > 256 {
            return Err(AppError::bad(
                "identifiers",
                format!("value of {k:?} must be 1-256 bytes"),
            ));
        }
        no_controls("identifiers", v, false)?;
    }
    Ok(())
}

/// Identifiers as a file or Calibre gives them, made to pass [`validate_identifiers`]:
/// keys lower-cased and stripped to `a-z0-9_-` (at most 32 bytes), values cut to 256
/// bytes, at most 32 of them, empty ones dropped.
pub fn clean_identifiers<'a>(
    ids: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in ids {
        if out.len() == 32 {
            break;
        }
        let key: String = k
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(32)
            .collect();
        let v = without_controls(v.trim(), false);
        let mut end = v.len().min(256);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        if !key.is_empty() && end > 0 {
            out.entry(key).or_insert_with(|| v[..end].to_string());
        }
    }
    out
}

impl NewBook {
    pub fn validated(self) -> Result<NewBook, AppError> {
        validate_identifiers(&self.identifiers)?;
        Ok(NewBook {
            title: validate_title(&self.title)?,
            authors: validate_authors(&self.authors)?,
            language: self
                .language
                .as_deref()
                .map(validate_language)
                .transpose()?,
            identifiers: self.identifiers,
        })
    }
}

impl BookPatch {
    /// The book with the patch applied, validated; `version` and `updated_at` untouched.
    /// The book with this edit merged in, field by field (`crate::edits`): each field the
    /// patch sets is taken unless a later edit already set it. Every field is validated,
    /// taken or not.
    pub fn merge_into(&self, book: &Book, clock: FieldClock) -> Result<Book, AppError> {
        let mut b = book.clone();
        let clocks = &mut b.meta.field_clocks;
        if let Some(t) = &self.title {
            merge_field(clocks, "title", &mut b.title, validate_title(t)?, clock);
        }
        if let Some(a) = &self.authors {
            merge_field(
                clocks,
                "authors",
                &mut b.authors,
                validate_authors(a)?,
                clock,
            );
        }
        if let Some(l) = &self.language {
            let v = l.as_deref().map(validate_language).transpose()?;
            merge_field(clocks, "language", &mut b.language, v, clock);
        }
        if let Some(ids) = &self.identifiers {
            validate_identifiers(ids)?;
            merge_field(
                clocks,
                "identifiers",
                &mut b.identifiers,
                ids.clone(),
                clock,
            );
        }
        let m = &mut b.meta;
        let clocks = &mut m.field_clocks;
        if let Some(s) = &self.series {
            let v = validate_text("series", s, 512)?;
            merge_field(clocks, "series", &mut m.series, v, clock);
        }
        if let Some(i) = &self.series_index {
            let v = match i {
                Some(v) if !v.is_finite() || *v < 0.0 || *v > 1e6 => {
                    return Err(AppError::bad(
                        "series_index",
                        "must be a number from 0 to 1000000",
                    ));
                }
                other => *other,
            };
            merge_field(clocks, "series_index", &mut m.series_index, v, clock);
        }
        if let Some(p) = &self.publisher {
            let v = validate_text("publisher", p, 512)?;
            merge_field(clocks, "publisher", &mut m.publisher, v, clock);
        }
        if let Some(p) = &self.published {
            let v = validate_text("published", p, 64)?;
            merge_field(clocks, "published", &mut m.published, v, clock);
        }
        if let Some(d) = &self.description {
            let v = validate_text("description", d, 64 * 1024)?;
            merge_field(clocks, "description", &mut m.description, v, clock);
        }
        if let Some(t) = &self.tags {
            merge_field(clocks, "tags", &mut m.tags, validate_tags(t)?, clock);
        }
        if m.series.is_none() {
            m.series_index = None;
        }
        Ok(b)
    }
}
