//! A TCP proxy between a process and Redis that a test can cut: [`Proxy::cut`] drops every
//! connection through it and, until [`Proxy::restore`], accepts new ones but forwards nothing
//! (a black hole: the client's commands time out, as across a real partition, rather than
//! being refused at once).

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A cuttable TCP proxy on a loopback port; stops when dropped.
pub struct Proxy {
    addr: String,
    /// true while cut.
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let cut = Arc::new(watch::Sender::new(false));
        let upstream = upstream.to_string();
        let state = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(client, upstream.clone(), state.subscribe()));
            }
        });
        Proxy { addr, cut, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Drops every connection and forwards nothing until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards again (to new connections; the cut ones stay dropped).
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, upstream: String, mut cut: watch::Receiver<bool>) {
    // While cut, a new connection is held open silently (a black hole).
    if *cut.borrow_and_update() {
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
        // Closed by the cut it arrived in, as a real partition's connections end up.
        let _ = client.shutdown().await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let partitioned = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = cut.wait_for(|c| *c) => true,
    };
    if partitioned {
        // A real partition sends no FIN either: hold the sockets silently until the cut
        // ends, then drop them.
        let _ = cut.wait_for(|c| !*c).await;
    }
}
