//! Health, readiness and metrics: for load balancers and Prometheus, no auth.

use crate::Ctx;
use crate::http;
use serde_json::json;
use warp::Reply;
use warp::http::StatusCode;
use warp::http::header::{CONTENT_TYPE, HeaderValue};
use warp::reply::Response;

/// Liveness: answers without touching storage, so it measures the gateway alone.
pub fn health() -> Response {
    http::json(StatusCode::OK, &json!({"status": "ok"}))
}

pub async fn ready(ctx: &Ctx) -> Response {
    match tokio::time::timeout(std::time::Duration::from_secs(2), ctx.app.ready()).await {
        Ok(Ok(())) => http::json(
            StatusCode::OK,
            &json!({"status": "ready", "checks": {"storage": "ok"}}),
        ),
        _ => http::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "unavailable",
                "checks": {"storage": "failed"},
                "error": {"code": "unavailable", "message": "storage: not answering"}
            }),
        ),
    }
}

pub fn metrics(ctx: &Ctx) -> Response {
    let mut r = ctx.metrics.render().into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `GET /v1/cluster`: the members this node sees, their state and how many keys each runs.
pub async fn cluster(
    ctx: &Ctx,
    user: dogear_storage::UserId,
) -> Result<Response, crate::error::ApiError> {
    let members = ctx.app.cluster_members(user).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"node_id": ctx.app.node_id(), "members": members}),
    ))
}
