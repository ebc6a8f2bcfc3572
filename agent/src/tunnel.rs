//! The agent's control loop: keep a control stream open to the gateway,
//! reconnecting with backoff, and serve the session requests that arrive on it.

use std::time::Duration;

use postern_tunnel::auth::set_bearer;
use postern_tunnel::frame::{MAX_MESSAGE_SIZE, keepalive_body};
use postern_tunnel::http2::{EndpointError, lazy_channel};
use postern_tunnel::proto::agent_message::Kind as AgentKind;
use postern_tunnel::proto::agent_tunnel_client::AgentTunnelClient;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::{AgentHello, AgentMessage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::{Instrument, info, info_span, warn};

use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::session;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStatus {
    Connecting,
    Connected {
        replica_id: String,
        agent_name: String,
    },
    Stopped,
}

/// A running agent. Dropping the handle does not stop it; call [`AgentHandle::stop`].
pub struct AgentHandle {
    status: watch::Receiver<AgentStatus>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl AgentHandle {
    pub fn status(&self) -> AgentStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// Waits until the agent holds a control stream; returns the replica's id.
    pub async fn wait_connected(&self, timeout: Duration) -> Option<String> {
        let mut status = self.status.clone();
        let connected = status.wait_for(|s| matches!(s, AgentStatus::Connected { .. }));
        match tokio::time::timeout(timeout, connected).await {
            Ok(Ok(status)) => match &*status {
                AgentStatus::Connected { replica_id, .. } => Some(replica_id.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Starts the agent in the background.
pub fn spawn(config: AgentConfig) -> Result<AgentHandle, EndpointError> {
    let channel = lazy_channel(&config.gateway_url, config.ca_pem.as_deref())?;
    let (status_tx, status) = watch::channel(AgentStatus::Connecting);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(config, channel, status_tx, cancel.clone()));
    Ok(AgentHandle {
        status,
        cancel,
        task,
    })
}

async fn run(
    config: AgentConfig,
    channel: Channel,
    status: watch::Sender<AgentStatus>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(config.reconnect_base, config.reconnect_max);
    let sessions = CancellationToken::new();
    while !cancel.is_cancelled() {
        status.send_replace(AgentStatus::Connecting);
        let outcome = control_stream(&config, &channel, &status, &cancel, &sessions).await;
        let was_connected = matches!(*status.borrow(), AgentStatus::Connected { .. });
        match outcome {
            Ok(()) => info!(gateway = %config.gateway_url, "control stream ended"),
            Err(status) => warn!(
                gateway = %config.gateway_url,
                code = ?status.code(),
                "control stream failed: {}",
                status.message()
            ),
        }
        if was_connected {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => break,
        }
    }
    sessions.cancel();
    status.send_replace(AgentStatus::Stopped);
}

/// One control stream, from connect to its end.
async fn control_stream(
    config: &AgentConfig,
    channel: &Channel,
    status: &watch::Sender<AgentStatus>,
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
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    set_bearer(request.metadata_mut(), &config.token)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    let mut client = AgentTunnelClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let mut inbound = client.control(request).await?.into_inner();

    let mut keepalive_interval = config.keepalive_interval;
    let mut ticker = tokio::time::interval(keepalive_interval);
    ticker.tick().await;
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
                match message.kind {
                    Some(GatewayKind::Welcome(welcome)) => {
                        info!(replica = %welcome.replica_id, agent = %welcome.agent_name, "connected to gateway");
                        if welcome.keepalive_interval_secs > 0 {
                            let wanted = Duration::from_secs(welcome.keepalive_interval_secs.into());
                            keepalive_interval = keepalive_interval.min(wanted);
                            ticker = tokio::time::interval(keepalive_interval);
                            ticker.tick().await;
                        }
                        status.send_replace(AgentStatus::Connected {
                            replica_id: welcome.replica_id,
                            agent_name: welcome.agent_name,
                        });
                    }
                    Some(GatewayKind::SessionRequest(request)) => {
                        let span = info_span!("session", session_id = %request.session_id,
                            connection = %request.connection, user = %request.user, target = %request.target);
                        let serve = session::serve(request, config.clone(), channel.clone(), tx.clone());
                        let stop = sessions.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = serve => {}
                                _ = stop.cancelled() => {}
                            }
                        }.instrument(span));
                    }
                    Some(GatewayKind::Drain(drain)) => {
                        // Make before break: open a new control stream (the load balancer
                        // routes it to another replica) while sessions on this one finish.
                        info!(reason = %drain.reason, "gateway is draining; reconnecting");
                        return Ok(());
                    }
                    Some(GatewayKind::Keepalive(_)) | None => {}
                }
            }
            _ = ticker.tick() => {
                let keepalive = AgentMessage { kind: Some(AgentKind::Keepalive(keepalive_body())) };
                if tx.send(keepalive).await.is_err() {
                    return Err(tonic::Status::internal("control queue closed"));
                }
            }
            _ = cancel.cancelled() => return Ok(()),
        }
    }
}
