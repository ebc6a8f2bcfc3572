//! Calls to other replicas' peer ports: a small pool of HTTP/2 connections per
//! peer (so no single connection's stream limit caps the sessions spliced
//! between two replicas), authenticated with a freshly signed peer token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::Stream;
use postern_state::ReplicaInfo;
use postern_tunnel::Secret;
use postern_tunnel::auth::{SESSION_HEADER, set_bearer};
use postern_tunnel::frame::MAX_MESSAGE_SIZE;
use postern_tunnel::http2::peer_channel;
use postern_tunnel::peer::{AGENT_HEADER, PeerKey, TOKEN_LIFETIME};
use postern_tunnel::proto::peer_client::PeerClient as GrpcPeerClient;
use postern_tunnel::proto::{Frame, PeerSessionRejected, PeerSessionRequest};
use postern_tunnel::wire::{self, WireFrames};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Request, Status};

/// `Peer.Splice`'s path, as in the generated client.
const SPLICE_PATH: &str = "/postern.v1.Peer/Splice";

/// Deadline of a control call (request or reject) to a peer.
pub const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(2);

struct PeerPool {
    addr: String,
    fingerprint: String,
    channels: Vec<Channel>,
    next: AtomicUsize,
}

pub struct PeerClient {
    replica_id: String,
    key: PeerKey,
    connections_per_peer: usize,
    token: Mutex<(Secret, Instant)>,
    pools: Mutex<HashMap<String, std::sync::Arc<PeerPool>>>,
}

impl PeerClient {
    pub fn new(replica_id: String, key: PeerKey, connections_per_peer: usize) -> Self {
        let token = key.sign(&replica_id, SystemTime::now());
        Self {
            replica_id,
            key,
            connections_per_peer: connections_per_peer.max(1),
            token: Mutex::new((token, Instant::now())),
            pools: Mutex::new(HashMap::new()),
        }
    }

    pub fn key(&self) -> &PeerKey {
        &self.key
    }

    /// The current token, re-signed well before it expires.
    fn token(&self) -> Secret {
        let mut token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if token.1.elapsed() > TOKEN_LIFETIME / 4 {
            *token = (
                self.key.sign(&self.replica_id, SystemTime::now()),
                Instant::now(),
            );
        }
        token.0.clone()
    }

    fn channel(&self, peer: &ReplicaInfo) -> Result<Channel, Status> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let reusable = pools
            .get(&peer.id)
            .filter(|p| p.addr == peer.peer_addr && p.fingerprint == peer.peer_cert_sha256)
            .cloned();
        let pool = match reusable {
            Some(pool) => pool,
            None => {
                if peer.peer_addr.is_empty() {
                    return Err(Status::unavailable(format!(
                        "replica {} has no peer address (relay mode?)",
                        peer.id
                    )));
                }
                let fingerprint =
                    (!peer.peer_cert_sha256.is_empty()).then_some(peer.peer_cert_sha256.as_str());
                let channels = (0..self.connections_per_peer)
                    .map(|_| peer_channel(&peer.peer_addr, fingerprint))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Status::internal(e.to_string()))?;
                let pool = std::sync::Arc::new(PeerPool {
                    addr: peer.peer_addr.clone(),
                    fingerprint: peer.peer_cert_sha256.clone(),
                    channels,
                    next: AtomicUsize::new(0),
                });
                pools.insert(peer.id.clone(), pool.clone());
                pool
            }
        };
        let index = pool.next.fetch_add(1, Ordering::Relaxed) % pool.channels.len();
        Ok(pool.channels[index].clone())
    }

    /// Drops connections to replicas that are gone.
    pub fn retain(&self, live: &HashMap<String, ReplicaInfo>) {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| live.contains_key(id));
    }

    fn client(&self, peer: &ReplicaInfo) -> Result<GrpcPeerClient<Channel>, Status> {
        Ok(GrpcPeerClient::new(self.channel(peer)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        // Signed tokens are always ASCII; were one not, the peer would refuse
        // the call as unauthenticated, which is the right outcome anyway.
        let _ = set_bearer(request.metadata_mut(), &self.token());
        request
    }

    pub async fn request_session(
        &self,
        peer: &ReplicaInfo,
        message: PeerSessionRequest,
    ) -> Result<(), Status> {
        let mut client = self.client(peer)?;
        let call = client.request_session(self.request(message));
        match tokio::time::timeout(PEER_CALL_TIMEOUT, call).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "replica {} did not answer within {} ms",
                peer.id,
                PEER_CALL_TIMEOUT.as_millis()
            ))),
        }
    }

    pub async fn reject_session(
        &self,
        peer: &ReplicaInfo,
        message: PeerSessionRejected,
    ) -> Result<(), Status> {
        let mut client = self.client(peer)?;
        let call = client.reject_session(self.request(message));
        match tokio::time::timeout(PEER_CALL_TIMEOUT, call).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(Status::deadline_exceeded("peer did not answer")),
        }
    }

    /// Opens the splice to the session's ingress: `outbound` carries the agent's
    /// frames there; the returned stream carries the user's frames back.
    pub async fn splice<S>(
        &self,
        ingress: &ReplicaInfo,
        session_id: &str,
        agent: &str,
        outbound: S,
    ) -> Result<WireFrames, Status>
    where
        S: Stream<Item = Frame> + Send + 'static,
    {
        let channel = self.channel(ingress)?;
        let mut metadata = MetadataMap::new();
        // As in `request`: a token that is not ASCII is refused by the peer.
        let _ = set_bearer(&mut metadata, &self.token());
        postern_telemetry::propagate::inject_metadata(&tracing::Span::current(), &mut metadata);
        for (name, value) in [(SESSION_HEADER, session_id), (AGENT_HEADER, agent)] {
            let value = AsciiMetadataValue::try_from(value)
                .map_err(|_| Status::invalid_argument(format!("{name} is not ASCII")))?;
            metadata.insert(name, value);
        }
        // Framed by hand (see `postern_tunnel::wire`): payloads are not
        // copied on the way through.
        let call = wire::call(channel, SPLICE_PATH, metadata, outbound);
        match tokio::time::timeout(PEER_CALL_TIMEOUT, call).await {
            Ok(result) => result.map(|(_, frames)| frames),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "replica {} did not take the splice within {} ms",
                ingress.id,
                PEER_CALL_TIMEOUT.as_millis()
            ))),
        }
    }
}
