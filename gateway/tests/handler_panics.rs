//! A request handler that panics is answered with a 500 problem, counted
//! (`arthas_gateway_panics_total`), and the server keeps serving: the same
//! connection and new ones.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use arthas_gateway::http::{HttpApi, HttpConfig};
use arthas_gateway::metrics::Api;
use bytes::Bytes;
use edge::http::Handler;
use futures_util::future::join_all;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use support::{gateway, gateway_config, get, start};

/// The public API, except that `/boom` panics in its handler.
struct Panicking(HttpApi);

impl Handler for Panicking {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if request.uri().path() == "/boom" {
            panic!("a handler bug, injected by the test");
        }
        self.0.handle(request, peer).await
    }

    fn panicked(&self) {
        Handler::panicked(&self.0)
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_500_problem_is_counted_and_the_server_keeps_serving() {
    let gateway = gateway(gateway_config());
    let api = HttpApi::new(gateway.clone(), HttpConfig::default(), Arc::new(|| 0));
    let server = start(Panicking(api)).await;
    let boom = format!("{}/boom", server.base);
    let answers = join_all((0..5).map(|_| get(&boom))).await;
    for answer in &answers {
        let problem = answer.problem(500);
        assert_eq!(problem["title"], "Internal Server Error");
    }
    assert_eq!(gateway.metrics().panics(Api::Public), 5);
    assert!(gateway
        .metrics()
        .render()
        .contains("arthas_gateway_panics_total{api=\"public\"} 5"));
    // Still serving.
    let ping = get(&format!("{}/ping", server.base)).await;
    assert_eq!((ping.status.as_u16(), ping.text().as_str()), (200, "pong"));
}
