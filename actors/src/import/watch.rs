//! File-system watching for the folder and Calibre actors: debounced events that wake the
//! actor with one message, however many events arrive before it gets to it.

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// Watches `path`; after events settle for `delay`, calls `wake` once if any event touched a
/// path `relevant` accepts. `pending` stays set until the actor clears it before working,
/// so a burst of events costs one pass.
pub fn debounced(
    path: &Path,
    mode: RecursiveMode,
    delay: Duration,
    pending: Arc<AtomicBool>,
    relevant: impl Fn(&Path) -> bool + Send + 'static,
    wake: impl Fn() + Send + 'static,
) -> Result<Watcher, notify::Error> {
    let mut d = new_debouncer(delay, None, move |res: DebounceEventResult| {
        let hit = match &res {
            Ok(events) => events.iter().any(|e| e.paths.iter().any(|p| relevant(p))),
            Err(_) => false,
        };
        if hit && !pending.swap(true, Ordering::SeqCst) {
            wake();
        }
    })?;
    d.watch(path, mode)?;
    Ok(d)
}
