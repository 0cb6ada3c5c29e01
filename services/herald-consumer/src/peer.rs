//! One client for what consumers ask each other over HTTP: a read forwarded to a partition's
//! holder, a stream passed through, and the claims each member publishes. Every request between
//! consumers carries the peer token when there is one.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use herald_auth::PeerToken;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounter;

use crate::claims::{CLAIMS_PATH, PeerClaims};
use crate::metrics::{ConsumerMetrics, ForwardOutcome};

/// Marks a read forwarded by another member (its value: that member's URL).
pub const FORWARDED_HEADER: &str = "x-herald-forwarded-by";

/// The largest claims answer read from a peer.
const MAX_CLAIMS_BODY: usize = 1024 * 1024;

/// The client consumers use to ask each other.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    /// A forwarded answer larger than this is refused (a user holds at most `--max-per-user`).
    max_body: usize,
    outcomes: [IntCounter; 3],
    token: Option<PeerToken>,
    /// This member's advertised URL, named in the requests it forwards.
    self_url: String,
}

/// A peer's answer to a forwarded read: its head and its whole body.
pub type Fetched = (axum::http::response::Parts, Bytes);

impl PeerClient {
    /// A client whose forwarded requests take at most `timeout` and bring at most `max_body`
    /// bytes, counting their outcomes in `metrics`.
    pub fn new(
        timeout: Duration,
        max_body: usize,
        token: Option<PeerToken>,
        self_url: &str,
        metrics: &ConsumerMetrics,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let counter = |o: ForwardOutcome| metrics.forwarded_requests.with_label_values(&[o.label()]);
        Self {
            client,
            timeout,
            max_body,
            outcomes: [counter(ForwardOutcome::Ok), counter(ForwardOutcome::Rejected), counter(ForwardOutcome::Failed)],
            token,
            self_url: self_url.to_string(),
        }
    }

    /// The peer token, when the pipeline has one.
    pub fn token(&self) -> Option<&PeerToken> {
        self.token.as_ref()
    }

    /// This member's advertised URL.
    pub fn self_url(&self) -> &str {
        &self.self_url
    }

    /// How long a forwarded request may take (for a stream: until its answer's head).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn count(&self, outcome: ForwardOutcome) {
        let i = match outcome {
            ForwardOutcome::Ok => 0,
            ForwardOutcome::Rejected => 1,
            ForwardOutcome::Failed => 2,
        };
        self.outcomes[i].inc();
    }

    /// A request to another member on behalf of a caller: marked as forwarded by this member,
    /// with the peer token (the other member trusts it; this member already checked who may
    /// read) or, without one, the caller's own credentials, which the other member checks again.
    fn on_behalf(&self, uri: &str, credentials: Option<&HeaderValue>) -> axum::http::request::Builder {
        let request = axum::http::Request::get(uri)
            .header(FORWARDED_HEADER, HeaderValue::from_str(&self.self_url).unwrap_or(HeaderValue::from_static("?")));
        match (&self.token, credentials) {
            (Some(token), _) => request.header(header::AUTHORIZATION, token.header()),
            (None, Some(theirs)) => request.header(header::AUTHORIZATION, theirs.clone()),
            (None, None) => request,
        }
    }

    /// `uri` from another member on behalf of a caller, counted by outcome: its answer whatever
    /// its status (within the time and size limits), or why there is none.
    pub async fn fetch(&self, uri: &str, credentials: Option<&HeaderValue>) -> Result<Fetched, String> {
        let request = match self.on_behalf(uri, credentials).body(Empty::<Bytes>::new()) {
            Ok(r) => r,
            Err(e) => {
                self.count(ForwardOutcome::Failed);
                return Err(format!("bad owner URL {uri}: {e}"));
            }
        };
        let fetched = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, self.max_body).collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((parts, bytes))
        })
        .await;
        let answer = match fetched {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => {
                self.count(ForwardOutcome::Failed);
                return Err(why);
            }
            Err(_) => {
                self.count(ForwardOutcome::Failed);
                return Err(format!("no answer within {:?}", self.timeout));
            }
        };
        self.count(if answer.0.status.is_success() { ForwardOutcome::Ok } else { ForwardOutcome::Rejected });
        Ok(answer)
    }

    /// Opens `uri` (a stream) at another member on behalf of a caller: only the answer's head is
    /// bounded in time, the body is the stream. A non-2xx answer comes with its body read (at most
    /// 64 KiB); outcomes are counted.
    pub async fn open(
        &self,
        uri: &str,
        credentials: Option<&HeaderValue>,
        last_event_id: Option<String>,
    ) -> Result<Result<Response<hyper::body::Incoming>, Fetched>, String> {
        let mut request = self.on_behalf(uri, credentials);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let request = match request.body(Empty::<Bytes>::new()) {
            Ok(r) => r,
            Err(e) => {
                self.count(ForwardOutcome::Failed);
                return Err(format!("bad owner URL {uri}: {e}"));
            }
        };
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.count(ForwardOutcome::Failed);
                return Err(e.to_string());
            }
            Err(_) => {
                self.count(ForwardOutcome::Failed);
                return Err(format!("no answer within {:?}", self.timeout));
            }
        };
        if response.status().is_success() {
            self.count(ForwardOutcome::Ok);
            return Ok(Ok(response));
        }
        self.count(ForwardOutcome::Rejected);
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, 64 * 1024).collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        Ok(Err((parts, bytes)))
    }

    /// The claims of the member at `addr`, asked with the peer token, within `timeout`.
    pub async fn claims(&self, addr: SocketAddr, timeout: Duration) -> Result<PeerClaims, String> {
        let uri = format!("http://{addr}{CLAIMS_PATH}");
        let mut request = axum::http::Request::get(&uri);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, token.header());
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let fetched = tokio::time::timeout(timeout, async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("answered {}", response.status()));
            }
            let body =
                Limited::new(response.into_body(), MAX_CLAIMS_BODY).collect().await.map_err(|e| e.to_string())?;
            serde_json::from_slice::<PeerClaims>(&body.to_bytes()).map_err(|e| e.to_string())
        })
        .await;
        fetched.map_err(|_| "no answer in time".to_string())?
    }
}

/// Another member's answer as this member's: its status, `body`, and the headers named.
pub fn relay(parts: &axum::http::response::Parts, body: Body, names: &[header::HeaderName]) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = parts.status;
    for name in names {
        if let Some(v) = parts.headers.get(name) {
            response.headers_mut().insert(name.clone(), v.clone());
        }
    }
    response
}

/// Whether a relayed answer says the other member is (for now) unable to answer.
pub fn is_unavailable(parts: &axum::http::response::Parts) -> bool {
    parts.status == StatusCode::SERVICE_UNAVAILABLE
}
