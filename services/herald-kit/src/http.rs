//! HTTP plumbing shared by the services: JSON errors, request metrics, health routes, the
//! metrics listener, the edge limits (header-read timeout, request timeout, concurrency limit)
//! and serving with graceful shutdown.

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

/// 401 for `error`, with `WWW-Authenticate: Bearer`.
pub fn unauthorized(error: &herald_auth::AuthError) -> Response {
    let mut response = JsonError::new(StatusCode::UNAUTHORIZED, error.to_string()).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The HTTP edge's flags (each also an environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeArgs {
    /// A client must send its request headers within this long, else it is disconnected.
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = herald_model::duration::parse_duration)]
    pub header_read_timeout: Duration,
    /// A request (body included) must be answered within this long, else 503.
    #[arg(long, env = "HERALD_REQUEST_TIMEOUT", default_value = "30s", value_parser = herald_model::duration::parse_duration)]
    pub request_timeout: Duration,
    /// Requests handled at once; beyond it 503 with Retry-After.
    #[arg(long, env = "HERALD_MAX_CONCURRENT_REQUESTS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
}

impl Default for EdgeArgs {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1024,
        }
    }
}

/// `herald_http_requests_total`, `herald_http_request_duration_seconds` and
/// `herald_http_rejected_requests_total`.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    rejected: IntCounterVec,
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
        let rejected = IntCounterVec::new(
            Opts::new(
                "herald_http_rejected_requests_total",
                "Requests refused at the edge, by reason: overloaded (over --max-concurrent-requests) or timeout (over --request-timeout).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self { requests, duration, rejected })
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

/// The edge limits around an API router: at most `max_concurrent_requests` at once (beyond it
/// 503 with `Retry-After: 1`) and `request_timeout` each (then 503).
#[derive(Clone)]
struct Limits {
    permits: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
    rejected: IntCounterVec,
}

async fn limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.permits.clone().try_acquire_owned() else {
        limits.rejected.with_label_values(&["overloaded"]).inc();
        return JsonError::unavailable("too many requests at once; try again", Duration::from_secs(1)).into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            limits.rejected.with_label_values(&["timeout"]).inc();
            JsonError::unavailable(format!("the request took longer than {:?}", limits.timeout), Duration::from_secs(1))
                .into_response()
        }
    }
}

/// `api` behind the edge limits, plus `/healthz` and `/readyz` (outside the limits, so that a
/// busy pod is not restarted), a JSON 404 fallback and request metrics. `/metrics` is served on
/// its own listener ([`metrics_router`]).
pub fn with_operational_routes(
    api: Router,
    metrics: HttpMetrics,
    edge: &EdgeArgs,
    live: ReadyCheck,
    ready: ReadyCheck,
) -> Router {
    with_operational_routes_and_streams(api, Router::new(), metrics, edge, live, ready)
}

/// [`with_operational_routes`] with `streams` beside the API, outside its request-concurrency
/// limit and request timeout: long-lived responses (Server-Sent Events) bounded by their own
/// limit, which must not take the permits short requests need.
pub fn with_operational_routes_and_streams(
    api: Router,
    streams: Router,
    metrics: HttpMetrics,
    edge: &EdgeArgs,
    live: ReadyCheck,
    ready: ReadyCheck,
) -> Router {
    let limits = Limits {
        permits: Arc::new(tokio::sync::Semaphore::new(edge.max_concurrent_requests as usize)),
        timeout: edge.request_timeout,
        rejected: metrics.rejected.clone(),
    };
    let api = api.layer(middleware::from_fn_with_state(limits, limit));
    let ops = Router::new()
        .route("/healthz", axum::routing::get(move || probe(live.clone())))
        .route("/readyz", axum::routing::get(move || probe(ready.clone())));
    api.merge(streams)
        .merge(ops)
        .fallback(|| async { JsonError::new(StatusCode::NOT_FOUND, "Not found") })
        .method_not_allowed_fallback(|| async { JsonError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed") })
        .layer(middleware::from_fn_with_state(metrics, track))
}

/// `GET /metrics` for `registry`.
pub fn metrics_routes(registry: Registry) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move { render_metrics(&registry) }
        }),
    )
}

/// The metrics listener's routes: `GET /metrics` only.
pub fn metrics_router(registry: Registry) -> Router {
    metrics_routes(registry)
        .fallback(|| async { JsonError::new(StatusCode::NOT_FOUND, "Not found: this listener serves /metrics only") })
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

/// Where a service listens: its API, and (when given) `/metrics` apart from it.
pub struct Listeners {
    pub api: tokio::net::TcpListener,
    pub metrics: Option<tokio::net::TcpListener>,
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

/// Serves `app` on `listeners.api` and `/metrics` of `registry` on `listeners.metrics` (when
/// given) until `shutdown`; the API then drains for at most `drain`, the metrics listener for a
/// second (it stops with the API). Returns the API server's result.
pub async fn serve_api_and_metrics(
    listeners: Listeners,
    app: Router,
    registry: Registry,
    shutdown: &CancellationToken,
    drain: Duration,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    let metrics = listeners.metrics.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "metrics listening");
        }
        let stop = shutdown.clone();
        tokio::spawn(serve(listener, metrics_router(registry), stop, Duration::from_secs(1), header_read_timeout))
    });
    let served = serve(listeners.api, app, shutdown.clone(), drain, header_read_timeout).await;
    // The API may have failed on its own: the metrics listener stops with it.
    shutdown.cancel();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    served
}

/// Serves `app` on `listener` (HTTP/1.1) until `shutdown` is cancelled, then drains in-flight
/// requests for at most `drain`. A client that does not send its request headers within
/// `header_read_timeout` is disconnected.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => Ok(()),
        _ = tokio::time::sleep(drain) => {
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

    fn mk_app(ready: bool, edge: &EdgeArgs) -> (Router, Registry) {
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry).unwrap();
        let app = Router::new()
            .route(
                "/things/{id}",
                axum::routing::get(|| async { JsonError::unavailable("busy", Duration::from_secs(2)) }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "done"
                }),
            );
        let r: ReadyCheck = Arc::new(move || if ready { Ok(()) } else { Err("not yet".into()) });
        let live: ReadyCheck = Arc::new(|| Ok(()));
        (with_operational_routes(app, metrics, edge, live, r), registry)
    }

    async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, Response) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        (resp.status(), resp)
    }

    async fn json(resp: Response) -> serde_json::Value {
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    fn text(registry: &Registry) -> String {
        TextEncoder::new().encode_to_string(&registry.gather()).unwrap()
    }

    #[tokio::test]
    async fn errors_are_json_with_retry_after() {
        let (app, _) = mk_app(true, &EdgeArgs::default());
        let (status, resp) = call(&app, "GET", "/things/7").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        assert_eq!(json(resp).await["message"], "busy");
        let (status, resp) = call(&app, "GET", "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json(resp).await["message"], "Not found");
        let (status, _) = call(&app, "POST", "/things/7").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        // /metrics is not on the API listener.
        assert_eq!(call(&app, "GET", "/metrics").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn probes_follow_the_checks() {
        let (app, _) = mk_app(false, &EdgeArgs::default());
        assert_eq!(call(&app, "GET", "/healthz").await.0, StatusCode::OK);
        let (status, resp) = call(&app, "GET", "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(resp).await["message"], "not yet");
    }

    #[tokio::test]
    async fn request_metrics_use_route_templates_on_the_metrics_listener() {
        let (app, registry) = mk_app(true, &EdgeArgs::default());
        call(&app, "GET", "/things/123").await;
        call(&app, "GET", "/random/path/42").await;
        let metrics = metrics_router(registry.clone());
        let (status, resp) = call(&metrics, "GET", "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(
            text.contains(r#"herald_http_requests_total{method="GET",route="/things/{id}",status="503"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
        // (Not just "123": a duration's digits may hold it.)
        assert!(!text.contains("/things/123") && !text.contains("/random"), "raw paths leaked: {text}");
        assert_eq!(
            call(&metrics, "GET", "/things/1").await.0,
            StatusCode::NOT_FOUND,
            "the metrics listener serves /metrics only"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn over_the_limit_is_a_503_and_a_slow_request_times_out() {
        let edge =
            EdgeArgs { max_concurrent_requests: 2, request_timeout: Duration::from_secs(30), ..EdgeArgs::default() };
        let (app, registry) = mk_app(true, &edge);
        let held: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn({
                    let app = app.clone();
                    async move { call(&app, "GET", "/slow").await.0 }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (status, resp) = call(&app, "GET", "/things/1").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert!(json(resp).await["message"].as_str().unwrap().contains("too many requests"));
        // Health stays answered under load.
        assert_eq!(call(&app, "GET", "/healthz").await.0, StatusCode::OK);
        tokio::time::sleep(Duration::from_secs(31)).await;
        for h in held {
            assert_eq!(h.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE, "timed out");
        }
        let text = text(&registry);
        assert!(text.contains(r#"herald_http_rejected_requests_total{reason="overloaded"} 1"#), "{text}");
        assert!(text.contains(r#"herald_http_rejected_requests_total{reason="timeout"} 2"#), "{text}");
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_is_disconnected() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let edge = EdgeArgs { header_read_timeout: Duration::from_millis(500), ..EdgeArgs::default() };
        let (app, _) = mk_app(true, &edge);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server =
            tokio::spawn(serve(listener, app, shutdown.clone(), Duration::from_secs(1), edge.header_read_timeout));
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        // Keep trickling a header byte now and then; the server closes the connection anyway.
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if slow.write_all(b"X").await.is_err() {
                    return;
                }
                match tokio::time::timeout(Duration::from_millis(100), slow.read_to_end(&mut buf)).await {
                    Ok(_) => return,
                    Err(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "still connected after 5 s");
        assert!(started.elapsed() < Duration::from_secs(2), "closed after {:?}", started.elapsed());
        // A well-behaved client is served.
        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
