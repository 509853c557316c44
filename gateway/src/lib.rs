//! Dogear's gateway: warp routes that turn HTTP and WebSocket traffic into calls on
//! [`dogear_actors::Dogear`]. One module per protocol; no business rules here.

pub mod error;
pub mod http;
pub mod kobo;
pub mod kosync;
pub mod opds;
mod ops;
pub mod rest;
pub mod web;
pub mod wire;
pub mod ws;

use bytes::{Buf, Bytes, BytesMut};
use dogear_actors::Dogear;
use error::ApiError;
use futures_util::{Stream, StreamExt};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method};
use warp::reply::Response;

#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// Largest JSON body accepted (413 above).
    pub max_body_bytes: usize,
    /// Largest upload accepted (413 above).
    pub max_upload_bytes: u64,
    /// Server pings idle sockets this often; a socket silent for three periods is closed.
    pub ws_ping_interval: Duration,
    /// Where devices reach this server (no trailing slash); else from each request.
    pub public_url: Option<String>,
    /// Most entries in one Kobo library-sync page.
    pub kobo_page_size: usize,
    /// Answer the Kobo's OAuth calls here rather than leaving them to Kobo.
    pub kobo_local_oauth: bool,
    /// KOReader's "Register" may create an account (when registration is open too).
    pub koreader_registration: bool,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            max_body_bytes: 1 << 20,
            max_upload_bytes: 512 << 20,
            ws_ping_interval: Duration::from_secs(30),
            public_url: None,
            kobo_page_size: 100,
            kobo_local_oauth: true,
            koreader_registration: false,
        }
    }
}

/// What every handler may reach.
pub struct Ctx {
    pub app: Arc<Dogear>,
    pub metrics: PrometheusHandle,
    pub settings: GatewaySettings,
    /// Flips to `true` when the node shuts down: sockets close with 1001.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Registers the metrics the API contract lists, so they appear before first use.
pub fn describe_metrics() {
    metrics::gauge!("dogear_ws_connections").set(0.0);
    for kind in ["user", "device", "library"] {
        metrics::gauge!("dogear_actors_active", "kind" => kind).increment(0.0);
    }
    for outcome in ["applied", "behind", "duplicate", "stale"] {
        metrics::counter!("dogear_progress_writes_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["done", "failed", "retry"] {
        metrics::counter!("dogear_import_results_total", "outcome" => outcome).increment(0);
    }
    metrics::gauge!("dogear_import_running").set(0.0);
    metrics::counter!("dogear_kobo_sync_pages_total").increment(0);
    metrics::counter!("dogear_kobo_sync_entries_total").increment(0);
    metrics::counter!("dogear_store_version_conflicts_total", "kind" => "progress").increment(0);
}

pub fn routes(ctx: Arc<Ctx>) -> BoxedFilter<(Response,)> {
    let with_ctx = {
        let ctx = ctx.clone();
        warp::any().map(move || ctx.clone())
    };
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let sync = warp::path!("v1" / "sync")
        .and(warp::get())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(with_ctx.clone())
        .then(|on_upgrade, q: String, headers, ctx| async move {
            ws::upgrade(ctx, on_upgrade, q, headers).await
        });
    let any = warp::method()
        .and(warp::path::full())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<Peer>().map(|p: Option<Peer>| p.map(|p| p.0)))
        .and(warp::body::stream())
        .and(with_ctx)
        .then(handle);
    sync.or(any).unify().boxed()
}

async fn handle<S, B>(
    method: Method,
    path: warp::path::FullPath,
    raw_query: String,
    headers: HeaderMap,
    remote: Option<SocketAddr>,
    body: S,
    ctx: Arc<Ctx>,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let started = Instant::now();
    let request_id = request_id(&headers);
    let path = path.as_str().to_string();
    // A Kobo's token is its password: it never reaches a log line.
    let logged = web::redact(&kobo::redact(&path));
    let span = tracing::info_span!("http", id = %request_id, method = %method, path = %logged);
    let (route, mut resp) = async {
        if method == Method::POST && path.trim_end_matches('/') == "/v1/books/upload" {
            let query = match http::parse_query(&raw_query) {
                Ok(q) => q,
                Err(e) => return ("/v1/books/upload", http::error(&e)),
            };
            return match rest::files::upload(&ctx, &headers, &query, body).await {
                Ok(r) => ("/v1/books/upload", r),
                Err(e) => {
                    let mut r = http::error(&e);
                    if e.code == error::Code::PayloadTooLarge {
                        // The rest of the body is left unread: the connection cannot be reused.
                        r.headers_mut().insert(
                            warp::http::header::CONNECTION,
                            HeaderValue::from_static("close"),
                        );
                    }
                    ("/v1/books/upload", r)
                }
            };
        }
        let body = match read_body(body, ctx.settings.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => {
                // The rest of the body is left unread: the connection cannot be reused.
                let mut r = http::error(&e);
                r.headers_mut().insert(
                    warp::http::header::CONNECTION,
                    HeaderValue::from_static("close"),
                );
                return ("unmatched", r);
            }
        };
        // Devices and catalog apps send odd query strings; they must never fail a call.
        let device_call =
            path.starts_with("/kobo/") || path.starts_with("/api/") || opds::is_opds(&path);
        let query = match http::parse_query(&raw_query) {
            Ok(q) => q,
            // A Kobo's odd query strings (`DiffRequests=[{...}]`) must never fail its sync.
            Err(_) if device_call => Default::default(),
            Err(e) => return ("unmatched", http::error(&e)),
        };
        let req = http::Req {
            method: method.clone(),
            path,
            query,
            headers,
            body,
            remote,
        };
        if opds::is_opds(&req.path) {
            return opds::dispatch(&ctx, req).await;
        }
        // KOReader's calls first: a user may have typed any prefix, `/books` among them.
        if let Some(call) = kosync::route(&req.method, &req.path) {
            return kosync::dispatch(&ctx, req, call).await;
        }
        if web::is_web(&req.path) {
            return web::dispatch(&ctx, req).await;
        }
        if req.path.starts_with("/kobo/") {
            return kobo::dispatch(&ctx, req).await;
        }
        if req.path.starts_with("/api/") {
            return kobo::reading_services(&ctx, &req).await;
        }
        rest::dispatch(&ctx, req).await
    }
    .instrument(span.clone())
    .await;
    let status = resp.status().as_u16();
    record(route, &method, status, started);
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "done"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    // Which node answered: operators follow a request through a cluster with it.
    if let Ok(v) = HeaderValue::from_str(ctx.app.node_id()) {
        resp.headers_mut().insert("x-dogear-node", v);
    }
    // Every answer is data: never to be sniffed into another type, framed by another site,
    // or to leak its URL (which may hold a device token) to the next site. A route serving
    // pages sets its own, stricter, policy first.
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("content-security-policy", "frame-ancestors 'none'"),
        ("x-frame-options", "DENY"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    resp
}

pub(crate) fn record(route: &'static str, method: &Method, status: u16, started: Instant) {
    let labels = [
        ("route", route.to_string()),
        ("method", method.as_str().to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!("dogear_http_requests_total", &labels).increment(1);
    metrics::histogram!("dogear_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
}

/// The caller's `X-Request-Id` if it is short and printable, else a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Collects the body, refusing (413) as soon as it grows past `max`.
async fn read_body<S, B>(mut body: S, max: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| ApiError::bad_request("body: could not be read"))?;
        if buf.len() + chunk.remaining() > max {
            return Err(ApiError::too_large(format!(
                "body: larger than {max} bytes"
            )));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// The connection limits of [`serve`].
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// Time a connection has to send a whole request head, counted from when it is ready for
    /// one: a new connection, or a kept-alive one after its last response. A client that sends
    /// nothing, or drips a header line now and then, is closed when it runs out.
    pub header_read_timeout: Duration,
    /// Reuse connections for further requests.
    pub keep_alive: bool,
    /// Open HTTP connections at most; beyond it new ones wait in the listen backlog until one
    /// closes. Upgraded WebSockets leave the count (their own pings close dead ones).
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive: true,
            max_connections: 4096,
        }
    }
}

/// The peer of a connection, put in each request's extensions by [`serve`].
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests end.
/// hyper runs each connection here rather than inside warp so that the limits apply.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<Ctx>,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let filter = routes(ctx);
    let max = limits.max_connections.clamp(1, u32::MAX as usize >> 4);
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = warp::service(filter.clone());
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Peer(addr));
                let mut svc = svc.clone();
                tower_service::Service::call(&mut svc, req)
            });
        // HTTP/1 only, without protocol sniffing: a sniffing server reads the first bytes
        // before the header timer starts, so a client that sends nothing would never time out.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(limits.keep_alive);
        let mut stopping = stop_rx.clone();
        tokio::spawn(async move {
            let conn = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopping.changed() => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends: all of them back means all ended.
    let _ = permits.acquire_many(max as u32).await;
}
