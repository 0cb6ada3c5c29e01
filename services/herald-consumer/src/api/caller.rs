//! Who is asking for whose inbox: the [`Caller`] extractor runs the checks every read route
//! makes first — a request marked as forwarded must come from a peer, the caller must be
//! authenticated, the path's user id must be valid, and the caller may read that inbox.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use herald_auth::{AuthError, Identity};
use herald_model::UserId;

use super::error::ReadError;
use super::state::AppState;
use crate::peer::FORWARDED_HEADER;

/// A read route's caller, checked.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Whose inbox is read (the path's `{userID}`).
    pub user: UserId,
    /// Forwarded by another member (which checked who may read): never forwarded again.
    pub forwarded: bool,
    /// The caller's own `Authorization`, passed on to another member when there is no peer token.
    pub credentials: Option<HeaderValue>,
}

/// Whether `headers` carry the peer token, when one is configured.
pub fn peer_checked(state: &AppState, headers: &HeaderMap) -> Result<(), AuthError> {
    if state.peer.token().is_none() {
        return Ok(());
    }
    match state.auth.authenticate(headers) {
        Ok(Identity::Peer) => Ok(()),
        Ok(_) => Err(AuthError::PeerOnly),
        Err(e) => Err(e),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ReadError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ReadError::Relayed(Box::new(rejection.into_response())))?;
        let headers = &parts.headers;
        let forwarded = headers.contains_key(FORWARDED_HEADER);
        // A read marked as forwarded must come from a peer: checked before anything else, so that a
        // spoofed one costs nothing (no peer refresh).
        if forwarded {
            peer_checked(state, headers)?;
        }
        let identity = state.auth.authenticate(headers)?;
        let user = UserId::parse(&raw).ok_or(ReadError::BadUserId)?;
        if !identity.may_read(&user) {
            return Err(ReadError::Forbidden(user));
        }
        Ok(Self { user, forwarded, credentials: headers.get(header::AUTHORIZATION).cloned() })
    }
}
