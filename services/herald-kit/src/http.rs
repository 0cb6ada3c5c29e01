//! HTTP plumbing shared by the services: JSON errors, request metrics, health and metrics
//! routes, and serving with graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

/// An error answered as `{"message": ...}` with its status (and `Retry-After` when set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl JsonError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }

    /// 503 with a `Retry-After` header.
    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into(), retry_after: Some(retry_after) }
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "message": self.message }));
        let mut response = (self.status, body).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// `herald_http_requests_total` and `herald_http_request_duration_seconds`.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "herald_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "herald_http_request_duration_seconds",
                "Time to answer an HTTP request, by route template and method.",
            )
            .buckets(latency_buckets()),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }
}

/// Histogram buckets for request and send latencies: 250 µs to 10 s.
pub fn latency_buckets() -> Vec<f64> {
    vec![0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    // Route templates only (`/notifications/{user_id}`), never raw paths: labels stay bounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status();
    metrics.requests.with_label_values(&[route.as_str(), method, status.as_str()]).inc();
    metrics.duration.with_label_values(&[route.as_str(), method]).observe(start.elapsed().as_secs_f64());
    response
}

/// What `/readyz` reports.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Adds `/metrics`, `/healthz`, `/readyz`, a JSON 404 fallback and request metrics to `app`.
pub fn with_operational_routes(
    app: Router,
    registry: Registry,
    metrics: HttpMetrics,
    live: ReadyCheck,
    ready: ReadyCheck,
) -> Router {
    let ops = Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move { render_metrics(&registry) }
            }),
        )
        .route("/healthz", axum::routing::get(move || probe(live.clone())))
        .route("/readyz", axum::routing::get(move || probe(ready.clone())));
    app.merge(ops)
        .fallback(|| async { JsonError::new(StatusCode::NOT_FOUND, "Not found") })
        .method_not_allowed_fallback(|| async { JsonError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed") })
        .layer(middleware::from_fn_with_state(metrics, track))
}

async fn probe(check: ReadyCheck) -> Response {
    match check() {
        Ok(()) => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable", "message": reason})),
        )
            .into_response(),
    }
}

/// The registry in Prometheus text format.
pub fn render_metrics(registry: &Registry) -> Response {
    let encoder = TextEncoder::new();
    match encoder.encode_to_string(&registry.gather()) {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response(),
        Err(error) => JsonError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics failed: {error}"))
            .into_response(),
    }
}

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("listening on {addr}: {source}")]
pub struct BindError {
    pub addr: std::net::SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Opens a TCP listener on `addr`.
pub async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains in-flight requests for
/// at most `drain` before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let signal = shutdown.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { signal.cancelled().await }).into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!(drain_secs = drain.as_secs_f64(), "HTTP connections still open after the drain timeout; closing them");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn mk_app(ready: bool) -> (Router, Registry) {
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry).unwrap();
        let app = Router::new().route(
            "/things/{id}",
            axum::routing::get(|| async { JsonError::unavailable("busy", Duration::from_secs(2)) }),
        );
        let r: ReadyCheck = Arc::new(move || if ready { Ok(()) } else { Err("not yet".into()) });
        let live: ReadyCheck = Arc::new(|| Ok(()));
        (with_operational_routes(app, registry.clone(), metrics, live, r), registry)
    }

    async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, Response) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        (resp.status(), resp)
    }

    async fn json(resp: Response) -> serde_json::Value {
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn errors_are_json_with_retry_after() {
        let (app, _) = mk_app(true);
        let (status, resp) = call(&app, "GET", "/things/7").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        assert_eq!(json(resp).await["message"], "busy");
        let (status, resp) = call(&app, "GET", "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json(resp).await["message"], "Not found");
        let (status, _) = call(&app, "POST", "/things/7").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn probes_follow_the_checks() {
        let (app, _) = mk_app(false);
        assert_eq!(call(&app, "GET", "/healthz").await.0, StatusCode::OK);
        let (status, resp) = call(&app, "GET", "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(resp).await["message"], "not yet");
    }

    #[tokio::test]
    async fn request_metrics_use_route_templates() {
        let (app, registry) = mk_app(true);
        call(&app, "GET", "/things/123").await;
        call(&app, "GET", "/random/path/42").await;
        let (_, resp) = call(&app, "GET", "/metrics").await;
        let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(
            text.contains(r#"herald_http_requests_total{method="GET",route="/things/{id}",status="503"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
        assert!(!text.contains("123") && !text.contains("/random"), "raw paths leaked: {text}");
        drop(registry);
    }
}
