//! HTTP/2 tuning shared by clients and servers, and the client endpoint builder.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Per-stream flow-control window: one session can have this much in flight,
/// enough to fill a fast link without waiting on WINDOW_UPDATEs.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Per-connection window, shared by every session on one connection.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest HTTP/2 frame we accept; fewer, larger frames cost less per byte.
pub const MAX_FRAME_SIZE: u32 = 256 * 1024;
/// Bytes a server may buffer per stream before applying backpressure.
pub const MAX_SEND_BUFFER: usize = 4 * 1024 * 1024;
/// HTTP/2 PING interval for direct connections (load balancers may not forward PINGs,
/// which is why streams also carry application keepalives).
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Replicas sit in one network: a peer that does not answer within this is
/// treated as gone, so the caller moves on to another one.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid gateway URL {url:?}: {source}")]
    InvalidUrl {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("gateway URL {0:?} must start with https:// or http://")]
    Scheme(String),
    #[error("TLS set-up for {url:?} failed: {source}")]
    Tls {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("peer TLS set-up failed: {0}")]
    PeerTls(#[from] crate::tls::TlsError),
}

fn tuned(endpoint: Endpoint) -> Endpoint {
    endpoint
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_adaptive_window(false)
        // As the servers do: fewer, larger DATA frames, and received messages
        // that fit one frame are sliced out of it without a copy (`wire`).
        .max_frame_size(MAX_FRAME_SIZE)
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true)
}

/// A tuned endpoint for `url`. `https://` URLs trust `ca_pem` if given, else the
/// system roots; `http://` is h2c (plaintext HTTP/2).
pub fn endpoint(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, EndpointError> {
    let tls = match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(EndpointError::Scheme(url.to_owned())),
    };
    let mut endpoint = tuned(Endpoint::from_shared(url.to_owned()).map_err(|source| {
        EndpointError::InvalidUrl {
            url: url.to_owned(),
            source,
        }
    })?);
    if tls {
        let config = match ca_pem {
            Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(config)
            .map_err(|source| EndpointError::Tls {
                url: url.to_owned(),
                source,
            })?;
    }
    Ok(endpoint)
}

/// A channel that connects on first use (and reconnects after failures).
pub fn lazy_channel(url: &str, ca_pem: Option<&[u8]>) -> Result<Channel, EndpointError> {
    Ok(endpoint(url, ca_pem)?.connect_lazy())
}

/// A lazily connected channel to another replica's peer port: TLS pinned to the
/// certificate with `fingerprint`, or h2c when it is `None`.
pub fn peer_channel(addr: &str, fingerprint: Option<&str>) -> Result<Channel, EndpointError> {
    let url = format!("http://{addr}");
    let endpoint = tuned(
        Endpoint::from_shared(url.clone())
            .map_err(|source| EndpointError::InvalidUrl { url, source })?,
    )
    .connect_timeout(PEER_CONNECT_TIMEOUT);
    let Some(fingerprint) = fingerprint else {
        return Ok(endpoint.connect_lazy());
    };
    let connector =
        tokio_rustls::TlsConnector::from(crate::pinned::pinned_client_config(fingerprint)?);
    let addr = addr.to_owned();
    let dial = tower::service_fn(move |_: http::Uri| {
        let connector = connector.clone();
        let addr = addr.clone();
        async move {
            let tcp =
                tokio::time::timeout(PEER_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            tcp.set_nodelay(true)?;
            let name = rustls_pki_types::ServerName::try_from(crate::pinned::PEER_SERVER_NAME)
                .map_err(std::io::Error::other)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(dial))
}
