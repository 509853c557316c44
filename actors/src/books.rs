//! Book metadata edits and the rules they must satisfy.

use crate::error::AppError;
use dogear_storage::Book;
use std::collections::BTreeMap;

/// A metadata-only book as `POST /v1/books` creates it.
#[derive(Clone, Debug, Default)]
pub struct NewBook {
    pub title: String,
    pub authors: Vec<String>,
    pub language: Option<String>,
    pub identifiers: BTreeMap<String, String>,
}

/// `PATCH /v1/books/{id}`: only the fields given change. `language: Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct BookPatch {
    pub title: Option<String>,
    pub authors: Option<Vec<String>>,
    pub language: Option<Option<String>>,
    pub identifiers: Option<BTreeMap<String, String>>,
}

pub fn validate_title(t: &str) -> Result<String, AppError> {
    let t = t.trim();
    if t.is_empty() || t.len() > 1024 {
        return Err(AppError::bad("title", "must be 1-1024 bytes of text"));
    }
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
    }
    Ok(())
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
    pub fn apply_to(&self, book: &Book) -> Result<Book, AppError> {
        let mut b = book.clone();
        if let Some(t) = &self.title {
            b.title = validate_title(t)?;
        }
        if let Some(a) = &self.authors {
            b.authors = validate_authors(a)?;
        }
        if let Some(l) = &self.language {
            b.language = l.as_deref().map(validate_language).transpose()?;
        }
        if let Some(ids) = &self.identifiers {
            validate_identifiers(ids)?;
            b.identifiers = ids.clone();
        }
        Ok(b)
    }
}
