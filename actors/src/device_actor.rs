//! `DeviceActor`: one per device with open sockets. It owns those sockets' outbound queues:
//! the user's actor hands it every applied change once, and it fans the change out to each
//! socket of the device without ever waiting on a slow one. A socket whose bounded queue is
//! full is cut loose (the gateway closes it with 4008) and catches up by cursor.

use crate::idle::Idle;
pub use crate::messages::{DeviceMsg, LiveEvent, SocketHandle, SocketId};
use crate::placement::Placement;
use crate::user_actor::UserOp;
use dogear_storage::{DeviceId, UserId};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

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
                let origin = change.origin_socket;
                st.deliver(origin, LiveEvent::Change(change));
            }
            DeviceMsg::Notice(notice) => st.deliver(None, LiveEvent::Notice(notice)),
            DeviceMsg::Doc(doc) => st.deliver(None, LiveEvent::Doc(doc)),
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
    /// Hands `event` to every socket but `skip` (the one that made the change); a socket
    /// whose queue is full is cut loose (it resumes by cursor).
    fn deliver(&mut self, skip: Option<SocketId>, event: LiveEvent) {
        self.sockets.retain(|s| {
            if Some(s.id) == skip {
                return true;
            }
            match s.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.overflowed.store(true, Ordering::Release);
                    metrics::counter!("dogear_ws_overflow_closes_total").increment(1);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if self.sockets.is_empty() {
            self.unsubscribe();
        }
    }

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
