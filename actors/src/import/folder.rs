//! Watched folders. A source actor per configured folder keeps the folder and the library in
//! step: file-system events (debounced) and a periodic timer both trigger the same
//! reconciliation, which compares what is on disk with what was seen last time. New and
//! changed files become import jobs; a file that moved (same size, time and content hash
//! at a new path) keeps its book, so its progress and annotations stay; a file gone for
//! good tombstones its book once no other file holds it.

use super::hash;
use super::pipeline::Importer;
use super::source::{Source, Watch};
use crate::library_actor::LibraryOp;
use dogear_storage::{BookSource, LibraryId, SourceFile};
use notify::RecursiveMode;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct FolderConfig {
    /// Canonical path of the folder.
    pub path: PathBuf,
    pub library: LibraryId,
    pub watch: bool,
    pub scan_interval: Duration,
}

impl FolderConfig {
    pub fn source_key(&self) -> String {
        format!("folder:{}", self.path.display())
    }
}

pub fn actor_key(cfg: &FolderConfig) -> String {
    format!("import:{}", cfg.source_key())
}

/// A file as found on disk, relative to the folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub path: String,
    pub size: u64,
    pub mtime: i64,
}

const BOOK_EXTENSIONS: &[&str] = &["epub", "kepub", "pdf", "cbz"];

/// Book files under `root`, skipping hidden entries and symbolic links (a link could lead
/// out of the folder the administrator chose).
pub fn walk(root: &Path) -> std::io::Result<Vec<Seen>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir != root => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read a folder");
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            if !meta.is_file() || !BOOK_EXTENSIONS.contains(&ext.as_str()) {
                continue;
            }
            let Ok(rel) = entry
                .path()
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
            else {
                continue;
            };
            out.push(Seen {
                path: rel,
                size: meta.len(),
                mtime: mtime_ms(&meta),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

pub fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What one reconciliation did.
#[derive(Debug, Default, PartialEq)]
pub struct ScanReport {
    pub queued: usize,
    pub moved: usize,
    pub removed: usize,
}

/// Brings the library in line with the folder. `enqueued` remembers files already queued
/// by this process (by path, size and time) so a slow import is not queued twice.
pub async fn reconcile(
    importer: &Importer,
    cfg: &FolderConfig,
    enqueued: &mut HashMap<String, (u64, i64)>,
) -> Result<ScanReport, String> {
    let root = cfg.path.clone();
    let seen = tokio::task::spawn_blocking(move || walk(&root))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read {}: {e}", cfg.path.display()))?;
    let source = cfg.source_key();
    let store = importer.store();
    let known: HashMap<String, SourceFile> = store
        .source_files(&source)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|s| (s.path.clone(), s))
        .collect();
    let present: HashSet<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    let mut missing: Vec<&SourceFile> = known
        .values()
        .filter(|k| !present.contains(k.path.as_str()))
        .collect();
    let mut report = ScanReport::default();
    let mut upserts = Vec::new();
    let mut removals = Vec::new();
    for s in &seen {
        let prior = known.get(&s.path);
        if prior.is_some_and(|k| k.size == s.size && k.mtime == s.mtime) {
            enqueued.remove(&s.path);
            continue;
        }
        if enqueued.get(&s.path) == Some(&(s.size, s.mtime)) {
            continue;
        }
        if prior.is_none() {
            // A move keeps size and modification time; confirm by content before reusing.
            let candidates: Vec<usize> = missing
                .iter()
                .enumerate()
                .filter(|(_, m)| m.size == s.size && m.mtime == s.mtime && m.book_id.is_some())
                .map(|(i, _)| i)
                .collect();
            if !candidates.is_empty() {
                let p = cfg.path.join(&s.path);
                let h = tokio::task::spawn_blocking(move || hash::file(&p))
                    .await
                    .map_err(|e| e.to_string())?;
                if let Ok((h, _)) = h
                    && let Some(i) = candidates.into_iter().find(|i| missing[*i].hash == h)
                {
                    let old = missing.remove(i);
                    let mut moved = old.clone();
                    moved.path = s.path.clone();
                    upserts.push(moved);
                    removals.push((source.clone(), old.path.clone()));
                    report.moved += 1;
                    tracing::info!(from = %old.path, to = %s.path, "book file moved; the book keeps its id");
                    continue;
                }
            }
        }
        let mut job = Importer::new_job(
            cfg.library,
            None,
            BookSource::Folder,
            Some(source.clone()),
            &cfg.path.join(&s.path),
            s.path.rsplit('/').next().unwrap_or(&s.path),
            false,
        );
        job.book_id = prior.and_then(|p| p.book_id);
        store.upsert_job(&job).await.map_err(|e| e.to_string())?;
        enqueued.insert(s.path.clone(), (s.size, s.mtime));
        report.queued += 1;
    }
    for m in &missing {
        removals.push((source.clone(), m.path.clone()));
    }
    if !upserts.is_empty() || !removals.is_empty() {
        store
            .put_source_files(&upserts, &removals)
            .await
            .map_err(|e| e.to_string())?;
    }
    for m in missing {
        let Some(book) = m.book_id else { continue };
        let still_held = store
            .source_files_of_book(book)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .any(|s| s.source.starts_with("folder:"));
        if still_held {
            continue;
        }
        match importer
            .placement()
            .ask_library(m.library_id, LibraryOp::Remove(book))
            .await
        {
            Ok(_) => {
                report.removed += 1;
                tracing::info!(path = %m.path, %book, "book file removed; book deleted");
            }
            Err(e) => {
                tracing::warn!(path = %m.path, error = %e, "could not remove a book")
            }
        }
    }
    if report.queued > 0 {
        importer.wake();
    }
    Ok(report)
}

/// A watched folder as a [`Source`]: what it holds, and what this process has queued.
pub struct FolderSource {
    pub cfg: FolderConfig,
    enqueued: HashMap<String, (u64, i64)>,
}

impl FolderSource {
    pub fn new(cfg: FolderConfig) -> FolderSource {
        FolderSource {
            cfg,
            enqueued: HashMap::new(),
        }
    }
}

impl Source for FolderSource {
    const KIND: &'static str = "folder";

    fn path(&self) -> &Path {
        &self.cfg.path
    }

    fn watch(&self) -> Option<Watch> {
        self.cfg.watch.then_some(Watch {
            mode: RecursiveMode::Recursive,
            debounce: Duration::from_millis(500),
            relevant: |_| true,
        })
    }

    fn interval(&self) -> Duration {
        self.cfg.scan_interval
    }

    async fn pass(&mut self, importer: &Importer) -> Result<Option<String>, String> {
        let r = reconcile(importer, &self.cfg, &mut self.enqueued).await?;
        Ok((r != ScanReport::default()).then(|| {
            format!(
                "folder scanned: {} queued, {} moved, {} removed",
                r.queued, r.moved, r.removed
            )
        }))
    }
}
