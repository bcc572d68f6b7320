//! W3C trace context on the internal API: a relay's `create_room` or
//! `join_room` and the gateway's `POST /internal/v1/...` are one trace.
//!
//! The relay injects `traceparent` (and `tracestate`) from its current
//! span into the request ([`inject`]); the gateway makes the request's span
//! a child of it ([`continue_from`]). Both go through the process's global
//! propagator, which the binaries set only when trace export is on: without
//! it nothing is written or read. Only the internal API continues traces;
//! the public API never takes a trace context from a client.

use hyper::HeaderMap;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Writes the current span's context into `headers`.
pub fn inject(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Makes `span` continue the trace whose context `headers` carry, if any.
pub fn continue_from(span: &tracing::Span, headers: &HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}
