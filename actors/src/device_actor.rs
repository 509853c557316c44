//! `DeviceActor`: one per device with open sockets. It owns those sockets' outbound queues:
//! the user's actor hands it every applied change once, and it fans the change out to each
//! socket of the device without ever waiting on a slow one. A socket whose bounded queue is
//! full is cut loose (the gateway closes it with 4008) and catches up by cursor.

use crate::idle::Idle;
use crate::placement::Placement;
use crate::user_actor::{Change, UserMsg};
use dogear_storage::{DeviceId, UserId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Identifies one WebSocket connection on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketId(pub u64);

impl SocketId {
    pub fn next() -> SocketId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SocketId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// The device actor's side of one socket.
pub struct SocketHandle {
    pub id: SocketId,
    pub tx: mpsc::Sender<Arc<Change>>,
    /// Set when the socket was dropped for falling behind.
    pub overflowed: Arc<AtomicBool>,
}

pub enum DeviceMsg {
    Attach(SocketHandle, RpcReplyPort<()>),
    Detach(SocketId),
    Push(Arc<Change>),
    /// The user's actor restarted and took this device back; nothing to do but stay alive.
    Resubscribe,
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
    /// A Kobo's sync position, loaded from the store on its first sync here.
    kobo: Option<crate::kobo::sync::SyncState>,
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
            kobo: None,
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
                    let user = st.placement.user(st.user).await?;
                    user.cast(UserMsg::Subscribe(st.device, myself.clone()))?;
                    st.subscribed = true;
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
                    match s.tx.try_send(change.clone()) {
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
            DeviceMsg::Resubscribe => {
                st.subscribed = true;
                if st.sockets.is_empty() {
                    st.unsubscribe();
                }
            }
            DeviceMsg::KoboSync {
                restart,
                page_size,
                reply,
            } => {
                let store = st.placement.store().clone();
                let mut pos = match st.kobo.take() {
                    Some(p) => p,
                    None => match crate::kobo::sync::load(&*store, st.device).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            return Ok(());
                        }
                    },
                };
                let r = crate::kobo::sync::next_page(
                    &*store, st.user, st.device, &mut pos, restart, page_size,
                )
                .await;
                // On failure nothing was committed: reload from the store next time.
                if r.is_ok() {
                    st.kobo = Some(pos);
                }
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
    fn unsubscribe(&mut self) {
        if self.subscribed {
            let key = crate::placement::user_key(self.user);
            if let Some(user) = self.placement.running::<UserMsg>(&key) {
                let _ = user.cast(UserMsg::Unsubscribe(self.device));
            }
            self.subscribed = false;
        }
    }
}
