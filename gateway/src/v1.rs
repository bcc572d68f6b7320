//! The public room API for native clients (our extension): `POST
//! /v1/rooms`, `GET /v1/rooms/{id}`, `POST /v1/rooms/{id}/tickets` and its
//! OpenAPI document; errors as RFC 9457 problem JSON. Routed by
//! [`crate::http`].

use std::net::SocketAddr;
use std::time::Duration;

use edge::http::{json_response, method_not_allowed, not_found, text_response, Body, Problem};
use edge::ClientKey;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use protocol::reject::texts;
use protocol::{ErrorCode, Reject};
use serde::{Deserialize, Serialize};

use crate::http::{HttpApi, RATE_WINDOW};
use crate::problem::RejectProblem as _;
use crate::rooms::{CreateRoomRequest, ListingRequest, PASSWORD_HEX_LEN};
use crate::server::{client_ip, read_json};

/// Retry hint when the argon2 pool is full.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The OpenAPI document of the public room API.
const OPENAPI_JSON: &str = include_str!("openapi.json");

/// `POST /v1/rooms`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRoomBody {
    #[serde(default)]
    password: String,
    #[serde(default, deserialize_with = "crate::server::json_integer")]
    ephemeral: i64,
    #[serde(default, deserialize_with = "crate::server::json_integer")]
    expiry: i64,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    key_encoded: String,
    /// Extension: SHA-256 hex of the owner secret the creator keeps.
    #[serde(default)]
    owner_hash: String,
}

#[derive(Debug, Serialize)]
struct RejectBody {
    code: &'static str,
    msg: String,
}

impl From<Reject> for RejectBody {
    fn from(reject: Reject) -> RejectBody {
        RejectBody {
            code: reject.code.as_str(),
            msg: reject.msg.into_owned(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedRoomBody {
    room_id: String,
    expires_at: i64,
    has_password: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    listing_error: Option<RejectBody>,
}

/// `POST /v1/rooms/{id}/tickets`.
#[derive(Debug, Default, Deserialize)]
struct TicketBody {
    #[serde(default)]
    password: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TicketCreatedBody {
    ticket: String,
    expires_at: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomBody {
    room_id: String,
    has_password: bool,
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    member_count: Option<u32>,
}

/// A refusal as problem JSON; guess-limit refusals say when to retry.
fn refusal(reject: &Reject, retry_after: Duration) -> Response<Body> {
    let problem = Problem::from_reject(reject);
    let problem = if reject.code == ErrorCode::RateLimited {
        problem.retry_after(retry_after.as_secs().max(1))
    } else {
        problem
    };
    problem.into_response()
}

/// Whether an API password is "" or a SHA-256 hex (64 hexadecimal
/// characters), as the OpenAPI document says (the WebSocket protocol, for
/// existing clients, only checks the length).
fn is_password_hash(password: &str) -> bool {
    password.is_empty()
        || (password.len() == PASSWORD_HEX_LEN && password.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A room id from a path segment, or `None` when it cannot be one.
fn room_id_segment(segment: &str) -> Option<&str> {
    protocol::client::is_room_id(segment).then_some(segment)
}

impl HttpApi {
    /// `/openapi.json`.
    pub(crate) fn openapi(&self, method: &Method) -> Response<Body> {
        match *method {
            Method::GET | Method::HEAD => {
                let mut response = text_response(StatusCode::OK, "application/json", OPENAPI_JSON);
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                response
            }
            _ => method_not_allowed("GET, HEAD"),
        }
    }

    /// `/v1/rooms/{segment}`.
    pub(crate) async fn room_resource(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        segment: &str,
    ) -> Response<Body> {
        let Some(id) = room_id_segment(segment) else {
            return not_found();
        };
        match *request.method() {
            Method::GET | Method::HEAD => self.room(&request, peer, id).await,
            _ => method_not_allowed("GET, HEAD"),
        }
    }

    /// `/v1/rooms/{segment}/tickets`.
    pub(crate) async fn tickets_resource(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        segment: &str,
    ) -> Response<Body> {
        let Some(id) = room_id_segment(segment) else {
            return not_found();
        };
        match *request.method() {
            Method::POST => self.ticket(request, peer, id).await,
            _ => method_not_allowed("POST"),
        }
    }

    /// Reads a request body as JSON within the API's limits (`max_body_bytes`,
    /// `body_read_timeout`); the error is the refusal to answer with.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        body: Incoming,
    ) -> Result<T, Response<Body>> {
        let config = &self.inner().config;
        read_json(body, config.max_body_bytes, config.body_read_timeout)
            .await
            .map_err(|problem| problem.into_response())
    }

    pub(crate) async fn create_room(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let config = &self.inner().config;
        let gateway = &self.inner().gateway;
        let ip = client_ip(request.headers(), peer, &config.trusted_proxies);
        let body: CreateRoomBody = match self.json(request.into_body()).await {
            Ok(body) => body,
            Err(problem) => return problem,
        };
        if !is_password_hash(&body.password) {
            return refusal(&Reject::invalid("invalid password format"), RATE_WINDOW);
        }
        let listing = body.public.then_some(ListingRequest {
            title: body.title,
            description: body.description,
            tags: body.tags,
            key_encoded: body.key_encoded,
        });
        let created = match gateway
            .create_room(CreateRoomRequest {
                password: body.password,
                ephemeral: body.ephemeral,
                expiry_secs: body.expiry,
                listing,
                client_ip: Some(ip),
                owner_hash: body.owner_hash,
            })
            .await
        {
            Ok(created) => created,
            Err(reject) if reject == texts::RATE_LIMITED => return refusal(&reject, RATE_WINDOW),
            Err(reject) => return refusal(&reject, BUSY_RETRY_AFTER),
        };
        let room = created.room;
        let mut response = json_response(
            StatusCode::CREATED,
            &CreatedRoomBody {
                has_password: room.has_password,
                expires_at: room.expires_at,
                listing_error: created.listing_error.map(RejectBody::from),
                room_id: room.id.clone(),
            },
        );
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/rooms/{}", room.id)) {
            response.headers_mut().insert(LOCATION, location);
        }
        response
    }

    async fn room(
        &self,
        request: &Request<Incoming>,
        peer: SocketAddr,
        room_id: &str,
    ) -> Response<Body> {
        let config = &self.inner().config;
        let client = ClientKey::of(client_ip(request.headers(), peer, &config.trusted_proxies));
        match self
            .inner()
            .gateway
            .store()
            .hit(&format!("lookup:{client}"), 1, RATE_WINDOW)
            .await
        {
            Ok(n) if n > config.room_lookups_per_minute => {
                return refusal(&texts::RATE_LIMITED, RATE_WINDOW);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "room lookup rate limit unavailable");
                return refusal(&texts::UNAVAILABLE, BUSY_RETRY_AFTER);
            }
        }
        match self.inner().gateway.room_info(room_id).await {
            Ok(info) => {
                let mut response = json_response(
                    StatusCode::OK,
                    &RoomBody {
                        room_id: info.room_id,
                        has_password: info.has_password,
                        expires_at: info.expires_at,
                        member_count: info.member_count,
                    },
                );
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(reject) => refusal(&reject, BUSY_RETRY_AFTER),
        }
    }

    async fn ticket(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        room_id: &str,
    ) -> Response<Body> {
        let gateway = &self.inner().gateway;
        let ip = client_ip(
            request.headers(),
            peer,
            &self.inner().config.trusted_proxies,
        );
        let body: TicketBody = match self.json(request.into_body()).await {
            Ok(body) => body,
            Err(problem) => return problem,
        };
        if !is_password_hash(&body.password) {
            return refusal(&Reject::invalid("invalid password format"), RATE_WINDOW);
        }
        if let Err(reject) = gateway.check_password(room_id, &body.password, ip).await {
            // the guess limit lasts a window; a busy argon2 pool clears in moments
            let retry_after = if reject == texts::TOO_MANY_GUESSES {
                gateway.config().password_guess_window
            } else {
                BUSY_RETRY_AFTER
            };
            return refusal(&reject, retry_after);
        }
        match gateway.issue_ticket(room_id).await {
            Ok(issued) => {
                let mut response = json_response(
                    StatusCode::CREATED,
                    &TicketCreatedBody {
                        ticket: issued.ticket,
                        expires_at: issued.expires_at,
                    },
                );
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(reject) => refusal(&reject, BUSY_RETRY_AFTER),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_in_paths_must_look_like_room_ids() {
        assert_eq!(
            room_id_segment("V1StGXR8_Z5jdHi6B-myT"),
            Some("V1StGXR8_Z5jdHi6B-myT")
        );
        assert_eq!(room_id_segment(""), None);
        assert_eq!(room_id_segment("a%20b"), None);
        assert_eq!(room_id_segment(&"a".repeat(65)), None);
    }

    #[test]
    fn the_openapi_document_is_valid_json_naming_every_public_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/v1/rooms",
            "/v1/rooms/{roomId}",
            "/v1/rooms/{roomId}/tickets",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
    }
}
