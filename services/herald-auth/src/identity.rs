//! Who a request comes from, what they may do, and why a request is not authenticated.

use herald_model::UserId;

/// The longest `name` claim a sender's notifications carry; a longer one is ignored.
pub const MAX_NAME_CLAIM_BYTES: usize = 256;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No authentication is configured: anyone who reaches the port.
    Anyone,
    /// The static service token.
    Service,
    /// Another consumer of the same pipeline (the peer token).
    Peer,
    /// A user, by a JWT: its `sub`, its scopes, and its `name` claim when it has a usable one
    /// (a string of at most [`MAX_NAME_CLAIM_BYTES`]).
    User { id: UserId, send_any: bool, read_any: bool, name: Option<Box<str>> },
}

impl Identity {
    /// Whether this caller may read `user`'s notifications.
    pub fn may_read(&self, user: &UserId) -> bool {
        match self {
            Identity::Anyone | Identity::Service | Identity::Peer => true,
            Identity::User { id, read_any, .. } => *read_any || id == user,
        }
    }

    /// The sender a send is made as: `from` as given, or (for a user who gave none) the user;
    /// `Err` when this caller may not send as `from` (or gave none and is not a user).
    pub fn sender(&self, from: Option<UserId>) -> Result<UserId, SendAs> {
        match (self, from) {
            (Identity::User { id, .. }, None) => Ok(id.clone()),
            (Identity::User { id, send_any, .. }, Some(from)) if *send_any || from == *id => Ok(from),
            (Identity::User { .. }, Some(_)) => Err(SendAs::Forbidden),
            (Identity::Peer, _) => Err(SendAs::Forbidden),
            (_, Some(from)) => Ok(from),
            (_, None) => Err(SendAs::Missing),
        }
    }
}

impl Identity {
    /// The name this caller's token gives `user`: only a user's own `name` claim, for themself.
    pub fn name_of(&self, user: &UserId) -> Option<&str> {
        match self {
            Identity::User { id, name, .. } if id == user => name.as_deref(),
            _ => None,
        }
    }
}

/// Why a send cannot be made as the sender asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAs {
    /// No `fromID`, and the caller is not a user it could default to.
    Missing,
    /// Not this caller's to send as.
    Forbidden,
}

/// Why a request is not authenticated: answered 401 with `WWW-Authenticate: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send Authorization: Bearer <token>")]
    Missing,
    #[error("malformed Authorization header: expected Bearer <token>")]
    Malformed,
    #[error("invalid bearer token")]
    Unknown,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token's algorithm is not accepted")]
    WrongAlgorithm,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token's sub is not a valid user id")]
    BadSubject,
    #[error("the token is not a well-formed JWT")]
    NotAJwt,
    #[error("this route needs the peer token")]
    PeerOnly,
}
