//! The admin HTTP endpoint: health, readiness, Prometheus metrics and a JSON view of the
//! cluster, its topics and groups, for operators, scrapers and (later) the web console.
//!
//! ```text
//!  GET /health            200 while the process runs
//!  GET /ready             200 {"ready":true} when serving, else 503 {"ready":false,"reasons":[..]}
//!  GET /metrics           OpenMetrics text (collect.rs: gauges from live state at scrape time,
//!                         counters/histograms from crate::metrics)
//!  GET /v1/cluster        what `rivulet cluster status --json` shows
//!  GET /v1/topics[/{name}]  what `rivulet topic list / describe` show
//!  GET /v1/groups[/{id}]  what `rivulet group list / describe` show, for groups coordinated here
//! ```
//! It reads the node through [`AdminContext`] only and never writes: nothing here can change
//! the cluster. It binds loopback by default (`admin.listen`), since it has no authentication.

mod collect;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rivulet_actors::group::Groups;
use rivulet_cluster::Controller;
use rivulet_storage::Store;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// The handles the admin endpoint reads.
#[derive(Clone, Debug)]
pub struct AdminContext {
    /// Topics, replicas, Raft figures.
    pub controller: Controller,
    /// The group coordinators of this node.
    pub groups: Groups,
    /// The transaction coordinators of this node (`None`: transactions are off).
    pub txns: Option<rivulet_actors::txn::Txns>,
    /// The node's store (storage figures).
    pub store: Store,
    /// What the Kafka server records.
    pub metrics: Arc<Metrics>,
    /// Cluster id clients see.
    pub cluster_id: String,
    /// Kafka host advertised to clients.
    pub advertised_host: String,
    /// Kafka port advertised to clients.
    pub advertised_port: i32,
    /// True while the Kafka listener accepts clients (after the start-up wait for local
    /// replicas; false again once shutdown begins).
    pub serving: watch::Receiver<bool>,
}

/// Serves the admin endpoint on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: AdminContext,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    info!(%addr, "admin endpoint serving /health, /ready, /metrics, /v1/...");
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

/// What `rivulet cluster status` shows (and `/v1/cluster` answers), from `controller`'s
/// metadata image; `advertised_host:advertised_port` is the queried node's Kafka address.
pub fn cluster_status(
    controller: &rivulet_cluster::Controller,
    cluster_id: &str,
    advertised_host: &str,
    advertised_port: i32,
) -> crate::cli::cluster::ClusterStatus {
    views::status_of(controller, cluster_id, advertised_host, advertised_port)
}

/// Binds `addr` for [`serve`], with an error that says what to do.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "could not listen on {addr} for the admin endpoint: {e}; is the port in use? \
             choose another with --admin-listen HOST:PORT (admin.listen), or disable it with \
             --admin-listen off"
        )
    })
}

fn router(ctx: AdminContext) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/cluster", get(views::cluster))
        .route("/v1/topics", get(views::topics))
        .route("/v1/topics/{name}", get(views::topic))
        .route("/v1/groups", get(views::groups))
        .route("/v1/groups/{id}", get(views::group))
        .fallback(not_found)
        .with_state(Arc::new(ctx))
}

type Ctx = State<Arc<AdminContext>>;

async fn health(State(ctx): Ctx) -> Json<serde_json::Value> {
    Json(json!({ "status": "up", "node_id": ctx.controller.node_id() }))
}

/// Why this node is not serving yet (empty: it is).
pub(crate) async fn readiness(ctx: &AdminContext) -> Vec<String> {
    let mut reasons = Vec::new();
    if !*ctx.serving.borrow() {
        reasons.push("the Kafka listener is not accepting clients (starting or stopping)".into());
    }
    if ctx.controller.controller_id() < 0 {
        reasons.push("no controller leader is known".into());
    }
    if !ctx.controller.lease_valid() {
        reasons.push("this node's lease with the controller is not valid".into());
    }
    // A zero timeout only looks: true when the replicas reflect the metadata known now.
    if !ctx.controller.wait_replicas_started(Duration::ZERO).await {
        reasons.push(format!(
            "local replicas are still starting ({} running)",
            ctx.controller.local_replicas()
        ));
    }
    reasons
}

async fn ready(State(ctx): Ctx) -> Response {
    let reasons = readiness(&ctx).await;
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reasons": reasons })),
        )
            .into_response()
    }
}

async fn metrics(State(ctx): Ctx) -> Response {
    match collect::gather(&ctx).await.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            warn!(error = %e, "could not encode the metrics");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not encode the metrics",
            )
        }
    }
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "no such endpoint; try /health, /ready, /metrics, /v1/cluster, /v1/topics, /v1/groups",
    )
}

pub(crate) fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}
