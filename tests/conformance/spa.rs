//! The embedded web client at `/` (PROTOCOL.md §9: existing files are served, every other
//! path gets `index.html` with `Cache-Control: no-cache`).

use crate::support::http;
use crate::support::Env;

#[tokio::test]
async fn root_serves_index_html_without_caching() {
    let env = Env::start().await;
    let resp = http::get(&format!("{}/", env.http_url(0))).await;
    assert_eq!(resp.status, 200);
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/html"), "content-type {ct:?}");
    assert_eq!(resp.header("cache-control"), Some("no-cache"));
    assert!(
        resp.text().to_lowercase().contains("<html"),
        "not an HTML page"
    );
}

#[tokio::test]
async fn unknown_paths_fall_back_to_index_html() {
    let env = Env::start().await;
    let index = http::get(&format!("{}/", env.http_url(0))).await;
    for path in ["/room/abc", "/join", "/assets/missing.js"] {
        let resp = http::get(&format!("{}{path}", env.http_url(0))).await;
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(resp.body, index.body, "{path} should serve index.html");
    }
}

#[tokio::test]
async fn existing_files_are_served_as_themselves() {
    let env = Env::start().await;
    let index = http::get(&format!("{}/", env.http_url(0))).await;
    let resp = http::get(&format!("{}/favicon.svg", env.http_url(0))).await;
    assert_eq!(resp.status, 200);
    assert_ne!(resp.body, index.body, "/favicon.svg served index.html");
    assert!(resp.text().contains("<svg"), "favicon is not the SVG file");
}
