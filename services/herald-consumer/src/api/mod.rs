//! The consumer's HTTP API: reads (`GET /notifications/{userID}`), streams
//! (`GET /notifications/{userID}/stream`), the claims route other members call, and the
//! operational routes. Each file is one concern: who calls ([`caller`]), who answers for a
//! partition ([`owners`]), the read barrier ([`barrier`]), the served JSON ([`served`]), and
//! the routes themselves ([`reads`], [`streams`], [`internal`]).

pub mod barrier;
pub mod caller;
pub mod error;
pub mod internal;
pub mod log_ends;
pub mod owners;
pub mod reads;
pub mod served;
pub mod slots;
pub mod state;
pub mod streams;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use herald_kit::http::{EdgeArgs, HttpMetrics, ReadyCheck, with_operational_routes_and_streams};

pub use self::state::AppState;
use crate::claims::CLAIMS_PATH;

/// The whole consumer API (its metrics are served on their own listener); `/readyz` answers
/// `ready`. Streams are outside the edge's request-concurrency limit (they have their own,
/// `--max-streams`): a stream waits for the read barrier like a read, and a move that ends many
/// streams at once must not turn their reconnects into refusals.
pub fn router(state: AppState, ready: ReadyCheck, http: HttpMetrics, edge: &EdgeArgs) -> Router {
    let live: ReadyCheck = Arc::new(|| Ok(()));
    let api = Router::new()
        .route("/notifications/{user_id}", get(reads::notifications))
        .route(CLAIMS_PATH, get(internal::claims))
        .with_state(state.clone());
    let streams = Router::new().route("/notifications/{user_id}/stream", get(streams::stream)).with_state(state);
    with_operational_routes_and_streams(api, streams, http, edge, live, ready)
}
