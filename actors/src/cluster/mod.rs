//! Membership of a cluster of Dogear nodes, over ractor_cluster.
//!
//! ractor_cluster connects nodes and replicates process groups, but it neither redials a lost
//! peer nor notices a silent (half-open) one, and it drops what it cannot decode without a
//! word. This module adds what a service needs on top: seeds dialled and redialled with
//! backoff, peers learned from each other, an application heartbeat that marks a silent peer
//! `suspect` and then `down` (and closes its session so that it can be dialled afresh), and the
//! live member list placement hashes keys over.

pub mod node_actor;
pub mod rendezvous;
pub mod tls;
pub mod wire;

use node_actor::{Hello, NODES_GROUP, NodeActor, NodeMsg};
use ractor::{Actor, ActorRef, rpc::CallResult};
use ractor_cluster::{NodeServer, NodeServerMessage};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// Unique and stable across restarts: keys hash to it.
    pub node_id: String,
    /// Where this node accepts peers.
    pub listen: SocketAddr,
    /// What peers are told to dial to reach this node.
    pub advertise: String,
    /// Addresses dialled at start and whenever their node is lost.
    pub seeds: Vec<String>,
    /// Names the cluster: nodes with another cookie are refused. Not a secret handshake.
    pub cookie: String,
    pub heartbeat: Duration,
    /// A peer silent this long is `down` and its keys move.
    pub failure_timeout: Duration,
    /// Mutual TLS between nodes; `None`: plain TCP (a private network only).
    pub tls: Option<Arc<tls::Tls>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Up,
    /// Missed a heartbeat: still owns its keys, which do not move on one slow answer.
    Suspect,
    /// Gone: its keys belong to the others until it comes back.
    Down,
}

impl MemberState {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }
}

/// A member as `GET /v1/cluster` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    pub node_id: String,
    pub state: MemberState,
    pub address: String,
    /// Keys (user and library actors) the member runs now, as of its last heartbeat.
    pub keys: u64,
    /// Milliseconds since the member last answered (0 for this node).
    pub last_seen_ms: u64,
    /// This node.
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// What this node's placement does with what other nodes send it.
pub trait Inbound: Send + Sync + 'static {
    /// Answers a forwarded request (both sides encoded with [`wire`]).
    fn call(&self, payload: Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;
    /// Delivers a one-way message.
    fn cast(&self, payload: Vec<u8>);
    /// Keys running here, for heartbeats.
    fn local_keys(&self) -> u64;
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("node {0} is not a live member")]
    NotMember(String),
    #[error("node {0} did not answer in time")]
    Timeout(String),
    #[error("node {0} is unreachable: {1}")]
    Unreachable(String, String),
}

struct Member {
    advertise: String,
    state: MemberState,
    last_seen: Instant,
    keys: u64,
    actor: Option<ActorRef<NodeMsg>>,
    /// ractor_cluster's id of the member's node (of its latest session).
    ractor_node: Option<u64>,
}

pub struct Inner {
    settings: ClusterSettings,
    started: Instant,
    /// Every seed answered, or the failure timeout passed since start: this node knows the
    /// members it will know, and may act as an owner.
    settled: std::sync::atomic::AtomicBool,
    members: RwLock<BTreeMap<String, Member>>,
    live: watch::Sender<Vec<String>>,
    inbound: OnceLock<Arc<dyn Inbound>>,
    server: ActorRef<NodeServerMessage>,
    node_actor: OnceLock<ActorRef<NodeMsg>>,
}

/// A running cluster membership. Cloning shares it.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

fn decode_failed(what: &str, e: &wire::WireError) {
    node_actor::log_decode_failure(what, e);
}

impl Inner {
    fn hello(&self) -> Hello {
        let peers = self
            .members
            .read()
            .map(|m| {
                m.iter()
                    .filter(|(_, m)| m.state != MemberState::Down)
                    .map(|(id, m)| (id.clone(), m.advertise.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Hello {
            node_id: self.settings.node_id.clone(),
            advertise: self.settings.advertise.clone(),
            keys: self.inbound.get().map_or(0, |i| i.local_keys()),
            peers,
        }
    }

    /// Records peers named in a heartbeat so that they are dialled too.
    fn learn(&self, h: &Hello) {
        if let Ok(mut members) = self.members.write() {
            note_members(&mut members, &self.settings.node_id, h);
        }
    }

    fn live_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .members
            .read()
            .map(|m| {
                m.iter()
                    .filter(|(_, m)| m.state != MemberState::Down)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        ids.push(self.settings.node_id.clone());
        ids.sort();
        ids
    }
}

impl Cluster {
    /// Starts listening for peers, joins the node group and starts the heartbeat, which
    /// dials the seeds at once.
    pub async fn start(settings: ClusterSettings) -> Result<Cluster, String> {
        let host = settings
            .advertise
            .rsplit_once(':')
            .map_or(settings.advertise.as_str(), |(h, _)| h)
            .to_string();
        let encryption = settings
            .tls
            .as_ref()
            .map(|t| ractor_cluster::IncomingEncryptionMode::Tls(t.acceptor.clone()));
        let server = NodeServer::new(
            settings.listen.port(),
            settings.cookie.clone(),
            settings.node_id.clone(),
            host,
            encryption,
            None,
        )
        .with_listen_addr(settings.listen.ip());
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| format!("cluster.listen {}: {e}", settings.listen))?;
        let (live, _) = watch::channel(vec![settings.node_id.clone()]);
        let inner = Arc::new(Inner {
            settings,
            started: Instant::now(),
            settled: std::sync::atomic::AtomicBool::new(false),
            members: RwLock::new(BTreeMap::new()),
            live,
            inbound: OnceLock::new(),
            server,
            node_actor: OnceLock::new(),
        });
        let (node, _) = Actor::spawn(None, NodeActor, Arc::downgrade(&inner))
            .await
            .map_err(|e| format!("cluster node actor: {e}"))?;
        let _ = inner.node_actor.set(node);
        describe_metrics();
        tokio::spawn(heartbeat(Arc::downgrade(&inner)));
        Ok(Cluster(inner))
    }

    pub fn node_id(&self) -> &str {
        &self.0.settings.node_id
    }

    /// Waits until the members are known: every seed answered, or the failure timeout has
    /// passed. A node that served before this would own every key alone for a moment (the
    /// store's checks keep that safe, but each watched folder would be scanned by every
    /// starting node).
    pub async fn settled(&self) {
        while !self.0.settled.load(std::sync::atomic::Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn set_inbound(&self, inbound: Arc<dyn Inbound>) {
        let _ = self.0.inbound.set(inbound);
    }

    /// Live members (this node included), sorted.
    pub fn live(&self) -> Vec<String> {
        self.0.live.borrow().clone()
    }

    /// Changes whenever the live member list does.
    pub fn watch_live(&self) -> watch::Receiver<Vec<String>> {
        self.0.live.subscribe()
    }

    /// The live member that owns `key`.
    pub fn owner(&self, key: &str) -> String {
        let live = self.0.live.borrow();
        rendezvous::owner(live.iter().map(String::as_str), key)
            .unwrap_or(&self.0.settings.node_id)
            .to_string()
    }

    pub fn members(&self) -> Vec<MemberView> {
        let mut out = vec![MemberView {
            node_id: self.0.settings.node_id.clone(),
            state: MemberState::Up,
            address: self.0.settings.advertise.clone(),
            keys: self.0.inbound.get().map_or(0, |i| i.local_keys()),
            last_seen_ms: 0,
            is_self: true,
        }];
        if let Ok(m) = self.0.members.read() {
            out.extend(m.iter().map(|(id, m)| MemberView {
                node_id: id.clone(),
                state: m.state,
                address: m.advertise.clone(),
                keys: m.keys,
                last_seen_ms: m.last_seen.elapsed().as_millis() as u64,
                is_self: false,
            }));
        }
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }

    fn actor_of(&self, node: &str) -> Result<ActorRef<NodeMsg>, ClusterError> {
        self.0
            .members
            .read()
            .ok()
            .and_then(|m| {
                m.get(node)
                    .filter(|m| m.state != MemberState::Down)
                    .and_then(|m| m.actor.clone())
            })
            .ok_or_else(|| ClusterError::NotMember(node.to_string()))
    }

    /// Sends a request to `node`'s placement and waits for its answer.
    pub async fn call(
        &self,
        node: &str,
        kind: &'static str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClusterError> {
        metrics::counter!("dogear_cluster_forwarded_total", "kind" => kind).increment(1);
        let mut actor = self.actor_of(node)?;
        // A session replaced under us (two nodes dialled each other, a reconnect) leaves a
        // stale handle that cannot even take the message: nothing was sent, so it is safe to
        // send again once the heartbeat has found the member's new session.
        for _ in 0..4 {
            match actor
                .call(|r| NodeMsg::Call(payload.clone(), r), Some(timeout))
                .await
            {
                Ok(CallResult::Success(b)) => return Ok(b),
                Ok(CallResult::Timeout) => {
                    metrics::counter!("dogear_cluster_forward_errors_total", "kind" => kind)
                        .increment(1);
                    return Err(ClusterError::Timeout(node.to_string()));
                }
                // Sent, but the session closed before the answer: it may have been applied.
                Ok(CallResult::SenderError) => break,
                Err(_) => {
                    let stale = actor.get_id();
                    let deadline = Instant::now() + self.0.settings.heartbeat * 3;
                    loop {
                        tokio::time::sleep(self.0.settings.heartbeat / 4).await;
                        match self.actor_of(node) {
                            Ok(a) if a.get_id() != stale => {
                                actor = a;
                                break;
                            }
                            Ok(_) if Instant::now() < deadline => {}
                            other => {
                                metrics::counter!("dogear_cluster_forward_errors_total", "kind" => kind)
                                    .increment(1);
                                other?;
                                return Err(ClusterError::Unreachable(
                                    node.to_string(),
                                    "no session".into(),
                                ));
                            }
                        }
                    }
                }
            }
        }
        metrics::counter!("dogear_cluster_forward_errors_total", "kind" => kind).increment(1);
        Err(ClusterError::Unreachable(
            node.to_string(),
            "the session closed".into(),
        ))
    }

    /// Sends a one-way message to `node`; messages to one node arrive in the order sent.
    pub fn cast(
        &self,
        node: &str,
        kind: &'static str,
        payload: Vec<u8>,
    ) -> Result<(), ClusterError> {
        let actor = self.actor_of(node)?;
        metrics::counter!("dogear_cluster_forwarded_total", "kind" => kind).increment(1);
        actor
            .cast(NodeMsg::Cast(payload))
            .map_err(|e| ClusterError::Unreachable(node.to_string(), e.to_string()))
    }

    /// Leaves the cluster: peers see the sessions close at once.
    pub fn shutdown(&self) {
        if let Some(a) = self.0.node_actor.get() {
            a.stop(Some("shutdown".into()));
        }
        self.0.server.stop(Some("shutdown".into()));
    }
}

fn describe_metrics() {
    for s in ["up", "suspect", "down"] {
        metrics::gauge!("dogear_cluster_members", "state" => s).set(0.0);
    }
    metrics::gauge!("dogear_cluster_members", "state" => "up").set(1.0);
    metrics::counter!("dogear_cluster_heartbeat_failures_total").increment(0);
}

/// Records the sender of a heartbeat and the peers it names, as `down` until they answer
/// this node's own heartbeats (so that they are dialled).
fn note_members(members: &mut BTreeMap<String, Member>, me: &str, h: &Hello) {
    let named =
        std::iter::once((&h.node_id, &h.advertise)).chain(h.peers.iter().map(|(i, a)| (i, a)));
    for (id, addr) in named {
        if id != me {
            members.entry(id.clone()).or_insert_with(|| Member {
                advertise: addr.clone(),
                state: MemberState::Down,
                last_seen: Instant::now(),
                keys: 0,
                actor: None,
                ractor_node: None,
            });
        }
    }
}

/// Per dial target: when to try next and how long to wait after that.
struct Backoff {
    next: Instant,
    delay: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the dialler remembers between heartbeats.
#[derive(Default)]
struct Dialer {
    backoff: HashMap<String, Backoff>,
    /// Which member each seed reached. A member a seed reaches is redialled through that seed
    /// only, never through the address it advertises: the operator's seeds say how this node
    /// reaches its peers (through a proxy, a tunnel, another interface).
    seed_members: HashMap<String, String>,
}

async fn heartbeat(weak: Weak<Inner>) {
    let mut dialer = Dialer::default();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let every = inner.settings.heartbeat;
        dial(&inner, &mut dialer).await;
        ping_all(&inner).await;
        publish(&inner);
        drop(inner);
        tokio::time::sleep(every).await;
    }
}

/// Dials the seeds whose member is not up, and every other known member that is down, each
/// with its own backoff.
async fn dial(inner: &Arc<Inner>, dialer: &mut Dialer) {
    let sessions = match inner
        .server
        .call(NodeServerMessage::GetSessions, Some(Duration::from_secs(2)))
        .await
    {
        Ok(CallResult::Success(s)) => s,
        _ => return,
    };
    // Outgoing sessions: the address dialled, and the peer's ractor node id.
    let outgoing: Vec<(String, u64)> = sessions
        .iter()
        .filter(|(_, s)| !s.is_server)
        .map(|(node, s)| (s.peer_addr.clone(), *node))
        .collect();
    // Members: id, state, advertised address, ractor node id.
    let members: Vec<(String, MemberState, String, Option<u64>)> = match inner.members.read() {
        Ok(m) => m
            .iter()
            .map(|(id, m)| (id.clone(), m.state, m.advertise.clone(), m.ractor_node))
            .collect(),
        Err(_) => return,
    };
    let state_of = |id: &str| members.iter().find(|m| m.0 == id).map(|m| m.1);
    let mut targets: Vec<String> = Vec::new();
    let mut all_answered = true;
    for seed in &inner.settings.seeds {
        let resolved: Vec<String> = match tokio::net::lookup_host(seed.as_str()).await {
            Ok(a) => a.map(|a| a.to_string()).collect(),
            Err(_) => Vec::new(),
        };
        let session = outgoing.iter().find(|(addr, _)| resolved.contains(addr));
        if let Some((_, node)) = session
            && let Some(m) = members.iter().find(|m| m.3 == Some(*node))
        {
            dialer.seed_members.insert(seed.clone(), m.0.clone());
        }
        let healthy = session.is_some()
            || dialer
                .seed_members
                .get(seed)
                .and_then(|id| state_of(id))
                .is_some_and(|st| st != MemberState::Down);
        let answered = dialer
            .seed_members
            .get(seed)
            .and_then(|id| state_of(id))
            .is_some_and(|st| st == MemberState::Up);
        if !answered {
            all_answered = false;
        }
        if healthy {
            dialer.backoff.remove(seed);
        } else {
            targets.push(seed.clone());
        }
    }
    if all_answered || inner.started.elapsed() >= inner.settings.failure_timeout {
        inner
            .settled
            .store(true, std::sync::atomic::Ordering::Release);
    }
    for (id, state, advertise, _) in &members {
        let via_seed = dialer.seed_members.values().any(|m| m == id);
        if *state == MemberState::Down && !via_seed && *advertise != inner.settings.advertise {
            targets.push(advertise.clone());
        }
    }
    targets.sort();
    targets.dedup();
    let now = Instant::now();
    for target in targets {
        let b = dialer.backoff.entry(target.clone()).or_insert(Backoff {
            next: now,
            delay: inner.settings.heartbeat,
        });
        if b.next > now {
            continue;
        }
        b.next = now + b.delay;
        b.delay = (b.delay * 2).min(MAX_BACKOFF);
        let server = inner.server.clone();
        let tls = inner.settings.tls.clone();
        tokio::spawn(async move {
            let connect = async {
                match &tls {
                    Some(t) => {
                        ractor_cluster::client_connect_enc(
                            &server,
                            target.as_str(),
                            t.connector.clone(),
                            t.name.clone(),
                        )
                        .await
                    }
                    None => ractor_cluster::client_connect(&server, target.as_str()).await,
                }
            };
            let r = tokio::time::timeout(Duration::from_secs(2), connect).await;
            match r {
                Ok(Ok(())) => tracing::debug!(%target, "dialled cluster peer"),
                Ok(Err(e)) => tracing::debug!(%target, error = %e, "cluster peer not reachable"),
                Err(_) => tracing::debug!(%target, "dialling cluster peer timed out"),
            }
        });
    }
}

/// Heartbeats every node in the node group; updates states from the answers.
async fn ping_all(inner: &Arc<Inner>) {
    let cells: Vec<ActorRef<NodeMsg>> = ractor::pg::get_members(&NODES_GROUP.to_string())
        .into_iter()
        .filter(|c| !c.get_id().is_local())
        .map(ActorRef::from)
        .collect();
    let hello = wire::encode(&inner.hello());
    let timeout = inner.settings.heartbeat.max(Duration::from_millis(100));
    let pings = cells.into_iter().map(|actor| {
        let hello = hello.clone();
        async move {
            let r = actor
                .call(|p| NodeMsg::Hello(hello, p), Some(timeout))
                .await;
            match r {
                Ok(CallResult::Success(b)) => match wire::decode::<Hello>(&b) {
                    Ok(h) => Some((h, actor)),
                    Err(e) => {
                        decode_failed("hello", &e);
                        None
                    }
                },
                _ => None,
            }
        }
    });
    let answers: Vec<(Hello, ActorRef<NodeMsg>)> = futures_util::future::join_all(pings)
        .await
        .into_iter()
        .flatten()
        .collect();
    let now = Instant::now();
    let mut lost = Vec::new();
    if let Ok(mut members) = inner.members.write() {
        let mut answered = Vec::new();
        for (h, actor) in answers {
            if h.node_id == inner.settings.node_id {
                tracing::error!(node_id = %h.node_id, "another node uses this node's id; fix cluster.node_id");
                continue;
            }
            answered.push(h.node_id.clone());
            note_members(&mut members, &inner.settings.node_id, &h);
            let Some(m) = members.get_mut(&h.node_id) else {
                continue;
            };
            if m.state != MemberState::Up {
                tracing::info!(node = %h.node_id, address = %h.advertise, "cluster member up");
            }
            m.state = MemberState::Up;
            m.last_seen = now;
            m.keys = h.keys;
            m.advertise = h.advertise.clone();
            m.ractor_node = Some(actor.get_id().node());
            m.actor = Some(actor);
        }
        for (id, m) in members.iter_mut() {
            if answered.contains(id) || m.state == MemberState::Down {
                continue;
            }
            metrics::counter!("dogear_cluster_heartbeat_failures_total").increment(1);
            // No session at all for two heartbeats (its process died, the connection
            // closed): down. Not at the first miss: two nodes that dialled each other at once
            // replace one session by the other, and for a moment neither is there.
            // A session that stays open but silent (a cut network): suspect, then down after
            // the failure timeout.
            let session_gone = m.actor.as_ref().is_none_or(|a| {
                !ractor::pg::get_members(&NODES_GROUP.to_string())
                    .iter()
                    .any(|c| c.get_id() == a.get_id())
            }) && m.last_seen.elapsed() >= inner.settings.heartbeat * 2;
            if session_gone || m.last_seen.elapsed() >= inner.settings.failure_timeout {
                tracing::warn!(node = %id, silent_ms = m.last_seen.elapsed().as_millis() as u64, "cluster member down");
                m.state = MemberState::Down;
                if let Some(a) = m.actor.take() {
                    lost.push(a.get_id().node());
                }
            } else if m.state == MemberState::Up {
                tracing::warn!(node = %id, "cluster member suspect: missed a heartbeat");
                m.state = MemberState::Suspect;
            }
        }
    }
    // Close the sessions of members declared down, so a half-open connection does not linger
    // and the member can be dialled afresh when it answers again.
    if !lost.is_empty()
        && let Ok(CallResult::Success(sessions)) = inner
            .server
            .call(NodeServerMessage::GetSessions, Some(Duration::from_secs(2)))
            .await
    {
        for (node, s) in sessions {
            if lost.contains(&node) {
                s.actor.stop(Some("member down".into()));
            }
        }
    }
}

/// Publishes the live list (when it changed) and the member gauges.
fn publish(inner: &Arc<Inner>) {
    let live = inner.live_ids();
    inner.live.send_if_modified(|cur| {
        if *cur != live {
            tracing::info!(members = ?live, "cluster membership changed");
            *cur = live.clone();
            true
        } else {
            false
        }
    });
    let mut counts = [1u64, 0, 0];
    if let Ok(m) = inner.members.read() {
        for m in m.values() {
            counts[match m.state {
                MemberState::Up => 0,
                MemberState::Suspect => 1,
                MemberState::Down => 2,
            }] += 1;
        }
    }
    for (s, n) in ["up", "suspect", "down"].iter().zip(counts) {
        metrics::gauge!("dogear_cluster_members", "state" => *s).set(n as f64);
    }
}
