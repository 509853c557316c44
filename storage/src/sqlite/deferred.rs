//! Progress writes made durable by an append-only log, applied to SQLite later in bulk.
//!
//! Why: a progress write touches three B-tree pages of SQLite (the reader's events, the
//! event-id index, the book's row). With many readers writing at once every write lands on
//! pages of its own, so each one cost about 24 KB of WAL and checkpoint writes, and the disk's
//! write bandwidth, not fsync, was the wall. Here a batch of writes is checked against what
//! SQLite and the not-yet-applied writes hold (log head, event ids, book versions), appended
//! to `progress.log` as one record of a few hundred bytes per write, and fsynced with every
//! other batch of the same group before anyone is answered. The writes reach SQLite together
//! later (when enough are waiting, when they are old, before any other write and before any
//! progress read), so the pages of a reader who wrote twenty times are written once.
//!
//! The log holds only writes SQLite may not have made durable yet: it is emptied after each
//! SQLite commit that applied everything waiting (that commit is fsynced, `synchronous=FULL`).
//! At start, whatever the log still holds is applied again where SQLite lacks it (a batch is
//! applied whole or not at all, so the reader's log head says which), which is what makes an
//! acknowledged write survive SIGKILL and power loss.

use super::{EventRow, head, record_one};
use crate::error::StoreError;
use crate::ids::{BookId, EventId, UserId};
use crate::records::{ProgressEvent, ProgressWrite};
use crate::store::BatchOutcome;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Apply once this many writes wait...
const APPLY_AFTER_WRITES: usize = 4096;
/// ...or the oldest has waited this long.
const APPLY_AFTER: Duration = Duration::from_millis(100);
/// A log record larger than this is damage, not a batch.
const MAX_RECORD: usize = 64 << 20;

/// The log file: records of `[len u32 LE][crc32 u32 LE][JSON of one batch]`.
pub(crate) struct Log {
    file: File,
    len: u64,
    sync: bool,
    buf: Vec<u8>,
}

impl Log {
    /// Opens the log and reads the batches it holds. A torn or damaged tail (a record cut by
    /// a crash while it was being written, never acknowledged) ends the log there.
    pub(crate) fn open(
        path: &Path,
        sync: bool,
    ) -> Result<(Log, Vec<Vec<ProgressWrite>>), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let mut batches = Vec::new();
        let mut at = 0usize;
        while bytes.len() - at >= 8 {
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                as usize;
            let crc =
                u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            let Some(body) = bytes.get(at + 8..at + 8 + len) else {
                break;
            };
            if len > MAX_RECORD || crc32fast::hash(body) != crc {
                break;
            }
            match serde_json::from_slice::<Vec<ProgressWrite>>(body) {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
            at += 8 + len;
        }
        if at < bytes.len() {
            tracing::warn!(
                bytes = bytes.len() - at,
                "progress log ends in a torn record (a write cut by a crash before it was acknowledged): dropped"
            );
        }
        let log = Log {
            file,
            len: bytes.len() as u64,
            sync,
            buf: Vec::new(),
        };
        Ok((log, batches))
    }

    fn push(&mut self, writes: &[ProgressWrite]) -> Result<(), StoreError> {
        let body = serde_json::to_vec(writes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let len = u32::try_from(body.len())
            .map_err(|_| StoreError::Corrupt("progress batch too large".into()))?;
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf
            .extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        self.buf.extend_from_slice(&body);
        Ok(())
    }

    /// Writes what was pushed and makes it durable.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf).and_then(|_| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => {
                self.len += self.buf.len() as u64;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                // Cut whatever part of the group reached the file, so no later record
                // follows a torn one.
                self.buf.clear();
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Empties the log: everything it held is durable in SQLite.
    fn clear(&mut self) -> std::io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.file.set_len(0)?;
        if self.sync {
            self.file.sync_all()?;
        }
        self.len = 0;
        Ok(())
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.len
    }
}

/// One batch waiting for SQLite.
struct Waiting {
    writes: Vec<ProgressWrite>,
    rows: Vec<EventRow>,
}

/// The writes logged but not applied to SQLite yet, and what they change, so the checks of
/// the next batches see them.
pub(crate) struct Deferred {
    log: Log,
    waiting: Vec<Waiting>,
    count: usize,
    oldest: Option<Instant>,
    heads: HashMap<UserId, u64>,
    ids: HashMap<(UserId, EventId), ProgressEvent>,
    /// Book versions after the waiting writes (a row with no version yet: 0).
    versions: HashMap<(UserId, BookId), u64>,
}

impl Deferred {
    pub(crate) fn new(log: Log) -> Deferred {
        Deferred {
            log,
            waiting: Vec::new(),
            count: 0,
            oldest: None,
            heads: HashMap::new(),
            ids: HashMap::new(),
            versions: HashMap::new(),
        }
    }

    /// Checks a batch against SQLite and the waiting writes; if it is accepted, queues it
    /// for the log and for SQLite.
    fn accept(
        &mut self,
        c: &Connection,
        user: UserId,
        writes: Vec<ProgressWrite>,
        rows: Vec<EventRow>,
    ) -> Result<BatchOutcome, StoreError> {
        let Some(first) = writes.first() else {
            return Ok(BatchOutcome::Recorded);
        };
        let now = match self.heads.get(&user) {
            Some(h) => *h,
            None => head(c, user)?,
        };
        if first.expected_seq != now {
            return Err(StoreError::VersionConflict {
                expected: first.expected_seq,
                found: now,
            });
        }
        let mut duplicates = Vec::new();
        {
            let mut find = c.prepare_cached(&format!(
                "SELECT {} FROM progress_events WHERE user_id = ?1 AND event_id = ?2",
                crate::sql::EVENT_COLS
            ))?;
            for w in &writes {
                if let Some(e) = self.ids.get(&(user, w.event.event_id)) {
                    duplicates.push(e.clone());
                } else if let Some(e) = find
                    .query_row(
                        params![user.to_string(), w.event.event_id.to_string()],
                        super::rows::event_row,
                    )
                    .optional()?
                {
                    duplicates.push(e?);
                }
            }
        }
        if !duplicates.is_empty() {
            return Ok(BatchOutcome::Duplicates(duplicates));
        }
        // Book versions: an applied write must be the next version of its book's row (a book
        // without a row takes any), as the upsert that applies it will require.
        let mut versions: HashMap<BookId, Option<u64>> = HashMap::new();
        for w in &writes {
            let book = w.event.book_id;
            if let std::collections::hash_map::Entry::Vacant(slot) = versions.entry(book) {
                let v = match self.versions.get(&(user, book)) {
                    Some(v) => Some(*v),
                    None => c
                        .prepare_cached(
                            "SELECT version FROM progress_books WHERE user_id = ?1 AND book_id = ?2",
                        )?
                        .query_row(params![user.to_string(), book.to_string()], |r| {
                            r.get::<_, i64>(0)
                        })
                        .optional()?
                        .map(|v| v as u64),
                };
                slot.insert(v);
            }
            if w.event.applied
                && let Some(v) = versions.get_mut(&book)
            {
                if let Some(cur) = *v
                    && cur + 1 != w.event.state.version
                {
                    return Err(StoreError::VersionConflict {
                        expected: w.event.state.version.saturating_sub(1),
                        found: cur,
                    });
                }
                *v = Some(w.event.state.version);
            }
        }
        self.log.push(&writes)?;
        for (book, v) in versions {
            if let Some(v) = v {
                self.versions.insert((user, book), v);
            }
        }
        for w in &writes {
            self.ids.insert((user, w.event.event_id), w.event.clone());
        }
        self.heads.insert(user, writes[writes.len() - 1].event.seq);
        self.count += writes.len();
        self.oldest.get_or_insert_with(Instant::now);
        self.waiting.push(Waiting { writes, rows });
        Ok(BatchOutcome::Recorded)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// True when the waiting writes should reach SQLite in this group.
    pub(crate) fn due(&self) -> bool {
        self.count >= APPLY_AFTER_WRITES || self.oldest.is_some_and(|t| t.elapsed() >= APPLY_AFTER)
    }

    /// Applies every waiting write inside the caller's transaction. On success the caller
    /// commits and then calls [`Deferred::applied`].
    pub(crate) fn apply(&self, c: &Connection) -> Result<(), StoreError> {
        for w in &self.waiting {
            let user = w.writes[0].user_id.to_string();
            for (write, row) in w.writes.iter().zip(&w.rows) {
                record_one(c, &user, write, row)?;
            }
        }
        Ok(())
    }

    /// The transaction holding [`Deferred::apply`] committed durably: forget the waiting
    /// writes; the log may be emptied once nothing accepted since waits for its flush.
    pub(crate) fn applied(&mut self) {
        self.waiting.clear();
        self.count = 0;
        self.oldest = None;
        self.heads.clear();
        self.ids.clear();
        self.versions.clear();
    }

    /// Flushes the group's accepted batches to the log; empties the log first when
    /// everything it held is in SQLite and nothing new needs it.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        if self.waiting.is_empty() {
            self.log.buf.clear();
            return self
                .log
                .clear()
                .map_err(|e| StoreError::Unavailable(format!("progress log: {e}")));
        }
        self.log
            .flush()
            .map_err(|e| StoreError::Unavailable(format!("progress log: {e}")))
    }

    /// Metrics: bytes in the log now.
    pub(crate) fn log_bytes(&self) -> u64 {
        self.log.bytes()
    }
}

/// A batch of one user's writes for the writer thread.
pub(crate) struct ProgressJob {
    pub user: UserId,
    pub writes: Vec<ProgressWrite>,
    pub rows: Vec<EventRow>,
    pub result: Option<Result<BatchOutcome, StoreError>>,
    pub reply: oneshot::Sender<Result<BatchOutcome, StoreError>>,
}

impl ProgressJob {
    /// Checks and queues the batch (no SQLite write).
    pub(crate) fn run(&mut self, c: &Connection, d: &mut Deferred) {
        let writes = std::mem::take(&mut self.writes);
        let rows = std::mem::take(&mut self.rows);
        self.result = Some(d.accept(c, self.user, writes, rows));
    }

    /// Answers once the log holding the batch is durable (or failed to become so).
    pub(crate) fn finish(self, logged: &Result<(), StoreError>) {
        let answer = match (logged, self.result) {
            (_, Some(Ok(BatchOutcome::Duplicates(d)))) => Ok(BatchOutcome::Duplicates(d)),
            (Err(e), Some(Ok(_))) => Err(StoreError::Unavailable(e.to_string())),
            (_, Some(r)) => r,
            (_, None) => Err(StoreError::Unavailable("progress batch was not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

/// At open: applies what the log holds that SQLite lacks, then empties the log.
pub(crate) fn replay(
    conn: &mut Connection,
    log: &mut Log,
    batches: Vec<Vec<ProgressWrite>>,
) -> Result<usize, StoreError> {
    let mut applied = 0;
    if !batches.is_empty() {
        let tx = conn.transaction()?;
        for b in &batches {
            let Some(first) = b.first() else { continue };
            if head(&tx, first.user_id)? >= first.event.seq {
                continue; // in SQLite already
            }
            let user = first.user_id.to_string();
            for w in b {
                let row = EventRow::of(w)?;
                record_one(&tx, &user, w, &row)?;
                applied += 1;
            }
        }
        tx.commit()?;
    }
    log.clear()
        .map_err(|e| StoreError::Unavailable(format!("progress log: {e}")))?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeviceId;
    use crate::records::{DevicePosition, Percent, ProgressState, ReadStatus};
    use crate::sqlite::{SqliteOptions, SqliteStore};
    use crate::store::Store;
    use crate::time::Timestamp;

    fn batch(user: UserId, book: BookId, from: u64, n: u64) -> Vec<ProgressWrite> {
        let device = DeviceId::generate();
        (from..from + n)
            .map(|seq| {
                let state = ProgressState {
                    book_id: book,
                    percent: Percent::new(seq as f64).unwrap(),
                    locator: None,
                    status: ReadStatus::Reading,
                    device_id: device,
                    client_ts: Timestamp::from_millis(seq as i64),
                    updated_at: Timestamp::from_millis(seq as i64),
                    version: seq,
                };
                ProgressWrite {
                    user_id: user,
                    expected_seq: seq - 1,
                    event: ProgressEvent {
                        seq,
                        event_id: EventId::generate(),
                        book_id: book,
                        device_id: device,
                        body: format!("b{seq}"),
                        applied: true,
                        reason: None,
                        state: state.clone(),
                        received_at: Timestamp::from_millis(seq as i64),
                    },
                    position: DevicePosition {
                        device_id: device,
                        book_id: book,
                        percent: state.percent,
                        locator: None,
                        client_ts: state.client_ts,
                    },
                }
            })
            .collect()
    }

    /// What a power loss leaves: SQLite without the last writes, the log with them (and a
    /// record torn by the crash). Opening applies them once, and only once.
    #[tokio::test]
    async fn a_log_sqlite_lacks_is_applied_at_open_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dogear.db");
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        store.close().await.unwrap();
        let (user, book) = (UserId::generate(), BookId::generate());
        let first = batch(user, book, 1, 3);
        let second = batch(user, book, 4, 2);
        {
            let (mut log, held) = Log::open(&db.with_extension("progress-log"), true).unwrap();
            assert!(held.is_empty());
            log.push(&first).unwrap();
            log.push(&second).unwrap();
            log.flush().unwrap();
            // A record cut in the middle by the crash: never acknowledged, dropped.
            log.buf.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, b'[']);
            log.flush().unwrap();
        }
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        assert_eq!(store.progress_head(user).await.unwrap(), 5);
        assert_eq!(
            store.progress_state(user, book).await.unwrap(),
            Some(second[1].event.state.clone())
        );
        let log_len = std::fs::metadata(db.with_extension("progress-log"))
            .unwrap()
            .len();
        assert_eq!(log_len, 0, "the log is emptied once SQLite holds it");
        store.close().await.unwrap();

        // The same records again (a crash after SQLite's commit, before the log was emptied):
        // nothing is applied twice.
        {
            let (mut log, _) = Log::open(&db.with_extension("progress-log"), true).unwrap();
            log.push(&first).unwrap();
            log.push(&second).unwrap();
            log.flush().unwrap();
        }
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        assert_eq!(store.progress_head(user).await.unwrap(), 5);
        assert_eq!(store.progress_changes(user, 0, 100).await.unwrap().len(), 5);
        store.close().await.unwrap();
    }

    /// Written and acknowledged batches wait in the log, are seen by reads, and are checked
    /// like SQLite's own rows (head, duplicates, versions) while they wait.
    #[tokio::test]
    async fn waiting_writes_are_checked_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dogear.db");
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        let (user, book) = (UserId::generate(), BookId::generate());
        let first = batch(user, book, 1, 3);
        assert_eq!(
            store.record_progress_batch(user, &first).await.unwrap(),
            BatchOutcome::Recorded
        );
        let log = db.with_extension("progress-log");
        assert!(
            std::fs::metadata(&log).unwrap().len() > 0,
            "acknowledged from the log"
        );
        // Another owner's batch on the same head: refused while it waits.
        let stale = batch(user, book, 3, 1);
        assert!(matches!(
            store.record_progress_batch(user, &stale).await,
            Err(StoreError::VersionConflict { .. })
        ));
        let mut again = batch(user, book, 4, 1);
        again[0].event.event_id = first[1].event.event_id;
        assert!(matches!(
            store.record_progress_batch(user, &again).await.unwrap(),
            BatchOutcome::Duplicates(d) if d[0].seq == 2
        ));
        let mut skipped_version = batch(user, book, 4, 1);
        skipped_version[0].event.state.version = 9;
        assert!(matches!(
            store.record_progress_batch(user, &skipped_version).await,
            Err(StoreError::VersionConflict { .. })
        ));
        // A read applies what waits first.
        assert_eq!(store.progress_head(user).await.unwrap(), 3);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        store.close().await.unwrap();
    }
}
