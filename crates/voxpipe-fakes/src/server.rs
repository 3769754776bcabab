//! Serving a fake's router on loopback.

use axum::Router;
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// The address fakes bind by default: loopback, a free port.
pub(crate) fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Binds `addr` and serves `router` until `stop` is cancelled (open streams are cut then: a
/// fake that is stopped mid-call behaves like a server that went away).
///
/// Accepted sockets get `TCP_NODELAY`, like real streaming APIs: without it Nagle's algorithm
/// holds small SSE events back until the previous one is acknowledged (up to 40 ms of delayed
/// ACK on loopback), which skews measured latencies and, on a paused test clock, lets the
/// clock jump past a stall timeout while an event sits in the kernel.
pub(crate) async fn serve(
    addr: SocketAddr,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "fake server: cannot set TCP_NODELAY");
        }
    });
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = axum::serve(listener, router) => {}
            () = stop.cancelled() => {}
        }
    });
    Ok((addr, task))
}
