//! The replica's heartbeat: keeps its own record and its agents' routes alive
//! in the route store, re-reads the other replicas, and tells agents when the
//! set of replicas changes. A route store outage only pauses it: the first
//! beat that gets through re-publishes everything.

use std::sync::Arc;
use std::time::Instant;

use postern_state::ReplicaInfo;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::{GatewayMessage, Peers};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::routing::Replicas;
use crate::shared::Shared;

/// This replica's record, with its current draining flag.
fn record(shared: &Shared, me: &ReplicaInfo) -> ReplicaInfo {
    ReplicaInfo {
        draining: shared.is_draining(),
        ..me.clone()
    }
}

/// Publishes this replica's record now (e.g. the moment it starts draining).
pub async fn announce(shared: &Shared, me: &ReplicaInfo) -> bool {
    match shared
        .stores
        .routes
        .announce_replica(&record(shared, me), shared.settings.replica_ttl)
        .await
    {
        Ok(()) => true,
        Err(e) => {
            shared.route_store_error("announce_replica", &e);
            false
        }
    }
}

/// Re-reads the live replicas into the cluster view; on a store failure the
/// last snapshot stays in use.
pub async fn refresh_cluster(shared: &Arc<Shared>) -> Replicas {
    match shared.stores.routes.replicas().await {
        Ok(replicas) => {
            shared.metrics.replicas_live.set(replicas.len() as i64);
            if shared.cluster.update(replicas) {
                let live = shared.cluster.live_ids();
                info!(replicas = ?live, "replica set changed");
                tell_agents(shared, live);
            }
            if let Some(peers) = &shared.peers {
                peers.retain(&shared.cluster.snapshot());
            }
        }
        Err(e) => shared.route_store_error("replicas", &e),
    }
    shared.cluster.snapshot()
}

fn tell_agents(shared: &Shared, replicas: Vec<String>) {
    for link in shared.agents.all_links() {
        let message = GatewayMessage {
            kind: Some(GatewayKind::Peers(Peers {
                replicas: replicas.clone(),
            })),
        };
        // A full control queue means the agent is slow; it will hear next time.
        let _ = link.tx.try_send(Box::new(message));
    }
}

async fn announce_agents(shared: &Shared) -> bool {
    let agents = shared.agents.agent_names();
    if agents.is_empty() {
        return true;
    }
    match shared
        .stores
        .routes
        .announce_agents(&agents, &shared.replica_id, shared.settings.agent_route_ttl)
        .await
    {
        Ok(()) => true,
        Err(e) => {
            shared.route_store_error("announce_agents", &e);
            false
        }
    }
}

/// Beats until `stop`, then withdraws this replica's record.
pub async fn run(shared: Arc<Shared>, me: ReplicaInfo, stop: CancellationToken) {
    let settings = &shared.settings;
    let agent_refresh = settings.agent_route_ttl / 3;
    let mut ticker = tokio::time::interval(settings.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut agents_refreshed: Option<Instant> = None;
    let mut store_was_down = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => break,
        }
        if !announce(&shared, &me).await {
            store_was_down = true;
            continue;
        }
        let agents_due = agents_refreshed.is_none_or(|at| at.elapsed() >= agent_refresh);
        if store_was_down || agents_due {
            if store_was_down {
                info!("route store reachable again: re-publishing this replica's routes");
            }
            if announce_agents(&shared).await {
                agents_refreshed = Some(Instant::now());
                store_was_down = false;
            }
        }
        refresh_cluster(&shared).await;
        shared
            .forwarded
            .expire(shared.settings.session_open_timeout * 2);
    }
    if let Err(e) = shared.stores.routes.withdraw_replica(&me.id).await {
        debug!(error = %e, "cannot withdraw this replica's record");
    }
}
