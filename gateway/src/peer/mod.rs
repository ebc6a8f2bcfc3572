//! Proxy peering: how replicas ask each other to reach an agent and splice a
//! session whose agent attached to one replica while its user is on another.

pub mod client;
mod service;

pub use service::PeerService;

use std::sync::Arc;

use postern_tunnel::proto::PeerSessionRejected;
use tracing::warn;

use crate::registry::Forwarded;
use crate::shared::Shared;

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
