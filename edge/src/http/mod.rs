//! The HTTP transport every listener shares (the relay's public and admin
//! ports, the gateway's public, internal and admin ports): accepting
//! connections with back-off, serving a [`Handler`] with limits on request
//! heads, panics answered 500 and a graceful shutdown; the response
//! builders (plain text, JSON, RFC 9457 problem JSON); and the admin
//! endpoints (`/healthz`, `/readyz`, `/metrics`).
//!
//! What a request means is not decided here: the relay and the gateway
//! route requests themselves and only use these parts.

mod admin;
mod problem;
mod response;
mod server;

pub use admin::{AdminApi, AdminProbe, PROMETHEUS_TEXT};
pub use problem::{Problem, PROBLEM_JSON};
pub use response::{
    empty_response, json_response, method_not_allowed, not_found, plain_text, text_response, Body,
};
pub use server::{
    accept, answer_or_500, serve, serve_with, Handler, HttpLimits, DEFAULT_MAX_HEADER_BYTES,
    HEADER_READ_TIMEOUT, MIN_MAX_HEADER_BYTES, SHUTDOWN_GRACE,
};
