//! A TCP proxy between a process and Redis that a test can cut or slow down:
//! [`Proxy::cut`] drops every connection through it and, until [`Proxy::restore`], accepts new
//! ones but forwards nothing (a black hole: the client's commands time out, as across a real
//! partition, rather than being refused at once); [`Proxy::delay_replies`] holds every chunk
//! from the server for a while before passing it on (requests reach the server at once: it
//! does the work, the client hears of it late).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A cuttable TCP proxy on a loopback port; stops when dropped.
pub struct Proxy {
    addr: String,
    /// true while cut.
    cut: Arc<watch::Sender<bool>>,
    /// Milliseconds each reply chunk is held.
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        Proxy::start_on("127.0.0.1", upstream).await
    }

    /// Listens on a free port of `ip` and forwards to `upstream` (`host:port`).
    pub async fn start_on(ip: &str, upstream: &str) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let cut = Arc::new(watch::Sender::new(false));
        let upstream = upstream.to_string();
        let state = cut.clone();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(
                    client,
                    upstream.clone(),
                    state.subscribe(),
                    delay.clone(),
                ));
            }
        });
        Proxy {
            addr,
            cut,
            delay_ms,
            task,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Drops every connection and forwards nothing until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Holds every reply chunk `delay` before passing it on (zero: at once).
    pub fn delay_replies(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
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

async fn serve(
    mut client: TcpStream,
    upstream: String,
    mut cut: watch::Receiver<bool>,
    delay_ms: Arc<AtomicU64>,
) {
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
    let (mut client_rx, mut client_tx) = client.split();
    let (mut server_rx, mut server_tx) = server.split();
    let requests = tokio::io::copy(&mut client_rx, &mut server_tx);
    let replies = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let partitioned = tokio::select! {
        _ = requests => false,
        _ = replies => false,
        _ = cut.wait_for(|c| *c) => true,
    };
    if partitioned {
        // A real partition sends no FIN either: hold the sockets silently until the cut
        // ends, then drop them.
        let _ = cut.wait_for(|c| !*c).await;
    }
}
