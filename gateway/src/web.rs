//! The web client, embedded at build time from the repository's `web/`
//! directory (`debug-embed`: debug builds embed too, so a binary never reads
//! the file system at run time and `cargo run` from any directory works).
//!
//! Routing is the reference SPA's: an existing file is served (`/assets/*`
//! as immutable), anything else gets `index.html` with `no-cache`, so the
//! client's own router sees every path. HTML carries a strict CSP: the
//! client loads only its own scripts and styles and connects only to its
//! own origin (`'self'`, which covers `ws:`/`wss:` to the same host) and the
//! origins configured for it ([`ContentSecurityPolicy`]), never to any
//! WebSocket host.
//!
//! Where the page's WebSocket goes: by default this origin's `/ws` (a relay
//! serves the page itself, or an Ingress routes `/ws` of the public host to
//! the relays). A gateway reached on its own address, with the relays
//! elsewhere (`--relay-urls`), writes their `ws(s)://` URLs into the page's
//! `<meta name="arthas-relays">` ([`WebClient::new`]); the page then picks
//! one of them, so the address an operator opens first works. Their origins
//! join the CSP's `connect-src`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use rust_embed::Embed;

use crate::server::unescape;
use edge::http::Problem;

/// The embedded `web/` tree (tests, tooling and docs left out; `vendor/`
/// holds the client's pinned third-party ES modules, committed so that a
/// build needs no npm).
#[derive(Embed)]
#[folder = "../web/"]
#[allow_missing = true]
#[exclude = "tests/*"]
#[exclude = "tools/*"]
#[exclude = "node_modules/*"]
#[exclude = "package.json"]
#[exclude = "package-lock.json"]
#[exclude = "README.md"]
#[exclude = ".*"]
struct WebAssets;

/// The page every unknown path falls back to.
const INDEX: &str = "index.html";
/// Where fingerprinted build output lives (safe to cache forever).
const IMMUTABLE_PREFIX: &str = "assets/";

const CACHE_IMMUTABLE: &str = "public, immutable, max-age=31536000";
const CACHE_NONE: &str = "no-cache";

/// The Content-Security-Policy of every HTML page: the client's own
/// scripts, styles and images only, and connections (fetch, WebSocket) to
/// its own origin plus the configured ones, e.g. the relays' public
/// `wss://` origin when they are not behind the page's own host.
#[derive(Debug, Clone)]
pub struct ContentSecurityPolicy {
    /// The header, built once.
    header: HeaderValue,
}

impl Default for ContentSecurityPolicy {
    fn default() -> Self {
        ContentSecurityPolicy::same_origin()
    }
}

/// An origin a page may connect to: `scheme://host[:port]`, scheme one of
/// `wss`, `ws`, `https`, `http`, nothing else (a path, a wildcard, a
/// separator that would end the directive).
fn connect_origin(raw: &str) -> Result<String, String> {
    let bad = || format!("{raw:?} is not an origin like wss://relays.example.com[:port]");
    let uri: hyper::Uri = raw.parse().map_err(|_| bad())?;
    let scheme = uri.scheme_str().ok_or_else(bad)?;
    let authority = uri.authority().ok_or_else(bad)?.as_str();
    let host_chars =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if !matches!(scheme, "wss" | "ws" | "https" | "http")
        || !matches!(uri.path(), "" | "/")
        || uri.query().is_some()
        || authority.is_empty()
        || !authority.chars().all(host_chars)
    {
        return Err(bad());
    }
    Ok(format!("{scheme}://{authority}"))
}

impl ContentSecurityPolicy {
    /// Connections to the page's own origin only.
    pub fn same_origin() -> ContentSecurityPolicy {
        ContentSecurityPolicy::new(&[]).expect("no origins to refuse")
    }

    /// Connections to the page's own origin and exactly `connect_origins`
    /// (each `scheme://host[:port]`); anything else is refused.
    pub fn new(connect_origins: &[String]) -> Result<ContentSecurityPolicy, String> {
        let mut connect = String::from("'self'");
        for origin in connect_origins {
            connect.push(' ');
            connect.push_str(&connect_origin(origin.trim())?);
        }
        let text = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
             connect-src {connect}; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
        );
        let header = HeaderValue::from_str(&text).map_err(|e| e.to_string())?;
        Ok(ContentSecurityPolicy { header })
    }

    /// The header's text.
    pub fn as_str(&self) -> &str {
        self.header.to_str().unwrap_or_default()
    }
}

/// Headers every web-client response carries.
fn harden(response: &mut Response<Full<Bytes>>, csp: Option<&ContentSecurityPolicy>) {
    let headers = response.headers_mut();
    if let Some(csp) = csp {
        headers.insert("content-security-policy", csp.header.clone());
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

fn file_response(
    name: &str,
    method: &Method,
    cache: Option<&'static str>,
    csp: &ContentSecurityPolicy,
) -> Option<Response<Full<Bytes>>> {
    let file = WebAssets::get(name)?;
    let mime = file.metadata.mimetype().to_owned();
    let html = mime.starts_with("text/html");
    let body = if *method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(file.data.into_owned())
    };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&mime) {
        headers.insert(CONTENT_TYPE, value);
    }
    if let Some(cache) = cache {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    }
    harden(&mut response, html.then_some(csp));
    Some(response)
}

/// The Cache-Control of an existing file: build output under `assets/` is
/// fingerprinted (cache forever), the index must always be revalidated,
/// anything else is left to the browser's heuristics (as the reference).
fn cache_control(name: &str) -> Option<&'static str> {
    if name == INDEX {
        Some(CACHE_NONE)
    } else if name.starts_with(IMMUTABLE_PREFIX) {
        Some(CACHE_IMMUTABLE)
    } else {
        None
    }
}

/// The placeholder of the relay list in `index.html`.
const RELAYS_META: &str = r#"<meta name="arthas-relays" content="">"#;

/// Checks `--relay-urls`: comma-separated `ws://` or `wss://` URLs without
/// characters that need escaping in HTML.
pub fn parse_relay_urls(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let scheme_ok = u.starts_with("ws://") || u.starts_with("wss://");
            let chars_ok = u
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '&' | ','));
            if scheme_ok && chars_ok && u.len() > "wss://".len() {
                Ok(u.to_owned())
            } else {
                Err(format!("--relay-urls: {u:?} is not a ws:// or wss:// URL"))
            }
        })
        .collect()
}

/// The origin (`scheme://host[:port]`) of a `ws://` or `wss://` URL.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// The web client as this process serves it.
#[derive(Debug, Clone, Default)]
pub struct WebClient {
    /// `index.html` with the relay list filled in (None: the embedded one).
    index: Option<Bytes>,
    /// The pages' Content-Security-Policy.
    csp: ContentSecurityPolicy,
}

impl WebClient {
    /// A client whose page connects to one of `relay_urls` (checked with
    /// [`parse_relay_urls`]; empty: to this origin's `/ws`), its HTML pages
    /// carrying `csp` (which must allow the relays' origins).
    pub fn new(relay_urls: &[String], csp: ContentSecurityPolicy) -> WebClient {
        if relay_urls.is_empty() {
            return WebClient { index: None, csp };
        }
        let index = WebAssets::get(INDEX).map(|file| {
            let html = String::from_utf8_lossy(&file.data).replace(
                RELAYS_META,
                &format!(
                    r#"<meta name="arthas-relays" content="{}">"#,
                    relay_urls.join(" ")
                ),
            );
            Bytes::from(html)
        });
        WebClient { index, csp }
    }

    /// Serves `path` (the request path, `/`-rooted).
    pub fn serve(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let mut response = serve(method, path, &self.csp);
        if let Some(index) = &self.index {
            let is_index = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|m| m.starts_with("text/html"));
            if is_index && response.status() == StatusCode::OK && *method == Method::GET {
                *response.body_mut() = Full::new(index.clone());
            }
        }
        response
    }
}

/// Serves `path` (the request path, `/`-rooted) from the embedded client;
/// HTML pages carry `csp`.
pub fn serve(method: &Method, path: &str, csp: &ContentSecurityPolicy) -> Response<Full<Bytes>> {
    if *method != Method::GET && *method != Method::HEAD {
        let mut response =
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "the web client is GET only")
                .into_response();
        response
            .headers_mut()
            .insert("allow", HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // a path is percent-decoded, but unlike a query a `+` stays a `+`
    let name = unescape(&path.trim_start_matches('/').replace('+', "%2B")).unwrap_or_default();
    if !name.is_empty() && !name.ends_with('/') {
        if let Some(response) = file_response(&name, method, cache_control(&name), csp) {
            return response;
        }
    }
    match file_response(INDEX, method, Some(CACHE_NONE), csp) {
        Some(response) => response,
        None => {
            let mut response = Problem::new(
                StatusCode::NOT_FOUND,
                "the web client is not part of this build",
            )
            .into_response();
            harden(&mut response, None);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tooling_files_are_not_embedded() {
        for name in WebAssets::iter() {
            assert!(!name.starts_with("tests/"), "{name}");
            assert!(!name.starts_with("tools/"), "{name}");
            assert!(!name.starts_with("node_modules/"), "{name}");
            assert!(
                name != "package.json" && name != "package-lock.json",
                "{name}"
            );
        }
    }

    #[test]
    fn vendored_modules_are_served_as_javascript() {
        let modules: Vec<_> = WebAssets::iter()
            .filter(|name| name.starts_with("vendor/") && name.ends_with(".mjs"))
            .collect();
        assert!(
            !modules.is_empty(),
            "the vendored MessagePack modules are embedded"
        );
        for name in modules {
            let response = serve(
                &Method::GET,
                &format!("/{name}"),
                &ContentSecurityPolicy::default(),
            );
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            let mime = response.headers()[CONTENT_TYPE].to_str().unwrap();
            assert!(mime.ends_with("/javascript"), "{name}: {mime}");
        }
    }

    #[test]
    fn the_policy_connects_to_its_own_origin_and_exactly_the_configured_ones() {
        let own = ContentSecurityPolicy::same_origin();
        assert!(
            own.as_str().contains("connect-src 'self'; "),
            "{}",
            own.as_str()
        );
        assert!(!own.as_str().contains("ws:") && !own.as_str().contains("wss:"));
        let relays = ContentSecurityPolicy::new(&[
            "wss://relays.example.com".into(),
            " wss://[2001:db8::1]:8443/ ".into(),
        ])
        .unwrap();
        assert!(relays
            .as_str()
            .contains("connect-src 'self' wss://relays.example.com wss://[2001:db8::1]:8443; "));
        for bad in [
            "wss:",
            "*",
            "wss://*.example.com",
            "relays.example.com",
            "wss://a.example.com/ws",
            "wss://a.example.com?x",
            "wss://a.example.com; script-src *",
            "javascript://x",
            "wss://a b",
        ] {
            assert!(ContentSecurityPolicy::new(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_paths_fall_back_to_index_without_caching() {
        let csp = ContentSecurityPolicy::same_origin();
        let response = serve(&Method::GET, "/some/client/route", &csp);
        if WebAssets::get(INDEX).is_some() {
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[CACHE_CONTROL], CACHE_NONE);
            assert_eq!(response.headers()["content-security-policy"], csp.as_str());
            assert!(response.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"));
        } else {
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
        }
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }

    #[test]
    fn assets_are_immutable_and_the_index_is_revalidated() {
        assert_eq!(cache_control("assets/app-1234.js"), Some(CACHE_IMMUTABLE));
        assert_eq!(cache_control("index.html"), Some(CACHE_NONE));
        assert_eq!(cache_control("favicon.svg"), None);
        assert_eq!(cache_control("js/assets/x.js"), None);
    }

    #[test]
    fn relay_urls_reach_the_page_and_nothing_else_changes() {
        let urls = parse_relay_urls(" ws://127.0.0.1:8090/ws, wss://r.example/ws ").unwrap();
        let client = WebClient::new(&urls, ContentSecurityPolicy::default());
        let page = client.serve(&Method::GET, "/");
        if WebAssets::get(INDEX).is_some() {
            let body = futures_body(page);
            assert!(
                body.contains(r#"<meta name="arthas-relays" content="ws://127.0.0.1:8090/ws wss://r.example/ws">"#),
                "{body}"
            );
        }
        let plain = futures_body(serve(&Method::GET, "/", &ContentSecurityPolicy::default()));
        if WebAssets::get(INDEX).is_some() {
            assert!(
                plain.contains(RELAYS_META),
                "the embedded page has the placeholder"
            );
        }
    }

    fn futures_body(response: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let bytes = futures_util_block(response.into_body().collect())
            .expect("a full body")
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn futures_util_block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn relay_urls_must_be_websocket_urls_safe_in_html() {
        assert_eq!(parse_relay_urls("").unwrap(), Vec::<String>::new());
        for bad in [
            "http://r/ws",
            "ws://r/ws\"><script>",
            "ws://",
            "ws://a b",
            "r:8090",
        ] {
            assert!(parse_relay_urls(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_methods_are_refused() {
        assert_eq!(
            serve(&Method::POST, "/", &ContentSecurityPolicy::default()).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
