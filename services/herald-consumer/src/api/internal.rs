//! The route only other members call: `GET /internal/claims`, the partitions this member holds.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::caller::peer_checked;
use super::state::AppState;
use crate::claims::PeerClaims;

/// The partitions this member holds and how, for its peers (who must show the peer token when
/// one is configured).
pub async fn claims(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = peer_checked(&state, &headers) {
        return herald_kit::http::unauthorized(&e);
    }
    axum::Json::<PeerClaims>(state.moves.published()).into_response()
}
