//! One actor for every place books are kept in step with: a watched folder, a Calibre
//! library. It runs the source's pass at start, on file-system events (debounced) and on
//! a timer, one pass at a time; what a pass does is the source's business.

use super::pipeline::Importer;
use crate::supervisor::ActiveGuard;
use notify::RecursiveMode;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::future::Future;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How a source wants its folder watched.
pub struct Watch {
    pub mode: RecursiveMode,
    pub debounce: Duration,
    /// Which changed paths call for a pass.
    pub relevant: fn(&Path) -> bool,
}

pub trait Source: Send + Sync + 'static {
    /// The actor kind in metrics and the noun in logs.
    const KIND: &'static str;
    fn path(&self) -> &Path;
    /// `None`: no watching, only the timer.
    fn watch(&self) -> Option<Watch>;
    fn interval(&self) -> Duration;
    /// Brings the library in line with the source; `Ok(Some(summary))` when it changed
    /// anything, for the log.
    fn pass(
        &mut self,
        importer: &Importer,
    ) -> impl Future<Output = Result<Option<String>, String>> + Send;
}

#[derive(ractor_cluster::RactorMessage)]
pub enum SourceMsg {
    Pass,
}

pub struct SourceActor<S>(PhantomData<fn() -> S>);

impl<S> SourceActor<S> {
    pub fn new() -> Self {
        SourceActor(PhantomData)
    }
}

impl<S> Default for SourceActor<S> {
    fn default() -> Self {
        Self::new()
    }
}

pub struct SourceState<S> {
    importer: Importer,
    source: S,
    pending: Arc<AtomicBool>,
    _watcher: Option<super::watch::Watcher>,
    ticker: tokio::task::JoinHandle<()>,
    _active: ActiveGuard,
}

impl<S: Source> Actor for SourceActor<S> {
    type Msg = SourceMsg;
    type State = SourceState<S>;
    type Arguments = (Importer, S);

    async fn pre_start(
        &self,
        myself: ActorRef<SourceMsg>,
        (importer, source): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let pending = Arc::new(AtomicBool::new(false));
        let watcher = match source.watch() {
            Some(w) => {
                let me = myself.clone();
                Some(super::watch::debounced(
                    source.path(),
                    w.mode,
                    w.debounce,
                    pending.clone(),
                    w.relevant,
                    move || {
                        let _ = me.cast(SourceMsg::Pass);
                    },
                )?)
            }
            None => None,
        };
        let ticker = myself.send_interval(source.interval(), || SourceMsg::Pass);
        let _ = myself.cast(SourceMsg::Pass);
        // When members come or go this node may have become the source's owner: look now.
        if let Some(c) = importer.placement().cluster() {
            let mut live = c.watch_live();
            let me = myself.clone();
            tokio::spawn(async move {
                while live.changed().await.is_ok() {
                    if me.cast(SourceMsg::Pass).is_err() {
                        return;
                    }
                }
            });
        }
        tracing::info!(kind = S::KIND, path = %source.path().display(), watch = watcher.is_some(), "following a book source");
        Ok(SourceState {
            importer,
            source,
            pending,
            _watcher: watcher,
            ticker,
            _active: ActiveGuard::new(S::KIND),
        })
    }

    async fn post_stop(
        &self,
        _m: ActorRef<SourceMsg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        st.ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<SourceMsg>,
        msg: SourceMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SourceMsg::Pass => {
                // Cleared before the pass: events during it call for another.
                st.pending.store(false, Ordering::SeqCst);
                let started = std::time::Instant::now();
                let path = st.source.path().display().to_string();
                // In a cluster each source is followed by one node, whichever owns its key
                // (a folder every node mounts at the same path is scanned once).
                let key = format!("source:{path}");
                if !st.importer.placement().owns(&key) {
                    return Ok(());
                }
                metrics::counter!("dogear_source_passes_total", "kind" => S::KIND).increment(1);
                match st.source.pass(&st.importer).await {
                    Ok(Some(summary)) => tracing::info!(
                        kind = S::KIND, %path, ms = started.elapsed().as_millis() as u64,
                        "{summary}"
                    ),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(kind = S::KIND, %path, error = %e, "source pass failed")
                    }
                }
            }
        }
        Ok(())
    }
}
