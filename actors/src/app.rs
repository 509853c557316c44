//! `Dogear`: what the gateway calls. Each method is one use case; each reaches the actor that
//! owns the state through [`Placement`], so every protocol shares the same rules.

use crate::auth::{Accounts, AuthSettings, JwtKeys};
use crate::books::{BookPatch, NewBook};
use crate::device_actor::{LiveEvent, SocketHandle, SocketId};
use crate::error::AppError;
use crate::import::calibre::CalibreConfig;
use crate::import::folder::FolderConfig;
use crate::import::pipeline::{ImportSettings, Importer};
use crate::library_actor::{LibraryOp, LibraryReply};
use crate::placement::{ActorSettings, Placement, reply};
use crate::progress::ProgressWrite;
use crate::user_actor::{ProgressView, UserOp, UserReply, WriteOutcome};
use dogear_storage::{
    Book, BookAfter, BookFile, BookId, BookQuery, BookSource, Cover, Device, DeviceId, DeviceKind,
    FileLocation, Format, ImportJob, JobId, JobState, Library, LibraryId, LibraryKind, Objects,
    ProgressState, Role, Store, User, UserId,
};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::sync::mpsc;

/// A device's name as given, trimmed: 1-128 bytes; errors name `field`.
pub(crate) fn device_name(name: &str, field: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(AppError::bad(field, "must be 1-128 bytes of text"));
    }
    Ok(name.to_string())
}

pub struct Dogear {
    pub(crate) store: Arc<dyn Store>,
    accounts: Accounts,
    pub(crate) placement: Placement,
    pub(crate) importer: Importer,
    pub(crate) kobo_tokens_cache: Arc<crate::kobo::service::TokenCache>,
    redis: Option<Arc<dogear_storage::shared::Shared>>,
    pub(crate) kobo_places: crate::kobo::position::LocateCache,
    pub(crate) koreader_logins_cache: Arc<crate::kosync::LoginCache>,
    /// Page counts and spine documents found for KOReader, by file hash.
    pub(crate) koreader_found: crate::kosync::Found,
    pub(crate) basic_cache: crate::catalog::BasicCache,
    pub(crate) facet_cache: crate::catalog::FacetCache,
    pub(crate) opds_tokens_cache: Arc<crate::catalog::OpdsTokenCache>,
    import_sup: std::sync::Mutex<Option<ractor::ActorCell>>,
}

/// A position in the changes feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedCursor {
    /// After this seq of the user's event log.
    Log(u64),
    /// Inside the initial snapshot: states after this book, then the log after `head`.
    Snapshot { head: u64, after: BookId },
}

/// The receiving end of a socket's live changes.
pub struct LiveFeed {
    pub socket: SocketId,
    pub rx: mpsc::Receiver<LiveEvent>,
    pub overflowed: Arc<AtomicBool>,
    /// The user's log head when the feed was attached: the `hello` cursor.
    pub head: u64,
}

/// What a node shares with the others of its cluster, when it has any.
#[derive(Default)]
pub struct Sharing {
    pub cluster: Option<crate::cluster::Cluster>,
    /// Redis: login limits and revocation notices shared by the nodes.
    pub redis: Option<Arc<dogear_storage::shared::Shared>>,
}

/// The Redis channel revocations are announced on.
pub(crate) const REVOCATIONS: &str = "revocations";

impl Dogear {
    pub async fn start(
        store: Arc<dyn Store>,
        keys: JwtKeys,
        auth: AuthSettings,
        actors: ActorSettings,
        objects: Objects,
        imports: ImportSettings,
        sharing: Sharing,
    ) -> Result<Dogear, AppError> {
        let placement = Placement::start(store.clone(), actors, sharing.cluster).await?;
        let importer = Importer::new(store.clone(), objects, placement.clone(), imports)?;
        let kobo_tokens_cache = Arc::new(crate::kobo::service::TokenCache::new(
            crate::kobo::service::TOKEN_CACHE_SECS,
        ));
        let koreader_logins_cache = Arc::new(crate::kosync::LoginCache::new(
            crate::kosync::LOGIN_CACHE_SECS,
        ));
        let opds_tokens_cache = Arc::new(crate::catalog::OpdsTokenCache::new(
            crate::kobo::service::TOKEN_CACHE_SECS,
        ));
        let accounts = Accounts::new(store.clone(), keys, auth).with_shared(sharing.redis.clone());
        let cutoffs = accounts.cutoffs_handle();
        accounts.start_cutoff_poll().await?;
        if let Some(redis) = &sharing.redis {
            // A device deleted (or a Kobo token revoked) on any node is forgotten here at
            // once, not when this node's cached look-up expires.
            let mut notices = redis.subscribe(REVOCATIONS);
            let cache = Arc::downgrade(&kobo_tokens_cache);
            let logins = Arc::downgrade(&koreader_logins_cache);
            let opds = Arc::downgrade(&opds_tokens_cache);
            let cutoffs = Arc::downgrade(&cutoffs);
            tokio::spawn(async move {
                while let Some(n) = notices.recv().await {
                    let (Some(cache), Some(logins), Some(opds)) =
                        (cache.upgrade(), logins.upgrade(), opds.upgrade())
                    else {
                        return;
                    };
                    if let Some(id) = n.strip_prefix("device:").and_then(|i| i.parse().ok()) {
                        cache.forget_device(id);
                        logins.forget_device(id);
                        opds.forget_device(id);
                    }
                    if let Some((user, epoch)) = n
                        .strip_prefix("user:")
                        .and_then(|r| r.split_once(':'))
                        .and_then(|(u, e)| Some((u.parse().ok()?, e.parse().ok()?)))
                        && let Some(c) = cutoffs.upgrade()
                    {
                        crate::auth::set_cutoff(&c, user, epoch);
                    }
                }
            });
        }
        Ok(Dogear {
            accounts,
            store,
            placement,
            importer,
            kobo_tokens_cache,
            redis: sharing.redis,
            kobo_places: Default::default(),
            koreader_logins_cache,
            koreader_found: Default::default(),
            basic_cache: Default::default(),
            facet_cache: Default::default(),
            opds_tokens_cache,
            import_sup: std::sync::Mutex::new(None),
        })
    }

    /// Starts the import queue and the watched folders and Calibre libraries.
    pub async fn start_imports(
        &self,
        folders: Vec<FolderConfig>,
        calibres: Vec<CalibreConfig>,
    ) -> Result<(), AppError> {
        let sup = crate::import::supervise::start(self.importer.clone(), folders, calibres).await?;
        if let Ok(mut s) = self.import_sup.lock() {
            *s = Some(sup);
        }
        Ok(())
    }

    pub fn importer(&self) -> &Importer {
        &self.importer
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub async fn ready(&self) -> Result<(), AppError> {
        self.store.ping().await.map_err(AppError::from)
    }

    /// Stops the actors and closes the store: every acknowledged write is on disk after this.
    pub async fn shutdown(&self) {
        let sup = self.import_sup.lock().ok().and_then(|mut s| s.take());
        if let Some(sup) = sup {
            for child in sup.get_children() {
                let _ = child
                    .stop_and_wait(
                        Some("shutdown".into()),
                        Some(std::time::Duration::from_secs(5)),
                    )
                    .await;
            }
            sup.stop(Some("shutdown".into()));
        }
        self.placement.shutdown().await;
        if let Err(e) = self.store.close().await {
            tracing::error!(error = %e, "closing the store");
        }
    }

    /// This node's id (`"local"` without a cluster).
    pub fn node_id(&self) -> &str {
        self.placement.node_id()
    }

    /// The cluster's members as this node sees them (administrators only). Without a
    /// cluster: this node alone.
    pub async fn cluster_members(
        &self,
        user: UserId,
    ) -> Result<Vec<crate::cluster::MemberView>, AppError> {
        if !self.me(user).await?.is_admin {
            return Err(AppError::Forbidden(Cow::Borrowed(
                "the cluster's state is for administrators",
            )));
        }
        Ok(match self.placement.cluster() {
            Some(c) => c.members(),
            None => vec![crate::cluster::MemberView {
                node_id: self.node_id().to_string(),
                state: crate::cluster::MemberState::Up,
                address: String::new(),
                keys: self.placement.local_keys(),
                last_seen_ms: 0,
                is_self: true,
            }],
        })
    }

    /// Leaves the cluster (peers see this node go at once); the actors stop after.
    pub fn leave_cluster(&self) {
        if let Some(c) = self.placement.cluster() {
            c.shutdown();
        }
    }

    pub async fn me(&self, user: UserId) -> Result<User, AppError> {
        self.store
            .user(user)
            .await?
            .ok_or(AppError::Unauthorized(Cow::Borrowed(
                "the account no longer exists",
            )))
    }

    // Devices.

    pub async fn create_device(
        &self,
        user: UserId,
        name: &str,
        kind: DeviceKind,
    ) -> Result<Device, AppError> {
        self.create_device_with(user, (name, "name"), kind, None)
            .await
    }

    pub async fn devices(&self, user: UserId) -> Result<Vec<Device>, AppError> {
        reply!(
            self.placement.ask_user(user, UserOp::ListDevices).await,
            UserReply::Devices
        )
    }

    pub async fn delete_device(&self, user: UserId, id: DeviceId) -> Result<(), AppError> {
        self.placement
            .ask_user(user, UserOp::DeleteDevice(id))
            .await?;
        self.forget_device_everywhere(id).await;
        Ok(())
    }

    pub(crate) fn redis(&self) -> Option<&Arc<dogear_storage::shared::Shared>> {
        self.redis.as_ref()
    }

    /// A Kobo's token and a KOReader's login go with their device, on every node.
    pub(crate) async fn forget_device_everywhere(&self, id: DeviceId) {
        self.kobo_tokens_cache.forget_device(id);
        self.koreader_logins_cache.forget_device(id);
        self.opds_tokens_cache.forget_device(id);
        if let Some(r) = &self.redis
            && let Err(e) = r.publish(REVOCATIONS, &format!("device:{id}")).await
        {
            metrics::counter!("dogear_redis_fallbacks_total", "what" => "revocations").increment(1);
            tracing::warn!(error = %e, "redis unavailable: other nodes forget the device within their cache time");
        }
    }

    // Libraries and books.

    pub async fn libraries(&self, user: UserId) -> Result<Vec<(Library, Role)>, AppError> {
        Ok(self.store.libraries_of(user).await?)
    }

    pub async fn create_book(
        &self,
        user: UserId,
        library: Option<LibraryId>,
        new: NewBook,
    ) -> Result<Book, AppError> {
        let library = match library {
            Some(l) => l,
            None => self
                .libraries(user)
                .await?
                .into_iter()
                .find(|(l, _)| l.kind == LibraryKind::Personal && l.owner_id == user)
                .map(|(l, _)| l.id)
                .ok_or(AppError::NotFound(Cow::Borrowed("library")))?,
        };
        reply!(
            self.placement
                .ask_library(library, LibraryOp::CreateBook(user, new))
                .await,
            LibraryReply::Book
        )
        .map(|b| *b)
    }

    /// A live book the caller may read, else 404.
    pub async fn book(&self, user: UserId, id: BookId) -> Result<Book, AppError> {
        let book = match self.store.book(id).await? {
            Some(b) if b.deleted_at.is_none() => b,
            _ => return Err(AppError::NotFound(Cow::Borrowed("book"))),
        };
        if self.is_member(user, book.library_id).await? {
            Ok(book)
        } else {
            Err(AppError::NotFound(Cow::Borrowed("book")))
        }
    }

    /// The libraries a listing covers: all the caller's, or the one asked for if the caller
    /// belongs to it (else 404).
    pub(crate) async fn scope(
        &self,
        user: UserId,
        library: Option<LibraryId>,
    ) -> Result<Vec<LibraryId>, AppError> {
        let mine: Vec<LibraryId> = self
            .libraries(user)
            .await?
            .into_iter()
            .map(|(l, _)| l.id)
            .collect();
        match library {
            Some(l) if mine.contains(&l) => Ok(vec![l]),
            Some(_) => Err(AppError::NotFound(Cow::Borrowed("library"))),
            None => Ok(mine),
        }
    }

    /// Whether the caller belongs to the library (any role).
    async fn is_member(&self, user: UserId, library: LibraryId) -> Result<bool, AppError> {
        Ok(self.role(user, library).await?.is_some())
    }

    /// The caller's role in the library, as its actor knows it; `None`: not a member.
    pub(crate) async fn library_role(
        &self,
        user: UserId,
        library: LibraryId,
    ) -> Result<Option<Role>, AppError> {
        self.role(user, library).await
    }

    /// The caller's role in the library, as its actor knows it; `None`: not a member.
    async fn role(&self, user: UserId, library: LibraryId) -> Result<Option<Role>, AppError> {
        reply!(
            self.placement
                .ask_library(library, LibraryOp::Role(user))
                .await,
            LibraryReply::Role
        )
    }

    /// Books of the caller's libraries (or of one of them) matching `query` (whose
    /// `libraries` is filled in here), and where the next page starts.
    pub async fn list_books(
        &self,
        user: UserId,
        library: Option<LibraryId>,
        mut query: BookQuery,
    ) -> Result<(Vec<Book>, Option<BookAfter>), AppError> {
        let libraries = self.scope(user, library).await?;
        query.libraries = libraries;
        // Filters on records are always on the caller's own.
        if let Some(m) = &mut query.mine {
            m.user = Some(user);
        }
        // What a person types is folded to compatibility forms (full-width `ｈａｍｌｅｔ` and
        // ligatures like `ﬁ` are plain letters), as the stored metadata is written.
        let fold = |s: Option<String>| {
            use unicode_normalization::UnicodeNormalization;
            s.map(|s| s.trim().nfkc().collect::<String>())
                .filter(|s| !s.is_empty())
        };
        query.q = fold(query.q.take());
        query.author = fold(query.author.take());
        query.series = fold(query.series.take());
        query.tag = fold(query.tag.take());
        query.language = fold(query.language.take());
        let limit = query.limit;
        query.limit = limit + 1;
        let mut items = self.store.list_books(&query).await?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|b| BookAfter {
                key: b.sort_key(query.sort),
                id: b.id,
            })
        } else {
            None
        };
        Ok((items, next))
    }

    /// The library an upload goes to (the caller's personal one by default), checked: the
    /// caller must be its owner or an editor.
    pub async fn upload_library(
        &self,
        user: UserId,
        library: Option<LibraryId>,
    ) -> Result<LibraryId, AppError> {
        let library = match library {
            Some(l) => l,
            None => self.personal_library(user).await?,
        };
        match self.role(user, library).await? {
            None => Err(AppError::NotFound(Cow::Borrowed("library"))),
            Some(r) if !r.can_edit() => Err(AppError::Forbidden(Cow::Borrowed(
                "adding books needs the owner or editor role in this library",
            ))),
            Some(_) => Ok(library),
        }
    }

    async fn personal_library(&self, user: UserId) -> Result<LibraryId, AppError> {
        self.libraries(user)
            .await?
            .into_iter()
            .find(|(l, _)| l.kind == LibraryKind::Personal && l.owner_id == user)
            .map(|(l, _)| l.id)
            .ok_or(AppError::NotFound(Cow::Borrowed("library")))
    }

    /// Queues an uploaded file (already staged in the data directory) for import.
    pub async fn enqueue_upload(
        &self,
        user: UserId,
        library: LibraryId,
        staged: &std::path::Path,
        filename: &str,
    ) -> Result<ImportJob, AppError> {
        let job = Importer::new_job(
            library,
            Some(user),
            BookSource::Upload,
            None,
            staged,
            filename,
            true,
        );
        self.importer.enqueue(&job).await?;
        Ok(job)
    }

    /// An import job the caller started or whose library they belong to.
    pub async fn job(&self, user: UserId, id: JobId) -> Result<ImportJob, AppError> {
        let Some(job) = self.store.job(id).await? else {
            return Err(AppError::NotFound(Cow::Borrowed("import")));
        };
        if job.user_id == Some(user) {
            return Ok(job);
        }
        if self.is_member(user, job.library_id).await? {
            Ok(job)
        } else {
            Err(AppError::NotFound(Cow::Borrowed("import")))
        }
    }

    /// Import jobs of the caller's libraries (or one of them), newest first: what came in,
    /// what is waiting, and what failed and why.
    pub async fn jobs(
        &self,
        user: UserId,
        library: Option<LibraryId>,
        state: Option<JobState>,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<(Vec<ImportJob>, Option<JobId>), AppError> {
        let libraries = self.scope(user, library).await?;
        let mut jobs = self
            .store
            .list_jobs(&libraries, state, before, limit + 1)
            .await?;
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok((jobs, next))
    }

    /// A file of a book the caller may read. A KEPUB is made on first request for books
    /// that have an EPUB but none yet (Calibre books), then kept.
    pub async fn book_file(
        &self,
        user: UserId,
        id: BookId,
        format: Format,
    ) -> Result<(Book, BookFile), AppError> {
        let book = self.book(user, id).await?;
        if let Some(f) = book.meta.format(format) {
            return Ok((book.clone(), f.clone()));
        }
        if format == Format::Kepub
            && let Some(epub) = book.meta.format(Format::Epub).cloned()
        {
            let kepub = self.make_kepub(&epub).await?;
            let mut next = book.clone();
            next.meta.formats.push(kepub.clone());
            let refreshed = *reply!(
                self.placement
                    .ask_library(book.library_id, LibraryOp::Refresh(Box::new(next)))
                    .await,
                LibraryReply::Book
            )?;
            return Ok((refreshed, kepub));
        }
        Err(AppError::NotFound(Cow::Borrowed("format")))
    }

    /// A path to read a stored file at: the file itself when it is on this node's disk,
    /// else a copy in the staging folder (`true`: the caller removes it when done).
    pub(crate) async fn local_copy(
        &self,
        loc: &FileLocation,
    ) -> Result<(std::path::PathBuf, bool), String> {
        let objects = self.importer.objects();
        if let Some(p) = objects.local_path(loc) {
            return Ok((p, false));
        }
        let tmp = self
            .importer
            .settings()
            .staging_dir
            .join(format!("{}.copy", uuid::Uuid::now_v7()));
        let mut read = objects.read(loc, None).await.map_err(|e| e.to_string())?;
        let copied = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| e.to_string())?;
            use futures_util::StreamExt;
            use tokio::io::AsyncWriteExt;
            while let Some(chunk) = read.body.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                f.write_all(&chunk).await.map_err(|e| e.to_string())?;
            }
            f.flush().await.map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok((tmp, true))
    }

    async fn make_kepub(&self, epub: &BookFile) -> Result<BookFile, AppError> {
        let objects = self.importer.objects().clone();
        let staging = self.importer.settings().staging_dir.clone();
        let unavailable = |e: String| AppError::Unavailable(format!("kepub: {e}"));
        let (src, temporary) = self.local_copy(&epub.location).await.map_err(unavailable)?;
        let out = staging.join(format!("{}.kepub", uuid::Uuid::now_v7()));
        let (s, o) = (src.clone(), out.clone());
        let converted = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::create(&o).map_err(|e| e.to_string())?;
            crate::import::kepub::convert(&s, std::io::BufWriter::new(f)).map_err(|e| e.message)?;
            let (hash, size) = crate::import::hash::file(&o).map_err(|e| e.to_string())?;
            let koreader = dogear_storage::digest::partial_md5_file(&o).ok();
            Ok::<_, String>((hash, size, koreader))
        })
        .await
        .map_err(|e| unavailable(e.to_string()))?;
        if temporary {
            let _ = tokio::fs::remove_file(&src).await;
        }
        let (hash, size, koreader) = match converted {
            Ok(x) => x,
            Err(e) => {
                let _ = tokio::fs::remove_file(&out).await;
                tracing::warn!(error = %e, "KEPUB conversion failed");
                return Err(AppError::NotFound(Cow::Borrowed("format")));
            }
        };
        let key = format!("files/{}.kepub.epub", epub.hash);
        let put = objects.put_file(&key, &out).await;
        let _ = tokio::fs::remove_file(&out).await;
        put.map_err(|e| unavailable(e.to_string()))?;
        Ok(BookFile {
            format: Format::Kepub,
            size,
            hash,
            location: FileLocation::Object { key },
            koreader,
        })
    }

    /// A book's cover (or its thumbnail, made and kept on first request when missing).
    pub async fn book_cover(
        &self,
        user: UserId,
        id: BookId,
        thumb: bool,
    ) -> Result<(Cover, FileLocation, &'static str), AppError> {
        let book = self.book(user, id).await?;
        let Some(cover) = book.meta.cover.clone() else {
            return Err(AppError::NotFound(Cow::Borrowed("cover")));
        };
        if !thumb {
            let ct = match cover.content_type.as_str() {
                "image/png" => "image/png",
                "image/gif" => "image/gif",
                "image/webp" => "image/webp",
                _ => "image/jpeg",
            };
            let full = cover.full.clone();
            return Ok((cover, full, ct));
        }
        if let Some(t) = cover.thumb.clone() {
            return Ok((cover, t, "image/jpeg"));
        }
        let objects = self.importer.objects();
        let key = format!("covers/{}-thumb.jpg", cover.etag);
        let loc = FileLocation::Object { key: key.clone() };
        if !objects.exists(&key).await.unwrap_or(false) {
            let unavailable = |e: String| AppError::Unavailable(format!("thumbnail: {e}"));
            let bytes = objects
                .read_small(&cover.full, crate::import::MAX_COVER_BYTES)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let made =
                tokio::task::spawn_blocking(move || crate::import::cover::process(bytes.to_vec()))
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
            let made = made.map_err(|_| AppError::NotFound(Cow::Borrowed("cover")))?;
            objects
                .put_bytes(&key, made.thumb.unwrap_or_default().into())
                .await
                .map_err(|e| unavailable(e.to_string()))?;
        }
        Ok((cover, loc, "image/jpeg"))
    }

    pub async fn update_book(
        &self,
        user: UserId,
        id: BookId,
        patch: BookPatch,
    ) -> Result<Book, AppError> {
        let lib = self.book_library(id).await?;
        reply!(
            self.placement
                .ask_library(lib, LibraryOp::UpdateBook(user, id, patch))
                .await,
            LibraryReply::Book
        )
        .map(|b| *b)
    }

    pub async fn delete_book(&self, user: UserId, id: BookId) -> Result<(), AppError> {
        let lib = self.book_library(id).await?;
        self.placement
            .ask_library(lib, LibraryOp::DeleteBook(user, id))
            .await
            .map(|_| ())
    }

    async fn book_library(&self, id: BookId) -> Result<LibraryId, AppError> {
        match self.store.book(id).await? {
            Some(b) if b.deleted_at.is_none() => Ok(b.library_id),
            _ => Err(AppError::NotFound(Cow::Borrowed("book"))),
        }
    }

    // Reading progress.

    pub async fn write_progress(
        &self,
        user: UserId,
        write: ProgressWrite,
        origin: Option<SocketId>,
    ) -> Result<WriteOutcome, AppError> {
        reply!(
            self.placement
                .ask_user(user, UserOp::Write { write, origin })
                .await,
            UserReply::Write
        )
    }

    pub async fn progress(&self, user: UserId, book: BookId) -> Result<ProgressView, AppError> {
        reply!(
            self.placement.ask_user(user, UserOp::Get { book }).await,
            UserReply::Progress
        )
    }

    /// One page of the changes feed and the cursor to continue from.
    ///
    /// Without a cursor the feed starts with a snapshot: the current state of every book,
    /// paged by book id, followed by the log from the head read before the snapshot began.
    /// Anything written meanwhile is therefore repeated by the log, never lost.
    pub async fn changes(
        &self,
        user: UserId,
        cursor: Option<FeedCursor>,
        limit: usize,
    ) -> Result<(Vec<(u64, ProgressState)>, FeedCursor), AppError> {
        let (head, after) = match cursor {
            Some(FeedCursor::Log(c)) => {
                let items = self.store.progress_changes(user, c, limit).await?;
                let next = items.last().map_or(c, |(seq, _)| *seq);
                return Ok((items, FeedCursor::Log(next)));
            }
            Some(FeedCursor::Snapshot { head, after }) => (head, Some(after)),
            None => (self.store.progress_head(user).await?, None),
        };
        let mut states = self.store.progress_states(user, after, limit + 1).await?;
        let next = if states.len() > limit {
            states.truncate(limit);
            match states.last() {
                Some(last) => FeedCursor::Snapshot {
                    head,
                    after: last.book_id,
                },
                None => FeedCursor::Log(head),
            }
        } else {
            FeedCursor::Log(head)
        };
        Ok((states.into_iter().map(|s| (0, s)).collect(), next))
    }

    pub async fn has_device(&self, user: UserId, device: DeviceId) -> Result<bool, AppError> {
        reply!(
            self.placement
                .ask_user(user, UserOp::HasDevice(device))
                .await,
            UserReply::Bool
        )
    }

    /// Attaches a new socket of `device` to the live feed of the user's changes.
    pub async fn attach_socket(
        &self,
        user: UserId,
        device: DeviceId,
    ) -> Result<LiveFeed, AppError> {
        if !self.has_device(user, device).await? {
            return Err(AppError::bad("device_id", "is not one of your devices"));
        }
        let socket = SocketId::next();
        let (tx, rx) = mpsc::channel(self.placement.settings().socket_queue.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        let handle = SocketHandle {
            id: socket,
            tx,
            overflowed: overflowed.clone(),
        };
        self.placement.attach_socket(user, device, handle).await?;
        // Read after attaching, so no change falls between the cursor and the live feed.
        let head = self.store.progress_head(user).await?;
        Ok(LiveFeed {
            socket,
            rx,
            overflowed,
            head,
        })
    }

    pub fn detach_socket(&self, device: DeviceId, socket: SocketId) {
        self.placement.detach_socket(device, socket);
    }
}
