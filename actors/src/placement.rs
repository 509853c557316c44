//! The one way to reach an actor: by key (`user:<id>`, `library:<id>`, `device:<id>`).
//! Actors are activated on first use and found by name afterwards; whoever asks never learns
//! where the actor runs, so a cluster can later place keys on other nodes behind this same
//! interface without touching the gateway.

use crate::device_actor::{DeviceActor, DeviceArgs, DeviceMsg};
use crate::error::AppError;
use crate::library_actor::{LibraryActor, LibraryArgs, LibraryMsg};
use crate::supervisor::{Restarter, Supervisor};
use crate::user_actor::{UserActor, UserArgs, UserMsg};
use dogear_storage::{DeviceId, LibraryId, Store, UserId};
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort, SpawnErr, rpc::CallResult};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// How long a caller waits for an actor's answer before giving up with `503`.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts for a call whose actor stopped (idle or crashed) before answering.
const CALL_ATTEMPTS: usize = 4;

#[derive(Clone, Debug)]
pub struct ActorSettings {
    /// An actor with nothing to do for this long stops; its state reloads on next use.
    pub idle_timeout: Duration,
    /// Messages a WebSocket may have waiting before it counts as too slow (closed with 4008).
    pub socket_queue: usize,
    /// A client clock more than this far ahead of the server's is taken as the server's time,
    /// on every protocol: otherwise a device in year 9999 makes every later write stale.
    pub max_clock_skew: Duration,
}

impl Default for ActorSettings {
    fn default() -> Self {
        ActorSettings {
            idle_timeout: Duration::from_secs(600),
            socket_queue: 256,
            max_clock_skew: Duration::from_secs(300),
        }
    }
}

pub fn user_key(id: UserId) -> String {
    format!("user:{id}")
}
pub fn device_key(id: DeviceId) -> String {
    format!("device:{id}")
}
pub fn library_key(id: LibraryId) -> String {
    format!("library:{id}")
}

struct Supervisors {
    users: ActorCell,
    devices: ActorCell,
    libraries: ActorCell,
}

struct Inner {
    store: Arc<dyn Store>,
    settings: ActorSettings,
    sups: OnceLock<Supervisors>,
}

#[derive(Clone)]
pub struct Placement(Arc<Inner>);

impl Placement {
    /// Starts the supervisors. Crashed user and library actors are restarted at once (their
    /// state reloads from storage, which holds every acknowledged write); a crashed device
    /// actor is not, because its sockets died with it and reconnect on their own.
    pub async fn start(
        store: Arc<dyn Store>,
        settings: ActorSettings,
    ) -> Result<Placement, AppError> {
        let inner = Arc::new(Inner {
            store,
            settings,
            sups: OnceLock::new(),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let restart: Restarter = Arc::new(move |key: String| {
            let Some(inner) = weak.upgrade() else { return };
            let p = Placement(inner);
            tokio::spawn(async move {
                let result = if let Some(id) =
                    key.strip_prefix("user:").and_then(|s| s.parse().ok())
                {
                    p.user(id).await.map(|_| ())
                } else if let Some(id) = key.strip_prefix("library:").and_then(|s| s.parse().ok()) {
                    p.library(id).await.map(|_| ())
                } else {
                    Ok(())
                };
                if let Err(e) = result {
                    tracing::warn!(%key, error = %e, "restart after crash failed; next use retries");
                }
            });
        });
        let spawn = |kind: &'static str, restart: Option<Restarter>| async move {
            Actor::spawn(None, Supervisor, (kind, restart))
                .await
                .map(|(r, _)| r.get_cell())
                .map_err(|e| AppError::Unavailable(format!("supervisor: {e}")))
        };
        let sups = Supervisors {
            users: spawn("user", Some(restart.clone())).await?,
            devices: spawn("device", None).await?,
            libraries: spawn("library", Some(restart)).await?,
        };
        let _ = inner.sups.set(sups);
        Ok(Placement(inner))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    pub fn settings(&self) -> &ActorSettings {
        &self.0.settings
    }

    fn sups(&self) -> Result<&Supervisors, AppError> {
        self.0
            .sups
            .get()
            .ok_or_else(|| AppError::Unavailable("placement not started".into()))
    }

    pub async fn user(&self, id: UserId) -> Result<ActorRef<UserMsg>, AppError> {
        let sup = self.sups()?.users.clone();
        activate(user_key(id), sup, || {
            (
                UserActor,
                UserArgs {
                    user: id,
                    placement: self.clone(),
                },
            )
        })
        .await
    }

    pub async fn device(
        &self,
        user: UserId,
        id: DeviceId,
    ) -> Result<ActorRef<DeviceMsg>, AppError> {
        let sup = self.sups()?.devices.clone();
        activate(device_key(id), sup, || {
            (
                DeviceActor,
                DeviceArgs {
                    user,
                    device: id,
                    placement: self.clone(),
                },
            )
        })
        .await
    }

    pub async fn library(&self, id: LibraryId) -> Result<ActorRef<LibraryMsg>, AppError> {
        let sup = self.sups()?.libraries.clone();
        activate(library_key(id), sup, || {
            (
                LibraryActor,
                LibraryArgs {
                    library: id,
                    placement: self.clone(),
                },
            )
        })
        .await
    }

    /// The actor for `key` if it is running now; never activates one.
    pub fn running<M: ractor::Message>(&self, key: &str) -> Option<ActorRef<M>> {
        ractor::registry::where_is(key).map(ActorRef::from)
    }

    pub async fn call_user<R, F>(&self, id: UserId, build: F) -> Result<R, AppError>
    where
        R: Send + 'static,
        F: Fn(RpcReplyPort<R>) -> UserMsg,
    {
        for _ in 0..CALL_ATTEMPTS {
            if let Some(r) = call(&self.user(id).await?, &build).await? {
                return Ok(r);
            }
        }
        Err(AppError::Unavailable(format!(
            "user actor {id} kept stopping"
        )))
    }

    pub async fn call_library<R, F>(&self, id: LibraryId, build: F) -> Result<R, AppError>
    where
        R: Send + 'static,
        F: Fn(RpcReplyPort<R>) -> LibraryMsg,
    {
        for _ in 0..CALL_ATTEMPTS {
            if let Some(r) = call(&self.library(id).await?, &build).await? {
                return Ok(r);
            }
        }
        Err(AppError::Unavailable(format!(
            "library actor {id} kept stopping"
        )))
    }

    /// Stops every actor (their state is already durable) and waits for them.
    pub async fn shutdown(&self) {
        if let Ok(s) = self.sups() {
            for sup in [&s.devices, &s.users, &s.libraries] {
                for child in sup.get_children() {
                    let _ = child
                        .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
                        .await;
                }
                sup.stop(Some("shutdown".into()));
            }
        }
    }
}

/// `Ok(None)`: the actor stopped before it answered; find or start it again and retry.
async fn call<M, R, F>(actor: &ActorRef<M>, build: &F) -> Result<Option<R>, AppError>
where
    M: ractor::Message,
    R: Send + 'static,
    F: Fn(RpcReplyPort<R>) -> M,
{
    match actor.call(build, Some(CALL_TIMEOUT)).await {
        Ok(CallResult::Success(r)) => Ok(Some(r)),
        Ok(CallResult::Timeout) => Err(AppError::Unavailable("actor call timed out".into())),
        Ok(CallResult::SenderError) | Err(_) => {
            tokio::task::yield_now().await;
            Ok(None)
        }
    }
}

async fn activate<A, F>(key: String, sup: ActorCell, make: F) -> Result<ActorRef<A::Msg>, AppError>
where
    A: Actor,
    F: Fn() -> (A, A::Arguments),
{
    for _ in 0..8 {
        if let Some(cell) = ractor::registry::where_is(&key) {
            return Ok(cell.into());
        }
        let (actor, args) = make();
        match Actor::spawn_linked(Some(key.clone()), actor, args, sup.clone()).await {
            Ok((r, _)) => return Ok(r),
            // Someone activated it between our look-up and our spawn: use theirs.
            Err(SpawnErr::ActorAlreadyRegistered(_)) => tokio::task::yield_now().await,
            Err(e) => return Err(AppError::Unavailable(format!("starting {key}: {e}"))),
        }
    }
    Err(AppError::Unavailable(format!("could not activate {key}")))
}
