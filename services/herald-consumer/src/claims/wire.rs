//! What a member publishes about its claims at `GET /internal/claims`, for the other members.
//!
//! Pods of two versions read each other's answers during a rolling update, so the form only
//! grows: `url` and `partitions` (the group's assignment) are what every version reads; a
//! member that hands partitions off also sends `claims` (each partition it can answer for, and
//! how) and `leaving`. A reader ignores fields and states it does not know; an answer without
//! `claims` comes from an older member and means "serving what `partitions` names, no handoffs".

use serde::{Deserialize, Serialize};

/// The path a member publishes its claims on, for the other members.
pub const CLAIMS_PATH: &str = "/internal/claims";

/// How a member holds a partition, as it tells the others; better first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimState {
    /// The group's owner, restored: answers completely.
    Serving,
    /// Revoked and still read outside the group until the new owner serves it: answers
    /// completely.
    HandingOff,
    /// A standby, caught up once: answers completely.
    Standby,
    /// The group's owner, still rebuilding the partition from the log: answers only once done.
    Restoring,
    /// A standby still reading the log up to its end: does not answer yet.
    Warming,
    /// A state of a newer version: ignored.
    #[serde(other)]
    Unknown,
}

impl ClaimState {
    /// Whether a member in this state can answer a read completely now (after its read barrier).
    pub fn answers(self) -> bool {
        matches!(self, ClaimState::Serving | ClaimState::HandingOff | ClaimState::Standby)
    }
}

/// One partition a member holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerClaim {
    pub partition: i32,
    pub state: ClaimState,
}

/// What a member publishes about itself at [`CLAIMS_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerClaims {
    /// The member's advertised URL.
    pub url: String,
    /// Partitions of the topic the group assigned to it.
    pub partitions: Vec<i32>,
    /// Every partition it holds and how (absent from members that do not hand off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<PeerClaim>>,
    /// It is shutting down: it left the group and will take no partition again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

impl PeerClaims {
    /// Each partition this member can be asked about and how it holds it; an older member's
    /// assignment counts as serving.
    pub fn holdings(&self) -> Vec<(i32, ClaimState)> {
        match &self.claims {
            Some(claims) => {
                claims.iter().filter(|c| c.state != ClaimState::Unknown).map(|c| (c.partition, c.state)).collect()
            }
            None => self.partitions.iter().map(|p| (*p, ClaimState::Serving)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_travel_as_json() {
        let c = PeerClaims { url: "http://10.0.0.7:8081".into(), partitions: vec![0, 4], claims: None, leaving: false };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json, serde_json::json!({"url": "http://10.0.0.7:8081", "partitions": [0, 4]}));
        let with = PeerClaims {
            claims: Some(vec![
                PeerClaim { partition: 0, state: ClaimState::Serving },
                PeerClaim { partition: 2, state: ClaimState::HandingOff },
            ]),
            leaving: true,
            ..c
        };
        assert_eq!(
            serde_json::to_value(&with).unwrap(),
            serde_json::json!({"url": "http://10.0.0.7:8081", "partitions": [0, 4], "leaving": true,
                "claims": [{"partition": 0, "state": "serving"}, {"partition": 2, "state": "handing_off"}]})
        );
    }

    #[test]
    fn an_older_members_answer_means_serving_its_assignment() {
        // What consumers before handoffs publish.
        let old: PeerClaims = serde_json::from_str(r#"{"url":"http://a:8081","partitions":[1,3]}"#).unwrap();
        assert_eq!(old.holdings(), [(1, ClaimState::Serving), (3, ClaimState::Serving)]);
        assert!(!old.leaving);
    }

    #[test]
    fn a_newer_members_fields_and_states_are_skipped() {
        let newer: PeerClaims = serde_json::from_str(
            r#"{"url":"http://a:8081","partitions":[1],"zone":"b","claims":[
                {"partition":1,"state":"serving","since":5},{"partition":2,"state":"syncing"}]}"#,
        )
        .unwrap();
        assert_eq!(newer.holdings(), [(1, ClaimState::Serving)]);
    }

    #[test]
    fn what_this_version_sends_an_older_one_reads() {
        // The form consumers before handoffs read: url and partitions, nothing denied.
        #[derive(Deserialize)]
        struct Old {
            url: String,
            partitions: Vec<i32>,
        }
        let sent = PeerClaims {
            url: "http://b:8081".into(),
            partitions: vec![5],
            claims: Some(vec![PeerClaim { partition: 4, state: ClaimState::HandingOff }]),
            leaving: true,
        };
        let old: Old = serde_json::from_str(&serde_json::to_string(&sent).unwrap()).unwrap();
        assert_eq!((old.url.as_str(), old.partitions), ("http://b:8081", vec![5]));
    }
}
