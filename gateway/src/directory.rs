//! The reference directory's endpoints, `/api/hub` and `/api/hub/stats`,
//! byte for byte (PROTOCOL.md §9), read from the store so every replica
//! agrees; the query, filter, sort and paging are [`crate::hub`]'s. Routed
//! by [`crate::http`]. Errors keep the reference's legacy bodies.

use std::net::SocketAddr;

use edge::http::{empty_response, text_response, Body};
use edge::ClientKey;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::http::{HttpApi, RATE_WINDOW};
use crate::hub::{self, HubStats};
use crate::server::client_ip;

/// The reference's `http.Error`: text/plain, nosniff, the JSON-looking text.
fn hub_error(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = text_response(status, "text/plain; charset=utf-8", hub::error_body(text));
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

impl HttpApi {
    /// CORS headers of the directory endpoints.
    fn cors(&self, response: &mut Response<Body>) {
        if let Some(origin) = &self.inner().allow_origin {
            let headers = response.headers_mut();
            headers.insert("access-control-allow-origin", origin.clone());
            headers.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("GET, OPTIONS"),
            );
            headers.insert(
                "access-control-allow-headers",
                HeaderValue::from_static("Content-Type"),
            );
        }
    }

    fn hub_json<T: Serialize>(&self, value: &T) -> Response<Body> {
        // Go's json.Encoder ends the document with a newline
        let mut body = serde_json::to_vec(value).unwrap_or_default();
        body.push(b'\n');
        let mut response = text_response(StatusCode::OK, "application/json", body);
        response.headers_mut().insert(
            CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        );
        response
    }

    pub(crate) fn hub_stats(&self, method: &Method) -> Response<Body> {
        let mut response = match *method {
            Method::OPTIONS => empty_response(StatusCode::NO_CONTENT),
            Method::GET => self.hub_json(&HubStats {
                online: (self.inner().online)(),
                match_enabled: false,
                match_queue_size: 0,
            }),
            _ => hub_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        };
        self.cors(&mut response);
        response
    }

    pub(crate) async fn hub(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let mut response = self.hub_page(request, peer).await;
        self.cors(&mut response);
        response
    }

    async fn hub_page(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        match *request.method() {
            Method::OPTIONS => return empty_response(StatusCode::NO_CONTENT),
            Method::GET => {}
            _ => return hub_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
        let config = &self.inner().config;
        let store = self.inner().gateway.store();
        let client = ClientKey::of(client_ip(request.headers(), peer, &config.trusted_proxies));
        match store.hit(&format!("hub:{client}"), 1, RATE_WINDOW).await {
            Ok(n) if n > config.hub_requests_per_minute => {
                let mut response = hub_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate limited, try again later",
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(RATE_WINDOW.as_secs()));
                return response;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "hub rate limit unavailable");
                return hub_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service temporarily unavailable",
                );
            }
        }
        let query = match hub::parse_query(request.uri().query().unwrap_or("")) {
            Ok(query) => query,
            Err(e) => return hub_error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let now_millis = self.inner().gateway.clock().now_millis();
        match store.listings(now_millis).await {
            Ok(mut views) => {
                hub::drop_expired(&mut views, now_millis.div_euclid(1000));
                self.hub_json(&hub::page(views, &query, (self.inner().online)()))
            }
            Err(e) => {
                tracing::error!(error = %e, "listings unavailable");
                hub_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service temporarily unavailable",
                )
            }
        }
    }
}
