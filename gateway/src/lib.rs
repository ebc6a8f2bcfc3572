//! The Postern gateway: a stateless replica that holds agents' outbound tunnels,
//! authenticates people, and splices their sessions to the agents.
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod api_errors;
pub mod api_policy;
pub mod audit_writer;
pub mod authz;
pub mod bootstrap;
pub mod bounded_get;
pub mod config;
pub mod connection_settings;
pub mod dev;
pub mod ecs_stop;
pub mod heartbeat;
pub mod identity;
pub mod metrics;
pub mod openapi;
pub mod peer;
pub mod policy_cache;
pub mod refusal;
pub mod registry;
pub mod relay;
pub mod reviews;
pub mod routing;
mod server;
pub mod session;
pub mod sessions_service;
pub mod shared;
pub mod tunnel_service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_state::{ReplicaInfo, now_ms};
use postern_tunnel::frame::MAX_MESSAGE_SIZE;
use postern_tunnel::peer::PeerKey;
use postern_tunnel::proto::agent_tunnel_server::AgentTunnelServer;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::peer_server::PeerServer;
use postern_tunnel::proto::sessions_server::SessionsServer;
use postern_tunnel::proto::{Drain, GatewayMessage};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use shared::{Settings, Shared, Stores};

use crate::peer::client::PeerClient;
use crate::peer::{Interconnect, PeerService};
use crate::relay::Relay;
use crate::sessions_service::SessionsService;
use crate::tunnel_service::TunnelService;

/// Everything [`start`] needs besides the stores.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub listen_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    /// `None` serves h2c: only behind a platform that terminates TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub replica_id: String,
    pub settings: Settings,
    /// Proxy peering with other replicas; `None` runs this replica alone.
    pub peer: Option<PeerOptions>,
    /// The OIDC issuer whose tokens people log in with; `None`: API tokens only.
    pub oidc: Option<identity::oidc::OidcConfig>,
}

/// How this replica works with the others.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Signs and checks what replicas send each other (`POSTERN_PEER_SECRET`).
    pub key: PeerKey,
    pub transport: PeerTransport,
}

#[derive(Debug, Clone)]
pub enum PeerTransport {
    /// Replicas dial each other's peer port.
    Direct(DirectPeering),
    /// Replicas cannot dial each other (Cloud Run): everything between them
    /// goes through their inboxes in the route store.
    Relay,
}

/// The internal peer port other replicas splice sessions through.
#[derive(Debug, Clone)]
pub struct DirectPeering {
    pub listen_addr: SocketAddr,
    /// The address other replicas dial; `None` uses the bound address, which
    /// then must not be a wildcard.
    pub advertise_addr: Option<String>,
    /// TLS with a per-start certificate pinned through the route store; off
    /// only where the network between replicas is already private and encrypted.
    pub tls: bool,
    /// HTTP/2 connections kept to each peer; sessions are spread over them.
    pub connections_per_peer: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({var}): {source}")]
    Bind {
        addr: SocketAddr,
        var: &'static str,
        source: std::io::Error,
    },
    #[error(
        "POSTERN_PEER_ADVERTISE_ADDR is required: the peer port listens on {0}, which other replicas cannot dial"
    )]
    PeerAdvertise(SocketAddr),
    #[error("cannot make the peer port's TLS certificate: {0}")]
    PeerTls(#[from] postern_tunnel::tls::TlsError),
    #[error("POSTERN_OIDC_ISSUER: {0}")]
    Oidc(#[from] identity::oidc::VerifierSetupError),
}

/// A replica that is serving. Stop it with [`RunningGateway::shutdown`] (drain)
/// or [`RunningGateway::kill`] (drop everything at once, as a crash would).
pub struct RunningGateway {
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub peer_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    /// This replica's record in the route store (when peering).
    me: Option<ReplicaInfo>,
    /// Stops the public port (GOAWAY); `stop` the internal and peer ports.
    public_stop: CancellationToken,
    stop: CancellationToken,
    kill: CancellationToken,
    servers: Vec<JoinHandle<()>>,
}

/// How long start-up waits for the relay inbox before announcing the replica.
const RELAY_SUBSCRIBE_WAIT: Duration = Duration::from_secs(3);

/// How long connections get to close by themselves once a replica stops.
const CONNECTION_DRAIN: Duration = Duration::from_secs(2);

pub fn new_replica_id() -> String {
    format!("gw-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn grpc_name<S: tonic::server::NamedService>(_: &S) -> &'static str {
    S::NAME
}

pub async fn start(options: GatewayOptions, stores: Stores) -> Result<RunningGateway, StartError> {
    let public = TcpListener::bind(options.listen_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: options.listen_addr,
            var: "POSTERN_LISTEN_ADDR",
            source,
        })?;
    let internal = TcpListener::bind(options.internal_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: options.internal_addr,
            var: "POSTERN_INTERNAL_ADDR",
            source,
        })?;
    let public_addr = public
        .local_addr()
        .expect("a bound listener has an address");
    let internal_addr = internal
        .local_addr()
        .expect("a bound listener has an address");

    let direct = match &options.peer {
        Some(PeerOptions {
            transport: PeerTransport::Direct(direct),
            ..
        }) => Some(bind_peer(direct, &options.replica_id).await?),
        _ => None,
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let relay = match &options.peer {
        Some(PeerOptions {
            key,
            transport: PeerTransport::Relay,
        }) => Some(Relay::new(
            options.replica_id.clone(),
            key.clone(),
            stores.routes.clone(),
            metrics.clone(),
        )),
        _ => None,
    };
    let peers = match (&options.peer, &relay) {
        (Some(_), Some(relay)) => Some(Interconnect::Relay(relay.clone())),
        (
            Some(PeerOptions {
                key,
                transport: PeerTransport::Direct(direct),
            }),
            None,
        ) => Some(Interconnect::Direct(Box::new(PeerClient::new(
            options.replica_id.clone(),
            key.clone(),
            direct.connections_per_peer,
        )))),
        _ => None,
    };
    let oidc = match options.oidc {
        Some(config) => Some(Arc::new(identity::oidc::OidcVerifier::new(config)?)),
        None => None,
    };
    let mut shared = Shared::new(options.replica_id, stores, options.settings, peers, metrics);
    shared.oidc = oidc;
    let shared = Arc::new(shared);
    // Policy is read once before the replica reports itself listening, then
    // kept current in the background.
    if let Err(error) = shared.policy_cache.poll().await {
        tracing::warn!(%error, "cannot read the policy generation yet");
    }
    tokio::spawn(policy_cache::watch(
        shared.policy_cache.clone(),
        shared.stop.clone(),
    ));
    let tunnel = AgentTunnelServer::new(TunnelService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_SIZE)
    .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let sessions = SessionsServer::new(SessionsService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_SIZE)
    .max_encoding_message_size(MAX_MESSAGE_SIZE);
    // gRPC services are mounted under their service paths, beside the JSON API.
    let router = api::router(shared.clone())
        // The data path's streaming methods, framed by hand; tonic serves the rest.
        .route_service(
            "/postern.v1.AgentTunnel/Attach",
            tunnel_service::attach_route(shared.clone()),
        )
        .route_service(&format!("/{}/{{*rest}}", grpc_name(&tunnel)), tunnel)
        .route_service(&format!("/{}/{{*rest}}", grpc_name(&sessions)), sessions);

    let public_stop = CancellationToken::new();
    let stop = CancellationToken::new();
    let kill = CancellationToken::new();
    let mut servers = vec![
        tokio::spawn(server::serve(
            public,
            router,
            options.tls.clone(),
            public_stop.clone(),
            kill.clone(),
        )),
        tokio::spawn(server::serve(
            internal,
            api::internal_router(shared.clone()),
            None,
            stop.clone(),
            kill.clone(),
        )),
    ];
    let mut peer_addr = None;
    let mut record = None;
    if let Some((listener, tls, direct_record)) = direct {
        peer_addr = listener.local_addr().ok();
        let service = PeerServer::new(PeerService {
            shared: shared.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let router = axum::Router::new()
            .route_service(
                "/postern.v1.Peer/Splice",
                peer::splice_route(shared.clone()),
            )
            .route_service(&format!("/{}/{{*rest}}", grpc_name(&service)), service);
        servers.push(tokio::spawn(server::serve(
            listener,
            router,
            tls,
            stop.clone(),
            kill.clone(),
        )));
        record = Some(direct_record);
    }
    if let Some(relay) = relay {
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        tokio::spawn(relay::run(shared.clone(), relay, subscribed_tx));
        // Announcing before the inbox listens would send peers' calls nowhere;
        // while the route store is down, the heartbeat announces later anyway.
        if tokio::time::timeout(RELAY_SUBSCRIBE_WAIT, subscribed)
            .await
            .is_err()
        {
            tracing::warn!("relay inbox not subscribed yet (route store unavailable?)");
        }
        record = Some(ReplicaInfo {
            id: shared.replica_id.clone(),
            peer_addr: String::new(),
            peer_cert_sha256: String::new(),
            draining: false,
            started_at_ms: now_ms().max(0) as u64,
        });
    }
    let me = record.clone();
    if let Some(record) = record {
        // The record goes out before the replica reports itself listening.
        heartbeat::announce(&shared, &record).await;
        heartbeat::refresh_cluster(&shared).await;
        tokio::spawn(heartbeat::run(shared.clone(), record, shared.stop.clone()));
    }
    info!(
        replica = %shared.replica_id,
        %public_addr,
        %internal_addr,
        peer_addr = ?peer_addr,
        tls = options.tls.is_some(),
        "gateway listening"
    );
    Ok(RunningGateway {
        public_addr,
        internal_addr,
        peer_addr,
        me,
        shared,
        public_stop,
        stop,
        kill,
        servers,
    })
}

type PeerListener = (TcpListener, Option<Arc<rustls::ServerConfig>>, ReplicaInfo);

async fn bind_peer(peer: &DirectPeering, replica_id: &str) -> Result<PeerListener, StartError> {
    let listener = TcpListener::bind(peer.listen_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: peer.listen_addr,
            var: "POSTERN_PEER_ADDR",
            source,
        })?;
    let bound = listener
        .local_addr()
        .expect("a bound listener has an address");
    let advertise = match &peer.advertise_addr {
        Some(addr) => addr.clone(),
        None if bound.ip().is_unspecified() => return Err(StartError::PeerAdvertise(bound)),
        None => bound.to_string(),
    };
    let (tls, fingerprint) = if peer.tls {
        let (identity, fingerprint) = postern_tunnel::pinned::ephemeral_identity()?;
        (
            Some(postern_tunnel::tls::server_config(identity)?),
            fingerprint,
        )
    } else {
        (None, String::new())
    };
    let record = ReplicaInfo {
        id: replica_id.to_owned(),
        peer_addr: advertise,
        peer_cert_sha256: fingerprint,
        draining: false,
        started_at_ms: now_ms().max(0) as u64,
    };
    Ok((listener, tls, record))
}

impl RunningGateway {
    /// Drains: readiness turns false, peers stop choosing this replica, agents
    /// are told to move, the public port stops accepting and sends GOAWAY (new
    /// streams go elsewhere), and open sessions get the grace period to finish.
    pub async fn shutdown(self) {
        let shared = &self.shared;
        shared.set_draining();
        info!(replica = %shared.replica_id, "draining");
        if let Some(me) = &self.me {
            // Peers stop preferring this replica at once, not a heartbeat later.
            heartbeat::announce(shared, me).await;
        }
        for link in shared.agents.all_links() {
            let drain = GatewayMessage {
                kind: Some(GatewayKind::Drain(Drain {
                    reason: "replica shutting down".into(),
                })),
            };
            let _ = link.tx.try_send(Box::new(drain));
        }
        self.public_stop.cancel();
        let deadline = Instant::now() + shared.settings.drain_grace;
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        while Instant::now() < deadline
            && (shared.metrics.sessions_open.get() > 0
                || !shared.pending.is_empty()
                || !shared.forwarded.is_empty()
                || shared
                    .peers
                    .as_ref()
                    .is_some_and(|p| p.relayed_streams() > 0))
        {
            poll.tick().await;
        }
        info!(
            open_sessions = shared.metrics.sessions_open.get(),
            "stopping"
        );
        shared.stop.cancel();
        self.stop.cancel();
        // Every statement the sessions reported is written before the end.
        let _ = tokio::time::timeout(Duration::from_secs(5), shared.audit_writer.flush()).await;
        let mut servers = self.servers;
        let all_closed = futures::future::join_all(servers.iter_mut());
        if tokio::time::timeout(CONNECTION_DRAIN, all_closed)
            .await
            .is_err()
        {
            self.kill.cancel();
            // join_all may have polled some to completion already: polling a
            // finished JoinHandle again panics.
            for server in servers {
                if !server.is_finished() {
                    let _ = server.await;
                }
            }
        }
    }

    /// Stops at once, dropping every connection.
    pub async fn kill(self) {
        self.kill.cancel();
        self.public_stop.cancel();
        self.shared.stop.cancel();
        for server in self.servers {
            let _ = server.await;
        }
    }
}
