//! The Postern gateway: a stateless replica that holds agents' outbound tunnels,
//! authenticates people, and splices their sessions to the agents.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod dev;
pub mod metrics;
pub mod refusal;
pub mod registry;
mod server;
pub mod session;
pub mod sessions_service;
pub mod shared;
pub mod tunnel_service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_tunnel::frame::MAX_MESSAGE_SIZE;
use postern_tunnel::proto::agent_tunnel_server::AgentTunnelServer;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::sessions_server::SessionsServer;
use postern_tunnel::proto::{Drain, GatewayMessage};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use shared::{Settings, Shared, Stores};

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
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({var}): {source}")]
    Bind {
        addr: SocketAddr,
        var: &'static str,
        source: std::io::Error,
    },
}

/// A replica that is serving. Stop it with [`RunningGateway::shutdown`] (drain)
/// or [`RunningGateway::kill`] (drop everything at once, as a crash would).
pub struct RunningGateway {
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: CancellationToken,
    kill: CancellationToken,
    servers: Vec<JoinHandle<()>>,
}

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

    let shared = Arc::new(Shared::new(options.replica_id, stores, options.settings));
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
        .route_service(&format!("/{}/{{*rest}}", grpc_name(&tunnel)), tunnel)
        .route_service(&format!("/{}/{{*rest}}", grpc_name(&sessions)), sessions);

    let stop = CancellationToken::new();
    let kill = CancellationToken::new();
    let servers = vec![
        tokio::spawn(server::serve(
            public,
            router,
            options.tls.clone(),
            stop.clone(),
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
    info!(
        replica = %shared.replica_id,
        %public_addr,
        %internal_addr,
        tls = options.tls.is_some(),
        "gateway listening"
    );
    Ok(RunningGateway {
        public_addr,
        internal_addr,
        shared,
        stop,
        kill,
        servers,
    })
}

impl RunningGateway {
    /// Drains: readiness turns false, agents are told to move, new sessions are
    /// refused, and open sessions get the grace period to finish.
    pub async fn shutdown(self) {
        let shared = &self.shared;
        shared.set_draining();
        info!(replica = %shared.replica_id, "draining");
        for link in shared.agents.all_links() {
            let drain = GatewayMessage {
                kind: Some(GatewayKind::Drain(Drain {
                    reason: "replica shutting down".into(),
                })),
            };
            let _ = link.tx.try_send(Ok(drain));
        }
        let deadline = Instant::now() + shared.settings.drain_grace;
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        while Instant::now() < deadline
            && (shared.metrics.sessions_open.get() > 0 || !shared.pending.is_empty())
        {
            poll.tick().await;
        }
        info!(
            open_sessions = shared.metrics.sessions_open.get(),
            "stopping"
        );
        shared.stop.cancel();
        self.stop.cancel();
        for server in self.servers {
            let _ = server.await;
        }
    }

    /// Stops at once, dropping every connection.
    pub async fn kill(self) {
        self.kill.cancel();
        self.shared.stop.cancel();
        for server in self.servers {
            let _ = server.await;
        }
    }
}
