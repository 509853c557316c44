//! The web reader's use cases: what a book looks like to the reader (one call, with a
//! token for its parts), and each part behind that token. Whoever asks for a part must
//! still be able to see the book: the token names the reader and the book, and the book is
//! looked up for that reader again on every part.

use super::{EpubLayout, Part, TocEntry};
use crate::app::Dogear;
use crate::error::AppError;
use dogear_storage::{BookFile, BookId, Format, UserId};
use serde::Serialize;
use std::borrow::Cow;
use std::path::PathBuf;

/// Copies of remote (S3) book files kept on this node's disk for the reader.
const CACHED_COPIES: usize = 32;
/// PDF pages rendered at once on this node: each is a poppler process of up to a few
/// hundred MB, and a client asking for a hundred pages at once must not start a hundred.
static PDF_RENDERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A book as the web reader opens it.
#[derive(Clone, Debug, Serialize)]
pub struct ReaderBook {
    pub book_id: BookId,
    pub title: String,
    pub format: Format,
    /// Opens this book's parts (`/read/{token}/...`) for `auth.reader_token_secs`.
    pub token: String,
    /// EPUB: the spine's documents with their sizes, in reading order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spine: Option<Vec<super::SpineDoc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toc: Option<Vec<TocEntry>>,
    /// PDF and CBZ: the number of pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
}

fn not_readable() -> AppError {
    AppError::NotFound(Cow::Borrowed(
        "format: the book has no EPUB, PDF or CBZ file to read",
    ))
}

fn unreadable(e: crate::import::ImportError) -> AppError {
    AppError::Conflict(Cow::Owned(format!(
        "file: the book's file cannot be read ({})",
        e.message
    )))
}

impl Dogear {
    /// A path on this node's disk holding `file`: the stored file itself, or a copy kept in
    /// the staging folder under its content hash (the newest few are kept).
    async fn reader_local(&self, file: &BookFile) -> Result<PathBuf, AppError> {
        let objects = self.importer.objects();
        if let Some(p) = objects.local_path(&file.location) {
            return Ok(p);
        }
        let dir = self.importer.settings().staging_dir.join("reader");
        let kept = dir.join(format!("{}.{}", file.hash, file.format.extension()));
        if tokio::fs::metadata(&kept).await.is_ok() {
            return Ok(kept);
        }
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| AppError::Unavailable(format!("reader cache: {e}")))?;
        let (copy, temporary) = self
            .local_copy(&file.location)
            .await
            .map_err(|e| AppError::Unavailable(format!("book file: {e}")))?;
        if !temporary {
            return Ok(copy);
        }
        tokio::fs::rename(&copy, &kept)
            .await
            .map_err(|e| AppError::Unavailable(format!("reader cache: {e}")))?;
        let d = dir.clone();
        let _ = tokio::task::spawn_blocking(move || prune(&d)).await;
        Ok(kept)
    }

    /// The book as the reader opens it.
    pub async fn reader(&self, user: UserId, id: BookId) -> Result<ReaderBook, AppError> {
        let book = self.book(user, id).await?;
        let file = book.meta.readable().cloned().ok_or_else(not_readable)?;
        let path = self.reader_local(&file).await?;
        let token = self.accounts().reader_token(user, id).await?;
        let format = file.format;
        let mut out = ReaderBook {
            book_id: id,
            title: book.title.clone(),
            format,
            token,
            spine: None,
            toc: None,
            pages: None,
        };
        match format {
            Format::Epub | Format::Kepub => {
                let layout: EpubLayout =
                    tokio::task::spawn_blocking(move || super::epub_layout(&path))
                        .await
                        .map_err(|e| AppError::Unavailable(format!("reader: {e}")))?
                        .map_err(unreadable)?;
                out.spine = Some(layout.spine);
                out.toc = Some(layout.toc);
            }
            Format::Pdf | Format::Cbz => {
                let pages = match self.koreader_found.get(&file.hash, 0) {
                    Some(n) => n,
                    None => {
                        let n = tokio::task::spawn_blocking(move || {
                            crate::kosync::pages::count(&path, format)
                        })
                        .await
                        .ok()
                        .flatten();
                        self.koreader_found.put(&file.hash, 0, n);
                        n
                    }
                };
                out.pages = Some(pages.ok_or(AppError::Conflict(Cow::Borrowed(
                    "file: the pages of the book's file cannot be counted",
                )))?);
            }
        }
        Ok(out)
    }

    /// One part of a book behind a reader token: `epub/<path in the book>` or
    /// `page/<n>` (with `width` in pixels for a PDF page).
    pub async fn reader_part(
        &self,
        token: &str,
        part: &str,
        width: Option<u32>,
    ) -> Result<Part, AppError> {
        let (user, id) = self.accounts().authenticate_reader(token)?;
        let book = self.book(user, id).await?;
        let file = book.meta.readable().cloned().ok_or_else(not_readable)?;
        let missing = || AppError::NotFound(Cow::Borrowed("part"));
        let path = self.reader_local(&file).await?;
        let found = match (file.format, part.split_once('/')) {
            (Format::Epub | Format::Kepub, Some(("epub", name))) => {
                let name = crate::import::names::percent_decode(name);
                tokio::task::spawn_blocking(move || super::epub_part(&path, &name))
                    .await
                    .map_err(|e| AppError::Unavailable(format!("reader: {e}")))?
                    .map_err(unreadable)?
            }
            (Format::Cbz, Some(("page", n))) => {
                let n: u32 = n.parse().map_err(|_| missing())?;
                tokio::task::spawn_blocking(move || super::cbz_page(&path, n))
                    .await
                    .map_err(|e| AppError::Unavailable(format!("reader: {e}")))?
                    .map_err(unreadable)?
            }
            (Format::Pdf, Some(("page", n))) => {
                let n: u32 = n.parse().ok().filter(|n| *n >= 1).ok_or_else(missing)?;
                let width = width.unwrap_or(1400);
                let _turn = PDF_RENDERS
                    .acquire()
                    .await
                    .map_err(|e| AppError::Unavailable(format!("reader: {e}")))?;
                tokio::task::spawn_blocking(move || super::pdf_page(&path, n, width))
                    .await
                    .map_err(|e| AppError::Unavailable(format!("reader: {e}")))?
            }
            _ => None,
        };
        found.ok_or_else(missing)
    }
}

/// Keeps the newest [`CACHED_COPIES`] files of the reader's cache folder.
fn prune(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, e.path()))
        })
        .collect();
    if files.len() <= CACHED_COPIES {
        return;
    }
    files.sort();
    let excess = files.len() - CACHED_COPIES;
    for (_, p) in files.into_iter().take(excess) {
        let _ = std::fs::remove_file(p);
    }
}
