//! The producer's HTTP API: `POST /send` plus the operational routes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use herald_auth::{AuthError, Authenticator, SendAs};
use herald_kit::http::{EdgeArgs, HttpMetrics, JsonError, ReadyCheck, with_operational_routes};
use herald_model::{MAX_MARKER_IDS, Notification, ReadMarker, User, UserId};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use uuid::Uuid;

use crate::idempotency::{Check, Remembered};
use crate::kafka::{SendError, Sender};
use crate::metrics::{Outcome, ProducerMetrics};
use crate::request::{self, BodyFormat, Recipients};
use crate::users::Directory;

/// Largest accepted `/send` body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Largest accepted JSON body of `POST /send`: a bulk send to 1,000 recipients of the longest
/// ids (131 KB of `toIDs`) with a full message, title, url and data.
pub const MAX_JSON_BODY_BYTES: usize = 160 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The user directory, when one is configured: only its users, with its names.
    pub directory: Option<Arc<Directory>>,
    pub sender: Arc<Sender>,
    pub auth: Arc<Authenticator>,
    pub metrics: ProducerMetrics,
    /// The `Idempotency-Key`s sent with lately ([`crate::idempotency`]).
    pub keys: Arc<Remembered>,
}

/// Every way `/send` can fail, each with its status.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    #[error("fromID is required")]
    NoSender,
    #[error("this token may not send as user {0}")]
    Forbidden(UserId),
    #[error("Content-Type must be application/x-www-form-urlencoded or application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("could not read the request body: {0}")]
    ReadBody(String),
    #[error("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")]
    BadIdempotencyKey,
    #[error("{0}")]
    BadMarker(String),
    #[error("this token may not mark user {0}'s notifications")]
    MayNotMark(UserId),
    #[error(transparent)]
    BadRequest(#[from] request::BadRequest),
    #[error("User not found")]
    UserNotFound,
    /// Recipients of a bulk send missing from the directory (nothing was sent).
    #[error("Users not found: {}", shown_ids(.0))]
    UsersNotFound(Vec<UserId>),
    #[error("Idempotency-Key was used for another notification")]
    KeyReused,
    #[error("notification not sent: {0}; try again")]
    Unavailable(#[from] SendError),
}

impl AppError {
    fn outcome(&self) -> Outcome {
        match self {
            AppError::Unavailable(_) => Outcome::Failed,
            _ => Outcome::Rejected,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            AppError::Unauthorized(e) => herald_kit::http::unauthorized(&e),
            AppError::NoSender => JsonError::new(StatusCode::BAD_REQUEST, message).into_response(),
            AppError::Forbidden(_) => JsonError::new(StatusCode::FORBIDDEN, message).into_response(),
            AppError::UnsupportedMediaType => {
                JsonError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response()
            }
            AppError::PayloadTooLarge(_) => JsonError::new(StatusCode::PAYLOAD_TOO_LARGE, message).into_response(),
            AppError::MayNotMark(_) => JsonError::new(StatusCode::FORBIDDEN, message).into_response(),
            AppError::ReadBody(_) | AppError::BadRequest(_) | AppError::BadIdempotencyKey | AppError::BadMarker(_) => {
                JsonError::new(StatusCode::BAD_REQUEST, message).into_response()
            }
            AppError::UserNotFound | AppError::UsersNotFound(_) => {
                JsonError::new(StatusCode::NOT_FOUND, message).into_response()
            }
            AppError::KeyReused => JsonError::new(StatusCode::UNPROCESSABLE_ENTITY, message).into_response(),
            AppError::Unavailable(_) => JsonError::unavailable(message, Duration::from_secs(1)).into_response(),
        }
    }
}

/// The ids a 404 names: the first ten, and how many more.
fn shown_ids(ids: &[UserId]) -> String {
    let mut shown: Vec<String> = ids.iter().take(10).map(UserId::to_string).collect();
    if ids.len() > 10 {
        shown.push(format!("and {} more", ids.len() - 10));
    }
    shown.join(", ")
}

/// The body of a 200.
#[derive(Debug, Serialize)]
pub struct Sent {
    pub message: &'static str,
    pub id: Uuid,
    pub partition: i32,
    pub offset: i64,
}

/// What became of one recipient's notification in a bulk send.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientResult {
    #[serde(rename = "toID")]
    pub to_id: UserId,
    /// `sent` (acknowledged) or `failed` (not: send it again).
    pub status: &'static str,
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// The body of a bulk send's answer: 200 when every notification was acknowledged, else 503.
#[derive(Debug, Serialize)]
pub struct BulkSent {
    pub message: String,
    pub results: Vec<RecipientResult>,
}

impl BulkSent {
    fn failed(&self) -> usize {
        self.results.iter().filter(|r| r.status != "sent").count()
    }
}

/// What a send answered: one notification, or a bulk send's per-recipient results.
#[derive(Debug)]
pub enum Sends {
    One(Sent),
    Many(BulkSent),
}

/// The whole producer API (its metrics are served on their own listener).
pub fn router(state: AppState, http: HttpMetrics, edge: &EdgeArgs) -> Router {
    let live_sender = state.sender.clone();
    let ready_sender = state.sender.clone();
    let live: ReadyCheck = Arc::new(move || live_sender.live());
    let ready: ReadyCheck = Arc::new(move || ready_sender.ready());
    let api = Router::new()
        .route("/send", post(send))
        .route("/notifications/{user_id}/read", post(mark_read))
        .with_state(state);
    with_operational_routes(api, http, edge, live, ready)
}

async fn send(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let start = Instant::now();
    match handle_send(&state, &headers, body).await {
        Ok(Sends::One(sent)) => {
            state.metrics.count(Outcome::Sent);
            state.metrics.send_duration.observe(start.elapsed().as_secs_f64());
            axum::Json(sent).into_response()
        }
        Ok(Sends::Many(bulk)) => {
            let failed = bulk.failed();
            state.metrics.count_many(Outcome::Sent, (bulk.results.len() - failed) as u64);
            state.metrics.count_many(Outcome::Failed, failed as u64);
            state.metrics.send_duration.observe(start.elapsed().as_secs_f64());
            if failed == 0 {
                return axum::Json(bulk).into_response();
            }
            tracing::warn!(failed, recipients = bulk.results.len(), "a bulk send was not acknowledged in full");
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(bulk)).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
            response
        }
        Err(error) => {
            state.metrics.count(error.outcome());
            if let AppError::Unavailable(cause) = &error {
                tracing::warn!(error = %cause, "send failed");
            }
            error.into_response()
        }
    }
}

/// Largest accepted body of `POST /notifications/{userID}/read` (500 ids fit).
pub const MAX_MARKER_BODY_BYTES: usize = 32 * 1024;

/// The body of `POST /notifications/{userID}/read`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkRead {
    #[serde(default)]
    ids: Option<Vec<Uuid>>,
    #[serde(default)]
    all: Option<bool>,
}

/// `POST /notifications/{userID}/read`: writes a read marker into the user's partition and
/// answers once the broker acknowledged it. Who may read an inbox may mark it.
async fn mark_read(State(state): State<AppState>, Path(raw): Path<String>, headers: HeaderMap, body: Body) -> Response {
    match handle_mark_read(&state, &raw, &headers, body).await {
        Ok(d) => {
            axum::Json(serde_json::json!({"message": "Marked read", "partition": d.partition, "offset": d.offset}))
                .into_response()
        }
        Err(error) => {
            if let AppError::Unavailable(cause) = &error {
                tracing::warn!(error = %cause, "writing a read marker failed");
            }
            error.into_response()
        }
    }
}

async fn handle_mark_read(
    state: &AppState,
    raw: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<crate::kafka::Delivered, AppError> {
    let identity = state.auth.authenticate(headers)?;
    let user = UserId::parse(raw).ok_or_else(|| AppError::BadMarker(UserId::RULE.into()))?;
    if !identity.may_read(&user) {
        return Err(AppError::MayNotMark(user));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(BodyFormat::from_content_type)
        .is_some_and(|f| f == BodyFormat::Json);
    if !json {
        return Err(AppError::UnsupportedMediaType);
    }
    let bytes = read_body(headers, body, MAX_MARKER_BODY_BYTES).await?;
    let request: MarkRead = serde_json::from_slice(&bytes)
        .map_err(|e| AppError::BadMarker(format!("body must be {{\"ids\": [...]}} or {{\"all\": true}}: {e}")))?;
    let (ids, all) = match (request.ids, request.all) {
        (Some(ids), None | Some(false)) if (1..=MAX_MARKER_IDS).contains(&ids.len()) => (ids, false),
        (None, Some(true)) => (Vec::new(), true),
        (Some(_), None | Some(false)) => {
            return Err(AppError::BadMarker(format!("ids must hold 1 to {MAX_MARKER_IDS} notification ids")));
        }
        _ => return Err(AppError::BadMarker("give either ids or \"all\": true".into())),
    };
    if let Some(directory) = &state.directory {
        directory.get(&user).ok_or(AppError::UserNotFound)?;
    }
    let marker = ReadMarker { user, ids, all, at: chrono::Utc::now() };
    Ok(state.sender.send_marker(&marker).await?)
}

/// A request body of at most `limit` bytes: a larger declared `Content-Length` is refused before
/// anything is read, a body that grows past it while being read too.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<bytes::Bytes, AppError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(AppError::PayloadTooLarge(limit));
    }
    Ok(Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                AppError::PayloadTooLarge(limit)
            } else {
                AppError::ReadBody(e.to_string())
            }
        })?
        .to_bytes())
}

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// The namespace of notification ids made from idempotency keys (a fixed, random UUID).
const IDEMPOTENT_IDS: Uuid = Uuid::from_u128(0x8d0c_52f6_3b1e_4a57_9f44_1c2b_7e90_d613);

/// The `Idempotency-Key` header, if any: 1–128 printable ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().map_err(|_| AppError::BadIdempotencyKey)?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(AppError::BadIdempotencyKey);
    }
    Ok(Some(key))
}

/// The id of a notification sent by `from` with an idempotency key: the same for every retry of
/// that send, another for another sender (a name-based UUID, version 5).
pub fn idempotent_id(from: &UserId, key: &str) -> Uuid {
    Uuid::new_v5(&IDEMPOTENT_IDS, format!("{from}\n{key}").as_bytes())
}

/// The id of recipient `to`'s notification in a bulk send by `from` with an idempotency key: the
/// same whether the whole request or only the failed recipients are sent again. (A newline is
/// in no user id: the parts cannot run into each other.)
pub fn bulk_idempotent_id(from: &UserId, key: &str, to: &UserId) -> Uuid {
    Uuid::new_v5(&IDEMPOTENT_IDS, format!("{from}\n{key}\n{to}").as_bytes())
}

async fn handle_send(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Sends, AppError> {
    let identity = state.auth.authenticate(headers)?;
    let key = idempotency_key(headers)?;
    let format = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(BodyFormat::from_content_type)
        .ok_or(AppError::UnsupportedMediaType)?;
    let limit = match format {
        BodyFormat::Json => MAX_JSON_BODY_BYTES,
        BodyFormat::Form => MAX_BODY_BYTES,
    };
    let bytes = read_body(headers, body, limit).await?;
    let req = request::parse(format, &bytes)?;
    let from_id = identity.sender(req.from_id.clone()).map_err(|refused| match refused {
        SendAs::Missing => AppError::NoSender,
        SendAs::Forbidden => AppError::Forbidden(req.from_id.clone().unwrap_or_else(|| UserId::from(0))),
    })?;
    let bulk = matches!(req.to, Recipients::Many(_));
    let (from, recipients) = match &state.directory {
        Some(directory) => {
            let from = directory.get(&from_id).ok_or(AppError::UserNotFound)?.clone();
            let unknown: Vec<UserId> = req.to.all().iter().filter(|id| directory.get(id).is_none()).cloned().collect();
            match unknown.len() {
                0 => {}
                _ if !bulk => return Err(AppError::UserNotFound),
                _ => return Err(AppError::UsersNotFound(unknown)),
            }
            (from, req.to.all().iter().filter_map(|id| directory.get(id).cloned()).collect::<Vec<_>>())
        }
        // No directory: any valid id; the sender's name only from their own token, never from
        // the request body.
        None => {
            let name = identity.name_of(&from_id).map(str::to_string);
            (User { id: from_id, name }, req.to.all().iter().cloned().map(User::anonymous).collect())
        }
    };
    let now = Instant::now();
    let mut notifications = Vec::with_capacity(recipients.len());
    for to in recipients {
        let mut n = Notification::new(from.clone(), to, req.message.clone());
        n.title.clone_from(&req.content.title);
        n.url.clone_from(&req.content.url);
        n.category.clone_from(&req.content.category);
        n.data.clone_from(&req.content.data);
        if let Some(key) = key {
            // A retry writes the same id again; consumers keep the first and show it once. The
            // same key for other content would be dropped by them as well: refused while
            // remembered, before anything is sent.
            n.id = if bulk { bulk_idempotent_id(&n.from.id, key, &n.to.id) } else { idempotent_id(&n.from.id, key) };
            if state.keys.check(&n, now) == Check::Conflict {
                return Err(AppError::KeyReused);
            }
        }
        notifications.push(n);
    }
    if !bulk {
        let Some(notification) = notifications.pop() else { return Err(AppError::UserNotFound) };
        let delivered = state.sender.send(&notification).await?;
        if key.is_some() {
            state.keys.remember(&notification, Instant::now());
        }
        tracing::debug!(id = %notification.id, partition = delivered.partition, offset = delivered.offset, "sent");
        return Ok(Sends::One(Sent {
            message: "Notification sent successfully!",
            id: notification.id,
            partition: delivered.partition,
            offset: delivered.offset,
        }));
    }
    // Every record in flight at once: the client's batching, not one round trip per recipient.
    let outcomes = futures::future::join_all(notifications.iter().map(|n| state.sender.send(n))).await;
    let mut results = Vec::with_capacity(notifications.len());
    for (n, outcome) in notifications.iter().zip(outcomes) {
        match outcome {
            Ok(delivered) => {
                if key.is_some() {
                    state.keys.remember(n, Instant::now());
                }
                results.push(RecipientResult {
                    to_id: n.to.id.clone(),
                    status: "sent",
                    id: n.id,
                    partition: Some(delivered.partition),
                    offset: Some(delivered.offset),
                });
            }
            Err(error) => {
                tracing::debug!(%error, "a bulk send's notification was not acknowledged");
                results.push(RecipientResult {
                    to_id: n.to.id.clone(),
                    status: "failed",
                    id: n.id,
                    partition: None,
                    offset: None,
                });
            }
        }
    }
    let failed = results.iter().filter(|r| r.status != "sent").count();
    let message = if failed == 0 {
        "Notifications sent successfully!".to_string()
    } else {
        format!("{failed} of {} notifications not sent; send those with status \"failed\" again", results.len())
    };
    Ok(Sends::Many(BulkSent { message, results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotency_key_names_one_id_per_sender() {
        let id = idempotent_id(&UserId::from(1), "order-42");
        assert_eq!(id, idempotent_id(&UserId::from(1), "order-42"));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, idempotent_id(&UserId::from(3), "order-42"));
        assert_ne!(id, idempotent_id(&UserId::from(1), "order-43"));
        // The separator keeps sender and key apart: (1, "2x") is not (12, "x").
        assert_ne!(idempotent_id(&UserId::from(1), "2x"), idempotent_id(&UserId::from(12), "x"));
    }

    #[test]
    fn a_bulk_key_names_one_id_per_recipient() {
        let (shop, key) = (UserId::parse("shop").unwrap(), "ship-7");
        let alice = UserId::parse("alice").unwrap();
        let id = bulk_idempotent_id(&shop, key, &alice);
        assert_eq!(id, bulk_idempotent_id(&shop, key, &alice), "a retry, whole or in part");
        assert_ne!(id, bulk_idempotent_id(&shop, key, &UserId::parse("bob").unwrap()));
        assert_ne!(id, bulk_idempotent_id(&shop, "ship-8", &alice));
        assert_ne!(id, idempotent_id(&shop, key), "not the single send's id");
    }

    #[test]
    fn idempotency_keys_are_short_printable_ascii() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("idempotency-key", axum::http::HeaderValue::from_str(v).unwrap());
            idempotency_key(&h).map(|k| k.map(str::to_string))
        };
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(with("a b/c:1").unwrap().as_deref(), Some("a b/c:1"));
        assert!(with(&"k".repeat(128)).is_ok());
        for bad in ["", &"k".repeat(129), "tab\there"] {
            assert!(matches!(with(bad), Err(AppError::BadIdempotencyKey)), "{bad:?}");
        }
    }
}
