//! The consumer's HTTP API: reads (`GET /notifications/{userID}`), streams
//! (`GET /notifications/{userID}/stream`), the claims route other members call, and the
//! operational routes. Each file is one concern: who calls ([`caller`]), who answers for a
//! partition ([`owners`]), the read barrier ([`barrier`]), the served JSON ([`served`]), and
//! the routes themselves ([`reads`], [`streams`], [`internal`]).

pub mod barrier;
pub mod caller;
pub mod error;
pub mod internal;
pub mod owners;
pub mod reads;
pub mod served;
pub mod slots;
pub mod state;
pub mod streams;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use herald_kit::http::{EdgeArgs, HttpMetrics, ReadyCheck, with_operational_routes};

pub use self::state::AppState;
use crate::claims::CLAIMS_PATH;

/// The whole consumer API (its metrics are served on their own listener).
pub fn router(state: AppState, http: HttpMetrics, edge: &EdgeArgs) -> Router {
    let status = state.status.clone();
    let ready: ReadyCheck = Arc::new(move || status.ready());
    let live: ReadyCheck = Arc::new(|| Ok(()));
    let api = Router::new()
        .route("/notifications/{user_id}", get(reads::notifications))
        .route("/notifications/{user_id}/stream", get(streams::stream))
        .route(CLAIMS_PATH, get(internal::claims))
        .with_state(state);
    with_operational_routes(api, http, edge, live, ready)
}
