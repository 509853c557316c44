//! Progress writes made durable by an append-only log, applied to SQLite later in bulk by a
//! thread of their own.
//!
//! Why: a progress write touches three B-tree pages of SQLite (the reader's events, the
//! event-id index, the book's row). With many readers writing at once every write lands on
//! pages of its own, so each one cost about 24 KB of WAL and checkpoint writes, and the disk's
//! write bandwidth, not fsync, was the wall. Here a batch of writes is checked against what
//! SQLite and the not-yet-applied writes hold (log head, event ids, book versions), appended
//! to the log as one binary record (postcard, a few hundred bytes per write), and fsynced
//! with every other batch of the same group before anyone is answered. The writes reach
//! SQLite together later, a generation at a time (when enough wait, when the oldest has
//! waited a second, or when a progress read asks), so the pages of a reader who wrote twenty
//! times are written once; the applier thread commits a generation on its own connection
//! while the writer thread goes on logging the next one, so no write waits for an apply.
//!
//! The log is two files used in turn, one generation each. Each file is zero-filled ahead of
//! its writes and written in place, so an append's `fdatasync` writes only the appended
//! pages (appending to the end would also write the inode at every sync). A file is reused
//! only once the generation it held is committed in SQLite, which records the last applied
//! generation in the same transaction (`progress_log.applied_gen`): at start, records of
//! later generations are applied where SQLite lacks them (a batch whole or not at all, the
//! reader's log head says which) and stale records of applied generations are ignored. That
//! is what makes an acknowledged write survive SIGKILL and power loss.

use super::writer::Command;
use super::{BookRows, EventRow, head, insert_event};
use crate::error::StoreError;
use crate::ids::{BookId, EventId, UserId};
use crate::records::{ProgressEvent, ProgressWrite};
use crate::store::{BatchDone, BatchOutcome};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Seal a generation for SQLite once this many writes wait...
const APPLY_AFTER_WRITES: usize = 16_384;
/// ...or the oldest has waited this long.
const APPLY_AFTER: Duration = Duration::from_secs(1);
/// A failed apply is tried again after this long (it stays in the log meanwhile).
const RETRY_APPLY: Duration = Duration::from_secs(1);
/// A log record larger than this is damage, not a batch.
const MAX_RECORD: usize = 64 << 20;
/// Record header: magic, body length, generation, CRC-32 of generation and body.
const MAGIC: u32 = u32::from_le_bytes(*b"DGPL");
const HEADER: usize = 20;
/// A log file grows by at least this much at once, zero-filled and synced with its size.
const GROW: u64 = 1 << 20;

/// A batch read back from the log, with the generation that logged it.
pub(crate) type Logged = (u64, Vec<ProgressWrite>);

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Encodes a batch as a log record body (done by the caller, off the writer thread).
pub(crate) fn encode(writes: &[ProgressWrite]) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(writes).map_err(|e| StoreError::Corrupt(format!("progress batch: {e}")))
}

fn crc(gen_bytes: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(gen_bytes);
    h.update(body);
    h.finalize()
}

fn push_record(epoch: u64, body: &[u8], out: &mut Vec<u8>) -> Result<(), StoreError> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_RECORD)
        .ok_or_else(|| StoreError::Corrupt("progress batch too large".into()))?;
    let g = epoch.to_le_bytes();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&g);
    out.extend_from_slice(&crc(&g, body).to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Every whole record from the start of a file, up to the first that is not one (a record
/// torn by a crash, the zeros ahead of the writes, or the middle of a stale record).
fn parse(bytes: &[u8]) -> Vec<Logged> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        let h = &bytes[at..at + HEADER];
        let len = le32(&h[4..]) as usize;
        if le32(h) != MAGIC || len == 0 || len > MAX_RECORD {
            break;
        }
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc(&h[8..16], body) != le32(&h[16..]) {
            break;
        }
        let mut g = [0u8; 8];
        g.copy_from_slice(&h[8..16]);
        match postcard::from_bytes::<Vec<ProgressWrite>>(body) {
            Ok(b) => out.push((u64::from_le_bytes(g), b)),
            Err(_) => break,
        }
        at += HEADER + len;
    }
    out
}

fn unavailable(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

/// One of the two log files.
struct LogFile {
    file: File,
    /// Where the next record goes.
    at: u64,
    /// Bytes allocated and zero-filled (or holding stale records).
    size: u64,
}

impl LogFile {
    fn open(path: &Path) -> Result<(LogFile, Vec<Logged>), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| unavailable(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| unavailable(path, e))?;
        let batches = parse(&bytes);
        let size = bytes.len() as u64;
        Ok((LogFile { file, at: 0, size }, batches))
    }

    /// Writes `buf` at the end of the records and makes it durable. A failed write leaves
    /// `at` where it was, so the next record overwrites whatever part reached the file.
    fn write(&mut self, buf: &[u8], sync: bool) -> std::io::Result<()> {
        let end = self.at + buf.len() as u64;
        let grown = end > self.size;
        if grown {
            let target = end.div_ceil(GROW) * GROW;
            let zeros = vec![0u8; 64 << 10];
            let mut at = self.size;
            while at < target {
                let n = (target - at).min(zeros.len() as u64) as usize;
                self.file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            self.size = target;
        }
        self.file.write_all_at(buf, self.at)?;
        if sync {
            if grown {
                self.file.sync_all()?;
            } else {
                self.file.sync_data()?;
            }
        }
        self.at = end;
        Ok(())
    }
}

/// The log: two files, generation `g` in file `g % 2`.
pub(crate) struct Log {
    files: [LogFile; 2],
    sync: bool,
    epoch: u64,
    buf: Vec<u8>,
}

impl Log {
    /// The two files' paths for a database file.
    pub(crate) fn paths(db: &Path) -> [PathBuf; 2] {
        [
            db.with_extension("progress-log.0"),
            db.with_extension("progress-log.1"),
        ]
    }

    /// Opens both files and reads the batches they hold, oldest generation first.
    pub(crate) fn open(db: &Path, sync: bool) -> Result<(Log, Vec<Logged>), StoreError> {
        let [a, b] = Log::paths(db);
        let (fa, mut batches) = LogFile::open(&a)?;
        let (fb, more) = LogFile::open(&b)?;
        batches.extend(more);
        batches.sort_by_key(|(g, _)| *g);
        let log = Log {
            files: [fa, fb],
            sync,
            epoch: 1,
            buf: Vec::new(),
        };
        Ok((log, batches))
    }

    /// Starts generation `epoch` at the beginning of its file (whose previous generation is
    /// applied).
    fn start(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.files[(epoch % 2) as usize].at = 0;
    }

    fn push(&mut self, body: &[u8]) -> Result<(), StoreError> {
        push_record(self.epoch, body, &mut self.buf)
    }

    /// Writes what was pushed and makes it durable.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.files[(self.epoch % 2) as usize].write(&self.buf, self.sync);
        self.buf.clear();
        r
    }

    /// Bytes of records in both files (those of the applied generation included until its
    /// file is reused).
    pub(crate) fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.at).sum()
    }
}

/// The single-file JSON log of the build before generations (`dogear.progress-log`):
/// records of `[len u32][crc32 u32][JSON batch]`. Read once at start, then removed.
pub(crate) fn legacy(db: &Path) -> Result<(PathBuf, Vec<Vec<ProgressWrite>>), StoreError> {
    let path = db.with_extension("progress-log");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((path, Vec::new())),
        Err(e) => return Err(unavailable(&path, e)),
    };
    let mut batches = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 8 {
        let len = le32(&bytes[at..]) as usize;
        let Some(body) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if len > MAX_RECORD || crc32fast::hash(body) != le32(&bytes[at + 4..]) {
            break;
        }
        match serde_json::from_slice::<Vec<ProgressWrite>>(body) {
            Ok(b) => batches.push(b),
            Err(_) => break,
        }
        at += 8 + len;
    }
    Ok((path, batches))
}

/// One batch waiting for SQLite.
#[derive(Clone)]
pub(crate) struct Waiting {
    writes: Vec<ProgressWrite>,
    rows: Vec<EventRow>,
}

/// The writes of one generation and what they change, so the checks of later batches see
/// them until SQLite does.
#[derive(Default)]
struct Gen {
    /// Shared with the applier once sealed.
    batches: Arc<Vec<Waiting>>,
    heads: HashMap<UserId, u64>,
    /// Where each event id's event is in `batches`.
    ids: HashMap<(UserId, EventId), (usize, usize)>,
    /// Book versions after the generation's writes.
    versions: HashMap<(UserId, BookId), u64>,
    count: usize,
    oldest: Option<Instant>,
}

impl Gen {
    fn event(&self, user: UserId, id: EventId) -> Option<&ProgressEvent> {
        let (b, i) = self.ids.get(&(user, id))?;
        self.batches.get(*b)?.writes.get(*i).map(|w| &w.event)
    }
}

type Done = (u64, Result<(), StoreError>);

/// The applier thread and the way to it.
struct Applier {
    jobs: std_mpsc::Sender<(u64, Arc<Vec<Waiting>>)>,
    done: std_mpsc::Receiver<Done>,
    thread: std::thread::JoinHandle<()>,
}

/// The writes logged but not yet in SQLite: the generation being logged, the one being
/// applied, and the reads waiting for them.
pub(crate) struct Deferred {
    log: Log,
    waiting: Gen,
    applying: Option<(u64, Gen)>,
    failed: Option<Instant>,
    applier: Option<Applier>,
    /// Progress reads waiting until a generation is in SQLite.
    settles: Vec<(u64, oneshot::Sender<()>)>,
}

impl Deferred {
    /// Starts the applier on its own connection. `next_gen` is past every generation in the
    /// log files; `wake` nudges the writer thread when an apply ends.
    pub(crate) fn new(
        mut log: Log,
        next_gen: u64,
        conn: Connection,
        wake: mpsc::WeakSender<Command>,
        readers: super::Readers,
    ) -> Result<Deferred, StoreError> {
        log.start(next_gen);
        let (jobs, rx) = std_mpsc::channel();
        let (done_tx, done) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dogear-sqlite-apply".into())
            .spawn(move || applier(conn, rx, done_tx, wake, readers))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Deferred {
            log,
            waiting: Gen::default(),
            applying: None,
            failed: None,
            applier: Some(Applier { jobs, done, thread }),
            settles: Vec::new(),
        })
    }

    fn head_of(&self, user: UserId) -> Option<u64> {
        self.waiting.heads.get(&user).copied().or_else(|| {
            self.applying
                .as_ref()
                .and_then(|(_, g)| g.heads.get(&user).copied())
        })
    }

    fn event_of(&self, user: UserId, id: EventId) -> Option<&ProgressEvent> {
        self.waiting
            .event(user, id)
            .or_else(|| self.applying.as_ref().and_then(|(_, g)| g.event(user, id)))
    }

    fn version_of(&self, user: UserId, book: BookId) -> Option<u64> {
        let key = (user, book);
        self.waiting.versions.get(&key).copied().or_else(|| {
            self.applying
                .as_ref()
                .and_then(|(_, g)| g.versions.get(&key).copied())
        })
    }

    /// Checks a batch against SQLite and the waiting writes; if it is accepted, queues it
    /// for the log and for SQLite.
    fn accept(
        &mut self,
        c: &Connection,
        job: &mut ProgressJob,
    ) -> Result<BatchOutcome, StoreError> {
        let user = job.user;
        let Some(first) = job.writes.first() else {
            return Ok(BatchOutcome::Recorded);
        };
        let now = match self.head_of(user) {
            Some(h) => h,
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
            for w in &job.writes {
                if let Some(e) = self.event_of(user, w.event.event_id) {
                    duplicates.push(e.clone());
                } else if let Some(e) = find
                    .query_row(
                        params![user.0.as_bytes(), w.event.event_id.0.as_bytes()],
                        super::events::event_row,
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
        for w in &job.writes {
            let book = w.event.book_id;
            if let std::collections::hash_map::Entry::Vacant(slot) = versions.entry(book) {
                let v = match self.version_of(user, book) {
                    Some(v) => Some(v),
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
        self.log.push(&job.body)?;
        let writes = std::mem::take(&mut job.writes);
        let rows = std::mem::take(&mut job.rows);
        let g = &mut self.waiting;
        for (book, v) in versions {
            if let Some(v) = v {
                g.versions.insert((user, book), v);
            }
        }
        let b = g.batches.len();
        for (i, w) in writes.iter().enumerate() {
            g.ids.insert((user, w.event.event_id), (b, i));
        }
        if let Some(last) = writes.last() {
            g.heads.insert(user, last.event.seq);
        }
        g.count += writes.len();
        g.oldest.get_or_insert_with(Instant::now);
        Arc::make_mut(&mut g.batches).push(Waiting { writes, rows });
        Ok(BatchOutcome::Recorded)
    }

    /// Flushes the group's accepted batches to the log.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        self.log
            .flush()
            .map_err(|e| StoreError::Unavailable(format!("progress log: {e}")))
    }

    /// Answers `ack` once every write accepted so far is in SQLite.
    pub(crate) fn settle(&mut self, ack: oneshot::Sender<()>) {
        if !self.waiting.batches.is_empty() {
            self.settles.push((self.log.epoch, ack));
        } else if let Some((epoch, _)) = &self.applying {
            self.settles.push((*epoch, ack));
        } else {
            let _ = ack.send(());
        }
    }

    fn finished(&mut self, epoch: u64, r: Result<(), StoreError>) {
        match r {
            Ok(()) => {
                if self.applying.as_ref().is_some_and(|(g, _)| *g == epoch) {
                    self.applying = None;
                }
                self.failed = None;
            }
            Err(e) => {
                // A logged write SQLite refuses: it stays in the log (and in memory, so the
                // checks still see it), and the refusal is loud; tried again later. The
                // reads waiting for it go ahead rather than hang.
                tracing::error!(error = %e, generation = epoch, "applying logged progress writes failed");
                self.failed = Some(Instant::now());
            }
        }
        let (ready, rest) = std::mem::take(&mut self.settles)
            .into_iter()
            .partition(|(g, _)| *g <= epoch);
        self.settles = rest;
        for (_, ack) in ready {
            let _ = ack.send(());
        }
    }

    fn send(&mut self) {
        let Some((epoch, g)) = &self.applying else {
            return;
        };
        let sent = self
            .applier
            .as_ref()
            .is_some_and(|a| a.jobs.send((*epoch, g.batches.clone())).is_ok());
        if !sent {
            tracing::error!("the progress applier thread is gone");
            self.failed = Some(Instant::now());
        }
    }

    /// Takes the applier's answers and, when the applier is free and the waiting writes are
    /// due (or a read waits for them), hands it the waiting generation.
    pub(crate) fn advance(&mut self) {
        while let Some(Ok((epoch, r))) = self.applier.as_ref().map(|a| a.done.try_recv()) {
            self.finished(epoch, r);
        }
        if self.applying.is_some() {
            if self.failed.is_some_and(|t| t.elapsed() >= RETRY_APPLY) {
                self.failed = None;
                self.send();
            }
            return;
        }
        if self.waiting.batches.is_empty() {
            return;
        }
        let epoch = self.log.epoch;
        let due = self.waiting.count >= APPLY_AFTER_WRITES
            || self
                .waiting
                .oldest
                .is_some_and(|t| t.elapsed() >= APPLY_AFTER)
            || self.settles.iter().any(|(g, _)| *g == epoch);
        if due {
            self.seal();
        }
    }

    fn seal(&mut self) {
        let epoch = self.log.epoch;
        let g = std::mem::take(&mut self.waiting);
        self.applying = Some((epoch, g));
        self.log.start(epoch + 1);
        self.send();
    }

    /// At shutdown: waits for the apply under way, applies what waits, stops the applier.
    pub(crate) fn finish(&mut self) {
        loop {
            if let Some((epoch, _)) = &self.applying {
                let epoch = *epoch;
                let Some(Ok((g, r))) = self.applier.as_ref().map(|a| a.done.recv()) else {
                    break;
                };
                let failed = r.is_err();
                self.finished(g, r);
                if failed && g == epoch {
                    break; // stays in the log for the next start
                }
            } else if !self.waiting.batches.is_empty() {
                self.seal();
            } else {
                break;
            }
        }
        for (_, ack) in self.settles.drain(..) {
            let _ = ack.send(());
        }
        if let Some(a) = self.applier.take() {
            drop(a.jobs);
            let _ = a.thread.join();
        }
    }

    /// Metrics: bytes in the log now.
    pub(crate) fn log_bytes(&self) -> u64 {
        self.log.bytes()
    }
}

/// How long without progress writes before the store gives back its page caches' memory.
///
/// Why: after a busy spell the caches of the writing connections (8 MiB each) and of the
/// readers are full, and would stay full while nobody writes: after ten million writes,
/// 70 MiB above the idle process instead of the 64 MiB issue 11 allows.
const SHRINK_AFTER: Duration = Duration::from_secs(10);

/// The applier thread: commits each generation it is handed in one transaction, with the
/// generation's number, then says so. Once no generation came for [`SHRINK_AFTER`], it
/// shrinks its own cache and the idle readers', and has the writer thread shrink its own.
fn applier(
    mut conn: Connection,
    jobs: std_mpsc::Receiver<(u64, Arc<Vec<Waiting>>)>,
    done: std_mpsc::Sender<Done>,
    wake: mpsc::WeakSender<Command>,
    readers: super::Readers,
) {
    let mut shrunk = true;
    loop {
        let (epoch, batches) = match jobs.recv_timeout(SHRINK_AFTER) {
            Ok(job) => job,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                if !std::mem::replace(&mut shrunk, true) {
                    super::shrink_memory(&conn);
                    if let Ok(idle) = readers.lock() {
                        idle.iter().for_each(super::shrink_memory);
                    }
                    if let Some(w) = wake.upgrade() {
                        let _ = w.try_send(Command::Shrink);
                    }
                }
                continue;
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        };
        shrunk = false;
        let started = Instant::now();
        let r = apply(&mut conn, epoch, &batches);
        drop(batches);
        metrics::histogram!("dogear_progress_apply_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        if done.send((epoch, r)).is_err() {
            return;
        }
        if let Some(w) = wake.upgrade() {
            let _ = w.try_send(Command::Wake);
        }
    }
}

fn apply(conn: &mut Connection, epoch: u64, batches: &[Waiting]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut books = BookRows::default();
    for w in batches {
        for (write, row) in w.writes.iter().zip(&w.rows) {
            insert_event(&tx, write, row)?;
            books.add(write, row);
        }
    }
    books.write(&tx)?;
    set_applied(&tx, epoch)?;
    tx.commit()?;
    Ok(())
}

fn set_applied(c: &Connection, epoch: u64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE progress_log SET applied_gen = ?1 WHERE id = 1")?
        .execute([epoch as i64])?;
    Ok(())
}

pub(crate) struct ProgressJob {
    pub user: UserId,
    pub writes: Vec<ProgressWrite>,
    pub rows: Vec<EventRow>,
    /// The batch as its log record's body.
    pub body: Vec<u8>,
    pub result: Option<Result<BatchOutcome, StoreError>>,
    pub reply: Reply,
}

/// Where a progress batch's outcome goes: a caller waiting on a channel, or a submitter's
/// [`BatchDone`].
pub(crate) enum Reply {
    Channel(oneshot::Sender<Result<BatchOutcome, StoreError>>),
    Done(BatchDone),
}

impl Reply {
    pub(crate) fn send(self, outcome: Result<BatchOutcome, StoreError>) {
        match self {
            Reply::Channel(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Done(done) => done.call(outcome),
        }
    }
}

impl ProgressJob {
    pub(crate) fn run(&mut self, c: &Connection, d: &mut Deferred) {
        let r = d.accept(c, self);
        self.result = Some(r);
    }

    pub(crate) fn finish(self, logged: &Result<(), StoreError>) {
        let answer = match (logged, self.result) {
            (_, Some(Ok(BatchOutcome::Duplicates(d)))) => Ok(BatchOutcome::Duplicates(d)),
            (Err(e), Some(Ok(_))) => Err(StoreError::Unavailable(e.to_string())),
            (_, Some(r)) => r,
            (_, None) => Err(StoreError::Unavailable("progress batch was not run".into())),
        };
        self.reply.send(answer);
    }
}

/// Applies, at open, what the log files (and a log of the build before generations) hold
/// beyond SQLite's last applied generation, where SQLite lacks it. Returns how many writes
/// were applied and the first generation free for new records.
pub(crate) fn replay(
    conn: &mut Connection,
    batches: Vec<Logged>,
    legacy: Vec<Vec<ProgressWrite>>,
) -> Result<(usize, u64), StoreError> {
    let applied_gen: i64 = conn.query_row(
        "SELECT applied_gen FROM progress_log WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let applied_gen = applied_gen.max(0) as u64;
    let last = batches
        .iter()
        .map(|(g, _)| *g)
        .max()
        .unwrap_or(0)
        .max(applied_gen);
    let mut applied = 0;
    let tx = conn.transaction()?;
    // The batches SQLite lacks, in log order: each reader's head moves with those taken.
    let mut heads: HashMap<UserId, u64> = HashMap::new();
    let mut todo = Vec::new();
    let logged = legacy.iter().chain(
        batches
            .iter()
            .filter(|(g, _)| *g > applied_gen)
            .map(|(_, b)| b),
    );
    for b in logged {
        let (Some(first), Some(last)) = (b.first(), b.last()) else {
            continue;
        };
        let h = match heads.get(&first.user_id) {
            Some(h) => *h,
            None => head(&tx, first.user_id)?,
        };
        if h >= first.event.seq {
            heads.insert(first.user_id, h);
            continue; // in SQLite already
        }
        heads.insert(first.user_id, last.event.seq);
        let rows = b.iter().map(EventRow::of).collect::<Result<Vec<_>, _>>()?;
        todo.push((b, rows));
    }
    let mut books = BookRows::default();
    for (b, rows) in &todo {
        for (w, row) in b.iter().zip(rows) {
            insert_event(&tx, w, row)?;
            books.add(w, row);
            applied += 1;
        }
    }
    books.write(&tx)?;
    set_applied(&tx, last)?;
    tx.commit()?;
    Ok((applied, last + 1))
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

    fn applied_epoch(db: &Path) -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT applied_gen FROM progress_log", [], |r| r.get(0))
            .unwrap()
    }

    /// What a power loss leaves: SQLite without the last writes, the log with them (and a
    /// record torn by the crash). Opening applies them once, and only once; records of a
    /// generation SQLite says it applied are never applied again, even where it lacks them
    /// (the progress of a reader deleted since).
    #[tokio::test]
    async fn a_log_sqlite_lacks_is_applied_at_open_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dogear.db");
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        store.close().await.unwrap();
        let (user, book) = (UserId::generate(), BookId::generate());
        let first = batch(user, book, 1, 3);
        let second = batch(user, book, 4, 2);
        let log_both = |epoch: u64, torn: bool| {
            let (mut log, _) = Log::open(&db, true).unwrap();
            log.start(epoch);
            log.push(&encode(&first).unwrap()).unwrap();
            log.push(&encode(&second).unwrap()).unwrap();
            log.flush().unwrap();
            if torn {
                // A record cut in the middle by the crash: never acknowledged, dropped.
                let mut cut = Vec::new();
                push_record(epoch, &encode(&second).unwrap(), &mut cut).unwrap();
                log.buf.extend_from_slice(&cut[..cut.len() / 2]);
                log.flush().unwrap();
            }
        };
        log_both(5, true);
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        assert_eq!(store.progress_head(user).await.unwrap(), 5);
        assert_eq!(
            store.progress_state(user, book).await.unwrap(),
            Some(second[1].event.state.clone())
        );
        store.close().await.unwrap();
        assert_eq!(applied_epoch(&db), 5);

        // The same records in a later generation (a crash after SQLite's commit, before the
        // generation number was known): nothing is applied twice.
        log_both(8, false);
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        assert_eq!(store.progress_head(user).await.unwrap(), 5);
        assert_eq!(store.progress_changes(user, 0, 100).await.unwrap().len(), 5);
        store.close().await.unwrap();
        assert_eq!(applied_epoch(&db), 8);

        // Stale records of an applied generation, for a reader SQLite does not know: left.
        let other = UserId::generate();
        {
            let (mut log, _) = Log::open(&db, true).unwrap();
            log.start(7);
            log.push(&encode(&batch(other, book, 1, 2)).unwrap())
                .unwrap();
            log.flush().unwrap();
        }
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        assert_eq!(store.progress_head(other).await.unwrap(), 0);
        store.close().await.unwrap();
    }

    /// A file is written in place: a later generation overwrites the start of an applied
    /// one, and reading stops where the new records end or a stale one is cut.
    #[test]
    fn a_reused_file_reads_its_new_records_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (user, book) = (UserId::generate(), BookId::generate());
        let (mut f, held) = LogFile::open(&path).unwrap();
        assert!(held.is_empty());
        let mut buf = Vec::new();
        for n in 0..4 {
            push_record(
                3,
                &encode(&batch(user, book, 1 + n * 5, 5)).unwrap(),
                &mut buf,
            )
            .unwrap();
        }
        f.write(&buf, true).unwrap();
        assert_eq!(f.size, GROW, "zero-filled ahead");
        f.at = 0;
        let mut small = Vec::new();
        push_record(5, &encode(&batch(user, book, 21, 1)).unwrap(), &mut small).unwrap();
        f.write(&small, true).unwrap();
        let (_, held) = LogFile::open(&path).unwrap();
        assert_eq!(held[0].0, 5);
        assert!(
            held.iter().skip(1).all(|(e, _)| *e == 3),
            "only stale records follow"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), GROW);
    }

    /// Two devices' writes to one book, some not applied, in one generation: the book's row
    /// ends as the writes one at a time would leave it (the last applied state, each
    /// device's last position), whether applied by the applier or replayed at open.
    #[tokio::test]
    async fn a_generation_leaves_each_book_as_its_writes_one_at_a_time() {
        let (user, book) = (UserId::generate(), BookId::generate());
        let mut writes = batch(user, book, 1, 5);
        let (a, b) = (writes[0].position.device_id, DeviceId::generate());
        // Seqs 3 and 5 come from device b, behind: not applied, state unchanged.
        for i in [2usize, 4] {
            let w = &mut writes[i];
            w.event.device_id = b;
            w.position.device_id = b;
            w.position.percent = Percent::new(0.5 + i as f64).unwrap();
            w.event.applied = false;
            w.event.reason = Some(crate::records::Reason::Behind);
        }
        // Applied versions: 1, 2, (same), 3, (same).
        let mut version = 0;
        for w in writes.iter_mut() {
            if w.event.applied {
                version += 1;
            }
            w.event.state.version = version;
            w.event.state.device_id = a;
        }
        writes[2].event.state = writes[1].event.state.clone();
        writes[4].event.state = writes[3].event.state.clone();
        let expect_state = writes[3].event.state.clone();
        let check = |positions: Vec<DevicePosition>, state: Option<ProgressState>| {
            assert_eq!(state.as_ref(), Some(&expect_state));
            let of = |d: DeviceId| positions.iter().find(|p| p.device_id == d).cloned();
            assert_eq!(of(a), Some(writes[3].position.clone()), "a's last position");
            assert_eq!(of(b), Some(writes[4].position.clone()), "b's last position");
            assert_eq!(positions.len(), 2);
        };

        // Through the store: one batch a write, one generation, applied by a read.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dogear.db");
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        for w in &writes {
            let one = std::slice::from_ref(w);
            assert_eq!(
                store.record_progress_batch(user, one).await.unwrap(),
                BatchOutcome::Recorded
            );
        }
        check(
            store.device_positions(user, book).await.unwrap(),
            store.progress_state(user, book).await.unwrap(),
        );
        assert_eq!(store.progress_head(user).await.unwrap(), 5);
        store.close().await.unwrap();

        // Replayed from the log at open, as after a power loss.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dogear.db");
        SqliteStore::open(&db, SqliteOptions::default())
            .unwrap()
            .close()
            .await
            .unwrap();
        let (mut log, _) = Log::open(&db, true).unwrap();
        log.start(1);
        for w in &writes {
            log.push(&encode(std::slice::from_ref(w)).unwrap()).unwrap();
        }
        log.flush().unwrap();
        drop(log);
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        check(
            store.device_positions(user, book).await.unwrap(),
            store.progress_state(user, book).await.unwrap(),
        );
        assert_eq!(store.progress_head(user).await.unwrap(), 5);
        store.close().await.unwrap();
    }

    /// A submitted batch is answered through its `BatchDone`: stored, refused, and by a
    /// closed store (which drops it unanswered) with an error rather than never; only a
    /// panic leaves it uncalled.
    #[tokio::test]
    async fn a_submitted_batch_is_always_answered() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dogear.db");
        let store = Arc::new(SqliteStore::open(&db, SqliteOptions::default()).unwrap());
        let (user, book) = (UserId::generate(), BookId::generate());
        let submit = |writes: Vec<ProgressWrite>| {
            let (tx, rx) = oneshot::channel();
            store.clone().submit_progress_batch(
                user,
                writes,
                BatchDone::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            rx
        };
        let first = batch(user, book, 1, 3);
        assert_eq!(
            submit(first.clone()).await.unwrap().unwrap(),
            BatchOutcome::Recorded
        );
        assert!(matches!(
            submit(batch(user, book, 2, 1)).await.unwrap(),
            Err(StoreError::VersionConflict { .. })
        ));
        assert_eq!(store.progress_head(user).await.unwrap(), 3);
        store.close().await.unwrap();
        assert!(matches!(
            submit(batch(user, book, 4, 1)).await.unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        // Dropped without an outcome: still answered.
        let (tx, rx) = oneshot::channel();
        drop(BatchDone::new(move |r| {
            let _ = tx.send(r);
        }));
        assert!(matches!(rx.await.unwrap(), Err(StoreError::Unavailable(_))));
        // Abandoned (what a panic does): uncalled, its channel closes.
        let (tx, rx) = oneshot::channel::<Result<BatchOutcome, StoreError>>();
        BatchDone::new(move |r| {
            let _ = tx.send(r);
        })
        .abandon();
        assert!(rx.await.is_err());
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
        let logs = Log::paths(&db);
        assert!(
            std::fs::metadata(&logs[0]).unwrap().len() + std::fs::metadata(&logs[1]).unwrap().len()
                > 0,
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
        assert_eq!(applied_epoch(&db), 0);
        assert_eq!(store.progress_head(user).await.unwrap(), 3);
        assert!(applied_epoch(&db) >= 1);
        store.close().await.unwrap();
    }
}
