//! The single writer: one thread owns the write connection and commits whatever jobs are
//! queued together in one transaction (group commit), so that a durable commit's fsync is
//! paid once per batch instead of once per write. Each job runs inside its own savepoint, so
//! one failing job never takes the others in its batch down with it, and no caller hears
//! "ok" before the batch holding its write has committed.

use crate::error::StoreError;
use rusqlite::Connection;
use std::time::Instant;
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
    Shutdown(oneshot::Sender<()>),
}

pub(crate) fn run(mut conn: Connection, mut rx: mpsc::Receiver<Command>, max_batch: usize) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    loop {
        let mut shutdown = None;
        match rx.blocking_recv() {
            Some(Command::Write(job)) => batch.push(job),
            Some(Command::Shutdown(ack)) => shutdown = Some(ack),
            None => return,
        }
        while batch.len() < max_batch && shutdown.is_none() {
            match rx.try_recv() {
                Ok(Command::Write(job)) => batch.push(job),
                Ok(Command::Shutdown(ack)) => shutdown = Some(ack),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit_batch(&mut conn, &mut batch);
        }
        if let Some(ack) = shutdown {
            // Refuse new work, commit whatever raced in before the shutdown, then stop.
            rx.close();
            while let Ok(cmd) = rx.try_recv() {
                if let Command::Write(job) = cmd {
                    batch.push(job);
                }
            }
            if !batch.is_empty() {
                commit_batch(&mut conn, &mut batch);
            }
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

fn commit_batch(conn: &mut Connection, batch: &mut Vec<Box<dyn Job>>) {
    let started = Instant::now();
    let size = batch.len();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = e.to_string();
        for job in batch.drain(..) {
            job.finish(Err(StoreError::Unavailable(msg.clone())));
        }
        return;
    }
    let mut ran: Vec<Box<dyn Job>> = Vec::with_capacity(size);
    for mut job in batch.drain(..) {
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
    metrics::histogram!("dogear_storage_commit_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!("dogear_storage_batch_size").record(size as f64);
    for job in ran {
        job.finish(match &committed {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        });
    }
}
