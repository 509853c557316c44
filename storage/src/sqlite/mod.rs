//! The embedded default backend: one SQLite file in WAL mode, one writer thread with group
//! commit, a small pool of reader connections.

mod books;
mod deferred;
mod events;
mod kobo;
mod koreader;
mod migrations;
mod opds;
mod reading;
mod rows;
mod sharing;
mod writer;

pub use migrations::LATEST as SCHEMA_VERSION;

/// Applies the schema migrations up to `target` on a plain connection: for tests that
/// need a database as an older Dogear left it. Registers the functions the schema's
/// triggers call on `conn`, so that rows can be written to it as Dogear would.
#[doc(hidden)]
pub fn migrate_to(conn: &mut rusqlite::Connection, target: usize) -> Result<usize, String> {
    migrations::register_functions(conn).map_err(|e| e.to_string())?;
    migrations::migrate_to(conn, target)
}

use crate::error::StoreError;
use crate::ids::*;
use crate::reading::{
    DocQuery, IdempotentAnswer, Related, Relation, RelationKind, RelationOp, UserBook, UserDoc,
};
use crate::records::*;
use crate::sharing::{AuditDraft, AuditEntry, Invite, SharingOp};
use crate::store::{BatchDone, BatchOutcome, RotateOutcome, Store};
use crate::time::Timestamp;
use async_trait::async_trait;
use books::*;
use rows::*;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use writer::{Command, FnJob};

/// How hard a commit tries to reach the disk before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit (`synchronous=FULL`): an acknowledged write survives power loss.
    Full,
    /// `synchronous=NORMAL`: survives a crash of the process, may lose the last commits on
    /// power loss. Faster; for throwaway or replicated deployments.
    Normal,
}

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub durability: Durability,
    /// Most writes committed together in one transaction.
    pub max_batch: usize,
    /// Reader connections kept open.
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            max_batch: 512,
            readers: 4,
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Command>,
    readers: Readers,
    max_readers: usize,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // The writer checkpoints the WAL itself every 8192 pages (32 MiB): rarer checkpoints
    // copy a page rewritten by many commits once, which halved commit time under load
    // against SQLite's default of 1000; a background PASSIVE checkpointer was tried and lost
    // (it competes for the same cores and cannot restart the WAL under constant load).
    // The two writing connections (the writer and the progress applier) read through their
    // own page cache of 8 MiB, not a memory map: what they touch is the pages being written
    // and the indexes of recent writes, and a map of the whole file kept every page any
    // write had touched in the process's memory (RSS grew with the database).
    // Each job of a group commit runs in a savepoint, whose journal (the pages it changes
    // that earlier jobs of the group had already changed) is kept in memory, not a temporary
    // file: a 20,000-book Calibre import wrote 138 MB of such pages to /var/tmp.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;
         PRAGMA cache_size=-8192; PRAGMA mmap_size=0; PRAGMA wal_autocheckpoint=8192;
         PRAGMA temp_store=MEMORY;"
    ))?;
    Ok(())
}

/// The reading connections not in use.
type Readers = Arc<Mutex<Vec<Connection>>>;

/// Frees what a connection's page cache holds (it fills again as pages are read).
fn shrink_memory(conn: &Connection) {
    if let Err(e) = conn.execute_batch("PRAGMA shrink_memory;") {
        tracing::debug!(error = %e, "sqlite shrink_memory failed");
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA mmap_size=268435456;")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it to the latest schema.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let mut conn = Connection::open(path)?;
        configure(&conn, opts.durability)?;
        migrations::register_functions(&conn)?;
        let before = migrations::migrate(&mut conn).map_err(StoreError::Unavailable)?;
        if before < 2 {
            books::rekey(&conn)?;
        }
        // Progress writes logged but not yet applied when the process stopped.
        let sync = matches!(opts.durability, Durability::Full);
        let (log, batches) = deferred::Log::open(path, sync)?;
        let (legacy_path, legacy) = deferred::legacy(path)?;
        let (replayed, next_gen) = deferred::replay(&mut conn, batches, legacy)?;
        if replayed > 0 {
            tracing::info!(writes = replayed, "applied progress writes from the log");
        }
        if legacy_path.exists() {
            std::fs::remove_file(&legacy_path)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", legacy_path.display())))?;
        }
        let (tx, rx) = mpsc::channel(8192);
        let applier = Connection::open(path)?;
        configure(&applier, opts.durability)?;
        migrations::register_functions(&applier)?;
        let mut idle = Vec::new();
        for _ in 0..opts.readers.max(1) {
            idle.push(open_reader(path)?);
        }
        let readers: Readers = Arc::new(Mutex::new(idle));
        let deferred =
            deferred::Deferred::new(log, next_gen, applier, tx.downgrade(), readers.clone())?;
        let max_batch = opts.max_batch.max(1);
        let handle = std::thread::Builder::new()
            .name("dogear-sqlite-writer".into())
            .spawn(move || writer::run(conn, rx, max_batch, deferred))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;

        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: tx,
            readers,
            max_readers: opts.readers.max(1),
            writer_thread: Mutex::new(Some(handle)),
        })
    }

    /// The schema version recorded in the file (SQLite's `user_version`).
    pub async fn schema_version(&self) -> Result<usize, StoreError> {
        self.read(|c| {
            Ok(c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize)
        })
        .await
    }

    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(FnJob {
            f: Some(f),
            result: None,
            reply,
        });
        self.writer
            .send(Command::Write(job))
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    /// Applies every logged progress write to SQLite, so that a read sees them.
    async fn settle(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.writer
            .send(Command::Settle(ack))
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        done.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))
    }

    /// A read of progress tables: after the logged writes are applied.
    async fn read_progress<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.settle().await?;
        self.read(f).await
    }

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        if self.writer.is_closed() {
            return Err(StoreError::Unavailable("store is closed".into()));
        }
        let pool = self.readers.clone();
        let path = self.path.clone();
        let max = self.max_readers;
        tokio::task::spawn_blocking(move || {
            let taken = pool.lock().ok().and_then(|mut p| p.pop());
            let conn = match taken {
                Some(c) => c,
                None => open_reader(&path)?,
            };
            let r = f(&conn);
            if let Ok(mut p) = pool.lock()
                && p.len() < max
            {
                p.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

pub(super) fn map_unique(e: rusqlite::Error, what: &'static str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(what)
        }
        other => other.into(),
    }
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .map(|_| ())
    }

    async fn close(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        if self.writer.send(Command::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
        let handle = self.writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        if let Ok(mut p) = self.readers.lock() {
            p.clear();
        }
        Ok(())
    }

    async fn create_user(&self, user: &User, personal: &Library) -> Result<(), StoreError> {
        let user = user.clone();
        let lib = personal.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO users (id, username, email, password_hash, is_admin, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    user.id.to_string(),
                    user.username,
                    user.email,
                    user.password_hash,
                    user.is_admin,
                    user.created_at.millis()
                ],
            )
            .map_err(|e| map_unique(e, "username"))?;
            c.execute(
                "INSERT INTO libraries (id, name, kind, owner_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    lib.id.to_string(),
                    lib.name,
                    lib.kind.as_str(),
                    lib.owner_id.to_string(),
                    lib.created_at.millis()
                ],
            )?;
            c.execute(
                "INSERT INTO memberships (library_id, user_id, role) VALUES (?1, ?2, 'owner')",
                params![lib.id.to_string(), user.id.to_string()],
            )?;
            Ok(())
        })
        .await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE id = ?1 AND {}",
                reading::LIVE_USER
            ))?
            .query_row([id.to_string()], user_row)
            .optional()?
            .transpose()
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let username = username.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE username = ?1 AND {}",
                reading::LIVE_USER
            ))?
            .query_row([username], user_row)
            .optional()?
            .transpose()
        })
        .await
    }

    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError> {
        let t = t.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO refresh_tokens (hash, user_id, family_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    t.hash,
                    t.user_id.to_string(),
                    t.family_id.to_string(),
                    t.created_at.millis(),
                    t.expires_at.millis()
                ],
            )
            .map_err(|e| map_unique(e, "refresh_token"))?;
            Ok(())
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<RotateOutcome, StoreError> {
        let old_hash = old_hash.to_string();
        let new_hash = new_hash.to_string();
        self.write(move |c| {
            let row: Option<(String, String, i64, Option<i64>, bool)> = c
                .query_row(
                    "SELECT user_id, family_id, expires_at, used_at, revoked FROM refresh_tokens WHERE hash = ?1",
                    [&old_hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((user_id, family, old_expires_at, used_at, revoked)) = row else {
                return Ok(RotateOutcome::Invalid);
            };
            if used_at.is_some() || revoked {
                c.execute(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?1",
                    [&family],
                )?;
                return Ok(RotateOutcome::Reused);
            }
            if old_expires_at <= now.millis() {
                return Ok(RotateOutcome::Invalid);
            }
            c.execute(
                "UPDATE refresh_tokens SET used_at = ?2 WHERE hash = ?1",
                params![old_hash, now.millis()],
            )?;
            c.execute(
                "INSERT INTO refresh_tokens (hash, user_id, family_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![new_hash, user_id, family, now.millis(), expires_at.millis()],
            )
            .map_err(|e| map_unique(e, "refresh_token"))?;
            Ok(RotateOutcome::Rotated {
                user_id: parse_id(&user_id)?,
            })
        })
        .await
    }

    async fn revoke_refresh_family(&self, hash: &str) -> Result<(), StoreError> {
        let hash = hash.to_string();
        self.write(move |c| {
            c.execute(
                "UPDATE refresh_tokens SET revoked = 1 WHERE family_id =
                   (SELECT family_id FROM refresh_tokens WHERE hash = ?1)",
                [hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_device(&self, d: &Device) -> Result<(), StoreError> {
        let d = d.clone();
        self.write(move |c| kobo::insert_device(c, &d)).await
    }

    async fn devices(&self, user: UserId) -> Result<Vec<Device>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, user_id, name, kind, created_at FROM devices WHERE user_id = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([user.to_string()], device_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn delete_device(&self, user: UserId, id: DeviceId) -> Result<bool, StoreError> {
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM devices WHERE id = ?1 AND user_id = ?2",
                params![id.to_string(), user.to_string()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn library(&self, id: LibraryId) -> Result<Option<Library>, StoreError> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {LIBRARY_COLS} FROM libraries WHERE id = ?1 AND deleted_at IS NULL"
            ))?
            .query_row([id.to_string()], library_row)
            .optional()?
            .transpose()
        })
        .await
    }

    async fn memberships(&self, library: LibraryId) -> Result<Vec<Membership>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT library_id, user_id, role FROM memberships WHERE library_id = ?1",
            )?;
            let rows = st.query_map([library.to_string()], membership_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn libraries_of(&self, user: UserId) -> Result<Vec<(Library, Role)>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {LIBRARY_COLS_L}, m.role FROM memberships m JOIN libraries l ON l.id = m.library_id
                 WHERE m.user_id = ?1 AND l.deleted_at IS NULL
                 ORDER BY l.kind <> 'personal', l.created_at, l.id"
            ))?;
            let rows = st.query_map([user.to_string()], |r| {
                let lib = library_row(r)?;
                let role: String = r.get(6)?;
                Ok((lib, role))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (lib, role) = row?;
                let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?;
                out.push((lib?, role));
            }
            Ok(out)
        })
        .await
    }

    async fn first_admin(&self) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT username FROM users WHERE is_admin = 1 ORDER BY created_at, id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn create_book(&self, b: &Book) -> Result<(), StoreError> {
        let row = BookRow::new(b)?;
        self.write(move |c| {
            row.insert(c)?;
            Ok(())
        })
        .await
    }

    async fn book(&self, id: BookId) -> Result<Option<Book>, StoreError> {
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {BOOK_COLS} FROM books WHERE id = ?1"))?
                .query_row([id.to_string()], book_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn update_book(&self, b: &Book) -> Result<(), StoreError> {
        let row = BookRow::new(b)?;
        self.write(move |c| row.update(c)).await
    }

    async fn list_books(&self, q: &BookQuery) -> Result<Vec<Book>, StoreError> {
        let q = q.clone();
        self.read(move |c| list_books(c, &q)).await
    }

    async fn book_by_hash(
        &self,
        library: LibraryId,
        hash: &str,
    ) -> Result<Option<BookId>, StoreError> {
        let hash = hash.to_string();
        self.read(move |c| {
            let id: Option<String> = c
                .prepare_cached(
                    "SELECT book_id FROM book_hashes WHERE library_id = ?1 AND hash = ?2",
                )?
                .query_row(params![library.to_string(), hash], |r| r.get(0))
                .optional()?;
            id.as_deref().map(parse_id).transpose()
        })
        .await
    }

    async fn register_import(
        &self,
        book: &Book,
        source: Option<&SourceFile>,
        job: Option<&ImportJob>,
    ) -> Result<RegisterOutcome, StoreError> {
        let row = BookRow::new(book)?;
        let source = source.cloned();
        let job = job.map(JobRow::new).transpose()?;
        self.write(move |c| {
            for h in &row.hashes {
                let found: Option<String> = c
                    .prepare_cached(
                        "SELECT book_id FROM book_hashes WHERE library_id = ?1 AND hash = ?2",
                    )?
                    .query_row(params![row.library_id, h], |r| r.get(0))
                    .optional()?;
                if let Some(found) = found {
                    return Ok(RegisterOutcome::Duplicate(parse_id(&found)?));
                }
            }
            row.insert(c)?;
            if let Some(s) = &source {
                upsert_source(c, s)?;
            }
            if let Some(j) = &job {
                j.upsert(c)?;
            }
            Ok(RegisterOutcome::Created)
        })
        .await
    }

    async fn upsert_job(&self, job: &ImportJob) -> Result<(), StoreError> {
        let row = JobRow::new(job)?;
        self.write(move |c| row.upsert(c)).await
    }

    async fn job(&self, id: JobId) -> Result<Option<ImportJob>, StoreError> {
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {JOB_COLS} FROM import_jobs WHERE id = ?1"))?
                .query_row([id.to_string()], job_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn claim_jobs(
        &self,
        now: Timestamp,
        limit: usize,
        node: &str,
    ) -> Result<Vec<ImportJob>, StoreError> {
        let node = node.to_string();
        self.write(move |c| {
            let jobs: Vec<ImportJob> = {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {JOB_COLS} FROM import_jobs WHERE state = 'queued' AND run_at <= ?1
                       AND (node IS NULL OR node = ?3)
                     ORDER BY run_at, id LIMIT ?2"
                ))?;
                let rows = st.query_map(params![now.millis(), limit as i64, node], job_row)?;
                rows.map(|r| r?).collect::<Result<_, _>>()?
            };
            for j in &jobs {
                c.prepare_cached(
                    "UPDATE import_jobs SET state = 'running', updated_at = ?2, claimed_by = ?3
                     WHERE id = ?1",
                )?
                .execute(params![j.id.to_string(), now.millis(), node])?;
            }
            Ok(jobs
                .into_iter()
                .map(|mut j| {
                    j.state = JobState::Running;
                    j.updated_at = now;
                    j
                })
                .collect())
        })
        .await
    }

    async fn requeue_running_jobs(&self, node: &str) -> Result<u64, StoreError> {
        let node = node.to_string();
        self.write(move |c| {
            // One node per SQLite file (the data directory's lock): jobs claimed before
            // claims were recorded, or left running by `dogear import`, are its own too.
            Ok(c.execute(
                "UPDATE import_jobs SET state = 'queued', claimed_by = NULL
                 WHERE state = 'running' AND (claimed_by = ?1 OR claimed_by IS NULL)",
                [node],
            )? as u64)
        })
        .await
    }

    async fn requeue_jobs_of(&self, lost: &[String]) -> Result<u64, StoreError> {
        let lost = serde_json::Value::from(lost.to_vec()).to_string();
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE import_jobs SET state = 'queued', claimed_by = NULL
                 WHERE state = 'running' AND node IS NULL
                   AND claimed_by IN (SELECT value FROM json_each(?1))",
                [lost],
            )? as u64)
        })
        .await
    }

    async fn requeue_abandoned_jobs(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE import_jobs SET state = 'queued'
                 WHERE state = 'running' AND claimed_by IS NULL AND updated_at < ?1",
                [before.millis()],
            )? as u64)
        })
        .await
    }

    async fn next_job_at(&self, node: &str) -> Result<Option<Timestamp>, StoreError> {
        let node = node.to_string();
        self.read(move |c| {
            let at: Option<i64> = c
                .prepare_cached(
                    "SELECT min(run_at) FROM import_jobs WHERE state = 'queued'
                     AND (node IS NULL OR node = ?1)",
                )?
                .query_row([node], |r| r.get(0))?;
            Ok(at.map(Timestamp::from_millis))
        })
        .await
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT state, count(*) FROM import_jobs GROUP BY state")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (s, n) = row?;
                if let Some(s) = JobState::parse(&s) {
                    out.push((s, n as u64));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_jobs(
        &self,
        libraries: &[LibraryId],
        state: Option<JobState>,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<ImportJob>, StoreError> {
        let libs: Vec<String> = libraries.iter().map(|l| l.to_string()).collect();
        self.read(move |c| {
            let mut out = Vec::new();
            for lib in &libs {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {JOB_COLS} FROM import_jobs
                     WHERE library_id = ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR id < ?3)
                     ORDER BY id DESC LIMIT ?4"
                ))?;
                let rows = st.query_map(
                    params![
                        lib,
                        state.map(|s| s.as_str()),
                        before.map(|b| b.to_string()),
                        limit as i64
                    ],
                    job_row,
                )?;
                for r in rows {
                    out.push(r??);
                }
            }
            out.sort_by_key(|j: &ImportJob| std::cmp::Reverse(j.id));
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn source_files(&self, source: &str) -> Result<Vec<SourceFile>, StoreError> {
        let source = source.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {SOURCE_COLS} FROM source_files WHERE source = ?1 ORDER BY path"
            ))?;
            let rows = st.query_map([source], source_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn source_files_of_book(&self, book: BookId) -> Result<Vec<SourceFile>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {SOURCE_COLS} FROM source_files WHERE book_id = ?1 ORDER BY source, path"
            ))?;
            let rows = st.query_map([book.to_string()], source_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn put_source_files(
        &self,
        upserts: &[SourceFile],
        removals: &[(String, String)],
    ) -> Result<(), StoreError> {
        let upserts = upserts.to_vec();
        let removals = removals.to_vec();
        self.write(move |c| {
            for s in &upserts {
                upsert_source(c, s)?;
            }
            for (source, path) in &removals {
                c.prepare_cached("DELETE FROM source_files WHERE source = ?1 AND path = ?2")?
                    .execute(params![source, path])?;
            }
            Ok(())
        })
        .await
    }

    async fn progress_head(&self, user: UserId) -> Result<u64, StoreError> {
        self.read_progress(move |c| head(c, user)).await
    }

    async fn record_progress_batch(
        &self,
        user: UserId,
        writes: &[ProgressWrite],
    ) -> Result<BatchOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        if let Some(job) = progress_job(user, writes.to_vec(), deferred::Reply::Channel(reply)) {
            self.writer
                .send(Command::Progress(Box::new(job)))
                .await
                .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        }
        rx.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    fn submit_progress_batch(
        self: Arc<Self>,
        user: UserId,
        writes: Vec<ProgressWrite>,
        done: BatchDone,
    ) {
        let Some(job) = progress_job(user, writes, deferred::Reply::Done(done)) else {
            return; // answered already
        };
        let job = Box::new(job);
        match self.writer.try_send(Command::Progress(job)) {
            Ok(()) => {}
            // The writer's queue is full: wait for room without holding the owner.
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                let writer = self.writer.clone();
                tokio::spawn(async move {
                    // Closed meanwhile: the job is dropped, and its `done` says so.
                    let _ = writer.send(cmd).await;
                });
            }
            // The store is closed: dropped with the command, the job's `done` says so.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    async fn progress_state(
        &self,
        user: UserId,
        book: BookId,
    ) -> Result<Option<ProgressState>, StoreError> {
        self.read_progress(move |c| {
            let s: Option<String> = c
                .prepare_cached(
                    "SELECT state FROM progress_books WHERE user_id = ?1 AND book_id = ?2",
                )?
                .query_row(params![user.to_string(), book.to_string()], |r| r.get(0))
                .optional()?;
            s.map(|s| from_json(&s)).transpose()
        })
        .await
    }

    async fn progress_states(
        &self,
        user: UserId,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<ProgressState>, StoreError> {
        self.read_progress(move |c| {
            let mut st = c.prepare_cached(
                "SELECT state FROM progress_books WHERE user_id = ?1 AND book_id > ?2
                 ORDER BY book_id LIMIT ?3",
            )?;
            let after = after.map(|b| b.to_string()).unwrap_or_default();
            let rows = st.query_map(params![user.to_string(), after, limit as i64], |r| {
                r.get::<_, String>(0)
            })?;
            rows.map(|r| from_json(&r?)).collect()
        })
        .await
    }

    async fn device_positions(
        &self,
        user: UserId,
        book: BookId,
    ) -> Result<Vec<DevicePosition>, StoreError> {
        self.read_progress(move |c| {
            let raw: Option<String> = c
                .prepare_cached(
                    "SELECT positions FROM progress_books WHERE user_id = ?1 AND book_id = ?2",
                )?
                .query_row(params![user.to_string(), book.to_string()], |r| r.get(0))
                .optional()?;
            let Some(raw) = raw else {
                return Ok(Vec::new());
            };
            let map: std::collections::BTreeMap<String, DevicePosition> = from_json(&raw)?;
            Ok(map.into_values().collect())
        })
        .await
    }

    async fn progress_changes(
        &self,
        user: UserId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ProgressState)>, StoreError> {
        self.read_progress(move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, state, book_id, device_id FROM progress_events
                 WHERE user_id = ?1 AND seq > ?2 AND applied = 1 ORDER BY seq LIMIT ?3",
            )?;
            let mut rows = st.query(params![user.0.as_bytes(), after_seq as i64, limit as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let seq: i64 = r.get(0)?;
                let book = BookId(events::uuid_of(r.get_ref(2)?)?);
                let device = DeviceId(events::uuid_of(r.get_ref(3)?)?);
                out.push((seq as u64, events::state_of(r.get_ref(1)?, book, device)?));
            }
            Ok(out)
        })
        .await
    }

    async fn progress_states_of(
        &self,
        user: UserId,
        books: &[BookId],
    ) -> Result<Vec<ProgressState>, StoreError> {
        let books = books.to_vec();
        self.read_progress(move |c| kobo::progress_states_of(c, user, &books))
            .await
    }

    async fn books_changed(
        &self,
        library: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Book)>, StoreError> {
        self.read(move |c| kobo::books_changed(c, library, after, limit))
            .await
    }

    async fn put_shelf(&self, shelf: &Shelf) -> Result<Shelf, StoreError> {
        let shelf = shelf.clone();
        self.write(move |c| kobo::put_shelf(c, &shelf)).await
    }

    async fn shelf(&self, id: ShelfId) -> Result<Option<Shelf>, StoreError> {
        self.read(move |c| kobo::shelf(c, id)).await
    }

    async fn shelves(&self, user: UserId) -> Result<Vec<Shelf>, StoreError> {
        self.read(move |c| kobo::shelves(c, user)).await
    }

    async fn library_shelves(&self, libraries: &[LibraryId]) -> Result<Vec<Shelf>, StoreError> {
        let libs: Vec<String> = libraries.iter().map(ToString::to_string).collect();
        self.read(move |c| kobo::library_shelves(c, &libs)).await
    }

    async fn shelves_changed(
        &self,
        user: UserId,
        libraries: &[LibraryId],
        after: u64,
        limit: usize,
    ) -> Result<Vec<Shelf>, StoreError> {
        let libs: Vec<String> = libraries.iter().map(ToString::to_string).collect();
        self.read(move |c| kobo::shelves_changed(c, user, &libs, after, limit))
            .await
    }

    async fn create_kobo_device(
        &self,
        device: &Device,
        token: &KoboToken,
    ) -> Result<(), StoreError> {
        let (d, t) = (device.clone(), token.clone());
        self.write(move |c| kobo::create_kobo_device(c, &d, &t))
            .await
    }

    async fn kobo_token(&self, token_hash: &str) -> Result<Option<KoboToken>, StoreError> {
        let h = token_hash.to_string();
        self.read(move |c| kobo::kobo_token(c, &h)).await
    }

    async fn kobo_tokens(&self, user: UserId) -> Result<Vec<KoboToken>, StoreError> {
        self.read(move |c| kobo::kobo_tokens(c, user)).await
    }

    async fn kobo_sync_state(&self, device: DeviceId) -> Result<Option<String>, StoreError> {
        self.read(move |c| kobo::kobo_sync_state(c, device)).await
    }

    async fn kobo_ledger(
        &self,
        device: DeviceId,
        books: &[BookId],
    ) -> Result<Vec<KoboLedgerEntry>, StoreError> {
        let books = books.to_vec();
        self.read(move |c| kobo::kobo_ledger(c, device, &books))
            .await
    }

    async fn kobo_ledger_outside(
        &self,
        device: DeviceId,
        libraries: &[LibraryId],
        limit: usize,
    ) -> Result<Vec<KoboLedgerEntry>, StoreError> {
        let libraries = libraries.to_vec();
        self.read(move |c| kobo::kobo_ledger_outside(c, device, &libraries, limit))
            .await
    }

    async fn kobo_tags(&self, device: DeviceId) -> Result<Vec<ShelfId>, StoreError> {
        self.read(move |c| kobo::kobo_tags(c, device)).await
    }

    async fn save_kobo_sync(
        &self,
        device: DeviceId,
        write: &KoboSyncWrite,
    ) -> Result<(), StoreError> {
        let w = write.clone();
        self.write(move |c| kobo::save_kobo_sync(c, device, &w))
            .await
    }

    async fn set_kobo_archived(
        &self,
        device: DeviceId,
        book: BookId,
        archived: bool,
    ) -> Result<bool, StoreError> {
        self.write(move |c| kobo::set_kobo_archived(c, device, book, archived))
            .await
    }

    async fn books_without_koreader(
        &self,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<Book>, StoreError> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {BOOK_COLS} FROM books WHERE deleted_at IS NULL AND id > ?1
             AND meta LIKE '%\"formats\":[{{%' AND meta NOT LIKE '%\"koreader\":\"%'
             ORDER BY id LIMIT ?2"
            ))?;
            let rows = st.query_map(params![after, limit as i64], book_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn books_version(&self, libraries: &[LibraryId]) -> Result<u64, StoreError> {
        let libs: Vec<String> = libraries.iter().map(ToString::to_string).collect();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT COALESCE(max(change_seq), 0) FROM books WHERE library_id = ?1",
            )?;
            let mut newest = 0i64;
            for l in &libs {
                newest = newest.max(st.query_row([l], |r| r.get::<_, i64>(0))?);
            }
            Ok(newest as u64)
        })
        .await
    }

    async fn book_facets(
        &self,
        libraries: &[LibraryId],
        facet: BookFacet,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let libs: Vec<String> = libraries.iter().map(ToString::to_string).collect();
        self.read(move |c| books::book_facets(c, &libs, facet))
            .await
    }

    async fn create_koreader_device(
        &self,
        device: &Device,
        login: &KoreaderLogin,
    ) -> Result<(), StoreError> {
        let (d, l) = (device.clone(), login.clone());
        self.write(move |c| koreader::create_koreader_device(c, &d, &l))
            .await
    }

    async fn koreader_login(&self, username: &str) -> Result<Option<KoreaderLogin>, StoreError> {
        let u = username.to_string();
        self.read(move |c| koreader::koreader_login(c, &u)).await
    }

    async fn koreader_logins(&self, user: UserId) -> Result<Vec<KoreaderLogin>, StoreError> {
        self.read(move |c| koreader::koreader_logins(c, user)).await
    }

    async fn koreader_books(&self, digest: &str) -> Result<Vec<BookId>, StoreError> {
        let d = digest.to_string();
        self.read(move |c| koreader::koreader_books(c, &d)).await
    }

    async fn put_koreader_position(&self, p: &KoreaderPosition) -> Result<bool, StoreError> {
        let p = p.clone();
        self.write(move |c| koreader::put_koreader_position(c, &p))
            .await
    }

    async fn koreader_position(
        &self,
        user: UserId,
        document: &str,
    ) -> Result<Option<KoreaderPosition>, StoreError> {
        let d = document.to_string();
        self.read(move |c| koreader::koreader_position(c, user, &d))
            .await
    }

    async fn unattached_koreader_positions(
        &self,
        digests: &[String],
    ) -> Result<Vec<KoreaderPosition>, StoreError> {
        let d = digests.to_vec();
        self.read(move |c| koreader::unattached_koreader_positions(c, &d))
            .await
    }

    async fn attach_koreader_position(
        &self,
        user: UserId,
        document: &str,
        book: BookId,
    ) -> Result<(), StoreError> {
        let d = document.to_string();
        self.write(move |c| koreader::attach_koreader_position(c, user, &d, book))
            .await
    }

    async fn create_opds_device(
        &self,
        device: &Device,
        token: &OpdsToken,
    ) -> Result<(), StoreError> {
        let (d, t) = (device.clone(), token.clone());
        self.write(move |c| opds::create_opds_device(c, &d, &t))
            .await
    }

    async fn opds_token(&self, token_hash: &str) -> Result<Option<OpdsToken>, StoreError> {
        let h = token_hash.to_string();
        self.read(move |c| opds::opds_token(c, &h)).await
    }

    async fn opds_tokens(&self, user: UserId) -> Result<Vec<OpdsToken>, StoreError> {
        self.read(move |c| opds::opds_tokens(c, user)).await
    }

    async fn sharing_write(
        &self,
        ops: &[SharingOp],
        audit: &AuditDraft,
    ) -> Result<AuditEntry, StoreError> {
        let (ops, audit) = (ops.to_vec(), audit.clone());
        self.write(move |c| sharing::sharing_write(c, &ops, audit))
            .await
    }

    async fn invites(&self, library: LibraryId) -> Result<Vec<Invite>, StoreError> {
        self.read(move |c| sharing::invites(c, library)).await
    }

    async fn invite_by_code(&self, code_hash: &str) -> Result<Option<Invite>, StoreError> {
        let h = code_hash.to_string();
        self.read(move |c| sharing::invite(c, &h)).await
    }

    async fn invite(&self, id: InviteId) -> Result<Option<Invite>, StoreError> {
        self.read(move |c| sharing::invite_by_id(c, id)).await
    }

    async fn audit_entries(
        &self,
        library: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| sharing::audit_entries(c, library, after, limit))
            .await
    }

    async fn audited_libraries(&self) -> Result<Vec<LibraryId>, StoreError> {
        self.read(sharing::audited_libraries).await
    }

    async fn purge_audit(&self, deleted_before: Timestamp) -> Result<u64, StoreError> {
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM audit_log WHERE library_id IN (SELECT id FROM libraries
                     WHERE deleted_at IS NOT NULL AND deleted_at < ?1)",
                [deleted_before.millis()],
            )? as u64)
        })
        .await
    }

    async fn user_book(&self, user: UserId, book: BookId) -> Result<Option<UserBook>, StoreError> {
        self.read(move |c| reading::user_book(c, user, book)).await
    }

    async fn user_books(
        &self,
        user: UserId,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<UserBook>, StoreError> {
        self.read(move |c| reading::user_books(c, user, after, limit))
            .await
    }

    async fn put_user_books(
        &self,
        user: UserId,
        books: &[UserBook],
        answer: Option<&IdempotentAnswer>,
    ) -> Result<(), StoreError> {
        let (books, answer) = (books.to_vec(), answer.cloned());
        self.write(move |c| reading::put_user_books(c, user, &books, answer.as_ref()))
            .await
    }

    async fn idempotent_answer(
        &self,
        user: UserId,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<IdempotentAnswer>, StoreError> {
        let key = key.to_string();
        self.read(move |c| reading::idempotent_answer(c, user, &key, now))
            .await
    }

    async fn purge_idempotent_answers(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write(move |c| reading::purge_idempotent_answers(c, before))
            .await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(reading::users).await
    }

    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        let user = user.clone();
        let now = Timestamp::now();
        self.write(move |c| reading::update_user(c, &user, now))
            .await
    }

    async fn revoke_user_sessions(&self, user: UserId) -> Result<(), StoreError> {
        self.write(move |c| reading::revoke_user_sessions(c, user))
            .await
    }

    async fn token_cutoffs(&self, since: Timestamp) -> Result<Vec<(UserId, u64)>, StoreError> {
        self.read(move |c| reading::token_cutoffs(c, since)).await
    }

    async fn delete_user(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<Option<Vec<FileLocation>>, StoreError> {
        // Progress writes logged but not applied yet are applied first, so none lands after.
        self.settle().await?;
        self.write(move |c| reading::delete_user(c, user, now))
            .await
    }

    async fn relate(&self, ops: &[RelationOp]) -> Result<(), StoreError> {
        let ops = ops.to_vec();
        self.write(move |c| reading::relate(c, &ops)).await
    }

    async fn relations_between(&self, a: UserId, b: UserId) -> Result<Vec<Relation>, StoreError> {
        self.read(move |c| reading::relations_between(c, a, b))
            .await
    }

    async fn relations_of(
        &self,
        user: UserId,
        kind: RelationKind,
        incoming: bool,
    ) -> Result<Vec<Related>, StoreError> {
        self.read(move |c| reading::relations_of(c, user, kind, incoming))
            .await
    }

    async fn put_doc(&self, doc: &UserDoc) -> Result<UserDoc, StoreError> {
        let doc = doc.clone();
        self.write(move |c| reading::put_doc(c, &doc)).await
    }

    async fn doc(&self, user: UserId, id: DocId) -> Result<Option<UserDoc>, StoreError> {
        self.read(move |c| reading::doc(c, user, id)).await
    }

    async fn docs(&self, q: &DocQuery) -> Result<Vec<UserDoc>, StoreError> {
        let q = q.clone();
        self.read(move |c| reading::docs(c, &q)).await
    }
}

fn head(c: &Connection, user: UserId) -> Result<u64, StoreError> {
    let seq: Option<i64> = c
        .prepare_cached("SELECT MAX(seq) FROM progress_events WHERE user_id = ?1")?
        .query_row([user.0.as_bytes()], |r| r.get(0))?;
    Ok(seq.unwrap_or(0) as u64)
}

/// A batch ready for the writer thread, or `None` when it is answered already: nothing to
/// store (`Recorded`), or a batch that cannot be encoded (the error).
fn progress_job(
    user: UserId,
    writes: Vec<ProgressWrite>,
    reply: deferred::Reply,
) -> Option<deferred::ProgressJob> {
    type Prepared = Option<(Vec<EventRow>, Vec<u8>)>;
    let prepared = (|| -> Result<Prepared, StoreError> {
        if !crate::sql::check_chain(user, &writes)? {
            return Ok(None);
        }
        // Encoded before the writer thread takes the batch: it is the one serial resource.
        let rows = writes
            .iter()
            .map(EventRow::of)
            .collect::<Result<Vec<_>, StoreError>>()?;
        let body = deferred::encode(&writes)?;
        Ok(Some((rows, body)))
    })();
    match prepared {
        Ok(Some((rows, body))) => Some(deferred::ProgressJob {
            user,
            writes,
            rows,
            body,
            result: None,
            reply,
        }),
        Ok(None) => {
            reply.send(Ok(BatchOutcome::Recorded));
            None
        }
        Err(e) => {
            reply.send(Err(e));
            None
        }
    }
}

/// A progress write's columns in their stored form, made before the writer thread takes
/// the batch (see [`events`] for the event's).
#[derive(Clone)]
struct EventRow {
    /// The book and device as text, for `progress_books` (its positions are keyed by device).
    book: String,
    device: String,
    state: Vec<u8>,
    position: String,
}

impl EventRow {
    fn of(w: &ProgressWrite) -> Result<EventRow, StoreError> {
        Ok(EventRow {
            book: w.event.book_id.to_string(),
            device: w.position.device_id.to_string(),
            state: events::state_record(&w.event.state, w.event.book_id, w.event.device_id)?,
            position: json(&w.position)?,
        })
    }
}

/// Appends one event of a batch; its book's row moves with [`BookRows`]. A refusal (another
/// owner took the seq) fails the batch.
fn insert_event(c: &Connection, w: &ProgressWrite, r: &EventRow) -> Result<(), StoreError> {
    let e = &w.event;
    // Seqs are gapless, so the primary key (user_id, seq) refuses a stale owner (the
    // event ids were checked just before, in the same transaction).
    let inserted = c
        .prepare_cached(
            "INSERT INTO progress_events (user_id, seq, event_id, book_id, device_id, body,
                                          applied, reason, state, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            w.user_id.0.as_bytes(),
            e.seq as i64,
            e.event_id.0.as_bytes(),
            e.book_id.0.as_bytes(),
            e.device_id.0.as_bytes(),
            events::body_value(&e.body),
            e.applied,
            e.reason.map(|r| r.as_str()),
            r.state,
            e.received_at.millis()
        ])?;
    if inserted == 0 {
        return Err(StoreError::VersionConflict {
            expected: w.expected_seq,
            found: head(c, w.user_id)?,
        });
    }
    Ok(())
}

/// What a run of events leaves in `progress_books`, written once per book at the end: the
/// state after the book's last applied write and each device's last position.
///
/// Why: a reader writing twenty times between two applies used to move the book's row (and
/// parse and rewrite its JSON of positions) twenty times; only the last of each is read.
/// Written once, the result is the same: the version check spans the run (the row must be
/// at the version before the run's first applied write), and a write that was not applied
/// always follows a state (its book has a row, or gets one from an earlier write of the run).
#[derive(Default)]
struct BookRows<'a> {
    books: Vec<BookRun<'a>>,
    at: std::collections::HashMap<(UserId, BookId), usize>,
}

struct BookRun<'a> {
    user: String,
    book: &'a str,
    /// The version the row must have before the run's first applied write.
    before: Option<u64>,
    /// The last applied write: its state and version.
    last: Option<(&'a ProgressWrite, &'a EventRow)>,
    /// Each device's last position, in the order devices first appear.
    positions: Vec<(&'a str, &'a str)>,
}

impl<'a> BookRows<'a> {
    fn add(&mut self, w: &'a ProgressWrite, r: &'a EventRow) {
        let key = (w.user_id, w.event.book_id);
        let i = *self.at.entry(key).or_insert_with(|| {
            self.books.push(BookRun {
                user: w.user_id.to_string(),
                book: &r.book,
                before: None,
                last: None,
                positions: Vec::new(),
            });
            self.books.len() - 1
        });
        let run = &mut self.books[i];
        if w.event.applied {
            run.before
                .get_or_insert(w.event.state.version.saturating_sub(1));
            run.last = Some((w, r));
        }
        match run.positions.iter_mut().find(|(d, _)| *d == r.device) {
            Some(slot) => slot.1 = &r.position,
            None => run.positions.push((&r.device, &r.position)),
        }
    }

    fn write(&self, c: &Connection) -> Result<(), StoreError> {
        for run in &self.books {
            if let (Some((w, r)), Some(before)) = (run.last, run.before) {
                // Written with the state: the position of the last applied write's device
                // (every applied write has one).
                let (device, position) = run
                    .positions
                    .iter()
                    .find(|(d, _)| *d == r.device)
                    .copied()
                    .unwrap_or((&r.device, &r.position));
                let n = c
                    .prepare_cached(
                        "INSERT INTO progress_books (user_id, book_id, version, state, positions)
                         VALUES (?1, ?2, ?3, ?4, json_object(?5, json(?6)))
                         ON CONFLICT (user_id, book_id) DO UPDATE SET
                             version = excluded.version,
                             state = excluded.state,
                             positions = json_set(progress_books.positions, ?7, json(?6))
                         WHERE progress_books.version = ?8",
                    )?
                    .execute(params![
                        run.user,
                        run.book,
                        w.event.state.version as i64,
                        json(&w.event.state)?,
                        device,
                        position,
                        format!("$.\"{device}\""),
                        before as i64,
                    ])?;
                if n != 1 {
                    return Err(StoreError::VersionConflict {
                        expected: before,
                        found: 0,
                    });
                }
                for (d, p) in &run.positions {
                    if *d != device {
                        set_position(c, &run.user, run.book, d, p)?;
                    }
                }
            } else {
                // Not applied: the state stays, each device's own position is still recorded.
                for (d, p) in &run.positions {
                    set_position(c, &run.user, run.book, d, p)?;
                }
            }
        }
        Ok(())
    }
}

fn set_position(
    c: &Connection,
    user: &str,
    book: &str,
    device: &str,
    position: &str,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE progress_books SET positions = json_set(positions, ?3, json(?4))
         WHERE user_id = ?1 AND book_id = ?2",
    )?
    .execute(params![user, book, format!("$.\"{device}\""), position])?;
    Ok(())
}
