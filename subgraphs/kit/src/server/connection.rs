//! The accept loop and what it limits per connection: how many are open at once, how long
//! one may wait for a request, how long a request's headers may take.
//!
//! hyper starts its own header-read timer as soon as a connection waits for a request, so
//! with it an idle kept-alive connection could live no longer than a slow header may take.
//! [`WatchedStream`] keeps the two apart: while no request is in progress a connection may
//! stay idle for [`ServerLimits::idle_timeout`], and once the first byte of a request has
//! come, its headers must be complete within [`ServerLimits::header_read_timeout`]. A
//! request is in progress from the moment hyper hands it to the service until its answer's
//! body is sent (a stream of events included); the body and the answer have their own
//! limits (`body`, the request deadline). A connection that switched protocols (a
//! WebSocket) is no longer HTTP: its owner watches it (pings), these timers do not.
//!
//! Over TLS the same holds for the decrypted stream; the handshake before it has a limit of
//! its own, [`ServerLimits::tls_handshake_timeout`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::limits::ServerLimits;
use super::tls::ServerTls;

/// Serves `router` on `listener` until `shutdown` completes, within `limits`; then stops
/// accepting and waits at most [`ServerLimits::shutdown_grace`] for requests in progress.
/// With `tls`, each connection's TLS handshake comes first, within
/// [`ServerLimits::tls_handshake_timeout`]; the limits on requests then apply to what the
/// encrypted stream carries, exactly as on a plain one.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: &ServerLimits,
    tls: Option<ServerTls>,
) -> io::Result<()> {
    let max_connections = limits.effective_max_connections();
    tracing::info!(
        max_connections,
        header_read_timeout_ms = limits.header_read_timeout.as_millis() as u64,
        idle_timeout_ms = limits.idle_timeout.as_millis() as u64,
        tls = tls.is_some(),
        "accepting connections"
    );
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header timer lives in `WatchedStream`, which tells idle from slow.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let timeouts = Timeouts {
        idle: limits.idle_timeout,
        header: limits.header_read_timeout,
    };
    let handshake_timeout = limits.tls_handshake_timeout;
    tokio::pin!(shutdown);
    loop {
        // At the cap, stop accepting: new connections wait in the listen backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            peer,
            router: router.clone(),
            builder: builder.clone(),
            timeouts,
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream).await,
                Some(tls) => {
                    let handshake = tls.acceptor().accept(stream);
                    match tokio::time::timeout(handshake_timeout, handshake).await {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, error = %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake did not finish in time"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace_secs = limits.shutdown_grace.as_secs(), "in-flight requests did not finish in time; stopping anyway");
        }
    }
    Ok(())
}

/// One accepted connection, before its stream (plain or decrypted) is served.
struct Connection {
    peer: SocketAddr,
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    timeouts: Timeouts,
    /// Watched by the graceful stop from accept on, so a stop waits for handshakes too.
    watcher: Watcher,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 (whichever the client speaks) on `stream` until it closes.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            peer,
            router,
            builder,
            timeouts,
            watcher,
        } = self;
        let clock = Arc::new(ConnectionClock::default());
        let io = TokioIo::new(WatchedStream::new(stream, clock.clone(), timeouts));
        let service = tower::service_fn(move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let in_progress = RequestInProgress::start(clock.clone());
            let answer = router.clone().oneshot(request.map(Body::new));
            let clock = clock.clone();
            async move {
                let response = answer.await?;
                if response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                    clock.upgraded.store(true, Ordering::Release);
                    return Ok(response);
                }
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(HeldBody {
                        body,
                        _in_progress: in_progress,
                    })
                }))
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .into_owned();
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%peer, error = %error, "connection closed with an error");
        }
    }
}

/// A failed `accept`: per-connection errors are skipped; running out of file descriptors
/// (the cap set too high for the file limit) waits a moment instead of spinning.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accept failed; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    idle: Duration,
    header: Duration,
}

/// Requests in progress on one connection, and how many have finished (each finish starts
/// a new wait for the next request).
#[derive(Debug, Default)]
struct ConnectionClock {
    in_progress: AtomicUsize,
    finished: AtomicU64,
    /// The connection answered `101 Switching Protocols`: what follows is not HTTP.
    upgraded: AtomicBool,
}

/// Marks a request in progress until dropped.
struct RequestInProgress(Arc<ConnectionClock>);

impl RequestInProgress {
    fn start(clock: Arc<ConnectionClock>) -> Self {
        clock.in_progress.fetch_add(1, Ordering::AcqRel);
        Self(clock)
    }
}

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::AcqRel);
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in progress until it is sent or dropped, so a
/// long stream (server-sent events) is not taken for an idle connection.
struct HeldBody {
    body: Body,
    /// Dropped with the body.
    _in_progress: RequestInProgress,
}

impl hyper::body::Body for HeldBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Where a connection with no request in progress stands.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    since: Instant,
    /// [`ConnectionClock::finished`] when this wait began.
    finished: u64,
    first_byte: Option<Instant>,
}

/// A stream (TCP, or TLS over TCP) that fails its reads once it has waited too long for a
/// request (see the module documentation); hyper then closes the connection.
struct WatchedStream<S> {
    stream: S,
    clock: Arc<ConnectionClock>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    waiting: Option<Waiting>,
    /// HTTP/2 (its preface came first): frames such as pings arrive between requests, so
    /// only the idle limit applies, never the header one.
    http2: Option<bool>,
}

impl<S> WatchedStream<S> {
    fn new(stream: S, clock: Arc<ConnectionClock>, timeouts: Timeouts) -> Self {
        Self {
            stream,
            clock,
            timeouts,
            timer: Box::pin(tokio::time::sleep(timeouts.idle)),
            waiting: None,
            http2: None,
        }
    }

    fn deadline(&self, waiting: &Waiting) -> Instant {
        match (self.http2, waiting.first_byte) {
            (Some(false) | None, Some(first_byte)) => first_byte + self.timeouts.header,
            _ => waiting.since + self.timeouts.idle,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.clock.in_progress.load(Ordering::Acquire) > 0
            || this.clock.upgraded.load(Ordering::Acquire)
        {
            this.waiting = None;
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let finished = this.clock.finished.load(Ordering::Acquire);
        let now = Instant::now();
        let mut waiting = match this.waiting {
            Some(waiting) if waiting.finished == finished => waiting,
            _ => Waiting {
                since: now,
                finished,
                first_byte: None,
            },
        };
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &read
            && buf.filled().len() > before
        {
            let bytes = &buf.filled()[before..];
            this.http2.get_or_insert_with(|| bytes.starts_with(b"PRI "));
            waiting.first_byte.get_or_insert(now);
        }
        this.waiting = Some(waiting);
        if read.is_ready() {
            return read;
        }
        let deadline = this.deadline(&waiting);
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            let what = if waiting.first_byte.is_some() && this.http2 != Some(true) {
                "the request headers did not arrive in time"
            } else {
                "the connection was idle too long"
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
        }
        Poll::Pending
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn server(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        server_with(limits, None).await
    }

    async fn server_with(
        limits: ServerLimits,
        tls: Option<ServerTls>,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let router = Router::new().route("/", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = serve_connections(
                listener,
                router,
                async move {
                    let _ = stopped.await;
                },
                &limits,
                tls,
            )
            .await;
        });
        (address, stop)
    }

    /// Reads until the server closes the connection; returns what it sent.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection");
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_kept_alive_connection_outlives_the_header_timeout_while_idle_then_closes() {
        let (address, _stop) = server(ServerLimits {
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(600),
            ..ServerLimits::default()
        })
        .await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut first = [0u8; 512];
        let n = stream.read(&mut first).await.expect("answer");
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
        // Idle longer than the header timeout: still open for the next request.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let n = stream.read(&mut first).await.expect("answer");
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
        // Then idle past the idle timeout: closed.
        assert_eq!(read_to_close(&mut stream).await, "");
    }

    #[tokio::test]
    async fn headers_sent_a_byte_at_a_time_are_cut_off() {
        let (address, _stop) = server(ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        })
        .await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let closed = async {
            for byte in b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaa" {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = read_to_close(&mut stream).await;
        };
        closed.await;
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        assert!(!String::from_utf8_lossy(&rest).contains("200"));
    }

    /// A server certificate for `localhost`, self-signed, in PEM files under `dir`.
    fn self_signed(dir: &std::path::Path) -> ServerTls {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).expect("write");
        std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write");
        ServerTls::load(&super::super::tls::ServerTlsFiles {
            cert: Some(cert),
            key: Some(key),
        })
        .expect("loads")
        .expect("configured")
    }

    #[tokio::test]
    async fn a_connection_that_never_finishes_the_tls_handshake_is_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (address, _stop) = server_with(
            ServerLimits {
                tls_handshake_timeout: Duration::from_millis(300),
                idle_timeout: Duration::from_secs(60),
                ..ServerLimits::default()
            },
            Some(self_signed(dir.path())),
        )
        .await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        // A TLS record header that promises a ClientHello which never comes.
        stream
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
            .await
            .expect("write");
        assert_eq!(read_to_close(&mut stream).await, "");
    }
}
