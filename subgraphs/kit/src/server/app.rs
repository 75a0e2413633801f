//! A built server: its router, `/metrics` when that has a listener of its own, the tasks
//! that run beside it, and the one way every server command runs it ([`App::run`]): serve
//! until a shutdown future completes, finish in-flight requests, then stop the tasks.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use super::limits::ServerLimits;

/// Tasks that run beside a server (outbox consumers, revocation followers,
/// recomposition). They stop when asked, or when this value is dropped.
#[derive(Debug)]
pub struct BackgroundTasks {
    stop: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Default for BackgroundTasks {
    fn default() -> Self {
        Self {
            stop: tokio::sync::watch::channel(false).0,
            handles: Vec::new(),
        }
    }
}

impl BackgroundTasks {
    /// Runs `task`, handing it a receiver that turns `true` when the tasks are to stop.
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handles.push(tokio::spawn(task(self.stop.subscribe())));
    }

    /// Asks every task to stop and waits for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for handle in self.handles.drain(..) {
            let _ = handle.await;
        }
    }
}

/// Why a server could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("binding the metrics listener {address}: {source}")]
    MetricsListener {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
}

/// A server ready to run: what `serve`, `gateway` and `subgraph` build, and what an
/// operator's own program builds with the gateway's builder.
#[derive(Debug)]
pub struct App {
    /// Every route, with the request limits and common layers applied.
    pub router: Router,
    /// `/metrics` on a listener of its own at this address; `None` when `/metrics` is a
    /// route of [`App::router`].
    pub metrics: Option<(SocketAddr, Router)>,
    pub tasks: BackgroundTasks,
    pub limits: ServerLimits,
    /// The certificate and key to serve over TLS (HTTP/2 and HTTP/1.1 by ALPN); `None`
    /// serves plain HTTP.
    pub tls: Option<super::ServerTls>,
}

/// Where `/metrics` goes: into `router` when `metrics_listen` is `None`, else apart, on a
/// listener of its own at that address (the second value, for [`App::metrics`]). Call it
/// before the common layers, so `/metrics` gets them either way.
pub fn place_metrics(
    router: Router,
    metrics: Router,
    metrics_listen: Option<SocketAddr>,
) -> (Router, Option<(SocketAddr, Router)>) {
    match metrics_listen {
        Some(address) => (router, Some((address, metrics))),
        None => (router.merge(metrics), None),
    }
}

impl App {
    /// Serves on `listener` (and `/metrics` on its own listener, when it has one) until
    /// `shutdown` completes; then stops accepting, lets in-flight requests finish within
    /// [`ServerLimits::shutdown_grace`], and stops the background tasks.
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        if let Some((address, metrics)) = self.metrics.take() {
            let metrics_listener = TcpListener::bind(address)
                .await
                .map_err(|source| RunError::MetricsListener { address, source })?;
            let metrics_address = metrics_listener.local_addr()?;
            tracing::info!(%metrics_address, "metrics at http://{metrics_address}/metrics");
            self.tasks.spawn(move |mut stop| async move {
                let stopped = async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                };
                if let Err(err) = axum::serve(metrics_listener, metrics)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!(error = %err, "the metrics listener failed");
                }
            });
        }
        let served = super::serve(listener, self.router, shutdown, &self.limits, self.tls).await;
        self.tasks.stop().await;
        tracing::info!("stopped");
        Ok(served?)
    }
}
