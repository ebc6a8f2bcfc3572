//! `postern connect`: a local listener whose every accepted TCP connection is
//! its own session (its own HTTP/2 stream) through the gateway.

use std::sync::Arc;
use std::time::Duration;

use postern_tunnel::auth::{CONNECTION_HEADER, is_retryable, set_bearer};
use postern_tunnel::frame::MAX_MESSAGE_SIZE;
use postern_tunnel::proto::sessions_client::SessionsClient;
use postern_tunnel::stream::{FINISH_LINGER, outgoing_channel};
use postern_tunnel::{FrameStream, Secret};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

/// Keepalives on idle session streams: below an ALB's 60 s idle timeout.
pub const SESSION_KEEPALIVE: Duration = Duration::from_secs(20);

/// How many times, and for how long, opening a session is retried when the
/// gateway says it is safe to (a replica draining in a rolling deploy).
const OPEN_ATTEMPTS: u32 = 6;
const OPEN_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// Makes a new channel (a new connection, which a load balancer may send to
/// another replica) for a retry.
pub type ChannelFactory = Arc<dyn Fn() -> Option<Channel> + Send + Sync>;

#[derive(Clone)]
pub struct Connector {
    channel: Channel,
    fresh_channel: Option<ChannelFactory>,
    token: Secret,
    connection: AsciiMetadataValue,
    name: Arc<str>,
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
            connection: value,
            name: connection.into(),
        })
    }

    /// Retries use a fresh channel from `factory` rather than the shared one,
    /// whose connection may be to the very replica that is going away.
    pub fn with_fresh_channels(mut self, factory: ChannelFactory) -> Self {
        self.fresh_channel = Some(factory);
        self
    }

    /// Opens a session and splices `socket` onto it until both sides close.
    /// Returns (bytes sent, bytes received).
    pub async fn session(&self, mut socket: TcpStream) -> Result<(u64, u64), SessionError> {
        let _ = socket.set_nodelay(true);
        let started = std::time::Instant::now();
        let mut channel = self.channel.clone();
        let mut attempt = 0;
        // Nothing is read from the socket until the session is open, so a
        // refused attempt loses none of the client's bytes.
        let (outgoing, inbound) = loop {
            let (outgoing, body) = outgoing_channel();
            let mut request = tonic::Request::new(body);
            set_bearer(request.metadata_mut(), &self.token)
                .map_err(|e| SessionError::Refused(e.to_string()))?;
            request
                .metadata_mut()
                .insert(CONNECTION_HEADER, self.connection.clone());
            let mut client = SessionsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE);
            match client.open(request).await {
                Ok(response) => break (outgoing, response.into_inner()),
                Err(status)
                    if is_retryable(&status)
                        && attempt + 1 < OPEN_ATTEMPTS
                        && started.elapsed() < OPEN_RETRY_BUDGET =>
                {
                    attempt += 1;
                    tracing::info!(attempt, error = %status.message(), "session refused for now; retrying");
                    tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
                    if let Some(fresh) = self.fresh_channel.as_ref().and_then(|f| f()) {
                        channel = fresh;
                    }
                }
                Err(status) => {
                    let _ = socket.shutdown().await;
                    return Err(SessionError::Refused(status.message().to_owned()));
                }
            }
        };
        let mut frames = FrameStream::new(inbound, outgoing, Some(SESSION_KEEPALIVE));
        let result = frames.splice_tcp(&mut socket).await;
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
            tokio::spawn(async move {
                match connector.session(socket).await {
                    Ok((sent, received)) => {
                        tracing::info!(%peer, connection = %connector.name, sent, received, "session closed")
                    }
                    Err(e) => eprintln!("postern: {} (from {peer}): {e}", connector.name),
                }
            });
        }
    }
}
