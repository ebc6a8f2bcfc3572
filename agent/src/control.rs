//! One control stream to one gateway replica, run as its own task so that a
//! draining stream keeps serving session requests while its successor connects.

use std::time::Duration;

use futures::StreamExt;
use postern_tunnel::auth::set_bearer;
use postern_tunnel::frame::{MAX_MESSAGE_SIZE, keepalive_body};
use postern_tunnel::proto::agent_message::Kind as AgentKind;
use postern_tunnel::proto::agent_tunnel_client::AgentTunnelClient;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::{AgentHello, AgentMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::{Instrument, info, info_span};

use crate::config::AgentConfig;
use crate::session;

/// What a control stream reports to the tunnel slot that owns it.
#[derive(Debug)]
pub(crate) enum ControlEvent {
    Welcome {
        replica_id: String,
        agent_name: String,
        live_replicas: usize,
    },
    Peers {
        live_replicas: usize,
    },
    Drain {
        reason: String,
    },
    Ended(Result<(), tonic::Status>),
}

/// A running control stream; dropping it closes the stream. Sessions it
/// started carry on: each has its own data stream.
pub(crate) struct ControlTask {
    pub events: mpsc::Receiver<ControlEvent>,
    cancel: CancellationToken,
}

impl Drop for ControlTask {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub(crate) fn start(
    config: AgentConfig,
    channel: Channel,
    sessions: CancellationToken,
) -> ControlTask {
    let (events_tx, events) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let outcome = control_stream(&config, &channel, &events_tx, &stop, &sessions).await;
        let _ = events_tx.send(ControlEvent::Ended(outcome)).await;
    });
    ControlTask { events, cancel }
}

/// One control stream, from connect to its end.
async fn control_stream(
    config: &AgentConfig,
    channel: &Channel,
    events: &mpsc::Sender<ControlEvent>,
    cancel: &CancellationToken,
    sessions: &CancellationToken,
) -> Result<(), tonic::Status> {
    let (tx, rx) = mpsc::channel::<AgentMessage>(64);
    let hello = AgentMessage {
        kind: Some(AgentKind::Hello(AgentHello {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: std::env::var("HOSTNAME").unwrap_or_default(),
        })),
    };
    tx.send(hello)
        .await
        .map_err(|_| tonic::Status::internal("control queue closed"))?;
    // Closing is a handshake: the agent ends its side first, the gateway stops
    // routing to this stream and ends its own, and every session request it
    // sent before that is still read and served here.
    let closing = CancellationToken::new();
    let outbound = ReceiverStream::new(rx).take_until(closing.clone().cancelled_owned());
    let mut request = tonic::Request::new(outbound);
    set_bearer(request.metadata_mut(), &config.token)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    let mut client = AgentTunnelClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let mut inbound = tokio::select! {
        response = client.control(request) => response?.into_inner(),
        _ = cancel.cancelled() => return Ok(()),
    };

    let mut keepalive_interval = config.keepalive_interval;
    let mut ticker = tokio::time::interval(keepalive_interval);
    ticker.tick().await;
    let close_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(close_deadline);
    loop {
        // A gateway that sends nothing for three keepalive periods is gone,
        // even if TCP has not noticed yet.
        let silence_limit = keepalive_interval * 3;
        tokio::select! {
            message = tokio::time::timeout(silence_limit, inbound.message()) => {
                let message = match message {
                    Err(_) => return Err(tonic::Status::unavailable(format!(
                        "gateway sent nothing for {} ms", silence_limit.as_millis()))),
                    Ok(message) => message?,
                };
                let Some(message) = message else { return Ok(()) };
                let event = match message.kind {
                    Some(GatewayKind::Welcome(welcome)) => {
                        info!(replica = %welcome.replica_id, agent = %welcome.agent_name, "connected to gateway");
                        if welcome.keepalive_interval_secs > 0 {
                            let wanted = Duration::from_secs(welcome.keepalive_interval_secs.into());
                            keepalive_interval = keepalive_interval.min(wanted);
                            ticker = tokio::time::interval(keepalive_interval);
                            ticker.tick().await;
                        }
                        Some(ControlEvent::Welcome {
                            replica_id: welcome.replica_id,
                            agent_name: welcome.agent_name,
                            live_replicas: welcome.replicas.len().max(1),
                        })
                    }
                    Some(GatewayKind::SessionRequest(request)) => {
                        let span = info_span!("session", session_id = %request.session_id,
                            connection = %request.connection, user = %request.user,
                            target = %request.target, ingress = %request.ingress_replica,
                            otel.kind = "server");
                        // The gateway's span that sent the request: the session's trace.
                        postern_telemetry::propagate::set_parent_from_traceparent(&span, &request.traceparent);
                        let serve = session::serve(request, config.clone(), channel.clone(), tx.clone());
                        let stop = sessions.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = serve => {}
                                _ = stop.cancelled() => {}
                            }
                        }.instrument(span));
                        None
                    }
                    Some(GatewayKind::Peers(peers)) => Some(ControlEvent::Peers {
                        live_replicas: peers.replicas.len().max(1),
                    }),
                    // The stream stays open (and keeps serving requests) until the
                    // slot has a new one elsewhere: make before break.
                    Some(GatewayKind::Drain(drain)) => Some(ControlEvent::Drain { reason: drain.reason }),
                    Some(GatewayKind::Keepalive(_)) | None => None,
                };
                // Never block on the slot: a draining stream's events go unread.
                if let Some(event) = event {
                    let _ = events.try_send(event);
                }
            }
            _ = ticker.tick(), if !closing.is_cancelled() => {
                let keepalive = AgentMessage { kind: Some(AgentKind::Keepalive(keepalive_body())) };
                if tx.send(keepalive).await.is_err() {
                    return Err(tonic::Status::internal("control queue closed"));
                }
            }
            _ = cancel.cancelled(), if !closing.is_cancelled() => {
                closing.cancel();
                close_deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_WAIT);
            }
            _ = &mut close_deadline => return Ok(()),
        }
    }
}

/// How long a closing control stream waits for the gateway to end its side.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
