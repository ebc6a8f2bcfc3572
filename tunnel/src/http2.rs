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
}

/// A tuned endpoint for `url`. `https://` URLs trust `ca_pem` if given, else the
/// system roots; `http://` is h2c (plaintext HTTP/2).
pub fn endpoint(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, EndpointError> {
    let tls = match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(EndpointError::Scheme(url.to_owned())),
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|source| EndpointError::InvalidUrl {
            url: url.to_owned(),
            source,
        })?
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_adaptive_window(false)
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true);
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
