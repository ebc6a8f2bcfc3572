//! The agent's connection to the database: TCP, then TLS as the connection's
//! mode asks (libpq's sslmode: `disable`, `prefer`, `require`, `verify-full`).

use std::str::FromStr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    Disable,
    /// TLS if the server offers it, without checking its certificate.
    #[default]
    Prefer,
    /// TLS or nothing, without checking the certificate (as libpq's `require`).
    Require,
    /// TLS with the certificate checked against the agent's CA bundle
    /// (`POSTERN_DB_CA_CERT`, else the system roots) and the target's host name.
    VerifyFull,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "prefer" => Ok(TlsMode::Prefer),
            "disable" => Ok(TlsMode::Disable),
            "require" => Ok(TlsMode::Require),
            "verify-full" => Ok(TlsMode::VerifyFull),
            other => Err(format!(
                "unknown TLS mode {other:?} (expected disable, prefer, require or verify-full)"
            )),
        }
    }
}

/// A byte stream to the database, plain or TLS.
pub trait DbIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> DbIo for T {}
pub type DbStream = Box<dyn DbIo>;

#[derive(Debug, thiserror::Error)]
pub enum DbTlsError {
    #[error("the database at {0} does not offer TLS, which this connection requires")]
    NotOffered(String),
    #[error("{0} answered the TLS request with {1:#04x}: not a PostgreSQL server?")]
    BadAnswer(String, u8),
    #[error("TLS to the database at {target}: {source}")]
    Handshake {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS to the database: {0}")]
    Config(String),
    #[error("cannot ask {target} for TLS: {source}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
}

/// Negotiates TLS on a fresh connection to `target` (`host:port`). Returns the
/// stream and whether it is encrypted.
pub async fn negotiate(
    mut socket: TcpStream,
    target: &str,
    mode: TlsMode,
    ca_pem: Option<&[u8]>,
) -> Result<(DbStream, bool), DbTlsError> {
    if mode == TlsMode::Disable {
        return Ok((Box::new(socket), false));
    }
    let io = |source| DbTlsError::Io {
        target: target.to_owned(),
        source,
    };
    socket.write_all(&SSL_REQUEST).await.map_err(io)?;
    // Exactly one byte: anything the server sends after it before the
    // handshake would be trusted as if it had come through TLS (CVE-2021-23222).
    let answer = socket.read_u8().await.map_err(io)?;
    match answer {
        b'S' => {}
        b'N' if mode == TlsMode::Prefer => return Ok((Box::new(socket), false)),
        b'N' => return Err(DbTlsError::NotOffered(target.to_owned())),
        other => return Err(DbTlsError::BadAnswer(target.to_owned(), other)),
    }
    let config = client_config(mode, ca_pem)?;
    let host = host_of(target);
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| DbTlsError::Config(format!("{host:?} is not a server name: {e}")))?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, socket)
        .await
        .map_err(|source| DbTlsError::Handshake {
            target: target.to_owned(),
            source,
        })?;
    Ok((Box::new(stream), true))
}

fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn client_config(mode: TlsMode, ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, DbTlsError> {
    let mut config = if mode == TlsMode::VerifyFull {
        postern_tunnel::tls::client_config(ca_pem).map_err(|e| DbTlsError::Config(e.to_string()))?
    } else {
        // `prefer` and `require`: encryption without authentication of the
        // server, as libpq does for those modes.
        postern_tunnel::pinned::unverified_client_config()
            .map_err(|e| DbTlsError::Config(e.to_string()))?
    };
    // PostgreSQL's SSLRequest handshake uses no ALPN.
    config.alpn_protocols.clear();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_hosts() {
        assert_eq!("".parse::<TlsMode>(), Ok(TlsMode::Prefer));
        assert_eq!("verify-full".parse::<TlsMode>(), Ok(TlsMode::VerifyFull));
        assert!(
            "verify-ca"
                .parse::<TlsMode>()
                .unwrap_err()
                .contains("verify-full")
        );
        assert_eq!(host_of("db.internal:5432"), "db.internal");
        assert_eq!(host_of("[::1]:5432"), "::1");
        assert_eq!(host_of("127.0.0.1:5432"), "127.0.0.1");
    }
}
