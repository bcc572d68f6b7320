//! A minimal HTTP/1.1 client (hyper, one connection per request) for `/ping` and `/api/hub`,
//! over TLS for `https://` URLs (trusting the test CA).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response, fully read.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: hyper::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// The body parsed as JSON (surrounding whitespace, e.g. a trailing newline, is allowed).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.text().trim())
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// Sends one request. `url` is `http://host:port/path?query`.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    request_with_body(method, url, headers, Vec::new()).await
}

/// `POST url` with a JSON body.
pub async fn post_json(url: &str, body: &serde_json::Value) -> HttpResponse {
    request_with_body(
        "POST",
        url,
        &[("Content-Type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await
}

/// An HTTP/1.1 connection over `io`, driven by a task of its own.
async fn handshake<T>(io: T) -> SendRequest<Full<Bytes>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("http handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// Sends one request with a body.
pub async fn request_with_body(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> HttpResponse {
    let (tls, host, path) = super::client::split_url(url);
    let (host, path) = (host.as_str(), path.as_str());
    let fut = async {
        let stream = TcpStream::connect(host).await.expect("connect");
        let mut sender = if tls {
            let stream = super::tls::connect(stream, host, super::tls::client_config())
                .await
                .expect("TLS handshake");
            handshake(stream).await
        } else {
            handshake(stream).await
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let resp = sender.send_request(req).await.expect("send request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("read body")
            .to_bytes()
            .to_vec();
        HttpResponse {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no response within {REQUEST_TIMEOUT:?}"))
}

/// `GET url`.
pub async fn get(url: &str) -> HttpResponse {
    request("GET", url, &[]).await
}
