//! Response builders.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::Problem;

/// The response body type of every route.
pub type Body = Full<Bytes>;

/// A response with `status`, `content_type` and `body`.
pub fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A `text/plain` response.
pub fn plain_text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    text_response(status, "text/plain", body)
}

/// An empty response with `status`.
pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A JSON response with `status` (a 500 problem if `value` cannot be
/// serialised).
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => text_response(status, "application/json", body),
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "response serialisation failed",
            )
            .into_response()
        }
    }
}

/// 405 problem naming the methods the resource supports (`Allow`).
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this resource supports {allow}"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// 404 problem.
pub fn not_found() -> Response<Body> {
    Problem::new(StatusCode::NOT_FOUND, "no such resource").into_response()
}
