//! Accept loops: TLS or h2c on the public port (gRPC and HTTP/JSON together),
//! plain HTTP on the internal port (metrics, health).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use postern_tunnel::http2::{
    CONNECTION_WINDOW, MAX_FRAME_SIZE, MAX_SEND_BUFFER, PING_INTERVAL, PING_TIMEOUT, STREAM_WINDOW,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buf_size(MAX_SEND_BUFFER)
        // Every session is a stream; many users share a connection through a load balancer.
        .max_concurrent_streams(10_000)
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder
}

/// Serves `router` on `listener` until `stop` is cancelled; then stops
/// accepting and sends every connection an HTTP/2 GOAWAY, so clients open new
/// streams elsewhere while the streams in flight carry on, until they end or
/// `kill` drops every connection at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let builder = Arc::new(builder());
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
            _ = kill.cancelled() => break,
        };
        let _ = socket.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let kill = kill.clone();
        let watcher = graceful.watcher();
        match &acceptor {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let tls = tokio::select! {
                        tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)) => tls,
                        _ = kill.cancelled() => return,
                    };
                    match tls {
                        Ok(Ok(stream)) => connection(stream, builder, service, watcher, kill).await,
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
            None => {
                tokio::spawn(connection(socket, builder, service, watcher, kill));
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = kill.cancelled() => {}
    }
}

async fn connection<I>(
    io: I,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: TowerToHyperService<Router>,
    watcher: hyper_util::server::graceful::Watcher,
    kill: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let conn = watcher.watch(conn);
    tokio::select! {
        result = conn => if let Err(e) = result { debug!(error = %e, "connection ended with an error") },
        _ = kill.cancelled() => {}
    }
}
