//! `UserActor`: one per user, owns that user's reading progress and devices. Every progress
//! write of the user, from any protocol, passes through here one at a time, so the merge
//! rule sees a consistent current state without locks or read-modify-write in SQL. A write
//! is acknowledged only after the store made it durable.

use crate::device_actor::{DeviceMsg, SocketId};
use crate::error::AppError;
use crate::idle::Idle;
pub use crate::messages::{
    Change, KoboPutOutcome, ProgressView, UserMsg, UserOp, UserReply, WriteOutcome,
};
use crate::placement::{Placement, device_key};
use crate::progress::{ProgressWrite, merge};
use dogear_storage as st;
use dogear_storage::{
    BookId, Device, DeviceId, DeviceKind, DevicePosition, LibraryId, ProgressEvent, ProgressState,
    Reason, RecordOutcome, Store, StoreError, Timestamp, UserId,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Where a subscribed device's sockets are.
enum Subscriber {
    /// On this node: its actor gets each change directly.
    Local(ActorRef<DeviceMsg>),
    /// On another node, which hands each change to the device's actor there.
    Remote(String),
}

pub struct UserArgs {
    pub user: UserId,
    pub placement: Placement,
}

pub struct UserState {
    user: UserId,
    store: Arc<dyn Store>,
    placement: Placement,
    /// Seq of the user's last logged event; `None` after a failed write until reloaded.
    head: Option<u64>,
    states: HashMap<BookId, Option<ProgressState>>,
    readable: HashSet<BookId>,
    libraries: HashSet<LibraryId>,
    devices: HashMap<DeviceId, Device>,
    subscribers: HashMap<DeviceId, Subscriber>,
    idle: Idle,
}

pub struct UserActor;

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = UserState;
    type Arguments = UserArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<UserMsg>,
        args: UserArgs,
    ) -> Result<UserState, ActorProcessingErr> {
        let store = args.placement.store().clone();
        let head = store.progress_head(args.user).await?;
        let devices: HashMap<DeviceId, Device> = store
            .devices(args.user)
            .await?
            .into_iter()
            .map(|d| (d.id, d))
            .collect();
        let libraries = store
            .libraries_of(args.user)
            .await?
            .into_iter()
            .map(|(l, _)| l.id)
            .collect();
        // After a crash or idle stop, devices with open sockets are still running: take
        // them back as subscribers so live pushes continue.
        let mut subscribers = HashMap::new();
        for id in devices.keys() {
            if let Some(dev) = args.placement.running::<DeviceMsg>(&device_key(*id)) {
                let _ = dev.cast(DeviceMsg::Resubscribe);
                subscribers.insert(*id, Subscriber::Local(dev));
            }
        }
        // Devices with sockets on other nodes subscribe again to this (new) owner.
        args.placement.announce_user(args.user);
        let idle = Idle::start(
            &myself,
            "user",
            args.placement.settings().idle_timeout,
            || UserMsg::Tick,
        );
        Ok(UserState {
            user: args.user,
            store,
            placement: args.placement,
            head: Some(head),
            states: HashMap::new(),
            readable: HashSet::new(),
            libraries,
            devices,
            subscribers,
            idle,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<UserMsg>,
        msg: UserMsg,
        st: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(msg, UserMsg::Tick) {
            st.idle.touch();
        }
        match msg {
            UserMsg::Op(op, reply) => {
                let r = st.op(op).await;
                let _ = reply.send(r);
            }
            UserMsg::Reload => {
                st.head = None;
                st.states.clear();
                st.readable.clear();
                st.devices = st
                    .store
                    .devices(st.user)
                    .await?
                    .into_iter()
                    .map(|d| (d.id, d))
                    .collect();
            }
            UserMsg::Tell(op) => {
                if let Err(e) = st.op(op).await {
                    tracing::debug!(error = %e, "a told op failed");
                }
            }
            UserMsg::Tick => {
                if st.subscribers.is_empty() && st.idle.expired() {
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }
}

impl UserState {
    async fn op(&mut self, op: UserOp) -> Result<UserReply, AppError> {
        Ok(match op {
            UserOp::Write { write, origin } => UserReply::Write(self.write(write, origin).await?),
            UserOp::KoboWrite {
                reading,
                book,
                device,
            } => UserReply::Kobo(self.kobo_write(*reading, book, device).await?),
            UserOp::Get { book } => UserReply::Progress(self.get(book).await?),
            UserOp::HasDevice(id) => UserReply::Bool(self.devices.contains_key(&id)),
            UserOp::CreateDevice {
                name,
                kind,
                token_hash,
            } => UserReply::Device(self.create_device(name, kind, token_hash).await?),
            UserOp::ListDevices => {
                let mut list: Vec<Device> = self.devices.values().cloned().collect();
                list.sort_by_key(|d| d.id);
                UserReply::Devices(list)
            }
            UserOp::DeleteDevice(id) => {
                if !self.store.delete_device(self.user, id).await? {
                    return Err(AppError::NotFound(Cow::Borrowed("device")));
                }
                self.devices.remove(&id);
                // Its sockets speak for a device that no longer exists.
                match self.subscribers.remove(&id) {
                    Some(Subscriber::Local(dev)) => dev.stop(Some("device deleted".into())),
                    Some(Subscriber::Remote(node)) => self.placement.stop_remote_device(&node, id),
                    None => {}
                }
                UserReply::Done
            }
            UserOp::Shelf(op) => {
                UserReply::Shelf(crate::shelves::apply(&*self.store, self.user, op).await?)
            }
            UserOp::Subscribe { device, node } => {
                if node == self.placement.node_id() {
                    if let Some(dev) = self.placement.running::<DeviceMsg>(&device_key(device)) {
                        self.subscribers.insert(device, Subscriber::Local(dev));
                    }
                } else {
                    self.subscribers.insert(device, Subscriber::Remote(node));
                }
                UserReply::Done
            }
            UserOp::Unsubscribe { device } => {
                self.subscribers.remove(&device);
                UserReply::Done
            }
            UserOp::KoboArchive {
                device,
                book,
                archived,
            } => {
                if !self.devices.contains_key(&device) {
                    return Err(AppError::NotFound(Cow::Borrowed("device")));
                }
                self.store.set_kobo_archived(device, book, archived).await?;
                UserReply::Done
            }
            UserOp::BookRemoved(book) => {
                self.readable.remove(&book);
                UserReply::Done
            }
        })
    }

    async fn create_device(
        &mut self,
        name: String,
        kind: DeviceKind,
        token_hash: Option<String>,
    ) -> Result<Device, AppError> {
        let device = Device {
            id: DeviceId::generate(),
            user_id: self.user,
            name,
            kind,
            created_at: Timestamp::now(),
        };
        match token_hash {
            Some(token_hash) => {
                let token = dogear_storage::KoboToken {
                    device_id: device.id,
                    user_id: self.user,
                    token_hash,
                    created_at: device.created_at,
                };
                self.store.create_kobo_device(&device, &token).await?
            }
            None => self.store.create_device(&device).await?,
        }
        self.devices.insert(device.id, device.clone());
        Ok(device)
    }

    async fn head(&mut self) -> Result<u64, AppError> {
        match self.head {
            Some(h) => Ok(h),
            None => {
                let h = self.store.progress_head(self.user).await?;
                self.head = Some(h);
                Ok(h)
            }
        }
    }

    async fn current(&mut self, book: BookId) -> Result<Option<ProgressState>, AppError> {
        if let Some(s) = self.states.get(&book) {
            return Ok(s.clone());
        }
        let s = self.store.progress_state(self.user, book).await?;
        self.states.insert(book, s.clone());
        Ok(s)
    }

    /// 404 unless the book is live in one of the user's libraries.
    async fn check_book(&mut self, book: BookId) -> Result<(), AppError> {
        if self.readable.contains(&book) {
            return Ok(());
        }
        let Some(b) = self.store.book(book).await? else {
            return Err(AppError::NotFound(Cow::Borrowed("book")));
        };
        if b.deleted_at.is_some() {
            return Err(AppError::NotFound(Cow::Borrowed("book")));
        }
        if !self.libraries.contains(&b.library_id) {
            // Memberships may have changed since activation.
            self.libraries = self
                .store
                .libraries_of(self.user)
                .await?
                .into_iter()
                .map(|(l, _)| l.id)
                .collect();
            if !self.libraries.contains(&b.library_id) {
                return Err(AppError::NotFound(Cow::Borrowed("book")));
            }
        }
        self.readable.insert(book);
        Ok(())
    }

    async fn kobo_write(
        &mut self,
        mut reading: crate::kobo::KoboReading,
        book: BookId,
        device: DeviceId,
    ) -> Result<KoboPutOutcome, AppError> {
        self.check_book(book).await?;
        let now = Timestamp::now();
        reading.clamp_times(now, self.max_skew_secs());
        let current = self.current(book).await?;
        let k = crate::kobo::state::to_write(&reading, book, device, current.as_ref(), now)?;
        let write = self.write(k.write, None).await?;
        Ok(KoboPutOutcome {
            write,
            parts: k.parts,
            at: k.at,
        })
    }

    fn max_skew_secs(&self) -> i64 {
        i64::try_from(self.placement.settings().max_clock_skew.as_secs()).unwrap_or(i64::MAX / 4)
    }

    async fn get(&mut self, book: BookId) -> Result<ProgressView, AppError> {
        self.check_book(book).await?;
        Ok(ProgressView {
            state: self.current(book).await?,
            devices: self.store.device_positions(self.user, book).await?,
        })
    }

    async fn write(
        &mut self,
        mut w: ProgressWrite,
        origin: Option<SocketId>,
    ) -> Result<WriteOutcome, AppError> {
        if !self.devices.contains_key(&w.device_id) {
            return Err(AppError::bad("device_id", "is not one of your devices"));
        }
        self.check_book(w.book_id).await?;
        // The body as sent identifies a retry, so it is fingerprinted before the clamp.
        let body = w.fingerprint();
        let received = Timestamp::now();
        let clamped = (w.client_ts > received.plus_secs(self.max_skew_secs()))
            .then(|| (std::mem::replace(&mut w.client_ts, received), received));
        for _ in 0..3 {
            let head = self.head().await?;
            let current = self.current(w.book_id).await?;
            let now = Timestamp::now();
            let (applied, reason, after) = match (merge::decide(current.as_ref(), &w), current) {
                (merge::Decision::Skip(r), Some(cur)) => (false, Some(r), cur),
                (_, cur) => (true, None, merge::apply(cur.as_ref(), &w, now)),
            };
            let record = st::ProgressWrite {
                user_id: self.user,
                expected_seq: head,
                event: ProgressEvent {
                    seq: head + 1,
                    event_id: w.event_id,
                    book_id: w.book_id,
                    device_id: w.device_id,
                    body: body.clone(),
                    applied,
                    reason,
                    state: after.clone(),
                    received_at: now,
                },
                position: DevicePosition {
                    device_id: w.device_id,
                    book_id: w.book_id,
                    percent: w.percent,
                    locator: w.locator.clone(),
                    client_ts: w.client_ts,
                },
            };
            match self.store.record_progress(&record).await {
                Ok(RecordOutcome::Recorded) => {
                    self.head = Some(head + 1);
                    let outcome = reason.map_or("applied", |r| r.as_str());
                    metrics::counter!("dogear_progress_writes_total", "outcome" => outcome)
                        .increment(1);
                    if applied {
                        self.states.insert(w.book_id, Some(after.clone()));
                        self.broadcast(Change {
                            seq: head + 1,
                            state: after.clone(),
                            origin_device: w.device_id,
                            origin_socket: origin,
                        });
                    }
                    return Ok(WriteOutcome {
                        applied,
                        reason,
                        state: after,
                        seq: head + 1,
                        clamped,
                    });
                }
                Ok(RecordOutcome::Duplicate(first)) => {
                    if first.body != body {
                        return Err(AppError::IdempotencyMismatch);
                    }
                    metrics::counter!("dogear_progress_writes_total", "outcome" => "duplicate")
                        .increment(1);
                    if first.seq > head {
                        // Logged by another owner after this one last looked: what this one
                        // holds is older than that event.
                        self.head = None;
                        self.states.clear();
                    }
                    let state = self.current(w.book_id).await?.unwrap_or(first.state);
                    return Ok(WriteOutcome {
                        applied: first.applied,
                        reason: Some(Reason::Duplicate),
                        state,
                        seq: first.seq,
                        clamped,
                    });
                }
                Err(StoreError::VersionConflict { .. }) => {
                    // Another owner (a previous one, or a node that briefly believed it
                    // owned this reader) wrote the log: any book's cached state may be old,
                    // so all of it reloads before the retry decides again.
                    metrics::counter!("dogear_store_version_conflicts_total", "kind" => "progress")
                        .increment(1);
                    self.head = None;
                    self.states.clear();
                }
                Err(e) => {
                    // Unknown whether it landed: reload before the next write.
                    self.head = None;
                    self.states.remove(&w.book_id);
                    return Err(e.into());
                }
            }
        }
        Err(AppError::Unavailable("progress log kept moving".into()))
    }

    fn broadcast(&mut self, change: Change) {
        let change = Arc::new(change);
        let mut remote: std::collections::BTreeMap<String, Vec<DeviceId>> = Default::default();
        self.subscribers.retain(|id, sub| match sub {
            Subscriber::Local(dev) => dev.cast(DeviceMsg::Push(change.clone())).is_ok(),
            Subscriber::Remote(node) => {
                remote.entry(node.clone()).or_default().push(*id);
                true
            }
        });
        // One message per node, whatever its number of devices; a node that cannot be
        // reached loses its subscriptions (its devices subscribe again when it is back).
        for (node, devices) in remote {
            if !self
                .placement
                .push_remote(&node, self.user, &devices, &change)
            {
                self.subscribers
                    .retain(|_, s| !matches!(s, Subscriber::Remote(n) if *n == node));
            }
        }
    }
}
