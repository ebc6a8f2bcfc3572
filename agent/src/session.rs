//! One session on the agent: dial the target, attach a data stream, splice.

use postern_tunnel::FrameStream;
use postern_tunnel::auth::{SESSION_HEADER, is_retryable, set_bearer};
use postern_tunnel::http2::lazy_channel;
use postern_tunnel::proto::agent_message::Kind as AgentKind;
use postern_tunnel::proto::{AgentMessage, SessionRejected, SessionRequest};
use postern_tunnel::stream::{FINISH_LINGER, outgoing_channel};
use postern_tunnel::wire::{self, WireFrames};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::config::AgentConfig;
use crate::pg;

/// Attach attempts on a fresh connection after the tunnel's own one failed.
const ATTACH_RETRIES: u32 = 2;

pub(crate) async fn serve(
    request: SessionRequest,
    config: AgentConfig,
    channel: Channel,
    control: mpsc::Sender<AgentMessage>,
) {
    match request.kind.as_str() {
        "" | "tcp" => match dial(&request.target, &config).await {
            Ok(mut socket) => {
                let Some(mut frames) = attach(&request, &config, channel).await else {
                    return;
                };
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
            Err(reason) => reject(&control, request.session_id, reason).await,
        },
        "postgres" => {
            // Everything that can be checked before the person's client
            // speaks is checked here, so a failure is a clear refusal.
            let prepared = match pg::Plan::new(request.postgres.as_ref(), &config) {
                Ok(plan) => pg::connect(&request.target, &plan, &config)
                    .await
                    .map(|server| (plan, server)),
                Err(reason) => Err(reason),
            };
            let (plan, server) = match prepared {
                Ok(prepared) => prepared,
                Err(reason) => return reject(&control, request.session_id, reason).await,
            };
            if let Some(frames) = attach(&request, &config, channel).await {
                pg::serve(frames, server, plan, &request, &config).await;
            }
        }
        other => {
            let reason = format!(
                "this agent (version {}) does not serve connections of kind {other:?}; upgrade it",
                env!("CARGO_PKG_VERSION")
            );
            reject(&control, request.session_id, reason).await;
        }
    }
}

async fn reject(control: &mpsc::Sender<AgentMessage>, session_id: String, reason: String) {
    warn!(%reason, "session rejected");
    let rejected = AgentMessage {
        kind: Some(AgentKind::SessionRejected(SessionRejected {
            session_id,
            reason,
        })),
    };
    let _ = control.send(rejected).await;
}

type Attached = FrameStream<WireFrames>;

/// The method's path, as in the generated client.
const ATTACH_PATH: &str = "/postern.v1.AgentTunnel/Attach";

/// Opens the session's data stream (outbound, like everything the agent does).
async fn attach(
    request: &SessionRequest,
    config: &AgentConfig,
    channel: Channel,
) -> Option<Attached> {
    let Ok(session_id) = AsciiMetadataValue::try_from(request.session_id.as_str()) else {
        warn!("session id is not valid metadata");
        return None;
    };
    let mut channel = channel;
    let mut attempt = 0;
    let (outgoing, inbound) = loop {
        let (outgoing, body) = outgoing_channel();
        let mut metadata = MetadataMap::new();
        if let Err(e) = set_bearer(&mut metadata, &config.token) {
            warn!(error = %e, "cannot attach");
            return None;
        }
        metadata.insert(SESSION_HEADER, session_id.clone());
        postern_telemetry::propagate::inject_metadata(&tracing::Span::current(), &mut metadata);
        // Framed by hand (see `wire`): payloads are not copied on the way.
        match wire::call(channel.clone(), ATTACH_PATH, metadata, body).await {
            Ok((_, inbound)) => break (outgoing, inbound),
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
                        return None;
                    }
                }
            }
            Err(status) => {
                warn!(code = ?status.code(), "gateway refused the attach: {}", status.message());
                return None;
            }
        }
    };
    debug!("attached");
    Some(FrameStream::new(
        inbound,
        outgoing,
        Some(config.keepalive_interval),
    ))
}

pub(crate) async fn dial(target: &str, config: &AgentConfig) -> Result<TcpStream, String> {
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
