//! PostgreSQL: the shared store of a cluster. Every node holds a pool of connections; every
//! write is one transaction whose conditions (expected versions, unique keys) PostgreSQL
//! checks, so two nodes that both think they own a key cannot both apply a write for the
//! same version: the second is refused as a `VersionConflict`.

mod books;
mod kobo;
mod koreader;
mod opds;
mod reading;
mod rows;
mod schema;
mod sharing;

pub use schema::LATEST as SCHEMA_VERSION;

use crate::error::StoreError;
use crate::ids::*;
use crate::reading::{
    DocQuery, IdempotentAnswer, Related, Relation, RelationKind, RelationOp, UserBook, UserDoc,
};
use crate::records::*;
use crate::sharing::{AuditDraft, AuditEntry, Invite, SharingOp};
use crate::store::{BatchOutcome, RotateOutcome, Store};
use crate::time::Timestamp;
use async_trait::async_trait;
use books::{BookRow, list_books, upsert_job, upsert_source};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use rows::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections this node keeps at most.
    pub pool_size: usize,
    /// A statement running longer is cancelled and its request fails with `503`.
    pub statement_timeout: Duration,
    /// How long to wait for a connection (new or from the pool) before failing.
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            statement_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

pub struct PostgresStore {
    pool: Pool,
    closed: AtomicBool,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        pg(e)
    }
}

/// Any PostgreSQL failure as `Unavailable`, with the server's message when it sent one.
pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Unavailable(e.to_string()),
    }
}

/// A unique-key violation as `Conflict(what)`, anything else as [`pg`].
pub(super) fn unique(e: tokio_postgres::Error, what: &'static str) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(what)
    } else {
        pg(e)
    }
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

// Every statement goes through the connection's statement cache: after the first use on a
// connection it costs one round trip, not two.
pub(super) async fn exec(
    c: &impl GenericClient,
    sql: &str,
    p: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.execute(&st, p).await
}

pub(super) async fn query(
    c: &impl GenericClient,
    sql: &str,
    p: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query(&st, p).await
}

pub(super) async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    p: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query_opt(&st, p).await
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), checks the server
    /// answers and migrates the schema (once, even when several nodes start together).
    pub async fn connect(url: &str, opts: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("storage.postgres_url: {e}")))?;
        config.connect_timeout(opts.connect_timeout);
        config.application_name("dogear");
        config.options(format!(
            "-c statement_timeout={} -c lock_timeout={}",
            opts.statement_timeout.as_millis(),
            opts.statement_timeout.as_millis()
        ));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(1))
            .wait_timeout(Some(opts.connect_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let store = PostgresStore {
            pool,
            closed: AtomicBool::new(false),
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<usize, StoreError> {
        let c = self.client().await?;
        let r = query_opt(&c, "SELECT version FROM dogear_schema WHERE id = 1", &[]).await?;
        Ok(r.map(|r| col::<i64>(&r, 0)).transpose()?.unwrap_or(0) as usize)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("store is closed".into()));
        }
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("postgres: {e}")))
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        self.pool.close();
        Ok(())
    }

    async fn create_user(&self, user: &User, lib: &Library) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        exec(
            &tx,
            "INSERT INTO users (id, username, email, password_hash, is_admin, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &user.id.to_string(),
                &user.username,
                &user.email,
                &user.password_hash,
                &user.is_admin,
                &user.created_at.millis(),
            ],
        )
        .await
        .map_err(|e| unique(e, "username"))?;
        exec(
            &tx,
            "INSERT INTO libraries (id, name, kind, owner_id, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[
                &lib.id.to_string(),
                &lib.name,
                &lib.kind.as_str(),
                &lib.owner_id.to_string(),
                &lib.created_at.millis(),
            ],
        )
        .await
        .map_err(|e| unique(e, "library"))?;
        exec(
            &tx,
            "INSERT INTO memberships (library_id, user_id, role) VALUES ($1, $2, 'owner')",
            &[&lib.id.to_string(), &user.id.to_string()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "SELECT {USER_COLS} FROM users WHERE id = $1 AND {}",
                reading::LIVE_USER
            ),
            &[&id.to_string()],
        )
        .await?
        .as_ref()
        .map(user_row)
        .transpose()
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "SELECT {USER_COLS} FROM users WHERE username = $1 AND {}",
                reading::LIVE_USER
            ),
            &[&username],
        )
        .await?
        .as_ref()
        .map(user_row)
        .transpose()
    }

    async fn first_admin(&self) -> Result<Option<String>, StoreError> {
        let c = self.client().await?;
        query_opt(
            &c,
            "SELECT username FROM users WHERE is_admin ORDER BY created_at, id LIMIT 1",
            &[],
        )
        .await?
        .as_ref()
        .map(|r| col(r, 0))
        .transpose()
    }

    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO refresh_tokens (hash, user_id, family_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &t.hash,
                &t.user_id.to_string(),
                &t.family_id.to_string(),
                &t.created_at.millis(),
                &t.expires_at.millis(),
            ],
        )
        .await
        .map_err(|e| unique(e, "refresh_token"))?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<RotateOutcome, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The row lock makes two nodes presenting the same token at once take turns: the
        // second sees it spent and revokes the family, exactly as on one node.
        let row = query_opt(
            &tx,
            "SELECT user_id, family_id, expires_at, used_at, revoked FROM refresh_tokens
             WHERE hash = $1 FOR UPDATE",
            &[&old_hash],
        )
        .await?;
        let Some(row) = row else {
            return Ok(RotateOutcome::Invalid);
        };
        let user_id: String = col(&row, 0)?;
        let family: String = col(&row, 1)?;
        let old_expires_at: i64 = col(&row, 2)?;
        let used_at: Option<i64> = col(&row, 3)?;
        let revoked: bool = col(&row, 4)?;
        if used_at.is_some() || revoked {
            exec(
                &tx,
                "UPDATE refresh_tokens SET revoked = true WHERE family_id = $1",
                &[&family],
            )
            .await?;
            tx.commit().await?;
            return Ok(RotateOutcome::Reused);
        }
        if old_expires_at <= now.millis() {
            return Ok(RotateOutcome::Invalid);
        }
        exec(
            &tx,
            "UPDATE refresh_tokens SET used_at = $2 WHERE hash = $1",
            &[&old_hash, &now.millis()],
        )
        .await?;
        exec(
            &tx,
            "INSERT INTO refresh_tokens (hash, user_id, family_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &new_hash,
                &user_id,
                &family,
                &now.millis(),
                &expires_at.millis(),
            ],
        )
        .await
        .map_err(|e| unique(e, "refresh_token"))?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated {
            user_id: parse_id(&user_id)?,
        })
    }

    async fn revoke_refresh_family(&self, hash: &str) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE refresh_tokens SET revoked = true WHERE family_id =
               (SELECT family_id FROM refresh_tokens WHERE hash = $1)",
            &[&hash],
        )
        .await?;
        Ok(())
    }

    async fn create_device(&self, d: &Device) -> Result<(), StoreError> {
        let c = self.client().await?;
        kobo::insert_device(&c, d).await
    }

    async fn devices(&self, user: UserId) -> Result<Vec<Device>, StoreError> {
        let c = self.client().await?;
        query(
            &c,
            "SELECT id, user_id, name, kind, created_at FROM devices WHERE user_id = $1 ORDER BY id",
            &[&user.to_string()],
        )
        .await?
        .iter()
        .map(device_row)
        .collect()
    }

    async fn delete_device(&self, user: UserId, id: DeviceId) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "DELETE FROM devices WHERE id = $1 AND user_id = $2",
            &[&id.to_string(), &user.to_string()],
        )
        .await?;
        Ok(n > 0)
    }

    async fn library(&self, id: LibraryId) -> Result<Option<Library>, StoreError> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!("SELECT {LIBRARY_COLS} FROM libraries WHERE id = $1 AND deleted_at IS NULL"),
            &[&id.to_string()],
        )
        .await?
        .as_ref()
        .map(library_row)
        .transpose()
    }

    async fn memberships(&self, library: LibraryId) -> Result<Vec<Membership>, StoreError> {
        let c = self.client().await?;
        query(
            &c,
            "SELECT library_id, user_id, role FROM memberships WHERE library_id = $1",
            &[&library.to_string()],
        )
        .await?
        .iter()
        .map(membership_row)
        .collect()
    }

    async fn libraries_of(&self, user: UserId) -> Result<Vec<(Library, Role)>, StoreError> {
        let c = self.client().await?;
        query(
            &c,
            &format!(
                "SELECT {LIBRARY_COLS_L}, m.role FROM memberships m JOIN libraries l ON l.id = m.library_id
                 WHERE m.user_id = $1 AND l.deleted_at IS NULL
                 ORDER BY l.kind <> 'personal', l.created_at, l.id"
            ),
            &[&user.to_string()],
        )
        .await?
        .iter()
        .map(|r| {
            let role: &str = col(r, 6)?;
            let role =
                Role::parse(role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?;
            Ok((library_row(r)?, role))
        })
        .collect()
    }

    async fn create_book(&self, b: &Book) -> Result<(), StoreError> {
        let row = BookRow::new(b)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        row.insert(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn book(&self, id: BookId) -> Result<Option<Book>, StoreError> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!("SELECT {BOOK_COLS} FROM books WHERE id = $1"),
            &[&id.to_string()],
        )
        .await?
        .as_ref()
        .map(book_row)
        .transpose()
    }

    async fn update_book(&self, b: &Book) -> Result<(), StoreError> {
        let row = BookRow::new(b)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        row.update(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_books(&self, q: &BookQuery) -> Result<Vec<Book>, StoreError> {
        let c = self.client().await?;
        list_books(&c, q).await
    }

    async fn book_by_hash(
        &self,
        library: LibraryId,
        hash: &str,
    ) -> Result<Option<BookId>, StoreError> {
        let c = self.client().await?;
        query_opt(
            &c,
            "SELECT book_id FROM book_hashes WHERE library_id = $1 AND hash = $2",
            &[&library.to_string(), &hash],
        )
        .await?
        .as_ref()
        .map(|r| parse_id(col(r, 0)?))
        .transpose()
    }

    async fn register_import(
        &self,
        book: &Book,
        source: Option<&SourceFile>,
        job: Option<&ImportJob>,
    ) -> Result<RegisterOutcome, StoreError> {
        let row = BookRow::new(book)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Books of a library are registered one at a time (the change counter's lock is
        // taken first), so two nodes importing the same file cannot both miss the other's
        // hash: the second finds the first's book as the duplicate.
        books::bump_changes(&tx).await?;
        for h in &row.hashes {
            let found = query_opt(
                &tx,
                "SELECT book_id FROM book_hashes WHERE library_id = $1 AND hash = $2",
                &[&row.library_id, h],
            )
            .await?;
            if let Some(found) = found {
                let id = parse_id(col(&found, 0)?)?;
                return Ok(RegisterOutcome::Duplicate(id));
            }
        }
        row.insert(&tx).await?;
        if let Some(s) = source {
            upsert_source(&tx, s).await?;
        }
        if let Some(j) = job {
            upsert_job(&tx, j).await?;
        }
        tx.commit().await?;
        Ok(RegisterOutcome::Created)
    }

    async fn upsert_job(&self, job: &ImportJob) -> Result<(), StoreError> {
        let c = self.client().await?;
        upsert_job(&c, job).await
    }

    async fn job(&self, id: JobId) -> Result<Option<ImportJob>, StoreError> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!("SELECT {JOB_COLS} FROM import_jobs WHERE id = $1"),
            &[&id.to_string()],
        )
        .await?
        .as_ref()
        .map(job_row)
        .transpose()
    }

    async fn claim_jobs(
        &self,
        now: Timestamp,
        limit: usize,
        node: &str,
    ) -> Result<Vec<ImportJob>, StoreError> {
        let c = self.client().await?;
        // SKIP LOCKED: nodes claiming at the same moment each get different jobs.
        query(
            &c,
            &format!(
                "UPDATE import_jobs SET state = 'running', updated_at = $1, claimed_by = $3
                 WHERE id IN (SELECT id FROM import_jobs WHERE state = 'queued' AND run_at <= $1
                                AND (node IS NULL OR node = $3)
                              ORDER BY run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING {JOB_COLS}"
            ),
            &[&now.millis(), &(limit as i64), &node],
        )
        .await?
        .iter()
        .map(job_row)
        .collect::<Result<Vec<_>, _>>()
        .map(|mut jobs| {
            jobs.sort_by_key(|j| (j.run_at, j.id));
            jobs
        })
    }

    async fn requeue_running_jobs(&self, node: &str) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(exec(
            &c,
            "UPDATE import_jobs SET state = 'queued', claimed_by = NULL
             WHERE state = 'running' AND claimed_by = $1",
            &[&node],
        )
        .await?)
    }

    async fn requeue_jobs_of(&self, lost: &[String]) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(exec(
            &c,
            "UPDATE import_jobs SET state = 'queued', claimed_by = NULL
             WHERE state = 'running' AND node IS NULL AND claimed_by = ANY($1)",
            &[&lost],
        )
        .await?)
    }

    async fn requeue_abandoned_jobs(&self, before: Timestamp) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(exec(
            &c,
            "UPDATE import_jobs SET state = 'queued'
             WHERE state = 'running' AND claimed_by IS NULL AND updated_at < $1",
            &[&before.millis()],
        )
        .await?)
    }

    async fn next_job_at(&self, node: &str) -> Result<Option<Timestamp>, StoreError> {
        let c = self.client().await?;
        let r = query(
            &c,
            "SELECT min(run_at) FROM import_jobs WHERE state = 'queued'
             AND (node IS NULL OR node = $1)",
            &[&node],
        )
        .await?;
        Ok(match r.first() {
            Some(r) => col::<Option<i64>>(r, 0)?.map(Timestamp::from_millis),
            None => None,
        })
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        let c = self.client().await?;
        let rows = query(
            &c,
            "SELECT state, count(*) FROM import_jobs GROUP BY state",
            &[],
        )
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            if let Some(s) = JobState::parse(col(r, 0)?) {
                out.push((s, col::<i64>(r, 1)? as u64));
            }
        }
        Ok(out)
    }

    async fn list_jobs(
        &self,
        libraries: &[LibraryId],
        state: Option<JobState>,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<ImportJob>, StoreError> {
        let c = self.client().await?;
        let libs: Vec<String> = libraries.iter().map(|l| l.to_string()).collect();
        query(
            &c,
            &format!(
                "SELECT {JOB_COLS} FROM import_jobs
                 WHERE library_id = ANY($1) AND ($2::text IS NULL OR state = $2)
                   AND ($3::text IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4"
            ),
            &[
                &libs,
                &state.map(|s| s.as_str()),
                &before.map(|b| b.to_string()),
                &(limit as i64),
            ],
        )
        .await?
        .iter()
        .map(job_row)
        .collect()
    }

    async fn source_files(&self, source: &str) -> Result<Vec<SourceFile>, StoreError> {
        let c = self.client().await?;
        query(
            &c,
            &format!("SELECT {SOURCE_COLS} FROM source_files WHERE source = $1 ORDER BY path"),
            &[&source],
        )
        .await?
        .iter()
        .map(source_row)
        .collect()
    }

    async fn source_files_of_book(&self, book: BookId) -> Result<Vec<SourceFile>, StoreError> {
        let c = self.client().await?;
        query(
            &c,
            &format!(
                "SELECT {SOURCE_COLS} FROM source_files WHERE book_id = $1 ORDER BY source, path"
            ),
            &[&book.to_string()],
        )
        .await?
        .iter()
        .map(source_row)
        .collect()
    }

    async fn put_source_files(
        &self,
        upserts: &[SourceFile],
        removals: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        for s in upserts {
            upsert_source(&tx, s).await?;
        }
        for (source, path) in removals {
            exec(
                &tx,
                "DELETE FROM source_files WHERE source = $1 AND path = $2",
                &[source, path],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn progress_head(&self, user: UserId) -> Result<u64, StoreError> {
        let c = self.client().await?;
        head(&c, user).await
    }

    async fn record_progress_batch(
        &self,
        user: UserId,
        writes: &[ProgressWrite],
    ) -> Result<BatchOutcome, StoreError> {
        if !crate::sql::check_chain(user, writes)? {
            return Ok(BatchOutcome::Recorded);
        }
        let mut cols = BatchColumns::default();
        for w in writes {
            let e = &w.event;
            cols.seq.push(e.seq as i64);
            cols.event.push(e.event_id.to_string());
            cols.book.push(e.book_id.to_string());
            cols.device.push(w.position.device_id.to_string());
            cols.body.push(e.body.clone());
            cols.applied.push(e.applied);
            cols.reason.push(e.reason.map(|r| r.as_str()));
            cols.state.push(json(&e.state)?);
            cols.version.push(e.state.version as i64);
            cols.received.push(e.received_at.millis());
            cols.position.push(json(&w.position)?);
        }
        let started = std::time::Instant::now();
        let c = self.client().await?;
        // One statement, so one round trip and its own transaction: all of it or none.
        let rows = query(
            &c,
            &format!(
                "SELECT {EVENT_COLS} FROM dogear_record_progress(
                     $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &user.to_string(),
                &cols.seq,
                &cols.event,
                &cols.book,
                &cols.device,
                &cols.body,
                &cols.applied,
                &cols.reason,
                &cols.state,
                &cols.version,
                &cols.received,
                &cols.position,
            ],
        )
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) if e.code().map(|c| c.code()) == Some("DG001") => {
                let found = head(&c, user).await?;
                return Err(StoreError::VersionConflict {
                    expected: writes[0].expected_seq,
                    found,
                });
            }
            Err(e) => return Err(pg(e)),
        };
        // The same series as the embedded store's group commits: the alert on slow commits
        // reads it whatever the backend.
        metrics::histogram!("dogear_storage_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("dogear_storage_batch_size").record(writes.len() as f64);
        if rows.is_empty() {
            return Ok(BatchOutcome::Recorded);
        }
        Ok(BatchOutcome::Duplicates(
            rows.iter().map(event_row).collect::<Result<_, _>>()?,
        ))
    }

    async fn progress_state(
        &self,
        user: UserId,
        book: BookId,
    ) -> Result<Option<ProgressState>, StoreError> {
        let c = self.client().await?;
        query_opt(
            &c,
            "SELECT state FROM progress_books WHERE user_id = $1 AND book_id = $2",
            &[&user.to_string(), &book.to_string()],
        )
        .await?
        .as_ref()
        .map(|r| from_json(col(r, 0)?))
        .transpose()
    }

    async fn progress_states(
        &self,
        user: UserId,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<ProgressState>, StoreError> {
        let c = self.client().await?;
        let after = after.map(|b| b.to_string()).unwrap_or_default();
        query(
            &c,
            "SELECT state FROM progress_books WHERE user_id = $1 AND book_id > $2
             ORDER BY book_id LIMIT $3",
            &[&user.to_string(), &after, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| from_json(col(r, 0)?))
        .collect()
    }

    async fn device_positions(
        &self,
        user: UserId,
        book: BookId,
    ) -> Result<Vec<DevicePosition>, StoreError> {
        let c = self.client().await?;
        let raw = query_opt(
            &c,
            "SELECT positions::text FROM progress_books WHERE user_id = $1 AND book_id = $2",
            &[&user.to_string(), &book.to_string()],
        )
        .await?;
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let map: std::collections::BTreeMap<String, DevicePosition> = from_json(col(&raw, 0)?)?;
        Ok(map.into_values().collect())
    }

    async fn progress_changes(
        &self,
        user: UserId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ProgressState)>, StoreError> {
        let c = self.client().await?;
        query(
            &c,
            "SELECT seq, state FROM progress_events
             WHERE user_id = $1 AND seq > $2 AND applied ORDER BY seq LIMIT $3",
            &[&user.to_string(), &(after_seq as i64), &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| Ok((col::<i64>(r, 0)? as u64, from_json(col(r, 1)?)?)))
        .collect()
    }

    async fn progress_states_of(
        &self,
        user: UserId,
        books: &[BookId],
    ) -> Result<Vec<ProgressState>, StoreError> {
        let c = self.client().await?;
        kobo::progress_states_of(&c, user, books).await
    }

    async fn books_changed(
        &self,
        library: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Book)>, StoreError> {
        let c = self.client().await?;
        kobo::books_changed(&c, library, after, limit).await
    }

    async fn put_shelf(&self, shelf: &Shelf) -> Result<Shelf, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let s = kobo::put_shelf(&tx, shelf).await?;
        tx.commit().await?;
        Ok(s)
    }

    async fn shelf(&self, id: ShelfId) -> Result<Option<Shelf>, StoreError> {
        let c = self.client().await?;
        kobo::shelf(&c, id).await
    }

    async fn shelves(&self, user: UserId) -> Result<Vec<Shelf>, StoreError> {
        let c = self.client().await?;
        kobo::shelves(&c, user).await
    }

    async fn library_shelves(&self, libraries: &[LibraryId]) -> Result<Vec<Shelf>, StoreError> {
        let c = self.client().await?;
        kobo::library_shelves(&c, libraries).await
    }

    async fn shelves_changed(
        &self,
        user: UserId,
        libraries: &[LibraryId],
        after: u64,
        limit: usize,
    ) -> Result<Vec<Shelf>, StoreError> {
        let c = self.client().await?;
        kobo::shelves_changed(&c, user, libraries, after, limit).await
    }

    async fn create_kobo_device(
        &self,
        device: &Device,
        token: &KoboToken,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        kobo::insert_device(&tx, device).await?;
        kobo::insert_kobo_token(&tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn kobo_token(&self, token_hash: &str) -> Result<Option<KoboToken>, StoreError> {
        let c = self.client().await?;
        kobo::kobo_token(&c, token_hash).await
    }

    async fn kobo_tokens(&self, user: UserId) -> Result<Vec<KoboToken>, StoreError> {
        let c = self.client().await?;
        kobo::kobo_tokens(&c, user).await
    }

    async fn kobo_sync_state(&self, device: DeviceId) -> Result<Option<String>, StoreError> {
        let c = self.client().await?;
        kobo::kobo_sync_state(&c, device).await
    }

    async fn kobo_ledger(
        &self,
        device: DeviceId,
        books: &[BookId],
    ) -> Result<Vec<KoboLedgerEntry>, StoreError> {
        let c = self.client().await?;
        kobo::kobo_ledger(&c, device, books).await
    }

    async fn kobo_ledger_outside(
        &self,
        device: DeviceId,
        libraries: &[LibraryId],
        limit: usize,
    ) -> Result<Vec<KoboLedgerEntry>, StoreError> {
        let c = self.client().await?;
        kobo::kobo_ledger_outside(&c, device, libraries, limit).await
    }

    async fn kobo_tags(&self, device: DeviceId) -> Result<Vec<ShelfId>, StoreError> {
        let c = self.client().await?;
        kobo::kobo_tags(&c, device).await
    }

    async fn save_kobo_sync(
        &self,
        device: DeviceId,
        write: &KoboSyncWrite,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        kobo::save_kobo_sync(&tx, device, write).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_kobo_archived(
        &self,
        device: DeviceId,
        book: BookId,
        archived: bool,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        kobo::set_kobo_archived(&c, device, book, archived).await
    }

    async fn books_without_koreader(
        &self,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<Book>, StoreError> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let c = self.client().await?;
        query(
            &c,
            &format!(
                "SELECT {BOOK_COLS} FROM books WHERE deleted_at IS NULL AND id > $1
             AND meta LIKE '%\"formats\":[{{%' AND meta NOT LIKE '%\"koreader\":\"%'
             ORDER BY id LIMIT $2"
            ),
            &[&after, &(limit as i64)],
        )
        .await?
        .iter()
        .map(book_row)
        .collect()
    }

    async fn books_version(&self, libraries: &[LibraryId]) -> Result<u64, StoreError> {
        let libs: Vec<String> = libraries.iter().map(ToString::to_string).collect();
        let c = self.client().await?;
        let mut newest = 0i64;
        for l in &libs {
            let r = query(
                &c,
                "SELECT COALESCE(max(change_seq), 0) FROM books WHERE library_id = $1",
                &[l],
            )
            .await?;
            if let Some(row) = r.first() {
                newest = newest.max(rows::col::<i64>(row, 0)?);
            }
        }
        Ok(newest as u64)
    }

    async fn book_facets(
        &self,
        libraries: &[LibraryId],
        facet: BookFacet,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let libs: Vec<String> = libraries.iter().map(ToString::to_string).collect();
        let c = self.client().await?;
        books::book_facets(&c, &libs, facet).await
    }

    async fn create_koreader_device(
        &self,
        device: &Device,
        login: &KoreaderLogin,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        koreader::create_koreader_device(&tx, device, login).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn koreader_login(&self, username: &str) -> Result<Option<KoreaderLogin>, StoreError> {
        let c = self.client().await?;
        koreader::koreader_login(&c, username).await
    }

    async fn koreader_logins(&self, user: UserId) -> Result<Vec<KoreaderLogin>, StoreError> {
        let c = self.client().await?;
        koreader::koreader_logins(&c, user).await
    }

    async fn koreader_books(&self, digest: &str) -> Result<Vec<BookId>, StoreError> {
        let c = self.client().await?;
        koreader::koreader_books(&c, digest).await
    }

    async fn put_koreader_position(&self, p: &KoreaderPosition) -> Result<bool, StoreError> {
        let c = self.client().await?;
        koreader::put_koreader_position(&c, p).await
    }

    async fn koreader_position(
        &self,
        user: UserId,
        document: &str,
    ) -> Result<Option<KoreaderPosition>, StoreError> {
        let c = self.client().await?;
        koreader::koreader_position(&c, user, document).await
    }

    async fn unattached_koreader_positions(
        &self,
        digests: &[String],
    ) -> Result<Vec<KoreaderPosition>, StoreError> {
        let c = self.client().await?;
        koreader::unattached_koreader_positions(&c, digests).await
    }

    async fn attach_koreader_position(
        &self,
        user: UserId,
        document: &str,
        book: BookId,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        koreader::attach_koreader_position(&c, user, document, book).await
    }

    async fn create_opds_device(
        &self,
        device: &Device,
        token: &OpdsToken,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        opds::create_opds_device(&tx, device, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn opds_token(&self, token_hash: &str) -> Result<Option<OpdsToken>, StoreError> {
        let c = self.client().await?;
        opds::opds_token(&c, token_hash).await
    }

    async fn opds_tokens(&self, user: UserId) -> Result<Vec<OpdsToken>, StoreError> {
        let c = self.client().await?;
        opds::opds_tokens(&c, user).await
    }

    async fn sharing_write(
        &self,
        ops: &[SharingOp],
        audit: &AuditDraft,
    ) -> Result<AuditEntry, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let e = sharing::sharing_write(&tx, ops, audit.clone()).await?;
        tx.commit().await?;
        Ok(e)
    }

    async fn invites(&self, library: LibraryId) -> Result<Vec<Invite>, StoreError> {
        let c = self.client().await?;
        sharing::invites(&c, library).await
    }

    async fn invite_by_code(&self, code_hash: &str) -> Result<Option<Invite>, StoreError> {
        let c = self.client().await?;
        sharing::invite_where(&c, "code_hash", code_hash).await
    }

    async fn invite(&self, id: InviteId) -> Result<Option<Invite>, StoreError> {
        let c = self.client().await?;
        sharing::invite_where(&c, "id", &id.to_string()).await
    }

    async fn audit_entries(
        &self,
        library: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let c = self.client().await?;
        sharing::audit_entries(&c, library, after, limit).await
    }

    async fn audited_libraries(&self) -> Result<Vec<LibraryId>, StoreError> {
        let c = self.client().await?;
        sharing::audited_libraries(&c).await
    }

    async fn purge_audit(&self, deleted_before: Timestamp) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(exec(
            &c,
            "DELETE FROM audit_log WHERE library_id IN (SELECT id FROM libraries
                 WHERE deleted_at IS NOT NULL AND deleted_at < $1)",
            &[&deleted_before.millis()],
        )
        .await?)
    }

    async fn user_book(&self, user: UserId, book: BookId) -> Result<Option<UserBook>, StoreError> {
        reading::user_book(&self.client().await?, user, book).await
    }

    async fn user_books(
        &self,
        user: UserId,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<UserBook>, StoreError> {
        reading::user_books(&self.client().await?, user, after, limit).await
    }

    async fn put_user_books(
        &self,
        user: UserId,
        books: &[UserBook],
        answer: Option<&IdempotentAnswer>,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        reading::put_user_books(&tx, user, books, answer).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn idempotent_answer(
        &self,
        user: UserId,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<IdempotentAnswer>, StoreError> {
        reading::idempotent_answer(&self.client().await?, user, key, now).await
    }

    async fn purge_idempotent_answers(&self, before: Timestamp) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(exec(
            &c,
            "DELETE FROM idempotent_answers WHERE expires_at <= $1",
            &[&before.millis()],
        )
        .await?)
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        reading::users(&self.client().await?).await
    }

    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        reading::update_user(&self.client().await?, user, Timestamp::now()).await
    }

    async fn revoke_user_sessions(&self, user: UserId) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE refresh_tokens SET revoked = true WHERE user_id = $1",
            &[&user.to_string()],
        )
        .await?;
        Ok(())
    }

    async fn token_cutoffs(&self, since: Timestamp) -> Result<Vec<(UserId, u64)>, StoreError> {
        reading::token_cutoffs(&self.client().await?, since).await
    }

    async fn delete_user(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<Option<Vec<FileLocation>>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let out = reading::delete_user(&tx, user, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn relate(&self, ops: &[RelationOp]) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        reading::relate(&tx, ops).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn relations_between(&self, a: UserId, b: UserId) -> Result<Vec<Relation>, StoreError> {
        reading::relations_between(&self.client().await?, a, b).await
    }

    async fn relations_of(
        &self,
        user: UserId,
        kind: RelationKind,
        incoming: bool,
    ) -> Result<Vec<Related>, StoreError> {
        reading::relations_of(&self.client().await?, user, kind, incoming).await
    }

    async fn put_doc(&self, doc: &UserDoc) -> Result<UserDoc, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let stored = reading::put_doc(&tx, doc).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn doc(&self, user: UserId, id: DocId) -> Result<Option<UserDoc>, StoreError> {
        reading::doc(&self.client().await?, user, id).await
    }

    async fn docs(&self, q: &DocQuery) -> Result<Vec<UserDoc>, StoreError> {
        reading::docs(&self.client().await?, q).await
    }
}

async fn head(c: &impl GenericClient, user: UserId) -> Result<u64, StoreError> {
    let r = query(
        c,
        "SELECT MAX(seq) FROM progress_events WHERE user_id = $1",
        &[&user.to_string()],
    )
    .await?;
    Ok(match r.first() {
        Some(r) => col::<Option<i64>>(r, 0)?.unwrap_or(0) as u64,
        None => 0,
    })
}

/// A progress batch as one array per column of `dogear_record_progress`.
#[derive(Default)]
struct BatchColumns {
    seq: Vec<i64>,
    event: Vec<String>,
    book: Vec<String>,
    device: Vec<String>,
    body: Vec<String>,
    applied: Vec<bool>,
    reason: Vec<Option<&'static str>>,
    state: Vec<String>,
    version: Vec<i64>,
    received: Vec<i64>,
    position: Vec<String>,
}
