//! The peer port's gRPC service: what other replicas ask of this one.

use std::convert::Infallible;
use std::sync::Arc;

use postern_tunnel::auth::SESSION_HEADER;
use postern_tunnel::peer::AGENT_HEADER;
use postern_tunnel::proto::peer_server::Peer;
use postern_tunnel::proto::{Frame, PeerAck, PeerSessionRejected, PeerSessionRequest};
use postern_tunnel::wire;
use tonic::metadata::MetadataMap;
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
        let metadata = request.metadata().clone();
        splice_frames(&self.shared, &metadata, Box::pin(request.into_inner())).map(Response::new)
    }
}

/// `Splice` as the peer port serves it: framed by hand (see
/// `postern_tunnel::wire`), so payloads are not copied on the way through.
pub fn splice_route(
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
            let result = splice_frames(&shared, &metadata, inbound);
            Ok(wire::server_response(
                result.map(|frames| (MetadataMap::new(), frames)),
            ))
        }
    })
}

fn splice_frames(
    shared: &Arc<Shared>,
    metadata: &MetadataMap,
    inbound: FrameResponse,
) -> Result<FrameResponse, Status> {
    let via = shared.authenticate_peer(metadata)?;
    let session_id = shared.required_metadata(metadata, SESSION_HEADER)?;
    let agent = shared.required_metadata(metadata, AGENT_HEADER)?;
    let traceparent = metadata
        .get(postern_telemetry::propagate::TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    Ok(super::accept_splice(
        shared,
        via,
        &session_id,
        &agent,
        inbound,
        traceparent,
    )?)
}
