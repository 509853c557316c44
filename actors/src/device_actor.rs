//! `DeviceActor`: one per device with open sockets. It owns those sockets' outbound queues:
//! the user's actor hands it every applied change once, and it fans the change out to each
//! socket of the device without ever waiting on a slow one. A socket whose bounded queue is
//! full is cut loose (the gateway closes it with 4008) and catches up by cursor.

use crate::idle::Idle;
use crate::placement::Placement;
use crate::user_actor::{Change, UserOp};
use dogear_storage::{DeviceId, UserId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Identifies one WebSocket connection, across the cluster: changes carry the id of the
/// socket that made them (it gets an ack, not a push) to every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SocketId(pub u64);

impl SocketId {
    pub fn next() -> SocketId {
        // A random start per process: two nodes' counters never meet in practice.
        static NEXT: std::sync::LazyLock<AtomicU64> = std::sync::LazyLock::new(|| {
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            AtomicU64::new(u64::from_le_bytes(b) & !0xffff_ffff)
        });
        SocketId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a socket's feed carries.
#[derive(Clone, Debug)]
pub enum LiveEvent {
    /// An applied change.
    Change(Arc<Change>),
    /// The owner of the user moved (or restarted): changes may have been applied while this
    /// node was not subscribed. The socket reads the log from where it is to catch up.
    CatchUp,
}

/// The device actor's side of one socket.
pub struct SocketHandle {
    pub id: SocketId,
    pub tx: mpsc::Sender<LiveEvent>,
    /// Set when the socket was dropped for falling behind.
    pub overflowed: Arc<AtomicBool>,
}

#[derive(ractor_cluster::RactorMessage)]
pub enum DeviceMsg {
    Attach(SocketHandle, RpcReplyPort<()>),
    Detach(SocketId),
    Push(Arc<Change>),
    /// The owner of this device's user may have changed (membership changed): subscribe to
    /// whichever node owns it now, and have the sockets catch up from the log.
    Resubscribe,
    /// The actor of this user (re)started on its owner: same as `Resubscribe` for its devices.
    ResubscribeIfUser(UserId),
    /// The next page of this Kobo's library sync (`restart`: it came without its token).
    KoboSync {
        restart: bool,
        page_size: usize,
        reply: RpcReplyPort<Result<crate::kobo::SyncPage, crate::error::AppError>>,
    },
    Tick,
}

pub struct DeviceArgs {
    pub user: UserId,
    pub device: DeviceId,
    pub placement: Placement,
}

pub struct DeviceState {
    user: UserId,
    device: DeviceId,
    placement: Placement,
    sockets: Vec<SocketHandle>,
    subscribed: bool,
    idle: Idle,
}

pub struct DeviceActor;

impl Actor for DeviceActor {
    type Msg = DeviceMsg;
    type State = DeviceState;
    type Arguments = DeviceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DeviceMsg>,
        args: DeviceArgs,
    ) -> Result<DeviceState, ActorProcessingErr> {
        let idle = Idle::start(
            &myself,
            "device",
            args.placement.settings().idle_timeout,
            || DeviceMsg::Tick,
        );
        Ok(DeviceState {
            user: args.user,
            device: args.device,
            placement: args.placement,
            sockets: Vec::new(),
            subscribed: false,
            idle,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DeviceMsg>,
        st: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        st.unsubscribe();
        // Dropping the senders ends every socket's stream: the gateway closes them.
        st.sockets.clear();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<DeviceMsg>,
        msg: DeviceMsg,
        st: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(msg, DeviceMsg::Tick) {
            st.idle.touch();
        }
        match msg {
            DeviceMsg::Attach(socket, reply) => {
                st.sockets.push(socket);
                if !st.subscribed {
                    // Before answering: the socket reads its starting cursor after this, so
                    // every change after that cursor reaches it.
                    st.subscribe().await;
                }
                let _ = reply.send(());
            }
            DeviceMsg::Detach(id) => {
                st.sockets.retain(|s| s.id != id);
                if st.sockets.is_empty() {
                    st.unsubscribe();
                }
            }
            DeviceMsg::Push(change) => {
                st.sockets.retain(|s| {
                    if Some(s.id) == change.origin_socket {
                        return true;
                    }
                    match s.tx.try_send(LiveEvent::Change(change.clone())) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            s.overflowed.store(true, Ordering::Release);
                            metrics::counter!("dogear_ws_overflow_closes_total").increment(1);
                            false
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    }
                });
                if st.sockets.is_empty() {
                    st.unsubscribe();
                }
            }
            DeviceMsg::ResubscribeIfUser(user) if user != st.user => {}
            DeviceMsg::Resubscribe | DeviceMsg::ResubscribeIfUser(_) => {
                st.sockets.retain(|s| !s.tx.is_closed());
                if st.sockets.is_empty() {
                    st.unsubscribe();
                } else {
                    st.subscribe().await;
                    for s in &st.sockets {
                        // A full queue is cut loose at the next push anyway.
                        let _ = s.tx.try_send(LiveEvent::CatchUp);
                    }
                }
            }
            DeviceMsg::KoboSync {
                restart,
                page_size,
                reply,
            } => {
                // The position is read from the store at every page: the device's next page
                // may be served by another node (in a cluster any node takes any request).
                let store = st.placement.store().clone();
                let r = match crate::kobo::sync::load(&*store, st.device).await {
                    Ok(mut pos) => {
                        crate::kobo::sync::next_page(
                            &*store, st.user, st.device, &mut pos, restart, page_size,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            DeviceMsg::Tick => {
                st.sockets.retain(|s| !s.tx.is_closed());
                if st.sockets.is_empty() && st.idle.expired() {
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }
}

impl DeviceState {
    /// Asks the owner of the user (on this node or another) for the user's live changes.
    async fn subscribe(&mut self) {
        let op = UserOp::Subscribe {
            device: self.device,
            node: self.placement.node_id().to_string(),
        };
        match self.placement.ask_user(self.user, op).await {
            Ok(_) => self.subscribed = true,
            // The sockets stay; they get the changes when membership settles and every
            // device here subscribes again.
            Err(e) => tracing::warn!(device = %self.device, error = %e, "could not subscribe"),
        }
    }

    fn unsubscribe(&mut self) {
        if self.subscribed {
            self.placement.tell_user(
                self.user,
                UserOp::Unsubscribe {
                    device: self.device,
                },
            );
            self.subscribed = false;
        }
    }
}
