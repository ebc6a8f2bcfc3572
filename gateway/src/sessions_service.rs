//! `Sessions.Open`: a user's session, authorised here and spliced to the agent.

use std::sync::Arc;
use std::time::Instant;

use postern_state::{SessionRecord, UserToken, now_ms};
use postern_tunnel::auth::{CONNECTION_HEADER, bearer_token};
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::sessions_server::Sessions;
use postern_tunnel::proto::{Frame, GatewayMessage, SessionRequest};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, info, info_span};

use crate::metrics::{Direction, ErrorKind};
use crate::refusal::Refusal;
use crate::registry::PendingSession;
use crate::session::{FrameResponse, SessionTracker, counted};
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
            .authenticate_user(bearer_token(request.metadata()))
            .await?;
        let connection = shared.required_metadata(request.metadata(), CONNECTION_HEADER)?;
        let session_id = uuid::Uuid::new_v4().to_string();
        let span = info_span!("session", session_id = %session_id, user = %user.user, connection = %connection);
        open_session(
            shared.clone(),
            user,
            connection,
            session_id,
            request.into_inner(),
        )
        .instrument(span)
        .await
        .map_err(|refusal| {
            info!(error = %refusal, "session refused");
            refusal.into()
        })
    }
}

async fn open_session(
    shared: Arc<Shared>,
    user: UserToken,
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
    let connection = shared
        .stored(shared.stores.policy.connection(&connection_name).await)?
        .ok_or_else(|| {
            shared.refuse(Refusal::new(
                ErrorKind::NotFound,
                format!("connection {connection_name:?} does not exist (see `postern ls`)"),
            ))
        })?;
    let link = shared.agents.pick(&connection.agent).ok_or_else(|| {
        shared.refuse(Refusal::new(
            ErrorKind::AgentOffline,
            format!(
                "agent {:?} serving connection {connection_name:?} is offline",
                connection.agent
            ),
        ))
    })?;

    let tracker = Arc::new(SessionTracker::new(
        session_id.clone(),
        shared.metrics.clone(),
        shared.stores.policy.clone(),
        tracing::Span::current(),
    ));
    let (attached_tx, attached_rx) = oneshot::channel();
    shared.pending.insert(
        session_id.clone(),
        PendingSession {
            agent: connection.agent.clone(),
            link_id: link.id,
            client_inbound,
            tracker: tracker.clone(),
            attached: attached_tx,
        },
    );
    let request = GatewayMessage {
        kind: Some(GatewayKind::SessionRequest(SessionRequest {
            session_id: session_id.clone(),
            connection: connection.name.clone(),
            kind: connection.kind.as_str().to_owned(),
            target: connection.target.clone(),
            user: user.user.clone(),
        })),
    };
    let timeout = shared.settings.session_open_timeout;
    let sent = tokio::time::timeout(timeout, link.tx.send(Ok(request))).await;
    if !matches!(sent, Ok(Ok(()))) {
        shared.pending.remove(&session_id);
        return Err(shared.refuse(Refusal::new(
            ErrorKind::AgentOffline,
            format!("agent {:?} stopped answering", connection.agent),
        )));
    }
    let agent_inbound = match tokio::time::timeout(timeout, attached_rx).await {
        Ok(Ok(Ok(inbound))) => inbound,
        Ok(Ok(Err(reason))) => {
            return Err(shared.refuse(Refusal::new(
                ErrorKind::TargetUnreachable,
                format!(
                    "agent {:?} could not open connection {connection_name:?}: {reason}",
                    connection.agent
                ),
            )));
        }
        Ok(Err(_)) => {
            return Err(shared.refuse(Refusal::new(
                ErrorKind::AgentOffline,
                format!("agent {:?} went away before attaching", connection.agent),
            )));
        }
        Err(_) => {
            shared.pending.remove(&session_id);
            return Err(shared.refuse(Refusal::new(
                ErrorKind::AttachTimeout,
                format!(
                    "agent {:?} did not attach within {} ms",
                    connection.agent,
                    timeout.as_millis()
                ),
            )));
        }
    };

    let record = SessionRecord {
        id: session_id.clone(),
        user: user.user.clone(),
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
    tracker.start();
    shared
        .metrics
        .session_open_seconds
        .observe(started.elapsed().as_secs_f64());
    info!(agent = %connection.agent, target = %connection.target, open_ms = started.elapsed().as_millis() as u64, "session open");
    Ok(Response::new(counted(
        agent_inbound,
        tracker,
        Direction::Down,
    )))
}
