//! The peer port's gRPC service: what other replicas ask of this one.

use std::sync::Arc;

use postern_tunnel::auth::SESSION_HEADER;
use postern_tunnel::peer::AGENT_HEADER;
use postern_tunnel::proto::peer_server::Peer;
use postern_tunnel::proto::{Frame, PeerAck, PeerSessionRejected, PeerSessionRequest};
use tonic::{Request, Response, Status, Streaming};

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
        super::pass_on_request(shared, ingress, request.into_inner()).await?;
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
        let client = super::accept_splice(
            shared,
            via,
            &session_id,
            &agent,
            Box::pin(request.into_inner()),
        )?;
        Ok(Response::new(client))
    }
}
