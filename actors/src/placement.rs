//! The one way to reach an actor: by key (`user:<id>`, `library:<id>`, `device:<id>`).
//! Actors are activated on first use and found by name afterwards; whoever asks never learns
//! where the actor runs. In a cluster, `user:` and `library:` keys are owned by one live node
//! each (rendezvous hashing over the members): a request for a key this node does not own
//! is sent, serialized, to the owner, which answers it from its local actor. Device actors
//! stay where their sockets are; the owner of their user pushes changes to that node.

use crate::cluster::{Cluster, Inbound, wire};
use crate::error::AppError;
use crate::kobo::sync::SyncPage;
use crate::messages::{
    Change, DeviceMsg, LibraryMsg, LibraryNotice, LibraryOp, LibraryReply, SocketHandle, SocketId,
    UserMsg, UserOp, UserReply,
};
use crate::supervisor::{Restarter, Supervisor};
use dogear_storage::{DeviceId, LibraryId, Store, UserId};
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort, SpawnErr, rpc::CallResult};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// The value inside the expected variant of an actor's reply: `reply!(fut.await, UserReply::Write)`.
macro_rules! reply {
    ($r:expr, $variant:path) => {
        match $r {
            Ok($variant(v)) => Ok(v),
            Ok(other) => Err($crate::error::AppError::Unavailable(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => Err(e),
        }
    };
}
pub(crate) use reply;

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
    /// How long the answer to a request with an `Idempotency-Key` is kept for its retries.
    pub idempotency_ttl: Duration,
}

impl Default for ActorSettings {
    fn default() -> Self {
        ActorSettings {
            idle_timeout: Duration::from_secs(600),
            socket_queue: 256,
            max_clock_skew: Duration::from_secs(300),
            idempotency_ttl: Duration::from_secs(24 * 3600),
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

/// A future an actor's activation returns.
pub type Activation<M> = Pin<Box<dyn Future<Output = Result<ActorRef<M>, AppError>> + Send>>;

/// Starts the actor of a key under its supervisor. Placement routes messages and decides
/// where keys live; what runs for a key is given to it (`crate::spawn::Actors` in Dogear,
/// anything else in a test), so placement depends on the messages, never on the actors.
pub trait Spawner: Send + Sync + 'static {
    fn user(&self, id: UserId, placement: Placement, sup: ActorCell) -> Activation<UserMsg>;
    fn device(
        &self,
        user: UserId,
        id: DeviceId,
        placement: Placement,
        sup: ActorCell,
    ) -> Activation<DeviceMsg>;
    fn library(
        &self,
        id: LibraryId,
        placement: Placement,
        sup: ActorCell,
    ) -> Activation<LibraryMsg>;
}

struct Inner {
    store: Arc<dyn Store>,
    settings: ActorSettings,
    sups: OnceLock<Supervisors>,
    cluster: Option<Cluster>,
    spawner: Arc<dyn Spawner>,
    /// Devices that had sockets on this node, by user: when a user's owner (re)starts on
    /// another node, only these are asked to subscribe again, not every device here.
    devices_of: std::sync::Mutex<std::collections::HashMap<UserId, Vec<DeviceId>>>,
    prune_devices_at: std::sync::atomic::AtomicUsize,
}

/// A request one node hands to the owner of a key.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    User { user: UserId, op: UserOp },
    Library { library: LibraryId, op: LibraryOp },
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    User(Result<UserReply, AppError>),
    Library(Result<LibraryReply, AppError>),
    /// The receiving node could not read the request (another version, a bug).
    Refused(String),
}

/// One-way messages between nodes, delivered in send order.
#[derive(Debug, Serialize, Deserialize)]
enum Cast {
    /// A change of `user` for the devices with sockets on the receiving node.
    Push {
        user: UserId,
        devices: Vec<DeviceId>,
        change: Change,
    },
    /// The owner of `user` (re)started: the receiving node's devices of that user subscribe
    /// to it again.
    Resubscribe { user: UserId },
    /// The device was deleted: close its sockets.
    StopDevice { device: DeviceId },
    /// An op for `user`'s actor if it runs on the receiving node; nobody waits for it.
    Tell { user: UserId, op: UserOp },
    /// A library notice of `user` for the devices with sockets on the receiving node.
    Notice {
        user: UserId,
        devices: Vec<DeviceId>,
        notice: LibraryNotice,
    },
    // New variants go last: casts cross between nodes by position.
    /// A note, todo or annotation of `user` written, for the devices with sockets on the
    /// receiving node.
    Doc {
        user: UserId,
        devices: Vec<DeviceId>,
        doc: dogear_storage::UserDoc,
    },
}

#[derive(Clone)]
pub struct Placement(Arc<Inner>);

impl Placement {
    /// Starts the supervisors. Crashed user and library actors are restarted at once (their
    /// state reloads from storage, which holds every acknowledged write); a crashed device
    /// actor is not, because its sockets died with it and reconnect on their own.
    pub async fn start_with(
        store: Arc<dyn Store>,
        settings: ActorSettings,
        cluster: Option<Cluster>,
        spawner: Arc<dyn Spawner>,
    ) -> Result<Placement, AppError> {
        let inner = Arc::new(Inner {
            store,
            settings,
            sups: OnceLock::new(),
            cluster,
            spawner,
            devices_of: Default::default(),
            prune_devices_at: std::sync::atomic::AtomicUsize::new(4096),
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
        if let Some(c) = &inner.cluster {
            c.set_inbound(Arc::new(Here(Arc::downgrade(&inner))));
            tokio::spawn(follow_membership(Arc::downgrade(&inner), c.watch_live()));
        }
        Ok(Placement(inner))
    }

    /// This node's id in the cluster (`"local"` without one).
    pub fn node_id(&self) -> &str {
        self.0.cluster.as_ref().map_or("local", |c| c.node_id())
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.0.cluster.as_ref()
    }

    /// The node owning `key`, when it is not this one.
    fn remote_owner(&self, key: &str) -> Option<String> {
        let c = self.0.cluster.as_ref()?;
        let owner = c.owner(key);
        (owner != c.node_id()).then_some(owner)
    }

    /// Whether this node owns `key` (always, without a cluster).
    pub fn owns(&self, key: &str) -> bool {
        self.remote_owner(key).is_none()
    }

    /// Keys (user and library actors) running here.
    pub fn local_keys(&self) -> u64 {
        self.0.local_keys()
    }

    /// Asks the user's actor, wherever it runs.
    pub async fn ask_user(&self, id: UserId, op: UserOp) -> Result<UserReply, AppError> {
        if let Some(node) = self.remote_owner(&user_key(id)) {
            return match self
                .forward(&node, "user", &Request::User { user: id, op })
                .await?
            {
                Reply::User(r) => r,
                other => Err(unexpected(&node, &other)),
            };
        }
        self.0.ask_user_here(id, op).await
    }

    /// Asks the library's actor, wherever it runs.
    pub async fn ask_library(
        &self,
        id: LibraryId,
        op: LibraryOp,
    ) -> Result<LibraryReply, AppError> {
        if let Some(node) = self.remote_owner(&library_key(id)) {
            return match self
                .forward(&node, "library", &Request::Library { library: id, op })
                .await?
            {
                Reply::Library(r) => r,
                other => Err(unexpected(&node, &other)),
            };
        }
        self.0.ask_library_here(id, op).await
    }

    async fn forward(
        &self,
        node: &str,
        kind: &'static str,
        req: &Request,
    ) -> Result<Reply, AppError> {
        let Some(c) = &self.0.cluster else {
            return Err(AppError::Unavailable("no cluster".into()));
        };
        // Waits for the answer, or until the owner leaves the live members (a cut network
        // holds a request until the timeout; once the owner is down, a retry goes elsewhere).
        let mut live = c.watch_live();
        let owner_left = async {
            loop {
                if !live.borrow_and_update().iter().any(|n| n == node) {
                    return;
                }
                if live.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let bytes = tokio::select! {
            r = c.call(node, kind, wire::encode(req), CALL_TIMEOUT) => {
                r.map_err(|e| AppError::Unavailable(e.to_string()))?
            }
            () = owner_left => {
                return Err(AppError::Unavailable(format!("node {node} left the cluster")));
            }
        };
        wire::decode::<Reply>(&bytes).map_err(|e| {
            crate::cluster::node_actor::log_decode_failure(kind, &e);
            AppError::Unavailable(format!("node {node} answered unreadably: {e}"))
        })
    }

    /// Hands `op` to the actor of `user` if it runs (on whichever node owns it), without
    /// activating it and without waiting: news it may use, never a request.
    pub fn tell_user(&self, user: UserId, op: UserOp) {
        match (self.remote_owner(&user_key(user)), &self.0.cluster) {
            (Some(node), Some(c)) => {
                let _ = c.cast(&node, "tell", wire::encode(&Cast::Tell { user, op }));
            }
            _ => self.0.tell_here(user, op),
        }
    }

    /// Sends a change of `user` to `devices` with sockets on `node`; `false` when the node
    /// cannot be reached.
    pub fn push_remote(
        &self,
        node: &str,
        user: UserId,
        devices: &[DeviceId],
        change: &Change,
    ) -> bool {
        let Some(c) = &self.0.cluster else {
            return false;
        };
        let msg = Cast::Push {
            user,
            devices: devices.to_vec(),
            change: change.clone(),
        };
        c.cast(node, "push", wire::encode(&msg)).is_ok()
    }

    /// Sends a library notice of `user` to `devices` with sockets on `node`; `false` when
    /// the node cannot be reached.
    pub fn notice_remote(
        &self,
        node: &str,
        user: UserId,
        devices: &[DeviceId],
        notice: &LibraryNotice,
    ) -> bool {
        let Some(c) = &self.0.cluster else {
            return false;
        };
        let msg = Cast::Notice {
            user,
            devices: devices.to_vec(),
            notice: notice.clone(),
        };
        c.cast(node, "notice", wire::encode(&msg)).is_ok()
    }

    /// Sends a written document of `user` to `devices` with sockets on `node`; `false` when
    /// the node cannot be reached.
    pub fn doc_remote(
        &self,
        node: &str,
        user: UserId,
        devices: &[DeviceId],
        doc: &dogear_storage::UserDoc,
    ) -> bool {
        let Some(c) = &self.0.cluster else {
            return false;
        };
        let msg = Cast::Doc {
            user,
            devices: devices.to_vec(),
            doc: doc.clone(),
        };
        c.cast(node, "doc", wire::encode(&msg)).is_ok()
    }

    /// Closes the sockets of a deleted device on `node`.
    pub fn stop_remote_device(&self, node: &str, device: DeviceId) {
        if let Some(c) = &self.0.cluster {
            let _ = c.cast(
                node,
                "stop_device",
                wire::encode(&Cast::StopDevice { device }),
            );
        }
    }

    /// A user's actor started here: devices of that user on other nodes subscribe to it.
    pub fn announce_user(&self, user: UserId) {
        if let Some(c) = &self.0.cluster {
            let msg = wire::encode(&Cast::Resubscribe { user });
            for node in c.live() {
                if node != c.node_id() {
                    let _ = c.cast(&node, "resubscribe", msg.clone());
                }
            }
        }
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
        self.0.spawner.user(id, self.clone(), sup).await
    }

    pub(crate) async fn device(
        &self,
        user: UserId,
        id: DeviceId,
    ) -> Result<ActorRef<DeviceMsg>, AppError> {
        let sup = self.sups()?.devices.clone();
        self.0.spawner.device(user, id, self.clone(), sup).await
    }

    pub async fn library(&self, id: LibraryId) -> Result<ActorRef<LibraryMsg>, AppError> {
        let sup = self.sups()?.libraries.clone();
        self.0.spawner.library(id, self.clone(), sup).await
    }

    /// Attaches a socket to its device's actor on this node (the node holding the socket).
    pub async fn attach_socket(
        &self,
        user: UserId,
        device: DeviceId,
        handle: SocketHandle,
    ) -> Result<(), AppError> {
        // Attach once: a retry would need a second sender, and the first attach either
        // landed (the actor answered) or died with the actor.
        let dev = self.device(user, device).await?;
        if let Ok(mut m) = self.0.devices_of.lock() {
            let list = m.entry(user).or_default();
            if !list.contains(&device) {
                list.push(device);
            }
            // Users whose sockets are all gone are dropped now and then: whenever the map
            // has doubled since it was last pruned.
            let size = m.len();
            if size
                >= self
                    .0
                    .prune_devices_at
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                m.retain(|_, ds| {
                    ds.retain(|d| ractor::registry::where_is(device_key(*d).as_str()).is_some());
                    !ds.is_empty()
                });
                let next = (m.len() * 2).max(4096);
                self.0
                    .prune_devices_at
                    .store(next, std::sync::atomic::Ordering::Relaxed);
            }
        }
        match dev
            .call(|reply| DeviceMsg::Attach(handle, reply), Some(CALL_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(())) => Ok(()),
            _ => Err(AppError::Unavailable("could not attach socket".into())),
        }
    }

    /// Detaches a socket from its device's actor, if that runs.
    pub fn detach_socket(&self, device: DeviceId, socket: SocketId) {
        if let Some(dev) = self.running::<DeviceMsg>(&device_key(device)) {
            let _ = dev.cast(DeviceMsg::Detach(socket));
        }
    }

    /// Stops the device's actor on this node, closing its sockets.
    pub fn stop_device(&self, device: DeviceId, why: &str) {
        if let Some(dev) = self.running::<DeviceMsg>(&device_key(device)) {
            dev.stop(Some(why.to_string()));
        }
    }

    /// The next page of a Kobo's library sync, built by the device's actor on this node (one
    /// page at a time per device; the position is read from and committed to the store).
    pub async fn kobo_sync(
        &self,
        user: UserId,
        device: DeviceId,
        restart: bool,
        page_size: usize,
    ) -> Result<SyncPage, AppError> {
        let dev = self.device(user, device).await?;
        match dev
            .call(
                |reply| DeviceMsg::KoboSync {
                    restart,
                    page_size,
                    reply,
                },
                Some(Duration::from_secs(25)),
            )
            .await
        {
            Ok(CallResult::Success(r)) => r,
            _ => Err(AppError::Unavailable("kobo sync did not finish".into())),
        }
    }

    /// The actor for `key` if it is running now; never activates one.
    pub fn running<M: ractor::Message>(&self, key: &str) -> Option<ActorRef<M>> {
        ractor::registry::where_is(key).map(ActorRef::from)
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

impl Inner {
    fn placement(self: &Arc<Self>) -> Placement {
        Placement(self.clone())
    }

    async fn ask_user_here(
        self: &Arc<Self>,
        id: UserId,
        op: UserOp,
    ) -> Result<UserReply, AppError> {
        let p = self.placement();
        for _ in 0..CALL_ATTEMPTS {
            let actor = p.user(id).await?;
            if let Some(r) = call(&actor, &|reply| UserMsg::Op(op.clone(), reply)).await? {
                return r;
            }
        }
        Err(AppError::Unavailable(format!(
            "user actor {id} kept stopping"
        )))
    }

    async fn ask_library_here(
        self: &Arc<Self>,
        id: LibraryId,
        op: LibraryOp,
    ) -> Result<LibraryReply, AppError> {
        let p = self.placement();
        for _ in 0..CALL_ATTEMPTS {
            let actor = p.library(id).await?;
            if let Some(r) = call(&actor, &|reply| LibraryMsg::Op(op.clone(), reply)).await? {
                return r;
            }
        }
        Err(AppError::Unavailable(format!(
            "library actor {id} kept stopping"
        )))
    }

    fn tell_here(&self, user: UserId, op: UserOp) {
        if let Some(u) = ractor::registry::where_is(user_key(user).as_str()) {
            let u: ActorRef<UserMsg> = u.into();
            let _ = u.cast(UserMsg::Tell(op));
        }
    }

    fn local_keys(&self) -> u64 {
        self.sups.get().map_or(0, |s| {
            (s.users.get_children().len() + s.libraries.get_children().len()) as u64
        })
    }

    /// Every running device actor on this node.
    fn devices(&self) -> Vec<ActorRef<DeviceMsg>> {
        self.sups.get().map_or(Vec::new(), |s| {
            s.devices
                .get_children()
                .into_iter()
                .map(ActorRef::from)
                .collect()
        })
    }
}

fn unexpected(node: &str, r: &Reply) -> AppError {
    match r {
        Reply::Refused(why) => AppError::Unavailable(format!("node {node} refused: {why}")),
        _ => AppError::Unavailable(format!("node {node} answered another kind of request")),
    }
}

/// What this node does with requests and messages from other nodes. A forwarded request is
/// always served here, never forwarded again: when two nodes briefly disagree on an owner,
/// the store's version checks keep them from both applying a write.
struct Here(Weak<Inner>);

impl Inbound for Here {
    fn call(&self, payload: Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        let inner = self.0.clone();
        Box::pin(async move {
            let Some(inner) = inner.upgrade() else {
                return wire::encode(&Reply::Refused("node is stopping".into()));
            };
            let reply = match wire::decode::<Request>(&payload) {
                Ok(Request::User { user, op }) => Reply::User(inner.ask_user_here(user, op).await),
                Ok(Request::Library { library, op }) => {
                    Reply::Library(inner.ask_library_here(library, op).await)
                }
                Err(e) => {
                    crate::cluster::node_actor::log_decode_failure("request", &e);
                    Reply::Refused(e.to_string())
                }
            };
            wire::encode(&reply)
        })
    }

    fn cast(&self, payload: Vec<u8>) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        match wire::decode::<Cast>(&payload) {
            Ok(Cast::Push {
                devices, change, ..
            }) => {
                let change = Arc::new(change);
                for d in devices {
                    if let Some(dev) = ractor::registry::where_is(device_key(d).as_str()) {
                        let dev: ActorRef<DeviceMsg> = dev.into();
                        let _ = dev.cast(DeviceMsg::Push(change.clone()));
                    }
                }
            }
            Ok(Cast::Notice {
                devices, notice, ..
            }) => {
                let notice = Arc::new(notice);
                for d in devices {
                    if let Some(dev) = ractor::registry::where_is(device_key(d).as_str()) {
                        let dev: ActorRef<DeviceMsg> = dev.into();
                        let _ = dev.cast(DeviceMsg::Notice(notice.clone()));
                    }
                }
            }
            Ok(Cast::Doc { devices, doc, .. }) => {
                let doc = Arc::new(doc);
                for d in devices {
                    if let Some(dev) = ractor::registry::where_is(device_key(d).as_str()) {
                        let dev: ActorRef<DeviceMsg> = dev.into();
                        let _ = dev.cast(DeviceMsg::Doc(doc.clone()));
                    }
                }
            }
            Ok(Cast::Resubscribe { user }) => {
                // The user's devices with sockets here; those no longer running are forgotten.
                let devices = inner
                    .devices_of
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&user))
                    .unwrap_or_default();
                let mut kept = Vec::new();
                for d in devices {
                    if let Some(dev) = ractor::registry::where_is(device_key(d).as_str()) {
                        let dev: ActorRef<DeviceMsg> = dev.into();
                        let _ = dev.cast(DeviceMsg::ResubscribeIfUser(user));
                        kept.push(d);
                    }
                }
                if !kept.is_empty()
                    && let Ok(mut m) = inner.devices_of.lock()
                {
                    m.entry(user).or_default().extend(kept);
                }
            }
            Ok(Cast::StopDevice { device }) => {
                if let Some(dev) = ractor::registry::where_is(device_key(device).as_str()) {
                    dev.stop(Some("device deleted".into()));
                }
            }
            Ok(Cast::Tell { user, op }) => inner.tell_here(user, op),
            Err(e) => crate::cluster::node_actor::log_decode_failure("cast", &e),
        }
    }

    fn local_keys(&self) -> u64 {
        self.0.upgrade().map_or(0, |i| i.local_keys())
    }
}

/// When members come or go: actors of keys this node no longer owns stop (their state is in
/// the store; the new owner loads it), those it keeps reload, and every device with sockets
/// here subscribes again, to whichever node now owns its user.
async fn follow_membership(weak: Weak<Inner>, mut live: tokio::sync::watch::Receiver<Vec<String>>) {
    while live.changed().await.is_ok() {
        let Some(inner) = weak.upgrade() else { return };
        let p = inner.placement();
        if let Some(s) = inner.sups.get() {
            for child in s.users.get_children() {
                let Some(key) = child.get_name() else {
                    continue;
                };
                if p.remote_owner(&key).is_some() {
                    tracing::info!(%key, "key moved to another node; stopping its actor here");
                    child.stop(Some("moved".into()));
                } else {
                    // Kept, but another node may have owned it meanwhile (a partition):
                    // what it holds reloads from the store before its next answer.
                    let u: ActorRef<UserMsg> = child.into();
                    let _ = u.cast(UserMsg::Reload);
                }
            }
            // Library actors hold nothing a socket needs: stop them all, the owner reloads.
            for child in s.libraries.get_children() {
                child.stop(Some("membership changed".into()));
            }
        }
        for dev in inner.devices() {
            let _ = dev.cast(DeviceMsg::Resubscribe);
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

/// The running actor registered as `key`, or a new one `make` builds, linked to `sup`.
pub async fn activate<A, F>(
    key: String,
    sup: ActorCell,
    make: F,
) -> Result<ActorRef<A::Msg>, AppError>
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_actor::SocketId;
    use crate::kobo::state::{Bookmark, KoboReading};
    use crate::progress::ProgressWrite;
    use crate::progress::parts::{DeviceTime, Stamped};
    use dogear_storage::*;

    /// Everything that crosses between nodes survives postcard: in particular what is stored
    /// as JSON (tagged file locations, a Kobo's numbers), which postcard alone cannot read.
    #[test]
    fn requests_replies_and_casts_round_trip() {
        let at = DeviceTime::parse("2026-11-01T10:00:00.5Z").unwrap();
        let reading = KoboReading {
            at: Some(at.clone()),
            bookmark: Some(Stamped {
                at,
                value: Bookmark {
                    percent: serde_json::Number::from_f64(42.5),
                    source_percent: Some(serde_json::Number::from(7)),
                    location: None,
                },
            }),
            ..Default::default()
        };
        let mut book =
            dogear_storage::conformance::books::book(LibraryId::generate(), "Hamlet", "W. S.");
        book.meta.formats = vec![BookFile {
            format: Format::Epub,
            size: 12,
            hash: "00112233aabbccdd".into(),
            koreader: None,
            location: FileLocation::Object {
                key: "ab/cd".into(),
            },
        }];
        let write = ProgressWrite {
            event_id: EventId::generate(),
            book_id: book.id,
            device_id: DeviceId::generate(),
            percent: Percent::new(12.5).unwrap(),
            locator: Locator::new("epubcfi(/6/4)".into()),
            status: None,
            client_ts: Timestamp::from_millis(1_700_000_000_123),
            rewind: false,
        };
        let requests = vec![
            Request::User {
                user: UserId::generate(),
                op: UserOp::KoboWrite {
                    reading: Box::new(reading),
                    book: book.id,
                    device: DeviceId::generate(),
                },
            },
            Request::User {
                user: UserId::generate(),
                op: UserOp::Write {
                    write,
                    origin: Some(SocketId::next()),
                },
            },
            Request::Library {
                library: book.library_id,
                op: LibraryOp::Import(Box::new(book.clone()), None, None),
            },
            Request::Library {
                library: book.library_id,
                op: LibraryOp::UpdateBook(
                    UserId::generate(),
                    book.id,
                    crate::books::BookPatch {
                        language: Some(None),
                        series_index: Some(Some(2.5)),
                        ..Default::default()
                    },
                ),
            },
        ];
        for r in &requests {
            let back: Request = wire::decode(&wire::encode(r)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
        let replies = vec![
            Reply::Library(Ok(LibraryReply::Book(Box::new(book.clone())))),
            Reply::Library(Ok(LibraryReply::Many(vec![
                Ok(RegisterOutcome::Created),
                Err(AppError::bad("file", "is not an EPUB")),
            ]))),
            Reply::User(Err(AppError::NotFound(std::borrow::Cow::Borrowed("book")))),
            Reply::User(Err(AppError::RateLimited {
                retry_after_secs: 3,
            })),
            Reply::Refused("version 9".into()),
        ];
        for r in &replies {
            let back: Reply = wire::decode(&wire::encode(r)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
    }
}
