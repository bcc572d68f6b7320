//! RFC 9457 problem details: the error shape of every JSON API.
//!
//! `type` is `about:blank`, so `title` is the HTTP reason phrase and
//! `detail` says what went wrong. An application may add an error `code`
//! (the gateway puts its protocol refusal codes there) and a retry hint.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
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
    /// What happened, for a human.
    pub detail: String,
    /// Extension: the application's error code, when it has one.
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

    /// Adds a retry hint.
    pub fn retry_after(mut self, secs: u64) -> Problem {
        self.retry_after = Some(secs);
        self
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
    fn the_response_has_the_problem_media_type_and_retry_after() {
        let r = Problem::new(StatusCode::TOO_MANY_REQUESTS, "slow down")
            .retry_after(60)
            .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(r.headers()[RETRY_AFTER], "60");
    }
}
