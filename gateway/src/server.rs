//! The gateway's HTTP transport layer, on top of the one every listener
//! shares ([`edge::http`]: accept loop, serving a [`Handler`], response
//! builders, problem JSON): what the gateway's JSON APIs add to it — reading
//! a JSON body within limits, JSON integers as JSON Schema counts them, the
//! client's address, and the span of a traced request. The APIs
//! ([`crate::http`] with [`crate::v1`] and [`crate::directory`],
//! [`crate::internal`], [`crate::admin`]) use this module; it uses none of
//! them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use edge::http::Problem;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;

pub use edge::http::{Body, Handler};

/// A request body must arrive within this; `--body-read-timeout-ms`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on a JSON request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

/// The client's IP by the edge rule ([`edge::client_ip()`]).
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr, trusted: &edge::TrustedProxies) -> IpAddr {
    edge::client_ip(headers, peer.ip(), trusted)
}

/// Decodes one `application/x-www-form-urlencoded` component the way Go's
/// `url.QueryUnescape` does (`+` is a space, invalid UTF-8 replaced); `None`
/// on a bad escape (a `%` not followed by two hex digits), which the
/// decoder itself would pass through.
pub fn unescape(component: &str) -> Option<String> {
    let well_escaped = component.split('%').skip(1).all(|after| {
        after
            .as_bytes()
            .get(..2)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_escaped {
        return None;
    }
    let spaced = component.replace('+', " ");
    Some(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// The span of one traced HTTP request: method and route template now, the
/// status once answered. Nothing from the body, the query or the headers.
pub fn request_span(method: &Method, route: &'static str) -> tracing::Span {
    let method = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    };
    tracing::info_span!(
        "http_request",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Reads a JSON body of at most `max_bytes` within `timeout`: 413 problem
/// when larger, 408 when it does not arrive in time, 400 problem when it is
/// not the expected JSON object. An empty body (no bytes) reads as `{}`,
/// so requests whose fields are all optional need none.
pub async fn read_json<T: DeserializeOwned>(
    body: Incoming,
    max_bytes: usize,
    timeout: Duration,
) -> Result<T, Problem> {
    let read = tokio::time::timeout(timeout, Limited::new(body, max_bytes).collect()).await;
    let bytes = match read {
        Err(_) => {
            return Err(Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body did not arrive within {} ms",
                    timeout.as_millis()
                ),
            ))
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {max_bytes} bytes"),
            ))
        }
        Ok(Err(_)) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "request body could not be read",
            ))
        }
    };
    // Only a body of no bytes at all: whitespace alone is not JSON.
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
    // Every body of these APIs is a JSON object (serde would also read a
    // struct from an array of its fields).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "request body is not a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not valid JSON for this endpoint: {e}"),
        )
    })
}

/// Deserialises a JSON integer the way JSON Schema counts one: any number
/// with no fractional part (`60`, `60.0`, `6e1`) within `i64`; anything
/// else is an error (400).
pub fn json_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Integer;
    impl serde::de::Visitor<'_> for Integer {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer within 64 bits")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            // ±2^63 as a float stands for a literal out of range (an
            // in-range one is read as an integer, not a float).
            if v.fract() == 0.0 && v > i64::MIN as f64 && v < i64::MAX as f64 {
                Ok(v as i64)
            } else {
                Err(E::custom("not an integer within 64 bits"))
            }
        }
    }
    deserializer.deserialize_any(Integer)
}

/// Deserialises an optional nested object the way JSON Schema types it:
/// absent or `null` is `None`, an object is read as `T`, and anything else
/// is an error (400). serde alone would also read a struct from an array
/// of its fields, so `"listing": []` would pass as an empty listing;
/// [`read_json`] guards the top level the same way.
pub fn json_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::Error;
    use serde::Deserialize;
    let Some(object) =
        Option::<serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)?
    else {
        return Ok(None);
    };
    T::deserialize(serde_json::Value::Object(object))
        .map(Some)
        .map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_follows_go_query_unescape() {
        assert_eq!(unescape("a+b%20c%2B").as_deref(), Some("a b c+"));
        assert_eq!(unescape("%E2%9C%93").as_deref(), Some("\u{2713}"));
        assert_eq!(unescape("%ff").as_deref(), Some("\u{fffd}"));
        assert_eq!(unescape("").as_deref(), Some(""));
        for bad in ["%", "%4", "%zz", "a%+1", "%%41"] {
            assert_eq!(unescape(bad), None, "{bad}");
        }
    }

    #[test]
    fn integers_written_as_floats_are_read_exactly() {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(deserialize_with = "json_integer")]
            n: i64,
        }
        let read = |n: &str| serde_json::from_str::<Body>(&format!(r#"{{"n": {n}}}"#)).map(|b| b.n);
        // 2^51 - 1 as a float: serde_json's fast parse (without the
        // float_roundtrip feature) lands half a unit off (schemathesis).
        assert_eq!(read("2251799813685247.0").unwrap(), 2_251_799_813_685_247);
        assert_eq!(read("60.0").unwrap(), 60);
        assert_eq!(read("6e1").unwrap(), 60);
        assert_eq!(read("-1e15").unwrap(), -1_000_000_000_000_000);
        for bad in ["0.5", "1e19", "-1e19", "\"1\"", "true"] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nested_objects_are_read_from_objects_only() {
        #[derive(Debug, Default, PartialEq, serde::Deserialize)]
        struct Inner {
            #[serde(default)]
            a: String,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Outer {
            #[serde(default, deserialize_with = "json_object")]
            inner: Option<Inner>,
        }
        let read = |json: &str| serde_json::from_str::<Outer>(json).map(|o| o.inner);
        assert_eq!(read("{}").unwrap(), None);
        assert_eq!(read(r#"{"inner": null}"#).unwrap(), None);
        assert_eq!(read(r#"{"inner": {}}"#).unwrap(), Some(Inner::default()));
        assert_eq!(
            read(r#"{"inner": {"a": "x"}}"#).unwrap(),
            Some(Inner { a: "x".into() })
        );
        for bad in [r#"[]"#, r#"["x"]"#, r#""x""#, "1", "true", r#"{"a": 1}"#] {
            let json = format!(r#"{{"inner": {bad}}}"#);
            assert!(read(&json).is_err(), "{json}");
        }
    }
}
