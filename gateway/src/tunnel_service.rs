//! `AgentTunnel`: agents' control streams and their per-session Attach streams.

use std::sync::Arc;

use postern_tunnel::auth::SESSION_HEADER;
use postern_tunnel::frame::keepalive_body;
use postern_tunnel::proto::agent_message::Kind as AgentKind;
use postern_tunnel::proto::agent_tunnel_server::AgentTunnel;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::{AgentMessage, Frame, GatewayMessage, GatewayWelcome};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::metrics::{Direction, ErrorKind};
use crate::refusal::Refusal;
use crate::registry::ControlSender;
use crate::session::{FrameResponse, counted};
use crate::shared::Shared;

pub struct TunnelService {
    pub shared: Arc<Shared>,
}

fn gateway_message(kind: GatewayKind) -> Result<GatewayMessage, Status> {
    Ok(GatewayMessage { kind: Some(kind) })
}

#[tonic::async_trait]
impl AgentTunnel for TunnelService {
    type ControlStream = ReceiverStream<Result<GatewayMessage, Status>>;
    type AttachStream = FrameResponse;

    async fn control(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        let shared = &self.shared;
        let agent = shared.authenticate_agent(request.metadata()).await?;
        if shared.is_draining() {
            return Err(shared
                .refuse(Refusal::new(
                    ErrorKind::Draining,
                    "this replica is draining",
                ))
                .into());
        }
        let (tx, rx) = mpsc::channel(64);
        let welcome = GatewayKind::Welcome(GatewayWelcome {
            replica_id: shared.replica_id.clone(),
            agent_name: agent.name.clone(),
            keepalive_interval_secs: shared.settings.keepalive_interval.as_secs().max(1) as u32,
        });
        tx.send(gateway_message(welcome))
            .await
            .map_err(|_| Status::internal("control stream closed"))?;
        let link_id = shared.agents.register(&agent.name, tx.clone());
        shared
            .metrics
            .agents_connected
            .set(shared.agents.link_count() as i64);
        let span = info_span!("agent", agent = %agent.name, link = link_id);
        span.in_scope(|| info!("agent connected"));
        tokio::spawn(
            control_loop(
                shared.clone(),
                agent.name,
                link_id,
                request.into_inner(),
                tx,
            )
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn attach(
        &self,
        request: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let shared = &self.shared;
        let agent = shared.authenticate_agent(request.metadata()).await?;
        let session_id = shared.required_metadata(request.metadata(), SESSION_HEADER)?;
        let Some(pending) = shared.pending.take(&session_id, &agent.name) else {
            return Err(shared
                .refuse(Refusal::new(
                    ErrorKind::NotFound,
                    format!(
                        "no session {session_id} is waiting for agent {:?} on this replica",
                        agent.name
                    ),
                ))
                .into());
        };
        let tracker = pending.tracker.clone();
        let client_inbound = pending.client_inbound;
        if pending.attached.send(Ok(request.into_inner())).is_err() {
            return Err(shared
                .refuse(Refusal::new(
                    ErrorKind::AttachTimeout,
                    "the session was abandoned before the agent attached",
                ))
                .into());
        }
        Ok(Response::new(counted(
            client_inbound,
            tracker,
            Direction::Up,
        )))
    }
}

/// Serves one control stream until the agent goes away or the replica stops.
async fn control_loop(
    shared: Arc<Shared>,
    agent: String,
    link_id: u64,
    mut inbound: Streaming<AgentMessage>,
    tx: ControlSender,
) {
    let keepalive = shared.settings.keepalive_interval;
    let route_ttl = keepalive * 3;
    if let Err(e) = shared
        .stores
        .routes
        .announce_agents(std::slice::from_ref(&agent), &shared.replica_id, route_ttl)
        .await
    {
        warn!(error = %e, "cannot publish the agent's route");
    }
    let mut ticker = tokio::time::interval(keepalive);
    ticker.tick().await;
    let reason = loop {
        tokio::select! {
            message = tokio::time::timeout(keepalive * 3, inbound.message()) => {
                match message {
                    Err(_) => break format!("no keepalive for {} ms", (keepalive * 3).as_millis()),
                    Ok(Err(status)) => break format!("stream error: {}", status.message()),
                    Ok(Ok(None)) => break "agent closed the stream".to_owned(),
                    Ok(Ok(Some(message))) => match message.kind {
                        Some(AgentKind::SessionRejected(rejected)) => {
                            shared.pending.reject(&rejected.session_id, &agent, rejected.reason);
                        }
                        Some(AgentKind::Hello(hello)) => {
                            info!(version = %hello.agent_version, hostname = %hello.hostname, "agent hello");
                        }
                        Some(AgentKind::Keepalive(_)) | None => {}
                    },
                }
            }
            _ = ticker.tick() => {
                if tx.send(gateway_message(GatewayKind::Keepalive(keepalive_body()))).await.is_err() {
                    break "control stream closed".to_owned();
                }
                if let Err(e) = shared.stores.routes.announce_agents(std::slice::from_ref(&agent), &shared.replica_id, route_ttl).await {
                    warn!(error = %e, "cannot refresh the agent's route");
                }
            }
            _ = shared.stop.cancelled() => break "replica stopping".to_owned(),
        }
    };
    shared.agents.unregister(&agent, link_id);
    shared
        .pending
        .fail_link(link_id, &format!("agent disconnected ({reason})"));
    shared
        .metrics
        .agents_connected
        .set(shared.agents.link_count() as i64);
    if !shared.agents.is_connected(&agent)
        && let Err(e) = shared
            .stores
            .routes
            .withdraw_agent(&agent, &shared.replica_id)
            .await
    {
        debug!(error = %e, "cannot withdraw the agent's route");
    }
    info!(%reason, "agent disconnected");
}
