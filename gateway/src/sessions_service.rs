//! `Sessions.Open`: a user's session, authorised here and spliced to the agent.

use std::sync::Arc;
use std::time::Instant;

use postern_state::{SessionRecord, now_ms};

use crate::access::Principal;
use postern_tunnel::auth::{CONNECTION_HEADER, bearer_token};
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::sessions_server::Sessions;
use postern_tunnel::proto::{Frame, GatewayMessage, PeerSessionRequest, SessionRequest};
use tokio::sync::oneshot;
use tonic::metadata::AsciiMetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span};

use crate::metrics::{Direction, ErrorKind};
use crate::refusal::Refusal;
use crate::registry::PendingSession;
use crate::routing::holder_candidates;
use crate::session::{FrameResponse, SessionTracker, StatementRecorder, counted};
use crate::shared::Shared;

pub struct SessionsService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Sessions for SessionsService {
    type OpenStream = FrameResponse;

    async fn open(
        &self,
        request: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let shared = &self.shared;
        let user = shared
            .authenticate(bearer_token(request.metadata()))
            .await?;
        let connection = shared.required_metadata(request.metadata(), CONNECTION_HEADER)?;
        let session_id = uuid::Uuid::new_v4().to_string();
        let span = info_span!("session", session_id = %session_id, user = %user.name,
            connection = %connection, replica = %shared.replica_id, otel.kind = "server");
        // The CLI's span, when it traces: one session is one trace.
        postern_telemetry::propagate::set_parent_from_metadata(&span, request.metadata());
        open_session(
            shared.clone(),
            user,
            connection,
            session_id,
            request.into_inner(),
        )
        .instrument(span.clone())
        .await
        .map_err(|refusal| {
            span.in_scope(|| info!(error = %refusal, "session refused"));
            refusal.into()
        })
    }
}

async fn open_session(
    shared: Arc<Shared>,
    user: Principal,
    connection_name: String,
    session_id: String,
    client_inbound: Streaming<Frame>,
) -> Result<Response<FrameResponse>, Refusal> {
    let started = Instant::now();
    if shared.is_draining() {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::Draining,
            "this replica is draining; retry",
        )));
    }
    let connection = shared.connection(&connection_name).await?.ok_or_else(|| {
        shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("connection {connection_name:?} does not exist (see `postern ls`)"),
        ))
    })?;
    let access = shared.authorize_session(&user, &connection).await?;
    let tracker = Arc::new(SessionTracker::new(
        session_id.clone(),
        shared.metrics.clone(),
        shared.stores.policy.clone(),
        StatementRecorder::new(
            user.name.clone(),
            connection.name.clone(),
            shared.audit_writer.clone(),
        ),
        tracing::Span::current(),
    ));
    let timeout = shared.settings.session_open_timeout;
    let local_link = shared.agents.pick(&connection.agent);
    // Behind a load balancer the agent's Attach may land on any replica, which
    // finds this one, the session's ingress, through the route store.
    if shared.peers.is_some()
        && let Err(e) = shared
            .stores
            .routes
            .put_session(&session_id, &shared.replica_id, timeout * 2)
            .await
    {
        shared.route_store_error("put_session", &e);
        if local_link.is_none() {
            return Err(shared.refuse(Refusal::new(
                ErrorKind::StoreUnavailable,
                format!(
                    "agent {:?} is not connected to this replica and the route store is unavailable; retry shortly",
                    connection.agent
                ),
            )));
        }
    }
    let (attached_tx, attached_rx) = oneshot::channel();
    shared.pending.insert(
        session_id.clone(),
        PendingSession {
            agent: connection.agent.clone(),
            link_id: local_link.as_ref().map(|link| link.id),
            client_inbound,
            tracker: tracker.clone(),
            attached: attached_tx,
        },
    );
    let request = SessionRequest {
        session_id: session_id.clone(),
        connection: connection.name.clone(),
        kind: connection.kind.as_str().to_owned(),
        target: connection.target.clone(),
        user: user.name.clone(),
        ingress_replica: shared.replica_id.clone(),
        postgres: crate::connection_settings::postgres_session(&connection, access.read_only),
        traceparent: postern_telemetry::propagate::traceparent_of(&tracing::Span::current()),
    };
    let sent: Result<Option<String>, Refusal> = match &local_link {
        Some(link) => {
            let message = GatewayMessage {
                kind: Some(GatewayKind::SessionRequest(request)),
            };
            match tokio::time::timeout(timeout, link.tx.send(Box::new(message))).await {
                Ok(Ok(())) => Ok(None),
                _ => Err(Refusal::new(
                    ErrorKind::AgentOffline,
                    format!("agent {:?} stopped answering", connection.agent),
                )),
            }
        }
        None => forward_request(&shared, &connection, request)
            .await
            .map(Some),
    };
    let holder = match sent {
        Ok(holder) => holder,
        Err(refusal) => {
            shared.pending.remove(&session_id);
            forget_session(&shared, &session_id);
            return Err(shared.refuse(refusal));
        }
    };
    let passed_on = holder
        .as_ref()
        .map(|h| format!(" (request passed on by replica {h})"))
        .unwrap_or_default();
    let attached = tokio::select! {
        attached = tokio::time::timeout(timeout, attached_rx) => attached,
        gone = holder_gone(&shared, holder.as_deref()) => {
            shared.pending.remove(&session_id);
            forget_session(&shared, &session_id);
            return Err(shared.refuse(Refusal::new(
                ErrorKind::PeerUnavailable,
                format!("replica {gone}, which passed the request to agent {:?}, is gone; retry", connection.agent),
            )));
        }
    };
    forget_session(&shared, &session_id);
    let attached = match attached {
        Ok(Ok(Ok(attached))) => attached,
        Ok(Ok(Err(reason))) => {
            return Err(shared.refuse(Refusal::new(
                ErrorKind::TargetUnreachable,
                format!(
                    "agent {:?} could not open connection {connection_name:?}: {reason}{passed_on}",
                    connection.agent
                ),
            )));
        }
        Ok(Err(_)) => {
            return Err(shared.refuse(Refusal::new(
                ErrorKind::AgentOffline,
                format!(
                    "agent {:?} went away before attaching{passed_on}",
                    connection.agent
                ),
            )));
        }
        Err(_) => {
            shared.pending.remove(&session_id);
            return Err(shared.refuse(Refusal::new(
                ErrorKind::AttachTimeout,
                format!(
                    "agent {:?} did not attach within {} ms{passed_on}",
                    connection.agent,
                    timeout.as_millis()
                ),
            )));
        }
    };

    let record = SessionRecord {
        id: session_id.clone(),
        user: user.name.clone(),
        connection: connection.name.clone(),
        agent: connection.agent.clone(),
        replica: shared.replica_id.clone(),
        started_at_ms: now_ms(),
        ended_at_ms: None,
        bytes_up: 0,
        bytes_down: 0,
        outcome: None,
    };
    // No record, no session: access that cannot be accounted for is refused.
    shared.stored(shared.stores.policy.record_session_start(&record).await)?;
    shared
        .audit_session(
            &user.name,
            &connection.name,
            &session_id,
            "ok",
            access.describe(),
        )
        .await;
    tracker.start();
    shared
        .metrics
        .session_open_seconds
        .observe(started.elapsed().as_secs_f64());
    let via = attached.via.unwrap_or_else(|| shared.replica_id.clone());
    info!(agent = %connection.agent, target = %connection.target, %via, open_ms = started.elapsed().as_millis() as u64, "session open");
    let mut response = Response::new(counted(attached.inbound, tracker, Direction::Down));
    for (name, value) in [(INGRESS_HEADER, &shared.replica_id), (VIA_HEADER, &via)] {
        if let Ok(value) = AsciiMetadataValue::try_from(value.as_str()) {
            response.metadata_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// Resolves (with its id) once the replica that passed a request on drops out
/// of the live set: its agent tunnel went with it, so waiting out the attach
/// timeout would only delay the retry. Never resolves for local requests.
async fn holder_gone(shared: &Shared, holder: Option<&str>) -> String {
    let Some(holder) = holder else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(shared.settings.heartbeat_interval);
    loop {
        tick.tick().await;
        if shared.cluster.get(holder).is_none() {
            return holder.to_owned();
        }
    }
}

/// Response metadata: the replica the user reached, and the one the agent's
/// stream arrived at (the same one unless the session was spliced by a peer).
pub const INGRESS_HEADER: &str = "x-postern-ingress";
pub const VIA_HEADER: &str = "x-postern-via";

/// The session's ingress route is only needed until the agent attaches.
fn forget_session(shared: &Arc<Shared>, session_id: &str) {
    if shared.peers.is_none() {
        return;
    }
    let shared = shared.clone();
    let session_id = session_id.to_owned();
    tokio::spawn(async move {
        if let Err(e) = shared.stores.routes.remove_session(&session_id).await {
            shared.route_store_error("remove_session", &e);
        }
    });
}

/// Asks the replicas holding the agent's tunnel, best first, to pass the
/// request on; the first that accepts wins, and its id is returned.
async fn forward_request(
    shared: &Arc<Shared>,
    connection: &postern_state::Connection,
    request: SessionRequest,
) -> Result<String, Refusal> {
    let agent = &connection.agent;
    let offline = |detail: String| {
        Refusal::new(
            ErrorKind::AgentOffline,
            format!(
                "agent {agent:?} serving connection {:?} is offline{detail}",
                connection.name
            ),
        )
    };
    let Some(peers) = &shared.peers else {
        return Err(offline(String::new()));
    };
    let routes = match shared.stores.routes.agent_replicas(agent).await {
        Ok(routes) => routes,
        Err(e) => {
            shared.route_store_error("agent_replicas", &e);
            return Err(Refusal::new(
                ErrorKind::StoreUnavailable,
                format!(
                    "agent {agent:?} is not connected to this replica and the route store is unavailable; retry shortly"
                ),
            ));
        }
    };
    shared.metrics.route_lookup(!routes.is_empty());
    let mut candidates = holder_candidates(
        &shared.replica_id,
        &routes,
        &shared.cluster.snapshot(),
        &shared.cluster.recently_failed(),
    );
    if candidates.is_empty() && !routes.is_empty() {
        // A replica that started a moment ago may not be in the snapshot yet.
        let replicas = crate::heartbeat::refresh_cluster(shared).await;
        candidates = holder_candidates(
            &shared.replica_id,
            &routes,
            &replicas,
            &shared.cluster.recently_failed(),
        );
    }
    let mut failures = Vec::new();
    for holder in candidates {
        let message = PeerSessionRequest {
            agent: agent.clone(),
            request: Some(request.clone()),
        };
        match peers.request_session(&holder, message).await {
            Ok(()) => {
                debug!(holder = %holder.id, "session request forwarded");
                return Ok(holder.id);
            }
            Err(status) => {
                if status.code() != tonic::Code::NotFound {
                    shared.cluster.mark_failed(&holder.id);
                }
                failures.push(format!("{}: {}", holder.id, status.message()));
            }
        }
    }
    if failures.is_empty() {
        Err(offline(String::new()))
    } else {
        Err(offline(format!(" (tried {})", failures.join("; "))))
    }
}
