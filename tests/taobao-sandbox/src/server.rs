//! The HTTP server: an accept loop over hyper's HTTP/1 connections, so that faults can do what a
//! plain `axum::serve` cannot — close a connection without answering.
//!
//! ```text
//! accept ─► connection task ─► router (gateway / oauth / admin)
//!                 │                 └─ response carries DropConnection? ─► service error:
//!                 │                    hyper closes the socket, nothing is written
//!                 └─ shutdown: graceful (finish the request in hand) for 2 s, then abort
//! ```
//!
//! Shutdown: [`serve`] stops accepting when its `shutdown` future completes, lets connections
//! finish the request in hand for [`GRACE`], then drops whatever is left (a held `slow` reply
//! must not keep a test or the demo from exiting).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::gateway::DropConnection;
use crate::{Sandbox, SandboxConfig};

/// How long connections may finish their request after shutdown begins.
pub const GRACE: Duration = Duration::from_secs(2);

/// Returned by the per-connection service to make hyper close the socket without a reply.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct ConnectionDropped;

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let tracker = TaskTracker::new();
    let graceful = CancellationToken::new();
    let hard = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // Shutdown requested: stop accepting; connections are wound down below.
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let router = router.clone();
                    let graceful = graceful.clone();
                    let hard = hard.clone();
                    tracker.spawn(connection(stream, peer, router, graceful, hard));
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tracker.close();
    graceful.cancel();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::info!(
            open = tracker.len(),
            "closing connections still open after the grace period"
        );
        hard.cancel();
        tracker.wait().await;
    }
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    graceful: CancellationToken,
    hard: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        async move {
            let resp = match router.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if resp.extensions().get::<DropConnection>().is_some() {
                Err(ConnectionDropped)
            } else {
                Ok(resp)
            }
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        // The connection ran to its end (client closed, or a fault dropped it).
        r = conn.as_mut() => r,
        // Shutdown: finish the request in hand, then close; abort at the deadline.
        _ = graceful.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = hard.cancelled() => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// A running sandbox. Dropping the handle stops it too (without waiting).
#[derive(Debug)]
pub struct SandboxHandle {
    addr: SocketAddr,
    sandbox: Arc<Sandbox>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl SandboxHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The TOP gateway: `…/router/rest`.
    pub fn rest_url(&self) -> String {
        format!("{}/router/rest", self.base_url())
    }
    /// The OAuth base (`…/oauth`, with `/authorize` and `/token` below it), as `[taobao]
    /// oauth_url` expects it.
    pub fn oauth_url(&self) -> String {
        format!("{}/oauth", self.base_url())
    }
    /// The admin API base: `…/sandbox`.
    pub fn admin_url(&self) -> String {
        format!("{}/sandbox", self.base_url())
    }
    /// The sandbox itself, for in-process control (same operations as the admin API).
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }
    /// Stops accepting, lets in-flight requests finish (at most [`GRACE`]) and waits.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(t) => t.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a sandbox on `127.0.0.1:0`.
pub async fn spawn(cfg: SandboxConfig) -> std::io::Result<SandboxHandle> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    spawn_on(listener, cfg)
}

/// Starts a sandbox on a listener the caller bound. Must be called inside a tokio runtime.
pub fn spawn_on(listener: TcpListener, cfg: SandboxConfig) -> std::io::Result<SandboxHandle> {
    let addr = listener.local_addr()?;
    let sandbox = Sandbox::new(cfg);
    let router = crate::router(sandbox.clone());
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task =
        tokio::spawn(async move { serve(listener, router, stopped.cancelled_owned()).await });
    tracing::info!(%addr, "taobao sandbox listening");
    Ok(SandboxHandle {
        addr,
        sandbox,
        stop,
        task: Some(task),
    })
}
