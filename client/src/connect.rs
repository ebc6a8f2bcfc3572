//! `postern connect`: a local listener whose every accepted TCP connection is
//! its own session (its own HTTP/2 stream) through the gateway.

use std::sync::Arc;
use std::time::Duration;

use postern_tunnel::open::open_session_with;
use postern_tunnel::stream::FINISH_LINGER;
use postern_tunnel::{FrameStream, Secret};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tracing::Instrument;

/// Keepalives on idle session streams: below an ALB's 60 s idle timeout.
pub const SESSION_KEEPALIVE: Duration = Duration::from_secs(20);

pub use postern_tunnel::open::ChannelFactory;

#[derive(Clone)]
pub struct Connector {
    channel: Channel,
    fresh_channel: Option<ChannelFactory>,
    token: Secret,
    /// Renews an OIDC login's token before sessions open; `None`: `token` as is.
    tokens: Option<Arc<crate::login::Tokens>>,
    connection: AsciiMetadataValue,
    name: Arc<str>,
    /// Kind postgres: answer the client's encryption requests locally.
    postgres_negotiation: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Stream(#[from] std::io::Error),
}

impl Connector {
    pub fn new(channel: Channel, token: Secret, connection: &str) -> Result<Self, SessionError> {
        let value = AsciiMetadataValue::try_from(connection).map_err(|_| {
            SessionError::Refused(format!("invalid connection name {connection:?}"))
        })?;
        Ok(Self {
            channel,
            fresh_channel: None,
            token,
            tokens: None,
            connection: value,
            name: connection.into(),
            postgres_negotiation: false,
        })
    }

    /// For connections of kind postgres: the agent talks to the database (with
    /// TLS if the connection says so) and the local hop is loopback, so the
    /// client's SSLRequest or GSSENCRequest is declined here (`N`) and the
    /// session starts with its startup message. See [`decline_postgres_encryption`].
    pub fn with_postgres_negotiation(mut self) -> Self {
        self.postgres_negotiation = true;
        self
    }

    /// Retries use a fresh channel from `factory` rather than the shared one,
    /// whose connection may be to the very replica that is going away.
    pub fn with_fresh_channels(mut self, factory: ChannelFactory) -> Self {
        self.fresh_channel = Some(factory);
        self
    }

    /// Each session gets a bearer from `tokens`, renewed when it is about to expire.
    pub fn with_tokens(mut self, tokens: Arc<crate::login::Tokens>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Opens a session and splices `socket` onto it until both sides close.
    /// Returns (bytes sent, bytes received).
    pub async fn session(&self, mut socket: TcpStream) -> Result<(u64, u64), SessionError> {
        let _ = socket.set_nodelay(true);
        let first = if self.postgres_negotiation {
            decline_postgres_encryption(&mut socket, NEGOTIATION_TIMEOUT).await?
        } else {
            Vec::new()
        };
        let token = match &self.tokens {
            Some(tokens) => tokens
                .bearer()
                .await
                .map_err(|e| SessionError::Refused(e.to_string()))?,
            None => self.token.clone(),
        };
        // The gateway continues this span's trace (when traces are exported).
        let mut trace = MetadataMap::new();
        postern_telemetry::propagate::inject_metadata(&tracing::Span::current(), &mut trace);
        let opened = open_session_with(
            self.channel.clone(),
            self.fresh_channel.as_ref(),
            &token,
            &self.connection,
            &trace,
        )
        .await;
        let (outgoing, inbound) = match opened {
            Ok(opened) => (opened.outgoing, opened.inbound),
            Err(status) => {
                if self.postgres_negotiation {
                    // The person's client waits for an answer to its startup:
                    // say why in its own format, so psql prints it.
                    refuse_in_postgres_format(&mut socket, &status).await;
                } else {
                    let _ = socket.shutdown().await;
                }
                return Err(SessionError::Refused(status.message().to_owned()));
            }
        };
        let mut frames = FrameStream::new(inbound, outgoing, Some(SESSION_KEEPALIVE));
        // Bytes read while negotiating go first, as the client sent them.
        let result = match frames.write_all(&first).await {
            Ok(()) => frames
                .splice_tcp(&mut socket)
                .await
                .map(|(up, down)| (up + first.len() as u64, down)),
            Err(e) => Err(e),
        };
        drop(socket);
        let error = result.as_ref().err().map(|e| format!("client: {e}"));
        frames.finish(error, FINISH_LINGER).await;
        Ok(result?)
    }

    /// Accepts connections forever, one session each; problems are reported on stderr.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (socket, peer) = listener.accept().await?;
            let connector = self.clone();
            let span = tracing::info_span!("session", connection = %connector.name, client = %peer, otel.kind = "client");
            tokio::spawn(async move {
                match connector.session(socket).instrument(span).await {
                    Ok((sent, received)) => {
                        tracing::info!(%peer, connection = %connector.name, sent, received, "session closed")
                    }
                    Err(e) => eprintln!("postern: {} (from {peer}): {e}", connector.name),
                }
            });
        }
    }
}

/// Answers a Postgres client with a FATAL ErrorResponse for a refused open,
/// then lets it read that before the connection closes.
async fn refuse_in_postgres_format(socket: &mut TcpStream, status: &tonic::Status) {
    use postern_l7_pg::messages::{ErrorResponse, WireMessage};
    let code = match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => "28000",
        _ => "08001",
    };
    let error = ErrorResponse::new("FATAL", code, format!("postern: {}", status.message()));
    if socket.write_all(&error.encode()).await.is_ok() {
        let _ = socket.shutdown().await;
        // Closing with the client's startup unread would reset the
        // connection, and the client might lose the error: drain first.
        let drain = async {
            let mut sink = [0u8; 1024];
            let mut left = 64 * 1024;
            while left > 0 {
                match socket.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left -= n.min(left),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
}

/// A Postgres SSLRequest or GSSENCRequest: length 8, then this code.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// How long a client gets to send its first 8 bytes before they are passed on
/// as they are (a Postgres client sends them as soon as it connects).
pub const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(10);
/// libpq sends a GSSENCRequest, then an SSLRequest; a few more are tolerated.
const MAX_NEGOTIATIONS: usize = 4;

fn is_encryption_request(first: &[u8; 8]) -> bool {
    let length = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    let code = u32::from_be_bytes([first[4], first[5], first[6], first[7]]);
    length == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST)
}

/// Reads up to `buf.len()` bytes, stopping early at end of stream or when
/// `timeout` has passed; returns how many were read.
async fn read_at_most<S: AsyncRead + Unpin>(
    socket: &mut S,
    buf: &mut [u8],
    timeout: Duration,
) -> std::io::Result<usize> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut filled = 0;
    while filled < buf.len() {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf[filled..])).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => filled += n,
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(filled)
}

/// Answers `N` (no encryption here) to each SSLRequest or GSSENCRequest a
/// Postgres client opens with, reading exactly 8 bytes at a time, and returns
/// the first bytes that are not one, untouched, for the session to carry
/// first. Whatever else the client sends (a startup or cancel message, fewer
/// than 8 bytes before `timeout`, or the end of its stream) ends the
/// negotiation with those bytes passed on as they are.
pub async fn decline_postgres_encryption<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    for _ in 0..MAX_NEGOTIATIONS {
        let mut first = [0u8; 8];
        let n = read_at_most(socket, &mut first, timeout).await?;
        if n < first.len() || !is_encryption_request(&first) {
            return Ok(first[..n].to_vec());
        }
        socket.write_all(b"N").await?;
        socket.flush().await?;
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(code: u32) -> Vec<u8> {
        [8u32.to_be_bytes(), code.to_be_bytes()].concat()
    }

    /// Runs the negotiation against `client_sends` (then the client's end of
    /// stream, unless `hold`); returns (what the client got back, the bytes
    /// passed on).
    async fn negotiate(client_sends: &[u8], hold: bool) -> (Vec<u8>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(client_sends).await.unwrap();
        let passed = tokio::spawn(async move {
            let first = decline_postgres_encryption(&mut server, Duration::from_millis(300))
                .await
                .unwrap();
            drop(server);
            first
        });
        if !hold {
            client.shutdown().await.unwrap();
        }
        let mut answers = Vec::new();
        client.read_to_end(&mut answers).await.unwrap();
        (answers, passed.await.unwrap())
    }

    #[tokio::test]
    async fn encryption_requests_are_declined_and_the_rest_passed_on() {
        // Startup message: length 9, protocol 3.0, an empty parameter list.
        let startup = [0, 0, 0, 9, 0, 3, 0, 0, 0];
        let ssl_then_startup = [request(SSL_REQUEST), startup.to_vec()].concat();
        assert_eq!(
            negotiate(&ssl_then_startup, false).await,
            (b"N".to_vec(), startup[..8].to_vec())
        );
        let gss_ssl_startup = [request(GSSENC_REQUEST), ssl_then_startup].concat();
        assert_eq!(
            negotiate(&gss_ssl_startup, false).await,
            (b"NN".to_vec(), startup[..8].to_vec())
        );
        // No request: nothing answered, the first 8 bytes passed on as read.
        assert_eq!(
            negotiate(&startup, false).await,
            (Vec::new(), startup[..8].to_vec())
        );
        // A cancel request is 16 bytes with another code: passed on.
        let cancel = [16u32.to_be_bytes(), 80_877_102u32.to_be_bytes()].concat();
        assert_eq!(negotiate(&cancel, false).await, (Vec::new(), cancel));
        // Length 8 with another code, a short stream, a silent client.
        assert_eq!(
            negotiate(&request(1234), false).await,
            (Vec::new(), request(1234))
        );
        assert_eq!(
            negotiate(b"abc", false).await,
            (Vec::new(), b"abc".to_vec())
        );
        assert_eq!(
            negotiate(b"SSH-", true).await,
            (Vec::new(), b"SSH-".to_vec())
        );
        // Requests without end are answered a bounded number of times.
        let many = request(SSL_REQUEST).repeat(6);
        let (answers, passed) = negotiate(&many, false).await;
        assert_eq!(answers, b"NNNN");
        assert_eq!(passed, Vec::<u8>::new(), "the rest is left for the session");
    }
}
