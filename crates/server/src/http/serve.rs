//! The HTTP/1.1 server loop (what `axum::serve` does, with hyper's limits set by us).
//!
//! Why not `axum::serve`: hyper answers a request whose head breaks one of *its* limits by
//! itself, with an empty body, before any of our code runs. `axum::serve` leaves those limits
//! at hyper's defaults (at most 100 header fields), so a request with 101 small headers got
//! an empty 431. Here hyper's field-count limit is raised well above ours
//! ([`super::MAX_HEADER_FIELDS`]), so such requests reach [`super::request_limits`], which
//! answers in the JSON error shape. What hyper still answers itself (no hook exists to shape
//! it): a request line it cannot parse (400), a URI over 65,534 bytes (414), more than
//! [`HYPER_MAX_HEADERS`] fields or a head over its read buffer (~400 KiB) (431).
//!
//! Also: a header read timeout (30 s, hyper's default once a timer is set), the peer address
//! as [`ConnectInfo`] (the sync CIDR gate), WebSocket upgrades, and graceful shutdown (stop
//! accepting, let open connections finish their requests).

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Header fields hyper accepts before answering 431 itself (above ours, see module docs).
///
/// Trap: hyper sizes two arrays by this for *every* request (one entry per field, 32 bytes
/// each, initialised one by one): at 1,000 that was 64 KiB written and ~10 k instructions
/// per request, 1.4 % of an origin's instructions per synced post (callgrind). 256 keeps
/// the JSON 431 for up to 2.5 times our limit, at a quarter of the cost.
pub const HYPER_MAX_HEADERS: usize = 256;

/// Serves `app` on `listener` until `signal` completes, then lets open connections finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        signal.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = signal_tx.closed() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            let app = app.clone();
            async move { tower::ServiceExt::oneshot(app, req.map(Body::new)).await }
        });
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .max_headers(HYPER_MAX_HEADERS)
                .timer(TokioTimer::new());
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                _ = signal_tx.closed() => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
    Ok(())
}
