//! Proxy peering: how replicas ask each other to reach an agent and splice a
//! session whose agent attached to one replica while its user is on another,
//! over a direct peer link ([`client`], [`PeerService`]) or through the route
//! store ([`crate::relay`]).

pub mod client;
mod service;

pub use service::{PeerService, splice_route};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use postern_state::ReplicaInfo;
use postern_telemetry::propagate;
use postern_tunnel::peer::PeerKey;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::{Frame, GatewayMessage, PeerSessionRejected, PeerSessionRequest};
use tonic::Status;
use tracing::{debug, info, info_span, warn};

use crate::metrics::{ErrorKind, SplicePath};
use crate::refusal::Refusal;
use crate::registry::{Attached, Forwarded};
use crate::relay::Relay;
use crate::session::FrameResponse;
use crate::shared::Shared;
use client::PeerClient;

/// How this replica reaches the others.
pub enum Interconnect {
    /// gRPC over a pool of HTTP/2 connections to each peer's port.
    Direct(Box<PeerClient>),
    /// Through each replica's inbox in the route store.
    Relay(Arc<Relay>),
}

impl Interconnect {
    pub fn key(&self) -> &PeerKey {
        match self {
            Interconnect::Direct(client) => client.key(),
            Interconnect::Relay(relay) => relay.key(),
        }
    }

    pub fn splice_path(&self) -> SplicePath {
        match self {
            Interconnect::Direct(_) => SplicePath::Peer,
            Interconnect::Relay(_) => SplicePath::Relay,
        }
    }

    /// Session legs carried through the relay now (none over direct links,
    /// where the peer's own connections carry them).
    pub fn relayed_streams(&self) -> usize {
        match self {
            Interconnect::Direct(_) => 0,
            Interconnect::Relay(relay) => relay.stream_count(),
        }
    }

    /// Lets go of what is held for replicas that are gone.
    pub fn retain(&self, live: &HashMap<String, ReplicaInfo>) {
        match self {
            Interconnect::Direct(client) => client.retain(live),
            Interconnect::Relay(relay) => relay.retain(live),
        }
    }

    pub async fn request_session(
        &self,
        holder: &ReplicaInfo,
        message: PeerSessionRequest,
    ) -> Result<(), Status> {
        match self {
            Interconnect::Direct(client) => client.request_session(holder, message).await,
            Interconnect::Relay(relay) => relay.request_session(holder, message).await,
        }
    }

    pub async fn reject_session(
        &self,
        ingress: &ReplicaInfo,
        message: PeerSessionRejected,
    ) -> Result<(), Status> {
        match self {
            Interconnect::Direct(client) => client.reject_session(ingress, message).await,
            Interconnect::Relay(relay) => relay.reject_session(ingress, message).await,
        }
    }

    /// Joins an agent's stream (`outbound`) to its session on the ingress;
    /// the returned stream carries the user's frames back.
    pub async fn splice<S>(
        &self,
        ingress: &ReplicaInfo,
        session_id: &str,
        agent: &str,
        outbound: S,
    ) -> Result<FrameResponse, Status>
    where
        S: Stream<Item = Frame> + Send + 'static,
    {
        match self {
            Interconnect::Direct(client) => {
                let inbound = client.splice(ingress, session_id, agent, outbound).await?;
                Ok(Box::pin(inbound))
            }
            Interconnect::Relay(relay) => relay.splice(ingress, session_id, agent, outbound).await,
        }
    }
}

/// This replica holds the agent's tunnel: pass the ingress's request on.
/// `NotFound` tells the ingress to try another holder without marking this
/// replica as failed: it is fine, it just has no tunnel to that agent.
pub async fn pass_on_request(
    shared: &Arc<Shared>,
    ingress: String,
    message: PeerSessionRequest,
) -> Result<(), Refusal> {
    let PeerSessionRequest {
        agent,
        request: Some(mut session_request),
    } = message
    else {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::BadRequest,
            "missing session request",
        )));
    };
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
    // A short span for the hand-off; the agent's session span is its child.
    let span = info_span!("session.pass_on", %session_id, %agent, %ingress,
        replica = %shared.replica_id, otel.kind = "server");
    propagate::set_parent_from_traceparent(&span, &session_request.traceparent);
    session_request.traceparent = propagate::traceparent_of(&span);
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
        link.tx.send(Box::new(message)),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        shared.forwarded.take(&session_id, &agent);
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!(
                "agent {agent:?} stopped answering on replica {}",
                shared.replica_id
            ),
        )));
    }
    debug!(%session_id, %agent, %ingress, "forwarded a session request");
    Ok(())
}

/// The agent attached to replica `via`: join its stream to the waiting user's
/// and return the user's stream for `via` to carry back.
pub fn accept_splice(
    shared: &Arc<Shared>,
    via: String,
    session_id: &str,
    agent: &str,
    inbound: FrameResponse,
    traceparent: &str,
) -> Result<FrameResponse, Refusal> {
    let span = info_span!("session.splice", %session_id, %agent, %via,
        replica = %shared.replica_id, otel.kind = "server");
    propagate::set_parent_from_traceparent(&span, traceparent);
    let _entered = span.enter();
    let Some(pending) = shared.pending.take(session_id, agent) else {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("no session {session_id} is waiting for agent {agent:?} here"),
        )));
    };
    let client = pending
        .join(Attached {
            inbound,
            via: Some(via.clone()),
        })
        .map_err(|refusal| shared.refuse(refusal))?;
    info!(%session_id, %agent, %via, "agent stream spliced from a peer");
    Ok(client)
}

/// Tells a session's ingress that the agent will not attach, in the background:
/// the caller is a control loop that must not wait on another replica.
pub fn reject_forwarded(
    shared: &Arc<Shared>,
    session_id: String,
    forwarded: Forwarded,
    reason: String,
) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let (Some(peers), Some(ingress)) = (&shared.peers, shared.cluster.get(&forwarded.ingress))
        else {
            // The ingress's own timeout ends the session.
            return;
        };
        let rejected = PeerSessionRejected {
            session_id,
            agent: forwarded.agent,
            reason,
        };
        if let Err(status) = peers.reject_session(&ingress, rejected).await {
            warn!(ingress = %ingress.id, error = %status.message(), "cannot pass a rejection to the session's ingress");
        }
    });
}
