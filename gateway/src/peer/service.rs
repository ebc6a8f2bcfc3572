//! The peer port's gRPC service: what other replicas ask of this one.

use std::sync::Arc;
use std::time::Instant;

use postern_tunnel::auth::SESSION_HEADER;
use postern_tunnel::peer::AGENT_HEADER;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::peer_server::Peer;
use postern_tunnel::proto::{
    Frame, GatewayMessage, PeerAck, PeerSessionRejected, PeerSessionRequest,
};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use crate::metrics::ErrorKind;
use crate::refusal::Refusal;
use crate::registry::{Attached, Forwarded};
use crate::session::FrameResponse;
use crate::shared::Shared;

pub struct PeerService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Peer for PeerService {
    type SpliceStream = FrameResponse;

    /// This replica holds the agent's tunnel: pass the request on.
    async fn request_session(
        &self,
        request: Request<PeerSessionRequest>,
    ) -> Result<Response<PeerAck>, Status> {
        let shared = &self.shared;
        let ingress = shared.authenticate_peer(request.metadata())?;
        let PeerSessionRequest {
            agent,
            request: Some(session_request),
        } = request.into_inner()
        else {
            return Err(shared
                .refuse(Refusal::new(
                    ErrorKind::BadRequest,
                    "missing session request",
                ))
                .into());
        };
        // NotFound tells the ingress to try another holder without marking this
        // replica as failed: it is fine, it just has no tunnel to that agent.
        let link = shared.agents.pick(&agent).ok_or_else(|| {
            shared.refuse(Refusal::new(
                ErrorKind::NotFound,
                format!(
                    "replica {} holds no tunnel from agent {agent:?}",
                    shared.replica_id
                ),
            ))
        })?;
        let session_id = session_request.session_id.clone();
        shared.forwarded.insert(
            session_id.clone(),
            Forwarded {
                ingress: ingress.clone(),
                agent: agent.clone(),
                link_id: link.id,
                at: Instant::now(),
            },
        );
        let message = GatewayMessage {
            kind: Some(GatewayKind::SessionRequest(session_request)),
        };
        let sent = tokio::time::timeout(
            shared.settings.session_open_timeout,
            link.tx.send(Ok(message)),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            shared.forwarded.take(&session_id, &agent);
            return Err(shared
                .refuse(Refusal::new(
                    ErrorKind::NotFound,
                    format!(
                        "agent {agent:?} stopped answering on replica {}",
                        shared.replica_id
                    ),
                ))
                .into());
        }
        debug!(%session_id, %agent, %ingress, "forwarded a session request");
        Ok(Response::new(PeerAck {}))
    }

    /// An agent rejected a request this replica forwarded for the session.
    async fn reject_session(
        &self,
        request: Request<PeerSessionRejected>,
    ) -> Result<Response<PeerAck>, Status> {
        self.shared.authenticate_peer(request.metadata())?;
        let rejected = request.into_inner();
        self.shared
            .pending
            .reject(&rejected.session_id, &rejected.agent, rejected.reason);
        Ok(Response::new(PeerAck {}))
    }

    /// The agent attached to the calling replica: join its stream to the user's.
    async fn splice(
        &self,
        request: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::SpliceStream>, Status> {
        let shared = &self.shared;
        let via = shared.authenticate_peer(request.metadata())?;
        let session_id = shared.required_metadata(request.metadata(), SESSION_HEADER)?;
        let agent = shared.required_metadata(request.metadata(), AGENT_HEADER)?;
        let Some(pending) = shared.pending.take(&session_id, &agent) else {
            return Err(shared
                .refuse(Refusal::new(
                    ErrorKind::NotFound,
                    format!("no session {session_id} is waiting for agent {agent:?} here"),
                ))
                .into());
        };
        let client = pending
            .join(Attached {
                inbound: Box::pin(request.into_inner()),
                via: Some(via.clone()),
            })
            .map_err(|refusal| shared.refuse(refusal))?;
        info!(%session_id, %agent, %via, "agent stream spliced from a peer");
        Ok(Response::new(client))
    }
}
