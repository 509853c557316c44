//! The import pipeline: jobs from a persistent queue, each run through the same stages
//! (hash, dedup, extract, cover, KEPUB, store, register) whatever brought the file in.
//! `QueueActor` claims due jobs and runs a bounded number at once; a job that fails for a
//! reason that may pass (the disk, the object store) is retried with backoff, anything
//! else ends `failed` with its error, which is the dead-letter state people can read.

use super::{ImportError, cover, hash, kepub, names};
use crate::error::AppError;
use crate::idle::Ticker;
use crate::library_actor::{LibraryOp, LibraryReply};
use crate::placement::{Placement, reply};
use crate::supervisor::ActiveGuard;
use dogear_storage::{
    Book, BookFile, BookId, BookMeta, BookSource, Cover, FileLocation, Format, ImportJob, JobIssue,
    JobState, Objects, RegisterOutcome, SourceFile, Store, Timestamp,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const QUEUE_KEY: &str = "import:queue";

/// EPUBs up to this size are converted to KEPUB in memory.
const KEPUB_IN_MEMORY: u64 = 32 << 20;

/// Where a converted KEPUB is.
enum Kepub {
    Memory(Vec<u8>),
    /// In the job's staging file.
    File,
}

#[derive(Clone, Debug)]
pub struct ImportSettings {
    /// Where uploads and KEPUBs are staged: inside the data directory.
    pub staging_dir: PathBuf,
    /// Jobs run at once.
    pub workers: usize,
    /// Attempts before a retryable failure becomes final.
    pub max_attempts: u32,
    /// Largest upload accepted, in bytes.
    pub max_upload: u64,
}

struct Inner {
    cpu: super::cpu::CpuPool,
    store: Arc<dyn Store>,
    objects: Objects,
    placement: Placement,
    settings: ImportSettings,
}

/// Everything a job needs; cheap to clone.
#[derive(Clone)]
pub struct Importer(Arc<Inner>);

/// How a job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Finished {
    Imported(BookId),
    Duplicate(BookId),
    Updated(BookId),
}

impl Importer {
    pub fn new(
        store: Arc<dyn Store>,
        objects: Objects,
        placement: Placement,
        settings: ImportSettings,
    ) -> Result<Importer, AppError> {
        std::fs::create_dir_all(&settings.staging_dir)
            .map_err(|e| AppError::Unavailable(format!("staging dir: {e}")))?;
        Ok(Importer(Arc::new(Inner {
            cpu: super::cpu::CpuPool::new(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            ),
            store,
            objects,
            placement,
            settings,
        })))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }
    pub fn objects(&self) -> &Objects {
        &self.0.objects
    }
    pub fn placement(&self) -> &Placement {
        &self.0.placement
    }
    pub fn settings(&self) -> &ImportSettings {
        &self.0.settings
    }

    /// A new queued job for a file.
    pub fn new_job(
        library: dogear_storage::LibraryId,
        user: Option<dogear_storage::UserId>,
        source: BookSource,
        source_key: Option<String>,
        path: &Path,
        filename: &str,
        staged: bool,
    ) -> ImportJob {
        let now = Timestamp::now();
        ImportJob {
            id: dogear_storage::JobId::generate(),
            library_id: library,
            user_id: user,
            source,
            source_key,
            path: path.to_string_lossy().into_owned(),
            filename: filename.to_string(),
            staged,
            state: JobState::Queued,
            attempts: 0,
            run_at: now,
            book_id: None,
            duplicate_of: None,
            error: None,
            warnings: Vec::new(),
            created_at: now,
            updated_at: now,
            node: None,
        }
    }

    /// Stores the job and wakes the queue. A staged file is on this node's disk: only this
    /// node may run its job.
    pub async fn enqueue(&self, job: &ImportJob) -> Result<(), AppError> {
        let mut job = job.clone();
        if job.staged {
            job.node = Some(self.0.placement.node_id().to_string());
        }
        let job = &job;
        self.0.store.upsert_job(job).await?;
        metrics::counter!("dogear_import_jobs_total", "source" => job.source.as_str()).increment(1);
        self.wake();
        Ok(())
    }

    pub fn wake(&self) {
        if let Some(q) = self.0.placement.running::<QueueMsg>(QUEUE_KEY) {
            let _ = q.cast(QueueMsg::Wake);
        }
    }

    /// Runs one claimed job to its end (or its next retry) and stores the result.
    pub async fn run(&self, mut job: ImportJob) -> ImportJob {
        let started = std::time::Instant::now();
        let result = self.attempt(&mut job).await;
        let now = Timestamp::now();
        job.updated_at = now;
        let outcome = match result {
            Ok(f) => {
                job.state = JobState::Done;
                job.error = None;
                match f {
                    Finished::Imported(b) | Finished::Updated(b) => job.book_id = Some(b),
                    Finished::Duplicate(b) => {
                        job.book_id = Some(b);
                        job.duplicate_of = Some(b);
                    }
                }
                "done"
            }
            Err(e) if e.retryable() && job.attempts + 1 < self.0.settings.max_attempts => {
                job.attempts += 1;
                job.state = JobState::Queued;
                let backoff = 2u64.saturating_pow(job.attempts).min(300);
                job.run_at = Timestamp::from_millis(now.millis() + backoff as i64 * 1000);
                job.error = Some(e.issue());
                tracing::warn!(job = %job.id, error = %e, attempt = job.attempts, "import will be retried");
                "retry"
            }
            Err(e) => {
                job.state = JobState::Failed;
                job.error = Some(e.issue());
                // Remember a refused folder file, so scans leave it alone until it changes.
                if let Some(s) = self.source_file(&job, "", 0, None) {
                    let _ = self.0.store.put_source_files(&[s], &[]).await;
                }
                tracing::info!(job = %job.id, file = %job.filename, code = e.code, "import rejected: {}", e.message);
                "failed"
            }
        };
        metrics::counter!("dogear_import_results_total", "outcome" => outcome).increment(1);
        metrics::histogram!("dogear_import_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = self.0.store.upsert_job(&job).await {
            tracing::error!(job = %job.id, error = %e, "could not store the job's result");
        }
        if job.staged && matches!(job.state, JobState::Done | JobState::Failed) {
            let _ = tokio::fs::remove_file(&job.path).await;
        }
        job
    }

    async fn attempt(&self, job: &mut ImportJob) -> Result<Finished, ImportError> {
        let path = PathBuf::from(&job.path);
        let p = path.clone();
        let t = std::time::Instant::now();
        let (hash, size) = blocking(&self.0.cpu, move || {
            hash::file(&p).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    ImportError::new(
                        "file_gone",
                        "the file was removed before it could be imported",
                    )
                } else {
                    ImportError::io(e)
                }
            })
        })
        .await?;
        stage("hash", t);
        // A folder file that changed names the book it belongs to; a retry needs it again.
        let replaces = job.book_id;
        if replaces.is_none()
            && let Some(existing) = self
                .store_op(self.0.store.book_by_hash(job.library_id, &hash))
                .await?
        {
            self.record_source(job, &hash, size, existing).await?;
            return Ok(Finished::Duplicate(existing));
        }

        // Extract, check the cover and convert, on a blocking thread.
        let p = path.clone();
        let filename = job.filename.clone();
        let staging = self
            .0
            .settings
            .staging_dir
            .join(format!("{}.kepub", job.id));
        let kepub_path = staging.clone();
        let (x, cover, kepub, koreader) = blocking(&self.0.cpu, move || {
            let t = std::time::Instant::now();
            // The name KOReader gives this file when it syncs (12 KiB read at most).
            let koreader = dogear_storage::digest::partial_md5_file(&p).ok();
            let (mut x, opened) = super::extract_keep(&p, &filename)?;
            stage("extract", t);
            let t = std::time::Instant::now();
            let cover = match x.cover.take() {
                Some(bytes) => match cover::check(bytes) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        x.warnings.push(e.issue());
                        None
                    }
                },
                None => None,
            };
            stage("cover", t);
            let t = std::time::Instant::now();
            let kepub = if let Some((mut ar, pkg)) = opened {
                // Small books convert in memory; big ones through a staging file.
                let converted = if size <= KEPUB_IN_MEMORY {
                    let cap = size as usize + size as usize / 2;
                    kepub::convert_opened(
                        &mut ar,
                        &pkg,
                        std::io::Cursor::new(Vec::with_capacity(cap)),
                        &mut x.warnings,
                    )
                    .map(|c| Kepub::Memory(c.into_inner()))
                } else {
                    std::fs::File::create(&kepub_path)
                        .map_err(ImportError::io)
                        .and_then(|f| {
                            kepub::convert_opened(
                                &mut ar,
                                &pkg,
                                std::io::BufWriter::new(f),
                                &mut x.warnings,
                            )
                        })
                        .map(|_| Kepub::File)
                };
                match converted {
                    Ok(k) => Some(k),
                    Err(e) => {
                        x.warnings.push(JobIssue {
                            code: "kepub_failed".into(),
                            message: e.message,
                        });
                        None
                    }
                }
            } else {
                None
            };
            stage("kepub", t);
            Ok((x, cover, kepub, koreader))
        })
        .await?;
        job.warnings = x.warnings.clone();
        let format = x.format.unwrap_or(Format::Epub);

        // Store the bytes (content-addressed, so a retry rewrites the same keys).
        let original_key = format!("files/{hash}.{}", format.extension());
        let t = std::time::Instant::now();
        self.put_file(&original_key, &path).await?;
        let mut formats = vec![BookFile {
            format,
            size,
            hash: hash.clone(),
            location: FileLocation::Object { key: original_key },
            koreader,
        }];
        if let Some(k) = kepub {
            let key = format!("files/{hash}.kepub.epub");
            let (khash, ksize, kkoreader) = match k {
                Kepub::Memory(bytes) => {
                    let digest = (
                        hash::bytes(&bytes),
                        bytes.len() as u64,
                        Some(dogear_storage::digest::partial_md5_bytes(&bytes)),
                    );
                    self.0
                        .objects
                        .put_bytes(&key, bytes.into())
                        .await
                        .map_err(|e| {
                            ImportError::new(
                                "storage",
                                format!("the object store refused the KEPUB ({e})"),
                            )
                        })?;
                    digest
                }
                Kepub::File => {
                    let st = staging.clone();
                    let digest = blocking(&self.0.cpu, move || {
                        let (h, size) = hash::file(&st).map_err(ImportError::io)?;
                        let koreader = dogear_storage::digest::partial_md5_file(&st).ok();
                        Ok((h, size, koreader))
                    })
                    .await;
                    let put = match &digest {
                        Ok(_) => self.put_file(&key, &staging).await,
                        Err(_) => Ok(()),
                    };
                    let _ = tokio::fs::remove_file(&staging).await;
                    put?;
                    digest?
                }
            };
            formats.push(BookFile {
                format: Format::Kepub,
                size: ksize,
                hash: khash,
                location: FileLocation::Object { key },
                koreader: kkoreader,
            });
        }
        let cover = match cover {
            Some(c) => Some(self.put_cover(&hash, c).await?),
            None => None,
        };
        stage("store", t);
        let mut book = book_from(job, &x, formats, cover);
        let t = std::time::Instant::now();

        let library = job.library_id;
        if let Some(id) = replaces {
            book.id = id;
            let refreshed = reply!(
                self.0
                    .placement
                    .ask_library(library, LibraryOp::Refresh(Box::new(book.clone())))
                    .await,
                LibraryReply::Book
            );
            match refreshed {
                Ok(b) => {
                    self.record_source(job, &hash, size, b.id).await?;
                    return Ok(Finished::Updated(b.id));
                }
                // The book was deleted meanwhile: import the file as a new book.
                Err(AppError::NotFound(_)) => book.id = BookId::generate(),
                Err(e) => return Err(app_err(e)),
            }
        }
        let source = self.source_file(job, &hash, size, Some(book.id));
        let mut done = job.clone();
        done.state = JobState::Done;
        done.book_id = Some(book.id);
        done.updated_at = Timestamp::now();
        let outcome = reply!(
            self.0
                .placement
                .ask_library(
                    library,
                    LibraryOp::Import(Box::new(book.clone()), source, Some(Box::new(done))),
                )
                .await,
            LibraryReply::Registered
        )
        .map_err(app_err)?;
        stage("register", t);
        match outcome {
            RegisterOutcome::Created => {
                metrics::counter!("dogear_books_imported_total", "source" => job.source.as_str())
                    .increment(1);
                Ok(Finished::Imported(book.id))
            }
            RegisterOutcome::Duplicate(existing) => {
                self.record_source(job, &hash, size, existing).await?;
                Ok(Finished::Duplicate(existing))
            }
        }
    }

    fn source_file(
        &self,
        job: &ImportJob,
        hash: &str,
        size: u64,
        book: Option<BookId>,
    ) -> Option<SourceFile> {
        let source = job.source_key.clone()?;
        let root = source.strip_prefix("folder:")?;
        let rel = Path::new(&job.path)
            .strip_prefix(root)
            .ok()?
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::metadata(&job.path).ok()?;
        let mtime = super::folder::mtime_ms(&meta);
        let size = if size == 0 { meta.len() } else { size };
        Some(SourceFile {
            source,
            path: rel,
            library_id: job.library_id,
            hash: hash.to_string(),
            size,
            mtime,
            book_id: book,
        })
    }

    /// Remembers that a folder's file is (another copy of) this book.
    async fn record_source(
        &self,
        job: &ImportJob,
        hash: &str,
        size: u64,
        book: BookId,
    ) -> Result<(), ImportError> {
        if let Some(s) = self.source_file(job, hash, size, Some(book)) {
            self.store_op(self.0.store.put_source_files(&[s], &[]))
                .await?;
        }
        Ok(())
    }

    async fn store_op<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, dogear_storage::StoreError>>,
    ) -> Result<T, ImportError> {
        f.await
            .map_err(|e| ImportError::new("storage", format!("the database is unavailable ({e})")))
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), ImportError> {
        let objects = &self.0.objects;
        let exists = objects.exists(key).await.unwrap_or(false);
        if !exists {
            objects.put_file(key, path).await.map_err(|e| {
                ImportError::new(
                    "storage",
                    format!("the object store refused the file ({e})"),
                )
            })?;
        }
        Ok(())
    }

    async fn put_cover(&self, hash: &str, c: cover::Cover) -> Result<Cover, ImportError> {
        let ext = match c.content_type {
            "image/png" => "png",
            "image/gif" => "gif",
            "image/webp" => "webp",
            _ => "jpg",
        };
        let etag = hash::bytes(&c.full);
        let full = format!("covers/{hash}.{ext}");
        let err = |e: dogear_storage::ObjectError| {
            ImportError::new(
                "storage",
                format!("the object store refused the cover ({e})"),
            )
        };
        self.0
            .objects
            .put_bytes(&full, c.full.into())
            .await
            .map_err(err)?;
        let thumb = match c.thumb {
            Some(t) => {
                let key = format!("covers/{hash}-thumb.jpg");
                self.0
                    .objects
                    .put_bytes(&key, t.into())
                    .await
                    .map_err(err)?;
                Some(FileLocation::Object { key })
            }
            None => None,
        };
        Ok(Cover {
            full: FileLocation::Object { key: full },
            thumb,
            etag,
            content_type: c.content_type.to_string(),
        })
    }
}

/// Records how long a stage took (`dogear_import_stage_seconds{stage}`).
fn stage(name: &'static str, started: std::time::Instant) {
    let secs = started.elapsed().as_secs_f64();
    metrics::histogram!("dogear_import_stage_seconds", "stage" => name).record(secs);
    tracing::trace!(stage = name, ms = secs * 1000.0, "import stage");
}

fn app_err(e: AppError) -> ImportError {
    match e {
        AppError::Unavailable(m) => ImportError::new("storage", m),
        other => ImportError::new("rejected", other.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    pool: &super::cpu::CpuPool,
    f: impl FnOnce() -> Result<T, ImportError> + Send + 'static,
) -> Result<T, ImportError> {
    match pool.run(f).await {
        Ok(r) => r,
        Err(()) => {
            tracing::error!("import stage panicked");
            Err(ImportError::new(
                "internal",
                "the importer failed on this file; it was not imported",
            ))
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The book record for what was extracted.
pub fn book_from(
    job: &ImportJob,
    x: &super::Extracted,
    formats: Vec<BookFile>,
    cover: Option<Cover>,
) -> Book {
    let now = Timestamp::now();
    let authors: Vec<_> = x.authors.iter().take(64).collect();
    let identifiers = crate::books::clean_identifiers(&x.identifiers);
    let title = truncate(x.title.trim(), 1024);
    Book {
        id: BookId::generate(),
        library_id: job.library_id,
        title: if title.is_empty() {
            "Untitled".into()
        } else {
            title
        },
        authors: authors.iter().map(|a| truncate(&a.name, 512)).collect(),
        language: x
            .languages
            .first()
            .filter(|l| crate::books::validate_language(l).is_ok())
            .cloned(),
        identifiers,
        added_at: now,
        updated_at: now,
        deleted_at: None,
        version: 1,
        meta: BookMeta {
            subtitle: x.subtitle.clone(),
            title_sort: x.title_sort.clone(),
            author_sorts: authors
                .iter()
                .map(|a| {
                    a.sort
                        .clone()
                        .unwrap_or_else(|| names::author_sort(&a.name))
                })
                .collect(),
            series: x.series.as_ref().map(|s| truncate(s, 512)),
            series_index: x.series_index,
            publisher: x.publisher.as_ref().map(|s| truncate(s, 512)),
            published: x.published.clone(),
            description: x.description.as_ref().map(|s| truncate(s, 64 * 1024)),
            tags: x.tags.iter().take(128).map(|t| truncate(t, 256)).collect(),
            languages: x.languages.clone(),
            rating: None,
            fixed_layout: x.fixed_layout,
            cover,
            formats,
            source: Some(job.source),
            field_clocks: Default::default(),
        },
    }
}

// The queue actor.

#[derive(ractor_cluster::RactorMessage)]
pub enum QueueMsg {
    /// New jobs may be due.
    Wake,
    /// A job ended (or was rescheduled).
    Finished,
}

pub struct QueueActor;

pub struct QueueState {
    importer: Importer,
    running: usize,
    /// Members seen down at the last look, whose jobs any node may run were requeued.
    lost: Vec<String>,
    /// When abandoned command-line jobs were last looked for.
    last_abandoned: std::time::Instant,
    _ticker: Ticker,
    _active: ActiveGuard,
}

impl Actor for QueueActor {
    type Msg = QueueMsg;
    type State = QueueState;
    type Arguments = Importer;

    async fn pre_start(
        &self,
        myself: ActorRef<QueueMsg>,
        importer: Importer,
    ) -> Result<QueueState, ActorProcessingErr> {
        // Jobs a stopped node was running start again from the beginning: every stage is
        // idempotent (content-addressed objects, registration deduplicated by hash).
        let node = importer.placement().node_id().to_string();
        let n = importer.store().requeue_running_jobs(&node).await?;
        if n > 0 {
            tracing::info!(jobs = n, "resuming imports interrupted by a stop");
        }
        let ticker = Ticker::start(&myself, Duration::from_secs(1), || QueueMsg::Wake);
        let _ = myself.cast(QueueMsg::Wake);
        Ok(QueueState {
            importer,
            running: 0,
            lost: Vec::new(),
            last_abandoned: std::time::Instant::now(),
            _ticker: ticker,
            _active: ActiveGuard::new("import_queue"),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<QueueMsg>,
        msg: QueueMsg,
        st: &mut QueueState,
    ) -> Result<(), ActorProcessingErr> {
        if let QueueMsg::Finished = msg {
            st.running = st.running.saturating_sub(1);
        }
        let free = st
            .importer
            .settings()
            .workers
            .max(1)
            .saturating_sub(st.running);
        if free == 0 {
            return Ok(());
        }
        // Jobs a lost node was running go back to the queue (those any node can read), once
        // each time the set of lost nodes changes.
        if let Some(c) = st.importer.placement().cluster() {
            let lost: Vec<String> = c
                .members()
                .into_iter()
                .filter(|m| m.state == crate::cluster::MemberState::Down)
                .map(|m| m.node_id)
                .collect();
            if lost != st.lost {
                if !lost.is_empty() {
                    let n = st.importer.store().requeue_jobs_of(&lost).await?;
                    if n > 0 {
                        tracing::info!(jobs = n, nodes = ?lost, "took over imports of lost nodes");
                    }
                }
                st.lost = lost;
            }
        }
        // Jobs a `dogear import` marked running and never finished (it was killed): after
        // ten quiet minutes they are the queue's. Looked at once a minute.
        if st.last_abandoned.elapsed() >= Duration::from_secs(60) {
            st.last_abandoned = std::time::Instant::now();
            let before = Timestamp::now().plus_secs(-600);
            let n = st.importer.store().requeue_abandoned_jobs(before).await?;
            if n > 0 {
                tracing::info!(jobs = n, "took over imports a stopped `dogear import` left");
            }
        }
        // Look before claiming: claiming is a write, and an idle node should not commit
        // (and fsync) every second.
        let now = Timestamp::now();
        let node = st.importer.placement().node_id().to_string();
        match st.importer.store().next_job_at(&node).await? {
            Some(at) if at <= now => {}
            _ => return Ok(()),
        }
        let jobs = st.importer.store().claim_jobs(now, free, &node).await?;
        for job in jobs {
            st.running += 1;
            let importer = st.importer.clone();
            let me = myself.clone();
            tokio::spawn(async move {
                importer.run(job).await;
                let _ = me.cast(QueueMsg::Finished);
            });
        }
        metrics::gauge!("dogear_import_running").set(st.running as f64);
        Ok(())
    }
}
