//! Opening a user's session (`Sessions.Open`), retried on a fresh connection
//! when the gateway says that is safe: what the CLI does for every local
//! connection, and what tests and the load generator do too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::Status;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;

use crate::Secret;
use crate::auth::{CONNECTION_HEADER, is_retryable, set_bearer};
use crate::proto::Frame;
use crate::stream::outgoing_channel;
use crate::wire::{self, WireFrames};

/// The method's path, as in the generated client.
const OPEN_PATH: &str = "/postern.v1.Sessions/Open";

/// How many times, and for how long, opening a session is tried when the
/// gateway says a retry is safe (a replica draining in a rolling deploy).
pub const OPEN_ATTEMPTS: u32 = 6;
pub const OPEN_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// Makes a new channel (a new connection, which a load balancer may send to
/// another replica) for a retry.
pub type ChannelFactory = Arc<dyn Fn() -> Option<Channel> + Send + Sync>;

/// An open session: frames to send, frames received, and the response
/// metadata (which replicas carry it).
pub struct OpenedSession {
    pub outgoing: mpsc::Sender<Frame>,
    pub inbound: WireFrames,
    pub metadata: MetadataMap,
}

/// Opens a session to `connection`. Nothing has been sent when an attempt is
/// refused, so retrying loses nothing.
pub async fn open_session(
    channel: Channel,
    fresh_channel: Option<&ChannelFactory>,
    token: &Secret,
    connection: &AsciiMetadataValue,
) -> Result<OpenedSession, Status> {
    open_session_with(
        channel,
        fresh_channel,
        token,
        connection,
        &MetadataMap::new(),
    )
    .await
}

/// [`open_session`] with `extra` metadata on every attempt (the caller's
/// trace context).
pub async fn open_session_with(
    channel: Channel,
    fresh_channel: Option<&ChannelFactory>,
    token: &Secret,
    connection: &AsciiMetadataValue,
    extra: &MetadataMap,
) -> Result<OpenedSession, Status> {
    let started = Instant::now();
    let mut channel = channel;
    let mut attempt = 0;
    loop {
        let (outgoing, body) = outgoing_channel();
        let mut metadata = extra.clone();
        set_bearer(&mut metadata, token).map_err(|e| Status::invalid_argument(e.to_string()))?;
        metadata.insert(CONNECTION_HEADER, connection.clone());
        // Framed by hand (see `wire`): payloads are not copied on the way.
        match wire::call(channel.clone(), OPEN_PATH, metadata, body).await {
            Ok((metadata, inbound)) => {
                return Ok(OpenedSession {
                    outgoing,
                    inbound,
                    metadata,
                });
            }
            Err(status)
                if is_retryable(&status)
                    && attempt + 1 < OPEN_ATTEMPTS
                    && started.elapsed() < OPEN_RETRY_BUDGET =>
            {
                attempt += 1;
                tracing::info!(attempt, error = %status.message(), "session refused for now; retrying");
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
                if let Some(fresh) = fresh_channel.and_then(|make| make()) {
                    channel = fresh;
                }
            }
            Err(status) => return Err(status),
        }
    }
}
