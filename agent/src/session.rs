//! One session on the agent: dial the target, attach a data stream, splice.

use postern_tunnel::FrameStream;
use postern_tunnel::auth::{SESSION_HEADER, is_retryable, set_bearer};
use postern_tunnel::frame::MAX_MESSAGE_SIZE;
use postern_tunnel::http2::lazy_channel;
use postern_tunnel::proto::agent_message::Kind as AgentKind;
use postern_tunnel::proto::agent_tunnel_client::AgentTunnelClient;
use postern_tunnel::proto::{AgentMessage, SessionRejected, SessionRequest};
use postern_tunnel::stream::{FINISH_LINGER, outgoing_channel};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::config::AgentConfig;

/// Attach attempts on a fresh connection after the tunnel's own one failed.
const ATTACH_RETRIES: u32 = 2;

pub(crate) async fn serve(
    request: SessionRequest,
    config: AgentConfig,
    channel: Channel,
    control: mpsc::Sender<AgentMessage>,
) {
    let mut socket = match dial(&request.target, &config).await {
        Ok(socket) => socket,
        Err(reason) => {
            warn!(%reason, "session rejected");
            let rejected = AgentMessage {
                kind: Some(AgentKind::SessionRejected(SessionRejected {
                    session_id: request.session_id,
                    reason,
                })),
            };
            let _ = control.send(rejected).await;
            return;
        }
    };

    let Ok(session_id) = AsciiMetadataValue::try_from(request.session_id.as_str()) else {
        warn!("session id is not valid metadata");
        return;
    };
    let mut channel = channel;
    let mut attempt = 0;
    let (outgoing, inbound) = loop {
        let (outgoing, body) = outgoing_channel();
        let mut attach = tonic::Request::new(body);
        let metadata = attach.metadata_mut();
        if let Err(e) = set_bearer(metadata, &config.token) {
            warn!(error = %e, "cannot attach");
            return;
        }
        metadata.insert(SESSION_HEADER, session_id.clone());
        let mut client = AgentTunnelClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        match client.attach(attach).await {
            Ok(response) => break (outgoing, response.into_inner()),
            // The tunnel's connection may be to a replica that is going away
            // (it sent GOAWAY): attach on a new connection, which the load
            // balancer sends elsewhere; that replica splices to the session.
            Err(status) if is_retryable(&status) && attempt < ATTACH_RETRIES => {
                attempt += 1;
                debug!(attempt, error = %status.message(), "attach failed; retrying on a new connection");
                match lazy_channel(&config.gateway_url, config.ca_pem.as_deref()) {
                    Ok(fresh) => channel = fresh,
                    Err(e) => {
                        warn!(error = %e, "cannot attach");
                        return;
                    }
                }
            }
            Err(status) => {
                warn!(code = ?status.code(), "gateway refused the attach: {}", status.message());
                return;
            }
        }
    };
    debug!("attached");
    let mut frames = FrameStream::new(inbound, outgoing, Some(config.keepalive_interval));
    let error = match frames.splice_tcp(&mut socket).await {
        Ok((to_user, from_user)) => {
            info!(bytes_up = from_user, bytes_down = to_user, "session ended");
            None
        }
        Err(e) => {
            info!(error = %e, "session ended with an error");
            Some(format!("agent: {e}"))
        }
    };
    drop(socket);
    frames.finish(error, FINISH_LINGER).await;
}

async fn dial(target: &str, config: &AgentConfig) -> Result<TcpStream, String> {
    if let Some(allowed) = &config.allowed_targets
        && !allowed.allows(target)
    {
        return Err(format!(
            "{target} is not in this agent's POSTERN_ALLOWED_TARGETS"
        ));
    }
    match tokio::time::timeout(config.dial_timeout, TcpStream::connect(target)).await {
        Err(_) => Err(format!(
            "timed out dialing {target} after {} ms",
            config.dial_timeout.as_millis()
        )),
        Ok(Err(e)) => Err(format!("cannot reach {target}: {e}")),
        Ok(Ok(socket)) => {
            let _ = socket.set_nodelay(true);
            Ok(socket)
        }
    }
}
