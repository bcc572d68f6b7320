//! RFC 9457 problem details: the one error shape of the gateway's JSON APIs
//! (the public room API and the internal API).
//!
//! `type` is `about:blank`, so `title` is the HTTP reason phrase and
//! `detail` says what went wrong. When the error is an Arthas refusal, the
//! extension member `code` carries its protocol code (`E006`, ...) and
//! `detail` its exact text, so a relay calling the internal API can send the
//! very error frame the in-process gateway would have produced.
//!
//! The reference directory (`/api/hub`) keeps its own legacy error bodies;
//! see [`crate::hub`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use protocol::reject::texts;
use protocol::{ErrorCode, Reject};
use serde::{Deserialize, Serialize};

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` = see `status`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The reason phrase of `status`.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened, for a human (for refusals: the protocol's exact text).
    pub detail: String,
    /// Extension: the Arthas error code when the problem is a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Seconds to wait before retrying (also sent as `Retry-After`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "retryAfter"
    )]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A plain HTTP problem.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: None,
            retry_after: None,
        }
    }

    /// The problem for an Arthas refusal, with the status that fits it.
    pub fn from_reject(reject: &Reject) -> Problem {
        let mut problem = Problem::new(status_of(reject), reject.msg.clone());
        problem.code = Some(reject.code.as_str().to_owned());
        problem
    }

    /// Adds a retry hint.
    pub fn retry_after(mut self, secs: u64) -> Problem {
        self.retry_after = Some(secs);
        self
    }

    /// The refusal this problem carries, when it carries one.
    pub fn to_reject(&self) -> Option<Reject> {
        let code = ErrorCode::parse(self.code.as_deref()?)?;
        Some(Reject::owned(code, self.detail.clone()))
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The HTTP status for a refusal.
pub fn status_of(reject: &Reject) -> StatusCode {
    if *reject == texts::UNAVAILABLE || *reject == texts::FAILED_TO_CREATE {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match reject.code {
        ErrorCode::RoomNotFound => StatusCode::NOT_FOUND,
        ErrorCode::RoomFull => StatusCode::CONFLICT,
        ErrorCode::RoomExpired => StatusCode::GONE,
        ErrorCode::WrongPassword | ErrorCode::NotOwner => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::NotInRoom
        | ErrorCode::Invalid
        | ErrorCode::HubFull
        | ErrorCode::InvalidListing
        | ErrorCode::MatchDisabled => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_serialises_to_rfc_9457_fields() {
        let json =
            serde_json::to_value(Problem::new(StatusCode::NOT_FOUND, "no such route")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "no such route"
            })
        );
    }

    #[test]
    fn refusals_keep_code_and_exact_text() {
        let p = Problem::from_reject(&texts::WRONG_PASSWORD);
        assert_eq!(p.status, 403);
        assert_eq!(p.title, "Forbidden");
        assert_eq!(p.code.as_deref(), Some("E006"));
        assert_eq!(p.detail, "wrong password");
        assert_eq!(p.to_reject(), Some(texts::WRONG_PASSWORD));
    }

    #[test]
    fn statuses_follow_the_meaning_of_the_code() {
        assert_eq!(status_of(&texts::ROOM_NOT_FOUND), StatusCode::NOT_FOUND);
        assert_eq!(status_of(&texts::ROOM_EXPIRED), StatusCode::GONE);
        assert_eq!(
            status_of(&texts::TOO_MANY_GUESSES),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_of(&texts::UNAVAILABLE),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_of(&texts::INVALID_TICKET), StatusCode::FORBIDDEN);
        assert_eq!(status_of(&Reject::invalid("bad")), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_response_has_the_problem_media_type_and_retry_after() {
        let r = Problem::new(StatusCode::TOO_MANY_REQUESTS, "slow down")
            .retry_after(60)
            .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(r.headers()[RETRY_AFTER], "60");
    }

    #[test]
    fn an_unknown_code_is_no_refusal() {
        let mut p = Problem::new(StatusCode::BAD_GATEWAY, "x");
        assert_eq!(p.to_reject(), None);
        p.code = Some("Z999".into());
        assert_eq!(p.to_reject(), None);
    }
}
