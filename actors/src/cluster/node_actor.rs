//! `NodeActor`: one per node, the only actor other nodes talk to. It is found through the
//! process group [`NODES_GROUP`], answers heartbeats, and hands forwarded requests and pushes
//! to this node's placement. Its messages carry opaque, versioned bytes (`wire`): the one
//! message type that crosses the network is this one, so a rolling upgrade only has to agree
//! on these three variants.

use super::Inner;
use super::wire::{self, WireError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use std::sync::Weak;

/// The process group every node's `NodeActor` joins.
pub const NODES_GROUP: &str = "dogear.nodes";

#[derive(RactorClusterMessage)]
pub enum NodeMsg {
    /// A heartbeat: the caller's [`Hello`] in, this node's [`Hello`] out.
    #[rpc]
    Hello(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// A request for an actor this node owns; the answer is the placement's encoded reply.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// A one-way message (a live change for sockets on this node), delivered in send order.
    Cast(Vec<u8>),
}

/// Who a node is, exchanged on every heartbeat.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Hello {
    pub node_id: String,
    pub advertise: String,
    /// Keys (user and library actors) running on this node now.
    pub keys: u64,
    /// The members this node knows, `(node_id, advertise)`, so that a node that knows only
    /// one seed learns the others.
    pub peers: Vec<(String, String)>,
}

pub struct NodeActor;

impl Actor for NodeActor {
    type Msg = NodeMsg;
    type State = Weak<Inner>;
    type Arguments = Weak<Inner>;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        inner: Weak<Inner>,
    ) -> Result<Weak<Inner>, ActorProcessingErr> {
        ractor::pg::join(NODES_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(inner)
    }

    async fn handle(
        &self,
        _myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        inner: &mut Weak<Inner>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(inner) = inner.upgrade() else {
            return Ok(());
        };
        match msg {
            NodeMsg::Hello(from, reply) => {
                match wire::decode::<Hello>(&from) {
                    Ok(h) => inner.learn(&h),
                    Err(e) => log_decode_failure("hello", &e),
                }
                let _ = reply.send(wire::encode(&inner.hello()));
            }
            NodeMsg::Call(payload, reply) => {
                // Each call runs on its own task: the owning actor serializes what must be
                // serialized; this actor must not make one slow key wait for another.
                match inner.inbound.get().cloned() {
                    Some(inbound) => {
                        tokio::spawn(async move {
                            let _ = reply.send(inbound.call(payload).await);
                        });
                    }
                    None => {
                        let _ = reply.send(Vec::new());
                    }
                }
            }
            NodeMsg::Cast(payload) => {
                if let Some(inbound) = inner.inbound.get() {
                    inbound.cast(payload);
                }
            }
        }
        Ok(())
    }
}

/// Logs and counts a payload this node could not read: ractor_cluster itself drops such
/// messages without a word, which would leave the sender waiting for a timeout.
pub fn log_decode_failure(what: &str, e: &WireError) {
    metrics::counter!("dogear_cluster_decode_failures_total", "kind" => what.to_string())
        .increment(1);
    tracing::warn!(kind = what, error = %e, "cluster payload refused");
}
