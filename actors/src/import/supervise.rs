//! The import supervisor: the queue actor and one actor per watched folder and Calibre
//! library run linked to it, and whichever crashes is started again with its arguments.

use super::calibre::{self, CalibreConfig, CalibreSource};
use super::folder::{self, FolderConfig, FolderSource};
use super::pipeline::{Importer, QUEUE_KEY, QueueActor};
use super::source::SourceActor;
use crate::error::AppError;
use crate::supervisor::{Restarter, Supervisor};
use futures_util::future::BoxFuture;
use ractor::{Actor, ActorCell};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

type Spawn = Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Starts the queue and every source under one supervisor and returns it.
pub async fn start(
    importer: Importer,
    folders: Vec<FolderConfig>,
    calibres: Vec<CalibreConfig>,
) -> Result<ActorCell, AppError> {
    let mut spawns: HashMap<String, Spawn> = HashMap::new();
    let imp = importer.clone();
    spawns.insert(
        QUEUE_KEY.to_string(),
        Arc::new(move |sup| {
            let imp = imp.clone();
            Box::pin(async move {
                Actor::spawn_linked(Some(QUEUE_KEY.to_string()), QueueActor, imp, sup)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }),
    );
    for f in folders {
        let imp = importer.clone();
        let key = folder::actor_key(&f);
        let k = key.clone();
        spawns.insert(
            key,
            Arc::new(move |sup| {
                let (imp, f, k) = (imp.clone(), f.clone(), k.clone());
                Box::pin(async move {
                    Actor::spawn_linked(
                        Some(k),
                        SourceActor::<FolderSource>::new(),
                        (imp, FolderSource::new(f)),
                        sup,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
                })
            }),
        );
    }
    for c in calibres {
        let imp = importer.clone();
        let key = calibre::actor_key(&c);
        let k = key.clone();
        spawns.insert(
            key,
            Arc::new(move |sup| {
                let (imp, c, k) = (imp.clone(), c.clone(), k.clone());
                Box::pin(async move {
                    Actor::spawn_linked(
                        Some(k),
                        SourceActor::<CalibreSource>::new(),
                        (imp, CalibreSource(c)),
                        sup,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
                })
            }),
        );
    }
    let spawns = Arc::new(spawns);
    let sup_cell: Arc<OnceLock<ActorCell>> = Arc::new(OnceLock::new());
    let (s, cell) = (spawns.clone(), sup_cell.clone());
    let restart: Restarter = Arc::new(move |name: String| {
        let (Some(spawn), Some(sup)) = (s.get(&name).cloned(), cell.get().cloned()) else {
            return;
        };
        tokio::spawn(async move {
            // Give a failing source a moment, so a persistent fault does not spin.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if let Err(e) = spawn(sup).await {
                tracing::error!(actor = %name, error = %e, "could not restart an import actor");
            }
        });
    });
    let (sup, _) = Actor::spawn(None, Supervisor, ("import", Some(restart)))
        .await
        .map_err(|e| AppError::Unavailable(format!("import supervisor: {e}")))?;
    let sup = sup.get_cell();
    let _ = sup_cell.set(sup.clone());
    for (name, spawn) in spawns.iter() {
        spawn(sup.clone())
            .await
            .map_err(|e| AppError::Unavailable(format!("starting {name}: {e}")))?;
    }
    Ok(sup)
}
