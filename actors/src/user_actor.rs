//! `UserActor`: one per user, owns that user's reading progress and devices. Every progress
//! write of the user, from any protocol, passes through here in one order, so the merge
//! rule sees a consistent current state without locks or read-modify-write in SQL.
//!
//! Writes are group-committed by the owner: while one batch is being stored, the writes that
//! arrive queue up; when it is durable, every queued write is decided in memory, in order
//! (`progress::batch`), and stored as the next batch. A write is answered only after the
//! batch holding it is durable, and nothing of a batch is visible before that: every other
//! op waits for the batches in flight first.

use crate::device_actor::{DeviceMsg, SocketId};
use crate::error::AppError;
use crate::idle::Idle;
pub use crate::messages::{
    Change, KoboPutOutcome, ProgressView, UserMsg, UserOp, UserReply, WriteOutcome,
};
use crate::placement::{Placement, device_key};
use crate::progress::ProgressWrite;
use crate::progress::batch::{self, Pending, Plan, Recent, Verdict};
use dogear_storage::{
    BatchDone, BatchOutcome, BookId, Device, DeviceId, DeviceKind, IdempotentAnswer, LibraryId,
    ProgressState, Store, StoreError, Timestamp, UserBook, UserId,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
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

/// The most writes one batch takes; the rest wait for the next.
const MAX_BATCH: usize = 1024;
/// How many event ids of recent writes the owner remembers to answer retries at once.
const RECENT_IDS: usize = 1024;
/// How often a write is decided again after another owner moved the log under it.
const MAX_TRIES: u8 = 3;

type Port = RpcReplyPort<Result<UserReply, AppError>>;

/// A write waiting for its batch.
struct Queued {
    pending: Pending,
    origin: Option<SocketId>,
    reply: Option<Port>,
    /// For a Kobo's write: its part outcomes and answered time.
    kobo: Option<(crate::kobo::state::PartOutcomes, String)>,
    tries: u8,
}

impl Queued {
    fn answer(self, r: Result<WriteOutcome, AppError>) {
        let Some(port) = self.reply else { return };
        let r = r.map(|write| match self.kobo {
            Some((parts, at)) => UserReply::Kobo(KoboPutOutcome { write, parts, at }),
            None => UserReply::Write(write),
        });
        let _ = port.send(r);
    }
}

/// Tells the owner its batch is done when the store's answer is given, or when the store
/// drops it by a panic (the answer's channel then closes).
struct TellPersisted(ActorRef<UserMsg>, u64);

impl Drop for TellPersisted {
    fn drop(&mut self) {
        let _ = self.0.cast(UserMsg::Persisted(self.1));
    }
}

/// The batch being stored.
struct Inflight {
    number: u64,
    plan: Plan,
    entries: Vec<Queued>,
    /// The store's outcome, sent just before the owner is told (`UserMsg::Persisted`);
    /// closed if the store panicked.
    outcome: tokio::sync::oneshot::Receiver<Result<BatchOutcome, StoreError>>,
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
    myself: ActorRef<UserMsg>,
    queue: std::collections::VecDeque<Queued>,
    inflight: Option<Inflight>,
    batches: u64,
    recent: Recent,
    /// The user's records of books read so far (`crate::mine`); absent: not read yet.
    mine: HashMap<BookId, UserBook>,
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
            myself,
            queue: Default::default(),
            inflight: None,
            batches: 0,
            recent: Recent::new(RECENT_IDS),
            mine: HashMap::new(),
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
            UserMsg::Op(UserOp::Write { write, origin }, reply) => {
                st.enqueue(write, None, origin, Some(reply), None).await;
            }
            UserMsg::Tell(UserOp::Write { write, origin }) => {
                st.enqueue(write, None, origin, None, None).await;
            }
            UserMsg::Op(
                UserOp::KoboWrite {
                    reading,
                    book,
                    device,
                },
                reply,
            ) => {
                // A Kobo's state is merged onto the book's current one, so writes to this
                // book still queued or being stored land first. Writes to other books need
                // not: they go on being batched with this one.
                if st.pending_for(book) {
                    st.drain().await;
                }
                match st.kobo_write(*reading, book, device).await {
                    Ok(k) => {
                        let kobo = Some((k.parts, k.at));
                        st.enqueue(k.write, Some(k.body), None, Some(reply), kobo)
                            .await;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            UserMsg::Op(UserOp::Erase, reply) => {
                st.drain().await;
                let r = st.erase().await;
                let erased = r.is_ok();
                let _ = reply.send(r);
                if erased {
                    myself.stop(Some("account deleted".into()));
                }
            }
            UserMsg::Op(op, reply) => {
                st.drain().await;
                let r = st.op(op).await;
                let _ = reply.send(r);
            }
            UserMsg::Reload => {
                st.drain().await;
                st.head = None;
                st.states.clear();
                st.readable.clear();
                st.mine.clear();
                st.devices = st
                    .store
                    .devices(st.user)
                    .await?
                    .into_iter()
                    .map(|d| (d.id, d))
                    .collect();
            }
            UserMsg::Tell(op) => {
                st.drain().await;
                if let Err(e) = st.op(op).await {
                    tracing::debug!(error = %e, "a told op failed");
                }
            }
            UserMsg::Persisted(number) => {
                if st.inflight.as_ref().is_some_and(|f| f.number == number) {
                    st.finish().await;
                    st.start().await;
                }
            }
            UserMsg::Tick => {
                let busy = st.inflight.is_some() || !st.queue.is_empty();
                if !busy && st.subscribers.is_empty() && st.idle.expired() {
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
            // Queued for a batch by `handle` before any op runs: never here.
            UserOp::Write { .. } | UserOp::KoboWrite { .. } => {
                return Err(AppError::Unavailable("a write reached the op path".into()));
            }
            UserOp::Get { book } => UserReply::Progress(self.get(book).await?),
            UserOp::HasDevice(id) => UserReply::Bool(self.devices.contains_key(&id)),
            UserOp::CreateDevice { name, kind, secret } => {
                UserReply::Device(self.create_device(name, kind, secret).await?)
            }
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
            UserOp::Mine(op) => self.mine_op(op).await?,
            UserOp::Docs(writes) => {
                let mut out = Vec::with_capacity(writes.len());
                for w in writes {
                    out.push(self.write_doc(w).await);
                }
                UserReply::Docs(out)
            }
            // Taken by `handle` (the actor stops after it): never here.
            UserOp::Erase => return Err(AppError::Unavailable("erase reached the op path".into())),
            UserOp::Notice(n) => {
                use crate::messages::NoticeKind;
                let lost = match n.kind {
                    NoticeKind::LibraryDeleted => true,
                    NoticeKind::MemberLeft | NoticeKind::MemberRemoved => {
                        n.user_id == Some(self.user)
                    }
                    _ => false,
                };
                if lost {
                    // Which books were in that library is not known here: read again.
                    self.libraries.remove(&n.library_id);
                    self.readable.clear();
                }
                self.notify(n);
                UserReply::Done
            }
        })
    }

    /// Deletes the account in the store; the devices' sockets are closed.
    async fn erase(&mut self) -> Result<UserReply, AppError> {
        let Some(gone) = self.store.delete_user(self.user, Timestamp::now()).await? else {
            return Err(AppError::NotFound(Cow::Borrowed("user")));
        };
        let devices: Vec<DeviceId> = self.devices.keys().copied().collect();
        for (id, sub) in self.subscribers.drain() {
            match sub {
                Subscriber::Local(dev) => dev.stop(Some("account deleted".into())),
                Subscriber::Remote(node) => self.placement.stop_remote_device(&node, id),
            }
        }
        self.devices.clear();
        self.states.clear();
        self.readable.clear();
        self.mine.clear();
        let keys = gone
            .into_iter()
            .filter_map(|l| match l {
                dogear_storage::FileLocation::Object { key } => Some(key),
                dogear_storage::FileLocation::External { .. } => None,
            })
            .collect();
        Ok(UserReply::Erased { devices, keys })
    }

    async fn create_device(
        &mut self,
        name: String,
        kind: DeviceKind,
        secret: Option<crate::messages::DeviceSecret>,
    ) -> Result<Device, AppError> {
        let device = Device {
            id: DeviceId::generate(),
            user_id: self.user,
            name,
            kind,
            created_at: Timestamp::now(),
        };
        use crate::messages::DeviceSecret;
        match secret {
            Some(DeviceSecret::KoboToken(token_hash)) => {
                let token = dogear_storage::KoboToken {
                    device_id: device.id,
                    user_id: self.user,
                    token_hash,
                    created_at: device.created_at,
                };
                self.store.create_kobo_device(&device, &token).await?
            }
            Some(DeviceSecret::Koreader { username, key_hash }) => {
                let login = dogear_storage::KoreaderLogin {
                    username,
                    device_id: device.id,
                    user_id: self.user,
                    key_hash,
                    created_at: device.created_at,
                };
                self.store.create_koreader_device(&device, &login).await?
            }
            Some(DeviceSecret::OpdsToken(token_hash)) => {
                let token = dogear_storage::OpdsToken {
                    device_id: device.id,
                    user_id: self.user,
                    token_hash,
                    created_at: device.created_at,
                };
                self.store.create_opds_device(&device, &token).await?
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

    /// A Kobo's reading state as a progress write, decided on the durable state (the owner
    /// has stored the book's queued writes first).
    async fn kobo_write(
        &mut self,
        mut reading: crate::kobo::KoboReading,
        book: BookId,
        device: DeviceId,
    ) -> Result<crate::kobo::state::KoboWrite, AppError> {
        self.check_book(book).await?;
        let now = Timestamp::now();
        reading.clamp_times(now, self.max_skew_secs());
        let current = self.current(book).await?;
        crate::kobo::state::to_write(&reading, book, device, current.as_ref(), now)
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

    /// Checks a write and queues it; starts a batch if none is being stored. `body` is the
    /// write's fingerprint when the caller has it already.
    async fn enqueue(
        &mut self,
        mut w: ProgressWrite,
        body: Option<String>,
        origin: Option<SocketId>,
        reply: Option<Port>,
        kobo: Option<(crate::kobo::state::PartOutcomes, String)>,
    ) {
        let checked = if self.devices.contains_key(&w.device_id) {
            self.check_book(w.book_id).await
        } else {
            Err(AppError::bad("device_id", "is not one of your devices"))
        };
        if let Err(e) = checked {
            if let Some(port) = reply {
                let _ = port.send(Err(e));
            }
            return;
        }
        // The body as sent identifies a retry, so it is fingerprinted before the clamp.
        let body = body.unwrap_or_else(|| w.fingerprint());
        let received = Timestamp::now();
        let clamped = (w.client_ts > received.plus_secs(self.max_skew_secs()))
            .then(|| (std::mem::replace(&mut w.client_ts, received), received));
        self.queue.push_back(Queued {
            pending: Pending {
                write: w,
                body,
                received,
                clamped,
            },
            origin,
            reply,
            kobo,
            tries: 0,
        });
        self.start().await;
    }

    /// Decides the queued writes and hands them to the store as one batch, unless a batch
    /// is being stored already (its end starts the next).
    async fn start(&mut self) {
        while self.inflight.is_none() && !self.queue.is_empty() {
            let take = self.queue.len().min(MAX_BATCH);
            let entries: Vec<Queued> = self.queue.drain(..take).collect();
            let plan = match self.plan(&entries).await {
                Ok(plan) => plan,
                Err(e) => {
                    // Unknown what the store holds: reload before the next batch.
                    self.head = None;
                    self.states.clear();
                    for q in entries {
                        q.answer(Err(e.clone()));
                    }
                    continue;
                }
            };
            if plan.records.is_empty() {
                // Only repeats of durable events: nothing to store (but a status an earlier
                // try did not record is recorded now).
                self.answer_after_statuses(plan, entries).await;
                continue;
            }
            metrics::histogram!("dogear_progress_batch_size").record(plan.records.len() as f64);
            self.batches += 1;
            let number = self.batches;
            let (tx, outcome) = tokio::sync::oneshot::channel();
            let tell = TellPersisted(self.myself.clone(), number);
            let done = BatchDone::new(move |r| {
                let _ = tx.send(r);
                drop(tell);
            });
            self.store
                .clone()
                .submit_progress_batch(self.user, plan.records.clone(), done);
            self.inflight = Some(Inflight {
                number,
                plan,
                entries,
                outcome,
            });
        }
    }

    /// Loads what the decision needs (the head, the state of every book of the batch) and
    /// decides.
    async fn plan(&mut self, entries: &[Queued]) -> Result<Plan, AppError> {
        let head = self.head().await?;
        for q in entries {
            self.current(q.pending.write.book_id).await?;
        }
        let pending: Vec<Pending> = entries.iter().map(|q| q.pending.clone()).collect();
        Ok(batch::decide(
            self.user,
            head,
            &self.states,
            &self.recent,
            &pending,
            Timestamp::now(),
        ))
    }

    /// Waits for the batch being stored, then takes what it says.
    async fn finish(&mut self) {
        let Some(f) = self.inflight.take() else {
            return;
        };
        let Ok(result) = f.outcome.await else {
            // A panic in the store is the owner's: it stops, its callers get no answer, and
            // its supervisor starts it again on what the store holds.
            panic!("the store panicked storing progress batch {}", f.number);
        };
        match result {
            Ok(BatchOutcome::Recorded) => {
                self.head = Some(f.plan.head);
                f.plan.settle(&mut self.states, &mut self.recent);
                self.answer_after_statuses(f.plan, f.entries).await;
            }
            Ok(BatchOutcome::Duplicates(first)) => {
                // Logged before, by this owner before a restart or by another: decided
                // again knowing them. Logged by another owner after this one last looked:
                // what this one holds is older than that event, so it reloads too.
                let known = f.plan.records.first().map_or(0, |r| r.expected_seq);
                if first.iter().any(|e| e.seq > known) {
                    self.head = None;
                    self.states.clear();
                }
                for e in first {
                    self.recent.remember(&e);
                }
                self.retry(f.entries);
            }
            Err(StoreError::VersionConflict { .. }) => {
                // Another owner (a previous one, or a node that briefly believed it owned
                // this reader) wrote the log: any book's cached state may be old, so all of
                // it reloads before the writes are decided again.
                metrics::counter!("dogear_store_version_conflicts_total", "kind" => "progress")
                    .increment(1);
                self.head = None;
                self.states.clear();
                self.retry(f.entries);
            }
            Err(e) => {
                // Unknown whether it landed: reload before the next batch.
                self.head = None;
                self.states.clear();
                let e = AppError::from(e);
                for q in f.entries {
                    q.answer(Err(e.clone()));
                }
            }
        }
    }

    /// Puts a refused batch back at the front of the queue, in its order.
    fn retry(&mut self, entries: Vec<Queued>) {
        for mut q in entries.into_iter().rev() {
            q.tries += 1;
            if q.tries >= MAX_TRIES {
                q.answer(Err(AppError::Unavailable(
                    "progress log kept moving".into(),
                )));
            } else {
                self.queue.push_front(q);
            }
        }
    }

    /// Records the statuses a durable plan's applied writes move (`mine::from_progress`),
    /// then answers. If they cannot be recorded, the writers get an error although their
    /// progress is durable: each retries, its write is then a repeat, and the status is
    /// recorded on that try.
    async fn answer_after_statuses(&mut self, plan: Plan, entries: Vec<Queued>) {
        if let Err(e) = self.follow_progress(&plan).await {
            self.mine.clear();
            for q in entries {
                q.answer(Err(e.clone()));
            }
            return;
        }
        self.answer(plan, entries);
    }

    async fn follow_progress(&mut self, plan: &Plan) -> Result<(), AppError> {
        let now = Timestamp::now();
        // Several writes to one book in a batch: each decided on the last, stored once.
        let mut changed: Vec<UserBook> = Vec::new();
        for v in &plan.verdicts {
            let (Verdict::Logged(o) | Verdict::Repeat(o)) = v else {
                continue;
            };
            if !o.applied {
                continue;
            }
            let book = o.state.book_id;
            let current = match changed.iter().position(|r| r.book_id == book) {
                Some(i) => changed[i].clone(),
                None => self.my_record(book).await?,
            };
            if let Some(mut next) = crate::mine::from_progress(&current, &o.state, now) {
                match changed.iter_mut().find(|r| r.book_id == book) {
                    Some(r) => {
                        next.version = r.version;
                        *r = next;
                    }
                    None => changed.push(next),
                }
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        self.store.put_user_books(self.user, &changed, None).await?;
        for r in changed {
            self.mine.insert(r.book_id, r);
        }
        Ok(())
    }

    /// The user's record of a book (an empty one if they never said anything of it).
    async fn my_record(&mut self, book: BookId) -> Result<UserBook, AppError> {
        if let Some(r) = self.mine.get(&book) {
            return Ok(r.clone());
        }
        let r = self
            .store
            .user_book(self.user, book)
            .await?
            .unwrap_or_else(|| UserBook::empty(self.user, book));
        self.mine.insert(book, r.clone());
        Ok(r)
    }

    async fn mine_op(&mut self, op: crate::messages::MineOp) -> Result<UserReply, AppError> {
        use crate::messages::MineOp;
        match op {
            MineOp::Get(book) => {
                self.check_book(book).await?;
                Ok(UserReply::Mine(Box::new(self.my_record(book).await?)))
            }
            MineOp::Patch(book, patch) => {
                self.check_book(book).await?;
                let item = crate::mine::BatchItem {
                    book_id: book,
                    patch,
                };
                let mut answer = self.batch(None, vec![item]).await?;
                match answer.results.pop() {
                    Some(crate::mine::ItemResult::Done(r)) => Ok(UserReply::Mine(r)),
                    Some(crate::mine::ItemResult::Refused(e)) => Err(e),
                    None => Err(AppError::Unavailable("a patch without its result".into())),
                }
            }
            MineOp::Batch { key, items } => Ok(UserReply::Batch(self.batch(key, items).await?)),
        }
    }

    /// Applies each item whole or not at all, and stores the changed records with the
    /// answer (under `key`) in one write. A key answered before gives that answer again
    /// for the same items, and is refused for others.
    async fn batch(
        &mut self,
        key: Option<String>,
        items: Vec<crate::mine::BatchItem>,
    ) -> Result<crate::mine::BatchAnswer, AppError> {
        use crate::mine::{BatchAnswer, ItemResult};
        let fingerprint = crate::mine::fingerprint(&items);
        let now = Timestamp::now();
        if let Some(key) = &key
            && let Some(stored) = self.store.idempotent_answer(self.user, key, now).await?
        {
            return replayed(stored, &fingerprint);
        }
        for attempt in 0..2 {
            let now = Timestamp::now();
            let latest = now.plus_secs(self.max_skew_secs());
            let mut results = Vec::with_capacity(items.len());
            let mut changed: Vec<UserBook> = Vec::new();
            for item in &items {
                let book = item.book_id;
                match self.check_book(book).await {
                    Ok(()) => {}
                    // Not the item's fault: nothing is answered (or stored under the key);
                    // the client retries the whole batch.
                    Err(e @ AppError::Unavailable(_)) => return Err(e),
                    Err(e) => {
                        results.push(ItemResult::Refused(e));
                        continue;
                    }
                }
                let current = match changed.iter().find(|r| r.book_id == book) {
                    Some(r) => r.clone(),
                    None => self.my_record(book).await?,
                };
                match crate::mine::apply(&current, &item.patch, now, latest) {
                    Ok(mut next) => {
                        if next.version != current.version {
                            match changed.iter_mut().find(|r| r.book_id == book) {
                                Some(r) => {
                                    next.version = r.version;
                                    *r = next.clone();
                                }
                                None => changed.push(next.clone()),
                            }
                        }
                        results.push(ItemResult::Done(Box::new(next)));
                    }
                    Err(e) => results.push(ItemResult::Refused(e)),
                }
            }
            let answer = BatchAnswer {
                results,
                replayed: false,
            };
            let stored = match &key {
                Some(k) => Some(IdempotentAnswer {
                    user_id: self.user,
                    key: k.clone(),
                    fingerprint: fingerprint.clone(),
                    status: 200,
                    body: serde_json::to_string(&answer.results)
                        .map_err(|e| AppError::Unavailable(format!("batch answer: {e}")))?,
                    created_at: now,
                    expires_at: now.plus_secs(
                        i64::try_from(self.placement.settings().idempotency_ttl.as_secs())
                            .unwrap_or(i64::MAX / 4000),
                    ),
                }),
                None => None,
            };
            if changed.is_empty() && stored.is_none() {
                return Ok(answer);
            }
            match self
                .store
                .put_user_books(self.user, &changed, stored.as_ref())
                .await
            {
                Ok(()) => {
                    for r in changed {
                        self.mine.insert(r.book_id, r);
                    }
                    return Ok(answer);
                }
                Err(StoreError::VersionConflict { .. }) if attempt == 0 => {
                    // Written elsewhere (a previous owner): decide again on what is stored.
                    self.mine.clear();
                }
                Err(StoreError::Conflict(_)) => {
                    // The key was answered meanwhile (by a previous owner of this user).
                    if let Some(key) = &key
                        && let Some(stored) =
                            self.store.idempotent_answer(self.user, key, now).await?
                    {
                        return replayed(stored, &fingerprint);
                    }
                    return Err(AppError::Conflict(
                        "the records changed meanwhile; retry".into(),
                    ));
                }
                Err(e) => {
                    self.mine.clear();
                    return Err(e.into());
                }
            }
        }
        Err(AppError::Unavailable("the records kept changing".into()))
    }

    /// Stores nothing more: answers each writer of a durable plan and pushes its changes.
    fn answer(&mut self, plan: Plan, entries: Vec<Queued>) {
        for (q, verdict) in entries.into_iter().zip(plan.verdicts) {
            let outcome = match verdict {
                Verdict::Logged(o) => {
                    let label = o.reason.map_or("applied", |r| r.as_str());
                    metrics::counter!("dogear_progress_writes_total", "outcome" => label)
                        .increment(1);
                    if o.applied {
                        self.broadcast(Change {
                            seq: o.seq,
                            state: o.state.clone(),
                            origin_device: q.pending.write.device_id,
                            origin_socket: q.origin,
                        });
                    }
                    Ok(o)
                }
                Verdict::Repeat(o) => {
                    metrics::counter!("dogear_progress_writes_total", "outcome" => "duplicate")
                        .increment(1);
                    Ok(o)
                }
                Verdict::Mismatch => Err(AppError::IdempotencyMismatch),
            };
            q.answer(outcome);
        }
    }

    /// Whether a write to `book` is queued or being stored.
    fn pending_for(&self, book: BookId) -> bool {
        let inflight = self.inflight.iter().flat_map(|f| &f.entries);
        inflight
            .chain(&self.queue)
            .any(|q| q.pending.write.book_id == book)
    }

    /// Waits until no write is queued or being stored, so that what follows sees only
    /// durable state.
    async fn drain(&mut self) {
        loop {
            if self.inflight.is_some() {
                self.finish().await;
            } else if !self.queue.is_empty() {
                self.start().await;
            } else {
                return;
            }
        }
    }

    /// Decides one write to a note, todo or annotation on what is stored, stores it and
    /// passes it to the user's sockets.
    async fn write_doc(
        &mut self,
        w: crate::docs::DocWrite,
    ) -> Result<crate::docs::DocOutcome, AppError> {
        use crate::docs::DocOutcome;
        let id = w.id.unwrap_or_else(dogear_storage::DocId::generate);
        if let Some(Some(book)) = w.book_id {
            self.check_book(book).await?;
        }
        let current = self.store.doc(self.user, id).await?;
        match crate::docs::decide(self.user, id, current.as_ref(), &w, Timestamp::now())? {
            Err(newer) => Ok(DocOutcome::Conflict(newer)),
            Ok(None) => match current {
                Some(c) => Ok(DocOutcome::Applied(c)),
                None => Err(AppError::Unavailable(
                    "an unchanged document that is not".into(),
                )),
            },
            Ok(Some(next)) => {
                let stored = match self.store.put_doc(&next).await {
                    Ok(s) => s,
                    // Written by another owner meanwhile: the writer merges with that.
                    Err(StoreError::VersionConflict { .. }) => {
                        return match self.store.doc(self.user, id).await? {
                            Some(now) => Ok(DocOutcome::Conflict(now)),
                            None => Err(AppError::Conflict(
                                "the document changed meanwhile; retry".into(),
                            )),
                        };
                    }
                    Err(e) => return Err(e.into()),
                };
                let doc = Arc::new(stored.clone());
                self.fan_out(
                    || DeviceMsg::Doc(doc.clone()),
                    |p, node, user, devices| p.doc_remote(node, user, devices, &doc),
                );
                Ok(DocOutcome::Applied(stored))
            }
        }
    }

    /// Passes a library's notice to every subscribed device.
    fn notify(&mut self, notice: crate::messages::LibraryNotice) {
        let notice = Arc::new(notice);
        self.fan_out(
            || DeviceMsg::Notice(notice.clone()),
            |p, node, user, devices| p.notice_remote(node, user, devices, &notice),
        );
    }

    /// Passes an applied change to every subscribed device.
    fn broadcast(&mut self, change: Change) {
        let change = Arc::new(change);
        self.fan_out(
            || DeviceMsg::Push(change.clone()),
            |p, node, user, devices| p.push_remote(node, user, devices, &change),
        );
    }

    /// Hands one message to every subscribed device: to this node's device actors directly,
    /// and one message per other node whatever its number of devices (`remote`); a node that
    /// cannot be reached loses its subscriptions (its devices subscribe again when it is
    /// back).
    fn fan_out(
        &mut self,
        local: impl Fn() -> DeviceMsg,
        remote: impl Fn(&crate::placement::Placement, &str, UserId, &[DeviceId]) -> bool,
    ) {
        let mut nodes: std::collections::BTreeMap<String, Vec<DeviceId>> = Default::default();
        self.subscribers.retain(|id, sub| match sub {
            Subscriber::Local(dev) => dev.cast(local()).is_ok(),
            Subscriber::Remote(node) => {
                nodes.entry(node.clone()).or_default().push(*id);
                true
            }
        });
        for (node, devices) in nodes {
            if !remote(&self.placement, &node, self.user, &devices) {
                self.subscribers
                    .retain(|_, s| !matches!(s, Subscriber::Remote(n) if *n == node));
            }
        }
    }
}

/// A stored batch answer given again, if it answered the same items.
fn replayed(
    stored: IdempotentAnswer,
    fingerprint: &str,
) -> Result<crate::mine::BatchAnswer, AppError> {
    if stored.fingerprint != fingerprint {
        return Err(AppError::IdempotencyKeyReused);
    }
    let results = serde_json::from_str(&stored.body)
        .map_err(|e| AppError::Unavailable(format!("stored batch answer: {e}")))?;
    Ok(crate::mine::BatchAnswer {
        results,
        replayed: true,
    })
}
