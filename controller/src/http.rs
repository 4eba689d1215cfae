//! The controller's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` and, when a
//! secret is configured, the GitOps webhook (`herd_gitops::webhook`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// Serves the endpoints, and the routes of `extra`, on `address` until the task is dropped.
pub async fn serve(
    address: SocketAddr,
    registry: Arc<Registry>,
    extra: Router,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(move || metrics(registry.clone())))
        .merge(extra);
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "serving /metrics and /healthz");
    axum::serve(listener, app).await
}

async fn metrics(registry: Arc<Registry>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            error.to_string(),
        ),
    }
}
