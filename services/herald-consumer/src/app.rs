//! The consumer's HTTP API: `GET /notifications/{userID}` plus the operational routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald_kit::http::{HttpMetrics, JsonError, ReadyCheck, with_operational_routes};
use prometheus::Registry;

use crate::group::GroupStatus;
use crate::store::{Store, Stored};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub status: Arc<GroupStatus>,
}

/// The whole consumer API.
pub fn router(state: AppState, registry: Registry, http: HttpMetrics) -> Router {
    let status = state.status.clone();
    let ready: ReadyCheck = Arc::new(move || status.ready());
    let live: ReadyCheck = Arc::new(|| Ok(()));
    let api = Router::new().route("/notifications/{user_id}", get(notifications)).with_state(state);
    with_operational_routes(api, registry, http, live, ready)
}

async fn notifications(State(state): State<AppState>, Path(raw): Path<String>) -> Response {
    let user = match raw.parse::<u64>() {
        Ok(id) if id > 0 && raw.bytes().all(|b| b.is_ascii_digit()) => id,
        _ => {
            return JsonError::new(StatusCode::BAD_REQUEST, "userID must be a positive integer").into_response();
        }
    };
    let found = state.store.get(user);
    if found.is_empty() {
        return axum::Json(serde_json::json!({
            "message": "No notifications found for user",
            "notifications": [],
        }))
        .into_response();
    }
    axum::Json(NotificationList { notifications: &found }).into_response()
}

#[derive(serde::Serialize)]
struct NotificationList<'a> {
    notifications: &'a [Arc<Stored>],
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use herald_kit::model::{Notification, seed_users};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn mk_app() -> (Router, Arc<Store>) {
        let registry = Registry::new();
        let store = Arc::new(Store::new(100));
        let state = AppState { store: store.clone(), status: Arc::new(GroupStatus::default()) };
        let http = HttpMetrics::register(&registry).unwrap();
        (router(state, registry, http), store)
    }

    async fn get_json(app: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let resp = app.clone().oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn answers_for_users_with_and_without_notifications() {
        let (app, store) = mk_app();
        let users = seed_users();
        store.insert(Notification::new(users[0].clone(), users[1].clone(), "one".into()), 3, 0);
        store.insert(Notification::new(users[2].clone(), users[1].clone(), "two".into()), 3, 1);

        let (status, body) = get_json(&app, "/notifications/2").await;
        assert_eq!(status, StatusCode::OK);
        let list = body["notifications"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["message"], "one");
        assert_eq!(list[1]["from"]["name"], "Rick");
        assert_eq!(list[1]["offset"], 1);
        assert!(body.get("message").is_none());

        let (status, body) = get_json(&app, "/notifications/4").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"message": "No notifications found for user", "notifications": []}));
    }

    #[tokio::test]
    async fn rejects_ids_that_are_not_positive_integers() {
        let (app, _) = mk_app();
        for bad in ["abc", "0", "-1", "1.5", "%2B1", "99999999999999999999999"] {
            let (status, body) = get_json(&app, &format!("/notifications/{bad}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(body["message"], "userID must be a positive integer");
        }
    }

    #[tokio::test]
    async fn not_ready_until_assigned() {
        let (app, _) = mk_app();
        let (status, body) = get_json(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["message"].as_str().unwrap().contains("assignment"));
        assert_eq!(get_json(&app, "/healthz").await.0, StatusCode::OK);
    }
}
