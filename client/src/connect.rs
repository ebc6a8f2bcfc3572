//! `postern connect`: a local listener whose every accepted TCP connection is
//! its own session (its own HTTP/2 stream) through the gateway.

use std::sync::Arc;
use std::time::Duration;

use postern_tunnel::open::open_session;
use postern_tunnel::stream::FINISH_LINGER;
use postern_tunnel::{FrameStream, Secret};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

/// Keepalives on idle session streams: below an ALB's 60 s idle timeout.
pub const SESSION_KEEPALIVE: Duration = Duration::from_secs(20);

pub use postern_tunnel::open::ChannelFactory;

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
        let opened = open_session(
            self.channel.clone(),
            self.fresh_channel.as_ref(),
            &self.token,
            &self.connection,
        )
        .await;
        let (outgoing, inbound) = match opened {
            Ok(opened) => (opened.outgoing, opened.inbound),
            Err(status) => {
                let _ = socket.shutdown().await;
                return Err(SessionError::Refused(status.message().to_owned()));
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
