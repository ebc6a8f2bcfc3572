//! `AgentTunnel`: agents' control streams and their per-session Attach streams.

use std::convert::Infallible;
use std::sync::Arc;

use futures::StreamExt;
use postern_tunnel::auth::SESSION_HEADER;
use postern_tunnel::frame::keepalive_body;
use postern_tunnel::proto::agent_message::Kind as AgentKind;
use postern_tunnel::proto::agent_tunnel_server::AgentTunnel;
use postern_tunnel::proto::frame::Kind as FrameKind;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::{AgentMessage, Close, Frame, GatewayMessage, GatewayWelcome};
use postern_tunnel::wire;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span};

use crate::metrics::{ErrorKind, SplicePath};
use crate::refusal::Refusal;
use crate::registry::{Attached, ControlSender};
use crate::session::FrameResponse;
use crate::shared::Shared;

pub struct TunnelService {
    pub shared: Arc<Shared>,
}

fn gateway_message(kind: GatewayKind) -> Box<GatewayMessage> {
    Box::new(GatewayMessage { kind: Some(kind) })
}

/// What an agent's control stream yields: the boxed messages of its channel.
pub type ControlStream = futures::stream::Map<
    ReceiverStream<Box<GatewayMessage>>,
    fn(Box<GatewayMessage>) -> Result<GatewayMessage, Status>,
>;

fn unbox(message: Box<GatewayMessage>) -> Result<GatewayMessage, Status> {
    Ok(*message)
}

#[tonic::async_trait]
impl AgentTunnel for TunnelService {
    type ControlStream = ControlStream;
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
        let mut replicas = shared.cluster.live_ids();
        if !replicas.contains(&shared.replica_id) {
            replicas.push(shared.replica_id.clone());
        }
        let welcome = GatewayKind::Welcome(GatewayWelcome {
            replica_id: shared.replica_id.clone(),
            agent_name: agent.name.clone(),
            keepalive_interval_secs: shared.settings.keepalive_interval.as_secs().max(1) as u32,
            replicas,
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
        Ok(Response::new(
            ReceiverStream::new(rx).map(unbox as fn(_) -> _),
        ))
    }

    async fn attach(
        &self,
        request: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let metadata = request.metadata().clone();
        attach_frames(&self.shared, &metadata, Box::pin(request.into_inner()))
            .await
            .map(Response::new)
    }
}

/// `Attach` as the public port serves it: framed by hand (see
/// `postern_tunnel::wire`), so payloads are not copied on the way through.
pub fn attach_route(
    shared: Arc<Shared>,
) -> impl tower::Service<
    http::Request<axum::body::Body>,
    Response = http::Response<tonic::body::Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |request: http::Request<axum::body::Body>| {
        let shared = shared.clone();
        async move {
            let (parts, body) = request.into_parts();
            let metadata = MetadataMap::from_headers(parts.headers);
            let inbound: FrameResponse = Box::pin(wire::WireFrames::request(body));
            let result = attach_frames(&shared, &metadata, inbound).await;
            Ok(wire::server_response(
                result.map(|frames| (MetadataMap::new(), frames)),
            ))
        }
    })
}

/// Joins an agent's data stream to its session, here or on the session's
/// ingress replica.
async fn attach_frames(
    shared: &Arc<Shared>,
    metadata: &MetadataMap,
    inbound: FrameResponse,
) -> Result<FrameResponse, Status> {
    let agent = shared.authenticate_agent(metadata).await?;
    let session_id = shared.required_metadata(metadata, SESSION_HEADER)?;
    // The agent's session span is the parent; a peer splice is this span's child.
    let span = info_span!("session.attach", %session_id, agent = %agent.name,
        replica = %shared.replica_id, otel.kind = "server");
    postern_telemetry::propagate::set_parent_from_metadata(&span, metadata);
    let Some(pending) = shared.pending.take(&session_id, &agent.name) else {
        // Behind a load balancer the agent's stream may land on any replica.
        return Ok(splice_to_ingress(shared, &agent.name, &session_id, inbound)
            .instrument(span)
            .await?);
    };
    let _entered = span.enter();
    shared.metrics.splice(SplicePath::Local);
    let client = pending
        .join(Attached { inbound, via: None })
        .map_err(|refusal| shared.refuse(refusal))?;
    Ok(client)
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
    // Published at once so other replicas find the agent here; the heartbeat
    // refreshes it from then on.
    if let Err(e) = shared
        .stores
        .routes
        .announce_agents(
            std::slice::from_ref(&agent),
            &shared.replica_id,
            shared.settings.agent_route_ttl,
        )
        .await
    {
        shared.route_store_error("announce_agents", &e);
    }
    let mut ticker = tokio::time::interval(keepalive);
    ticker.tick().await;
    let mut graceful = false;
    let reason = loop {
        tokio::select! {
            message = tokio::time::timeout(keepalive * 3, inbound.message()) => {
                match message {
                    Err(_) => break format!("no keepalive for {} ms", (keepalive * 3).as_millis()),
                    Ok(Err(status)) => break format!("stream error: {}", status.message()),
                    Ok(Ok(None)) => {
                        graceful = true;
                        break "agent closed the stream".to_owned();
                    }
                    Ok(Ok(Some(message))) => match message.kind {
                        Some(AgentKind::SessionRejected(rejected)) => {
                            match shared.forwarded.take(&rejected.session_id, &agent) {
                                Some(forwarded) => crate::peer::reject_forwarded(
                                    &shared, rejected.session_id, forwarded, rejected.reason,
                                ),
                                None => shared.pending.reject(&rejected.session_id, &agent, rejected.reason),
                            }
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
            }
            _ = shared.stop.cancelled() => break "replica stopping".to_owned(),
        }
    };
    shared.agents.unregister(&agent, link_id);
    // An agent that closes its stream itself (moving to another replica) still
    // serves the requests it already received: they attach or time out. One
    // that vanished will not, so its sessions fail now rather than later.
    if !graceful {
        let failure = format!("agent disconnected ({reason})");
        shared.pending.fail_link(link_id, &failure);
        for (session_id, forwarded) in shared.forwarded.take_link(link_id) {
            crate::peer::reject_forwarded(&shared, session_id, forwarded, failure.clone());
        }
    }
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

/// The agent attached here but its user is on another replica: find that
/// replica and splice the agent's stream to it (peer link or relay).
async fn splice_to_ingress(
    shared: &Arc<Shared>,
    agent: &str,
    session_id: &str,
    agent_inbound: FrameResponse,
) -> Result<FrameResponse, Refusal> {
    let not_waiting = || {
        shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("no session {session_id} is waiting for agent {agent:?}"),
        ))
    };
    let Some(peers) = &shared.peers else {
        return Err(not_waiting());
    };
    let ingress = match shared.stores.routes.session_ingress(session_id).await {
        Ok(Some(ingress)) if ingress != shared.replica_id => {
            shared.metrics.route_lookup(true);
            ingress
        }
        Ok(_) => {
            shared.metrics.route_lookup(false);
            return Err(not_waiting());
        }
        Err(e) => {
            shared.route_store_error("session_ingress", &e);
            return Err(shared.refuse(Refusal::new(
                ErrorKind::StoreUnavailable,
                format!(
                    "cannot look up session {session_id}'s replica: the route store is unavailable"
                ),
            )));
        }
    };
    let info = match shared.cluster.get(&ingress) {
        Some(info) => info,
        None => crate::heartbeat::refresh_cluster(shared)
            .await
            .get(&ingress)
            .cloned()
            .ok_or_else(|| {
                shared.refuse(Refusal::new(
                    ErrorKind::PeerUnavailable,
                    format!("session {session_id}'s replica {ingress} is gone"),
                ))
            })?,
    };
    // A broken agent stream reaches the ingress as an error Close, so the
    // session's record says what happened.
    let outbound = agent_inbound.scan(false, |failed, item| {
        let frame = match item {
            _ if *failed => None,
            Ok(frame) => Some(frame),
            Err(status) => {
                *failed = true;
                Some(Frame {
                    kind: Some(FrameKind::Close(Close {
                        error: true,
                        reason: format!("agent stream failed: {}", status.message()),
                    })),
                })
            }
        };
        futures::future::ready(frame)
    });
    match peers.splice(&info, session_id, agent, outbound).await {
        Ok(inbound) => {
            shared.metrics.splice(peers.splice_path());
            debug!(%session_id, %ingress, "agent stream spliced to the ingress");
            Ok(inbound)
        }
        Err(status) => {
            if status.code() != tonic::Code::NotFound {
                shared.cluster.mark_failed(&ingress);
            }
            Err(shared.refuse(Refusal::new(
                ErrorKind::PeerUnavailable,
                format!("cannot splice to replica {ingress}: {}", status.message()),
            )))
        }
    }
}
