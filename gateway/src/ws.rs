//! `GET /v1/sync`: the WebSocket protocol (hello, progress/ack, live progress, resume, error).
//! A socket's live changes come from its device actor through a bounded queue; when that
//! queue overflows the actor lets go and we close with 4008 so the client resumes by cursor.

use crate::Ctx;
use crate::error::ApiError;
use crate::http::{self, bearer};
use crate::wire::{self, ProgressBody};
use dogear_actors::FeedCursor;
use dogear_actors::device_actor::LiveEvent;
use dogear_actors::device_actor::SocketId;
use dogear_actors::user_actor::Change;
use dogear_storage::{BookId, DeviceId, UserId};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::http::header::{
    CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use warp::http::{HeaderMap, Method};
use warp::reply::Response;

type WebSocket = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Close code for a client that could not keep up.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// A frame the client does not take within this long ends the connection.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const MAX_FRAME: usize = 64 * 1024;

/// Completes the upgrade itself rather than through `warp::ws`, which cannot size
/// tungstenite's buffers: its default 128 KiB read buffer is zero-filled on the first read,
/// 128 KiB resident per idle socket. Sockets here carry small JSON frames.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_FRAME)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
}

pub async fn upgrade(
    ctx: Arc<Ctx>,
    on_upgrade: Option<OnUpgrade>,
    raw_query: String,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let resp = match handshake(&ctx, on_upgrade, &raw_query, &headers).await {
        Ok((user, device, on_upgrade, accept)) => {
            let ctx2 = ctx.clone();
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let io = hyper_util::rt::TokioIo::new(upgraded);
                        let ws = WebSocketStream::from_raw_socket(
                            io,
                            Role::Server,
                            Some(socket_config()),
                        )
                        .await;
                        session(ctx2, user, device, ws).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                }
            });
            let mut r = http::empty(warp::http::StatusCode::SWITCHING_PROTOCOLS);
            let h = r.headers_mut();
            h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
            if let Ok(v) = HeaderValue::from_str(&accept) {
                h.insert(SEC_WEBSOCKET_ACCEPT, v);
            }
            r
        }
        Err(e) => http::error(&e),
    };
    crate::record("/v1/sync", &Method::GET, resp.status().as_u16(), started);
    resp
}

/// Checks the upgrade request and the caller; returns what the session needs.
async fn handshake(
    ctx: &Ctx,
    on_upgrade: Option<OnUpgrade>,
    raw_query: &str,
    headers: &HeaderMap,
) -> Result<(UserId, DeviceId, OnUpgrade, String), ApiError> {
    let has = |name: warp::http::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let key = headers.get(SEC_WEBSOCKET_KEY);
    let (Some(on_upgrade), Some(key), true, true) = (
        on_upgrade,
        key,
        has(CONNECTION, "upgrade"),
        has(UPGRADE, "websocket"),
    ) else {
        return Err(ApiError::bad_request(
            "upgrade: /v1/sync needs a WebSocket upgrade request",
        ));
    };
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return Err(ApiError::field("sec-websocket-version", "must be 13"));
    }
    let (user, device) = authorize(ctx, raw_query, headers).await?;
    Ok((user, device, on_upgrade, derive_accept_key(key.as_bytes())))
}

async fn authorize(
    ctx: &Ctx,
    raw_query: &str,
    headers: &HeaderMap,
) -> Result<(UserId, DeviceId), ApiError> {
    let q = http::parse_query(raw_query)?;
    let token = bearer(headers)
        .or_else(|| q.get("access_token").map(String::as_str))
        .ok_or_else(|| {
            ApiError::unauthorized("Authorization: missing bearer token or access_token")
        })?;
    let user = ctx.app.accounts().authenticate(token)?;
    let device: DeviceId = q
        .get("device_id")
        .ok_or_else(|| ApiError::field("device_id", "is required"))?
        .parse()
        .map_err(|_| ApiError::field("device_id", "must be a device id"))?;
    if !ctx.app.has_device(user, device).await? {
        return Err(ApiError::field("device_id", "is not one of your devices"));
    }
    Ok((user, device))
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
}

/// A `progress` frame is the POST body plus `book_id`; parsed in two passes (not with
/// `serde(flatten)`) so that errors keep naming the field.
#[derive(Deserialize)]
struct FrameBook {
    book_id: BookId,
}

#[derive(Deserialize)]
struct ResumeFrame {
    cursor: String,
}

struct Session {
    ctx: Arc<Ctx>,
    user: UserId,
    device: DeviceId,
    socket: SocketId,
    /// Highest log seq this socket has been sent; live changes at or below it are repeats.
    sent: u64,
}

async fn session(ctx: Arc<Ctx>, user: UserId, device: DeviceId, ws: WebSocket) {
    use tracing::Instrument;
    let span = tracing::info_span!("ws", %user, %device);
    run_session(ctx, user, device, ws).instrument(span).await
}

async fn run_session(ctx: Arc<Ctx>, user: UserId, device: DeviceId, ws: WebSocket) {
    let (tx, mut rx) = ws.split();
    let mut tx = TimedSink(tx);
    let feed = match ctx.app.attach_socket(user, device).await {
        Ok(f) => f,
        Err(e) => {
            let e = ApiError::from(e);
            let _ = tx.send(Message::text(error_frame(&e, None))).await;
            let _ = tx.send(close_frame(1011, "unavailable")).await;
            return;
        }
    };
    metrics::gauge!("dogear_ws_connections").increment(1.0);
    tracing::debug!(socket = feed.socket.0, head = feed.head, "socket attached");
    let mut s = Session {
        ctx: ctx.clone(),
        user,
        device,
        socket: feed.socket,
        sent: feed.head,
    };
    let mut live = feed.rx;
    let overflowed = feed.overflowed;
    let mut shutdown = ctx.shutdown.clone();
    let period = ctx.settings.ws_ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut last_heard = Instant::now();

    let hello =
        json!({"type": "hello", "cursor": wire::cursor(FeedCursor::Log(feed.head))}).to_string();
    let mut close: Option<(u16, &'static str)> = None;
    if tx.send(Message::text(hello)).await.is_err() {
        close = Some((1011, "send failed"));
    }
    while close.is_none() {
        tokio::select! {
            frame = rx.next() => {
                last_heard = Instant::now();
                match frame {
                    None => break,
                    Some(Err(e)) => {
                        // Say why before closing, where the socket still takes a frame.
                        if let Some((code, reason, err)) = read_error(&e) {
                            let _ = tx.send(Message::text(error_frame(&err, None))).await;
                            close = Some((code, reason));
                        } else {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(text))) => {
                        let text = text.as_str().to_string();
                        for out in s.on_text(&text).await {
                            if tx.send(Message::text(out)).await.is_err() {
                                close = Some((1011, "send failed"));
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let f = error_frame(&ApiError::bad_request("frame: must be JSON text"), None);
                        if tx.send(Message::text(f)).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                }
            }
            change = live.recv() => {
                match change {
                    Some(LiveEvent::Change(c)) => {
                        if let Some(out) = s.push(&c)
                            && tx.send(Message::text(out)).await.is_err()
                        {
                            // A client that read nothing for the whole send deadline is too
                            // slow, whether its queue or its TCP buffer filled first.
                            close = Some((CLOSE_TOO_SLOW, "too slow; resume by cursor"));
                        }
                    }
                    Some(LiveEvent::Notice(n)) => {
                        if tx.send(Message::text(notice_frame(&n))).await.is_err() {
                            close = Some((CLOSE_TOO_SLOW, "too slow; resume by cursor"));
                        }
                    }
                    Some(LiveEvent::Doc(d)) => {
                        // `note_changed`, `todo_changed`, `annotation_changed`: the document
                        // as `GET` answers it (a deletion has `deleted: true`).
                        let frame = json!({
                            "type": format!("{}_changed", d.kind),
                            "document": crate::rest::doc_json(&d),
                        });
                        if tx.send(Message::text(frame.to_string())).await.is_err() {
                            close = Some((CLOSE_TOO_SLOW, "too slow; resume by cursor"));
                        }
                    }
                    Some(LiveEvent::CatchUp) => {
                        // The user's owner moved: read what this socket may have missed.
                        let from = s.sent;
                        for out in s.resume(from).await {
                            if tx.send(Message::text(out)).await.is_err() {
                                close = Some((1011, "send failed"));
                                break;
                            }
                        }
                    }
                    None if overflowed.load(Ordering::Acquire) => {
                        close = Some((CLOSE_TOO_SLOW, "too slow; resume by cursor"));
                    }
                    None => close = Some((1012, "device session ended; reconnect")),
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > period * 3 {
                    close = Some((1001, "no answer to pings"));
                } else if tx.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => close = Some((1001, "server shutting down")),
        }
    }
    if let Some((code, reason)) = close {
        let _ = tx.send(close_frame(code, reason)).await;
    }
    let _ = tx.close().await;
    ctx.app.detach_socket(device, s.socket);
    metrics::gauge!("dogear_ws_connections").decrement(1.0);
}

/// The close code, reason and error frame for a frame the socket could not read: too large
/// (1009) or text that is not UTF-8 (1007); `None` for a connection that is simply gone.
fn read_error(e: &tokio_tungstenite::tungstenite::Error) -> Option<(u16, &'static str, ApiError)> {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Capacity(_) => Some((
            1009,
            "frame too large",
            ApiError::too_large(format!("frame: larger than {MAX_FRAME} bytes")),
        )),
        E::Utf8(_) => Some((
            1007,
            "text frame is not UTF-8",
            ApiError::bad_request("frame: a text frame must be valid UTF-8"),
        )),
        E::Protocol(_) => Some((
            1002,
            "protocol error",
            ApiError::bad_request("frame: not a valid WebSocket frame"),
        )),
        _ => None,
    }
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

/// The socket's sending half, with a deadline on every send.
struct TimedSink(futures_util::stream::SplitSink<WebSocket, Message>);

impl TimedSink {
    async fn send(&mut self, m: Message) -> Result<(), ()> {
        match tokio::time::timeout(SEND_TIMEOUT, self.0.send(m)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
    async fn close(&mut self) -> Result<(), ()> {
        match tokio::time::timeout(SEND_TIMEOUT, self.0.close()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
}

fn error_frame(e: &ApiError, event_id: Option<&Value>) -> String {
    let mut v = json!({"type": "error", "code": e.code.as_str(), "message": e.message});
    if let Some(id) = event_id {
        v["event_id"] = id.clone();
    }
    v.to_string()
}

/// Parses the frame's text as `T`; errors name the field, as the REST API's do.
fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    http::parse_json(text.as_bytes(), "frame")
}

impl Session {
    /// Answers one text frame with the frames to send back, in order.
    async fn on_text(&mut self, text: &str) -> Vec<String> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return vec![error_frame(
                    &ApiError::bad_request("frame: expected a JSON object"),
                    None,
                )];
            }
        };
        let kind = match parse::<Frame>(text) {
            Ok(f) => f.kind,
            Err(_) => {
                return vec![error_frame(
                    &ApiError::bad_request("type: missing or not a string"),
                    None,
                )];
            }
        };
        match kind.as_str() {
            "progress" => vec![self.on_progress(text, &value).await],
            // Sockets only hand out log cursors (hello, pushes), so only those resume.
            "resume" => match parse::<ResumeFrame>(text)
                .and_then(|r| wire::parse_cursor("cursor", &r.cursor))
            {
                Ok(FeedCursor::Log(c)) => self.resume(c).await,
                Ok(FeedCursor::Snapshot { .. }) => vec![error_frame(
                    &ApiError::bad_request(
                        "cursor: a snapshot cursor cannot resume a socket; use the hello cursor",
                    ),
                    None,
                )],
                Err(e) => vec![error_frame(&e, None)],
            },
            "ping" => vec![json!({"type": "pong"}).to_string()],
            other => vec![error_frame(
                &ApiError::bad_request(format!("type: unknown frame type {other:?}")),
                None,
            )],
        }
    }

    async fn on_progress(&mut self, text: &str, value: &Value) -> String {
        let event_id = value.get("event_id").cloned();
        let parsed = parse::<FrameBook>(text)
            .and_then(|b| parse::<ProgressBody>(text).map(|body| body.into_write(b.book_id)));
        let write = match parsed {
            Ok(w) => w,
            Err(e) => return error_frame(&e, event_id.as_ref()),
        };
        match self
            .ctx
            .app
            .write_progress(self.user, write, Some(self.socket))
            .await
        {
            Ok(o) => {
                let mut ack = wire::write_outcome(&o);
                ack["type"] = json!("ack");
                ack["event_id"] = event_id.unwrap_or(Value::Null);
                ack.to_string()
            }
            Err(e) => {
                let e = ApiError::from(e);
                error_frame(&e, event_id.as_ref())
            }
        }
    }

    /// Every applied change after `cursor`, oldest first; live changes then continue.
    async fn resume(&mut self, cursor: u64) -> Vec<String> {
        let mut out = Vec::new();
        let mut after = cursor;
        loop {
            match self
                .ctx
                .app
                .changes(self.user, Some(FeedCursor::Log(after)), 500)
                .await
            {
                Ok((items, next)) => {
                    if items.is_empty() {
                        break;
                    }
                    for (seq, state) in &items {
                        out.push(progress_frame(*seq, state, state.device_id));
                    }
                    if let FeedCursor::Log(n) = next {
                        after = n;
                    }
                }
                Err(e) => {
                    let e = ApiError::from(e);
                    out.push(error_frame(&e, None));
                    return out;
                }
            }
        }
        // From here on, only live changes newer than what the backlog held are news.
        self.sent = self.sent.max(after);
        tracing::debug!(device = %self.device, from = cursor, to = after, "resumed");
        out
    }

    fn push(&mut self, c: &Change) -> Option<String> {
        if c.seq <= self.sent {
            return None;
        }
        self.sent = c.seq;
        Some(progress_frame(c.seq, &c.state, c.origin_device))
    }
}

/// A change in one of the user's libraries: `{"type": kind, "library_id", ...}` with the
/// member, role, name or book it is about when it is about one.
fn notice_frame(n: &dogear_actors::messages::LibraryNotice) -> String {
    let mut v = json!({"type": n.kind.as_str(), "library_id": n.library_id, "at": n.at});
    if let Some(u) = n.user_id {
        v["user_id"] = json!(u);
    }
    if let Some(r) = n.role {
        v["role"] = json!(r);
    }
    if let Some(name) = &n.name {
        v["name"] = json!(name);
    }
    if let Some(b) = n.book_id {
        v["book_id"] = json!(b);
    }
    v.to_string()
}

fn progress_frame(seq: u64, state: &dogear_storage::ProgressState, origin: DeviceId) -> String {
    json!({
        "type": "progress",
        "state": wire::state(state),
        "origin_device_id": origin,
        "cursor": wire::cursor(FeedCursor::Log(seq)),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_errors_name_the_field() {
        let t = r#"{"type":"progress","book_id":"7afc9d30-2ec6-455a-a869-2885150e22e2","event_id":"7afc9d30-2ec6-455a-a869-2885150e22e2","device_id":"7afc9d30-2ec6-455a-a869-2885150e22e2","percent":140,"client_ts":"2026-01-01T00:00:00Z"}"#;
        let e = parse::<ProgressBody>(t).err().unwrap();
        assert!(e.message.starts_with("percent:"), "{}", e.message);
    }
}
