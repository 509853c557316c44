//! The single writer: one thread owns the write connection and commits whatever jobs are
//! queued together in one transaction (group commit), so that a durable commit's fsync is
//! paid once per batch instead of once per write. Each job runs inside its own savepoint, so
//! one failing job never takes the others in its batch down with it, and no caller hears
//! "ok" before the batch holding its write has committed.

use super::deferred::{Deferred, ProgressJob};
use crate::error::StoreError;
use rusqlite::Connection;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// One queued write.
pub(crate) trait Job: Send {
    /// Runs the write; `true` if it succeeded and should be kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch has committed (or failed to).
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

/// A job built from a closure, answering through a oneshot channel.
pub(crate) struct FnJob<F, R> {
    pub f: Option<F>,
    pub result: Option<Result<R, StoreError>>,
    pub reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Job for FnJob<F, R>
where
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else { return false };
        let r = f(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match (committed, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Unavailable("write was not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

pub(crate) enum Command {
    Write(Box<dyn Job>),
    /// A batch of one reader's progress writes: logged now, applied to SQLite later.
    Progress(Box<ProgressJob>),
    /// Answer once every logged progress write is in SQLite (before a progress read).
    Settle(oneshot::Sender<()>),
    /// The applier finished a generation: take its answer.
    Wake,
    /// No progress was written for a while: give the page cache's memory back.
    Shrink,
    Shutdown(oneshot::Sender<()>),
}

/// One group of commands taken together.
#[derive(Default)]
struct Group {
    jobs: Vec<Box<dyn Job>>,
    progress: Vec<ProgressJob>,
    settles: Vec<oneshot::Sender<()>>,
    shrink: bool,
}

impl Group {
    fn take(&mut self, cmd: Command) -> Option<oneshot::Sender<()>> {
        match cmd {
            Command::Write(job) => self.jobs.push(job),
            Command::Progress(job) => self.progress.push(*job),
            Command::Settle(ack) => self.settles.push(ack),
            Command::Wake => {}
            Command::Shrink => self.shrink = true,
            Command::Shutdown(ack) => return Some(ack),
        }
        None
    }
    fn len(&self) -> usize {
        self.jobs.len() + self.progress.len() + self.settles.len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long the writer waits for more progress batches before logging a group, when the
/// last group held several (many readers are writing).
///
/// Why: each group costs a log write and an `fdatasync` however few writes it holds. With
/// 256 readers writing, groups taken at once held about two batches; waiting this long lets
/// about seven gather, which cut the writer's CPU a write by a third and the disk's bytes a
/// write by a sixth (BENCHMARKS.md, issue 11), for a fraction of a millisecond on each
/// write when busy. A lone writer (the last group held one batch) never waits.
const GATHER: Duration = Duration::from_micros(400);

pub(crate) fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Command>,
    max_batch: usize,
    mut deferred: Deferred,
) {
    let mut group = Group::default();
    let mut busy = false;
    loop {
        let mut shutdown = match rx.blocking_recv() {
            Some(cmd) => group.take(cmd),
            None => {
                deferred.finish();
                return;
            }
        };
        if busy && shutdown.is_none() {
            std::thread::sleep(GATHER);
        }
        while group.len() < max_batch && shutdown.is_none() {
            match rx.try_recv() {
                Ok(cmd) => shutdown = group.take(cmd),
                Err(_) => break,
            }
        }
        busy = group.progress.len() > 1;
        if std::mem::take(&mut group.shrink) {
            super::shrink_memory(&conn);
        }
        commit_group(&mut conn, &mut group, &mut deferred);
        deferred.advance();
        if let Some(ack) = shutdown {
            // Refuse new work, commit whatever raced in before the shutdown, apply every
            // logged write, then stop.
            rx.close();
            while let Ok(cmd) = rx.try_recv() {
                let _ = group.take(cmd);
            }
            commit_group(&mut conn, &mut group, &mut deferred);
            deferred.finish();
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(error = %e, "wal checkpoint at shutdown failed");
            }
            let _ = ack.send(());
            return;
        }
    }
}

/// Runs a statement kept prepared: these run twice per write.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs the group's writes in one transaction and answers them once it is committed.
fn run_jobs(conn: &mut Connection, jobs: &mut Vec<Box<dyn Job>>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = e.to_string();
        for job in jobs.drain(..) {
            job.finish(Err(StoreError::Unavailable(msg.clone())));
        }
        return;
    }
    let mut ran: Vec<Box<dyn Job>> = Vec::with_capacity(jobs.len());
    for mut job in jobs.drain(..) {
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            job.finish(Err(StoreError::Unavailable(e.to_string())));
            continue;
        }
        let ok = job.run(conn);
        let end = if ok {
            exec(conn, "RELEASE job")
        } else {
            exec(conn, "ROLLBACK TO job").and_then(|_| exec(conn, "RELEASE job"))
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "savepoint end failed");
        }
        ran.push(job);
    }
    let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for job in ran {
        job.finish(match &committed {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        });
    }
}

fn commit_group(conn: &mut Connection, group: &mut Group, deferred: &mut Deferred) {
    if group.is_empty() {
        return;
    }
    let started = Instant::now();
    let size = group.jobs.len() + group.progress.len();
    if !group.jobs.is_empty() {
        run_jobs(conn, &mut group.jobs);
    }
    if !group.progress.is_empty() {
        // Progress batches are checked against one snapshot of SQLite and the logged
        // writes, queued, and made durable in the log together.
        let snapshot = conn.execute_batch("BEGIN").is_ok();
        for job in group.progress.iter_mut() {
            job.run(conn, deferred);
        }
        if snapshot {
            let _ = conn.execute_batch("COMMIT");
        }
    }
    let logged = deferred.flush();
    metrics::histogram!("dogear_storage_commit_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!("dogear_storage_batch_size").record(size as f64);
    metrics::gauge!("dogear_progress_log_bytes").set(deferred.log_bytes() as f64);
    for job in group.progress.drain(..) {
        job.finish(&logged);
    }
    for ack in group.settles.drain(..) {
        deferred.settle(ack);
    }
}
