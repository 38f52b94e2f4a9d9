//! The public port's guards against slow and many clients.
//!
//! `axum::serve` runs hyper without a timer, so hyper's header-read timeout is off: a client
//! sending one header byte a second held a connection for ever, and nothing capped connections
//! or requests. [`serve`] runs hyper-util's server with a Tokio timer instead:
//!
//! - **header-read timeout**: the whole request head must arrive within it (HTTP/1; the same
//!   timer closes a keep-alive connection that sends no next request);
//! - **idle timeout**: a connection with no byte read or written for this long is shut down
//!   (gracefully: a request in progress finishes first; HTTP/2 included);
//! - **connection cap**: at most [`EdgeLimits::connections_max`] open; beyond it the listener
//!   stops accepting, so the kernel's backlog holds the rest.
//!
//! [`shed_load`] caps the requests in progress: one more is answered at once with `503
//! overloaded` and `Retry-After` (counted in `http_requests_shed_total`) instead of queueing
//! without bound behind a slow store.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::{BoxError, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::ServiceBuilder;

use crate::problem::ApiError;

/// How long open connections may finish their requests once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The guards of [`serve`] and [`shed_load`].
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Longest time for a request's head (request line and headers) to arrive.
    pub header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed. Keep it above the request timeout.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub connections_max: usize,
    /// Most requests in progress at once; more are shed with `503 overloaded`.
    pub requests_max: usize,
}

impl Default for EdgeLimits {
    /// Sized for a small instance (2 cores, a 16-connection database pool): 256 requests in
    /// progress is far above what the pool drains in a request timeout, so only a flood is shed.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            connections_max: 1024,
            requests_max: 256,
        }
    }
}

/// `router` with at most `requests_max` requests in progress; one more is answered `503
/// overloaded` at once. Apply it outermost, so the cap covers every route and fallback.
pub fn shed_load(router: Router, requests_max: usize) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: BoxError| async {
                metrics::counter!("http_requests_shed_total").increment(1);
                ApiError::Overloaded
            }))
            .load_shed()
            // Global: axum clones the layer into every route, and the cap is for all of them.
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(requests_max.max(1))),
    )
}

/// Serves `app` on `listener` (HTTP/1 and HTTP/2) with the guards of [`EdgeLimits`] until
/// `shutdown` completes; then stops accepting and lets open connections finish, for at most
/// [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: EdgeLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let connections_max = limits.connections_max.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(connections_max));
    let (stopping, stop_seen) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(limits.idle_timeout / 2);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small requests and answers: Nagle's algorithm would only add latency.
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let service = TowerToHyperService::new(app.clone());
        let stop_seen = stop_seen.clone();
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let activity = Activity::new();
            let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
            let connection = builder.serve_connection(io, service);
            serve_connection(connection, activity, idle_timeout, stop_seen).await;
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection holds a slot: all slots back means all connections closed.
    let all = u32::try_from(connections_max).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
    Ok(())
}

/// Drives one connection until it ends, shutting it down gracefully when idle or stopping.
async fn serve_connection<C, E>(
    connection: C,
    activity: Activity,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    C: Future<Output = Result<(), E>> + GracefulConnection,
    E: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    // Once asked to close, a connection has one more idle period to finish its request; one
    // whose client stopped reading is then dropped rather than held for ever.
    let mut closing_deadline: Option<Instant> = None;
    loop {
        let idle_at = activity.last() + idle_timeout;
        tokio::select! {
            outcome = connection.as_mut() => {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(idle_at), if closing_deadline.is_none() => {
                if activity.last() + idle_timeout <= Instant::now() {
                    tracing::debug!("idle connection closed");
                    connection.as_mut().shut_down();
                    closing_deadline = Some(Instant::now() + idle_timeout);
                }
            }
            changed = stop.changed(), if closing_deadline.is_none() => {
                if changed.is_err() || *stop.borrow() {
                    connection.as_mut().shut_down();
                    closing_deadline = Some(Instant::now() + idle_timeout);
                }
            }
            () = tokio::time::sleep_until(closing_deadline.unwrap_or(idle_at)), if closing_deadline.is_some() => {
                tracing::debug!("connection dropped: it did not finish after being asked to close");
                return;
            }
        }
    }
}

/// A connection that can be asked to finish its requests and close.
trait GracefulConnection {
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S, E, B> GracefulConnection for auto::Connection<'_, I, S, E>
where
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = hyper::Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// When a connection last moved a byte.
#[derive(Clone)]
struct Activity {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self { origin: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A TCP stream that records its traffic in an [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
