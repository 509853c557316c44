//! Calibre libraries. A source actor per configured library mirrors its books into a
//! Dogear library: at start, when `metadata.db` (or its `-wal`/`-shm`/`-journal`) changes
//! (debounced 2 s), and on a timer. Book files and covers are served from the Calibre folder
//! in place; `metadata.db` is only ever opened read-only.

use super::hash;
use super::pipeline::Importer;
use super::source::{Source, Watch};
use crate::library_actor::{LibraryOp, LibraryReply};
use crate::placement::reply;
use dogear_storage::calibre::{self, CalibreBook};
use dogear_storage::{
    Book, BookFile, BookId, BookMeta, BookSource, Cover, FileLocation, Format, LibraryId,
    RegisterOutcome, SourceFile, Timestamp,
};
use notify::RecursiveMode;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct CalibreConfig {
    /// Canonical path of the library folder (the one holding `metadata.db`).
    pub path: PathBuf,
    pub library: LibraryId,
    pub watch: bool,
    pub scan_interval: Duration,
}

impl CalibreConfig {
    pub fn source_key(&self) -> String {
        format!("calibre:{}", self.path.display())
    }
}

pub fn actor_key(cfg: &CalibreConfig) -> String {
    format!("import:{}", cfg.source_key())
}

#[derive(Debug, Default, PartialEq)]
pub struct SyncReport {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// A token that changes whenever Calibre changes the book (its `last_modified` moves on
/// every edit, format added or cover set).
fn change_token(b: &CalibreBook) -> i64 {
    let sizes: Vec<String> = b
        .formats
        .iter()
        .map(|f| format!("{}:{}", f.format, f.size))
        .collect();
    let s = format!("{}|{}|{}", b.last_modified, b.has_cover, sizes.join(","));
    xxhash_rust::xxh3::xxh3_64(s.as_bytes()) as i64
}

fn format_of(calibre: &str) -> Option<Format> {
    match calibre {
        "EPUB" => Some(Format::Epub),
        "KEPUB" => Some(Format::Kepub),
        "PDF" => Some(Format::Pdf),
        "CBZ" => Some(Format::Cbz),
        _ => None,
    }
}

/// The Dogear book for a Calibre book (hashing its files).
pub fn book_of(root: &Path, library: LibraryId, b: &CalibreBook) -> Book {
    let now = Timestamp::now();
    let mut formats = Vec::new();
    for f in &b.formats {
        let Some(format) = format_of(&f.format) else {
            continue;
        };
        let path = root.join(f.relative_path(&b.path));
        match hash::file(&path) {
            Ok((h, size)) => formats.push(BookFile {
                format,
                size,
                hash: h,
                koreader: dogear_storage::digest::partial_md5_file(&path).ok(),
                location: FileLocation::External {
                    path: path.to_string_lossy().into_owned(),
                },
            }),
            Err(e) => {
                tracing::warn!(book = b.id, file = %path.display(), error = %e, "Calibre book file unreadable")
            }
        }
    }
    let cover_path = root.join(&b.path).join("cover.jpg");
    let cover = (b.has_cover && cover_path.is_file()).then(|| Cover {
        full: FileLocation::External {
            path: cover_path.to_string_lossy().into_owned(),
        },
        thumb: None,
        etag: format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(
                format!("{}|{}", cover_path.display(), b.last_modified).as_bytes()
            )
        ),
        content_type: "image/jpeg".into(),
    });
    let languages: Vec<String> = b.languages.iter().map(|l| calibre::bcp47(l)).collect();
    let published = b.pubdate.clone().filter(|d| {
        !d.starts_with("0101-") && !d.starts_with("0100-") && !d.is_empty() && d != "None"
    });
    let identifiers = crate::books::clean_identifiers(&b.identifiers);
    let plain = |s: &str| crate::books::without_controls(s, false);
    Book {
        id: BookId::generate(),
        library_id: library,
        title: match plain(b.title.trim()) {
            t if t.trim().is_empty() => "Untitled".into(),
            t => t,
        },
        authors: b
            .authors
            .iter()
            .map(|(n, _)| plain(n))
            .filter(|n| n != "Unknown" && !n.trim().is_empty())
            .collect(),
        language: languages.first().cloned(),
        identifiers,
        added_at: now,
        updated_at: now,
        deleted_at: None,
        version: 1,
        meta: BookMeta {
            subtitle: None,
            title_sort: b.sort.clone(),
            author_sorts: b
                .authors
                .iter()
                .filter(|(n, _)| n != "Unknown")
                .map(|(_, s)| s.clone())
                .collect(),
            series: b.series.as_deref().map(plain),
            series_index: b.series.as_ref().and(b.series_index),
            publisher: b.publisher.as_deref().map(plain),
            published,
            description: b
                .comments
                .as_deref()
                .map(|c| crate::books::without_controls(c, true)),
            tags: b.tags.iter().map(|t| plain(t)).collect(),
            languages,
            rating: b.rating,
            // Calibre does not record it, and opening 20,000 EPUBs to look is not worth it.
            fixed_layout: false,
            cover,
            formats,
            source: Some(BookSource::Calibre),
            field_clocks: Default::default(),
        },
    }
}

/// Brings the Dogear library in line with the Calibre library.
pub async fn sync(importer: &Importer, cfg: &CalibreConfig) -> Result<SyncReport, String> {
    let db = cfg.path.join("metadata.db");
    let books = tokio::task::spawn_blocking(move || calibre::read_library(&db))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let source = cfg.source_key();
    let store = importer.store();
    let known: HashMap<String, SourceFile> = store
        .source_files(&source)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|s| (s.path.clone(), s))
        .collect();
    let mut report = SyncReport::default();
    let mut changed: Vec<(CalibreBook, Option<BookId>)> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for b in books {
        let key = b.id.to_string();
        ids.insert(key.clone());
        match known.get(&key) {
            Some(k) if k.mtime == change_token(&b) && k.book_id.is_some() => report.unchanged += 1,
            Some(k) => {
                let id = k.book_id;
                changed.push((b, id));
            }
            None => changed.push((b, None)),
        }
    }
    // Build the records (hashing files) on blocking threads, a share each.
    let root = Arc::new(cfg.path.clone());
    let library = cfg.library;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let chunk = changed.len().div_ceil(workers).max(1);
    let mut tasks = Vec::new();
    let mut rest = changed;
    while !rest.is_empty() {
        let tail = rest.split_off(chunk.min(rest.len()));
        let part = std::mem::replace(&mut rest, tail);
        let root = root.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|(b, existing)| {
                    let book = book_of(&root, library, &b);
                    (b.id, change_token(&b), existing, book)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut fresh = Vec::new();
    for t in tasks {
        for (cid, token, existing, mut book) in t.await.map_err(|e| e.to_string())? {
            let mut src = SourceFile {
                source: source.clone(),
                path: cid.to_string(),
                library_id: library,
                hash: book
                    .content_hashes()
                    .first()
                    .map(|h| h.to_string())
                    .unwrap_or_default(),
                size: 0,
                mtime: token,
                book_id: Some(book.id),
            };
            if let Some(id) = existing {
                book.id = id;
                src.book_id = Some(id);
                let r = importer
                    .placement()
                    .ask_library(library, LibraryOp::Refresh(Box::new(book.clone())))
                    .await;
                match r {
                    Ok(_) => {
                        store
                            .put_source_files(&[src], &[])
                            .await
                            .map_err(|e| e.to_string())?;
                        report.updated += 1;
                        continue;
                    }
                    Err(crate::AppError::NotFound(_)) => {
                        book.id = BookId::generate();
                        src.book_id = Some(book.id);
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            fresh.push((book, Some(src)));
        }
    }
    for batch in fresh.chunks(2048) {
        let batch = batch.to_vec();
        let results = reply!(
            importer
                .placement()
                .ask_library(library, LibraryOp::ImportMany(batch.clone()))
                .await,
            LibraryReply::Many
        )
        .map_err(|e| e.to_string())?;
        let mut remap = Vec::new();
        for ((_, src), r) in batch.into_iter().zip(results) {
            match r.map_err(|e| e.to_string())? {
                RegisterOutcome::Created => report.added += 1,
                RegisterOutcome::Duplicate(existing) => {
                    if let Some(mut s) = src {
                        s.book_id = Some(existing);
                        remap.push(s);
                    }
                    report.added += 1;
                }
            }
        }
        if !remap.is_empty() {
            store
                .put_source_files(&remap, &[])
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    // Books deleted in Calibre.
    let mut removals = Vec::new();
    for (key, k) in &known {
        if ids.contains(key) {
            continue;
        }
        removals.push((source.clone(), key.clone()));
        if let Some(book) = k.book_id {
            match importer
                .placement()
                .ask_library(library, LibraryOp::Remove(book))
                .await
            {
                Ok(_) => report.removed += 1,
                Err(e) => {
                    tracing::warn!(%book, error = %e, "could not remove a book deleted in Calibre")
                }
            }
        }
    }
    if !removals.is_empty() {
        store
            .put_source_files(&[], &removals)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(report)
}

fn is_db_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("metadata.db"))
}

/// A Calibre library as a [`Source`].
pub struct CalibreSource(pub CalibreConfig);

impl Source for CalibreSource {
    const KIND: &'static str = "calibre";

    fn path(&self) -> &Path {
        &self.0.path
    }

    fn watch(&self) -> Option<Watch> {
        // The folder, not the file: Calibre replaces files and SQLite creates and deletes
        // its journal next to it.
        self.0.watch.then_some(Watch {
            mode: RecursiveMode::NonRecursive,
            debounce: Duration::from_secs(2),
            relevant: is_db_file,
        })
    }

    fn interval(&self) -> Duration {
        self.0.scan_interval
    }

    async fn pass(&mut self, importer: &Importer) -> Result<Option<String>, String> {
        let r = sync(importer, &self.0).await?;
        Ok((r.added + r.updated + r.removed > 0).then(|| {
            format!(
                "Calibre library synced: added={} updated={} removed={} unchanged={}",
                r.added, r.updated, r.removed, r.unchanged
            )
        }))
    }
}
