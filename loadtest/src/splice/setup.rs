//! The processes of the splice benchmark: per peer transport, two replicas
//! (A and B) on their own Redis, one agent whose only tunnel is on B, and a
//! `postern connect` per measured path.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use tokio::process::Child;

use crate::cluster::{self, ClusterConfig, Replica};
use crate::observe::{sample, wait_metrics};
use crate::redis::{self, Redis};

/// Where a session's two legs meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// The user reaches B, which holds the agent's tunnel.
    Local,
    /// The user reaches A; A and B splice over the peer port.
    Peer,
    /// As `peer`, on a pair whose peer port is plain HTTP/2
    /// (`POSTERN_PEER_TLS_DISABLED=1`, peers still authenticated by signed
    /// tokens): what the link's TLS costs.
    PeerPlaintext,
    /// The user reaches A; A and B splice through Redis (`POSTERN_PEER_TRANSPORT=relay`).
    Relay,
    /// As `local`, with one plain `socat` relay in front of `postern connect`:
    /// what one more relaying process costs when it only copies bytes (no TLS,
    /// no framing), the least a splice through a second replica can add.
    LocalSocat,
}

impl PathKind {
    /// The `path` label of `postern_splices_total` that proves the path.
    pub fn label(self) -> &'static str {
        match self {
            PathKind::Local | PathKind::LocalSocat => "local",
            PathKind::Peer | PathKind::PeerPlaintext => "peer",
            PathKind::Relay => "relay",
        }
    }

    /// Whether sessions on this path cross two replicas.
    pub fn is_splice(self) -> bool {
        self.label() != "local"
    }

    /// The path's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::PeerPlaintext => "peer-plaintext",
            PathKind::LocalSocat => "local-socat",
            other => other.label(),
        }
    }

    fn transport(self) -> Transport {
        match self {
            PathKind::Local | PathKind::LocalSocat | PathKind::Peer => Transport::PeerPort,
            PathKind::PeerPlaintext => Transport::PeerPortPlaintext,
            PathKind::Relay => Transport::Relay,
        }
    }
}

pub const LABELS: [&str; 3] = ["local", "peer", "relay"];

/// How replicas of one pair reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    PeerPort,
    PeerPortPlaintext,
    Relay,
}

/// Which program runs the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentProgram {
    /// `postern-agent` from --bin-dir.
    PosternAgent,
    /// This binary's `agent` subcommand: the same agent library and variables,
    /// for `cargo test`, which does not build the postern-agent binary.
    Loadtest,
}

/// Two replicas and the agent behind B.
pub struct Pair {
    pub config: ClusterConfig,
    pub a: Replica,
    pub b: Replica,
    _redis: Redis,
    agent: Child,
}

const AGENT: &str = "bench-agent";
pub const CONNECTION: &str = "bench";

async fn start_pair(
    transport: Transport,
    bin_dir: &Path,
    agent: AgentProgram,
    dir: &Path,
    target: SocketAddr,
) -> anyhow::Result<Pair> {
    std::fs::create_dir_all(dir)?;
    let redis = redis::start(dir).await?;
    let env = match transport {
        Transport::PeerPort => Vec::new(),
        Transport::PeerPortPlaintext => {
            vec![("POSTERN_PEER_TLS_DISABLED".to_owned(), "1".to_owned())]
        }
        Transport::Relay => vec![("POSTERN_PEER_TRANSPORT".to_owned(), "relay".to_owned())],
    };
    let config = ClusterConfig::new(bin_dir, dir, redis.url(), env)?;
    let a = cluster::start_replica(&config, "a")
        .await
        .with_context(|| match transport {
            Transport::PeerPort | Transport::PeerPortPlaintext => "starting replica a",
            Transport::Relay => {
                "path relay: postern-gateway did not start with POSTERN_PEER_TRANSPORT=relay"
            }
        })?;
    if transport == Transport::Relay {
        // The gateway warns about variables it does not know and carries on:
        // that would measure the peer port under the name "relay".
        let ignored = cluster::ignored_variables(&a, &["POSTERN_PEER_TRANSPORT"]);
        if !ignored.is_empty() {
            bail!(
                "path relay: {} does not support POSTERN_PEER_TRANSPORT=relay (it warned \
                 \"unknown POSTERN_ variable ignored\"): relaying through Redis is not built into \
                 this gateway. Measure --paths local,peer, or build a gateway that has relay.",
                config.gateway_bin.display()
            );
        }
    }
    let b = cluster::start_replica(&config, "b").await?;
    let api = config.api(&a)?;
    let token = cluster::add_agent(&api, AGENT).await?;
    cluster::add_connection(&api, CONNECTION, target, AGENT).await?;
    let agent_log = dir.join("agent.log");
    let (program, args) = match agent {
        AgentProgram::PosternAgent => (bin_dir.join("postern-agent"), vec![]),
        AgentProgram::Loadtest => (std::env::current_exe()?, vec!["agent"]),
    };
    // Dialled at B's own URL, with one tunnel: B is the only replica holding it.
    let agent = cluster::agent_process(
        &program,
        &args,
        &config,
        &b.url(),
        &token,
        target,
        &agent_log,
    )?;
    let held = wait_metrics(
        b.internal_addr,
        Duration::from_secs(30),
        "replica b holding the agent's tunnel",
        |text| sample(text, "postern_agents_connected", &[]) >= 1.0,
    )
    .await
    .with_context(|| cluster::log_tail(&agent_log))?;
    ensure!(
        sample(&held, "postern_agents_connected", &[]) == 1.0,
        "replica b holds more than one tunnel"
    );
    // A must know B (heartbeats through Redis) before it can pass requests on.
    let seen = wait_metrics(
        a.internal_addr,
        Duration::from_secs(30),
        "replica a seeing replica b",
        |text| sample(text, "postern_replicas_live", &[]) >= 2.0,
    )
    .await?;
    ensure!(
        sample(&seen, "postern_agents_connected", &[]) == 0.0,
        "replica a holds an agent tunnel: the peer path would not be measured"
    );
    Ok(Pair {
        config,
        a,
        b,
        _redis: redis,
        agent,
    })
}

/// One measured path: a local port of `postern connect`, and the replica whose
/// splice counter proves which path each session took.
pub struct Lane {
    pub path: PathKind,
    pub local: SocketAddr,
    /// The replica the user's sessions enter.
    pub ingress: String,
    /// Where the agent attaches (B), which counts the splice.
    counted_at: SocketAddr,
    /// The processes on this lane's path, by role, whose CPU time is measured.
    pub processes: Vec<(&'static str, u32)>,
    _connect: Child,
    /// The plain relay in front of `postern connect` (`local-socat` only).
    _relay: Option<crate::relay_floor::Chain>,
}

/// Roles of the processes whose CPU time is reported, in table order.
pub const ROLES: [&str; 4] = ["postern connect", "replica a", "replica b", "agent"];

impl Lane {
    /// CPU seconds used so far by each process of the lane, in `ROLES` order.
    pub fn cpu_seconds(&self) -> anyhow::Result<Vec<f64>> {
        self.processes
            .iter()
            .map(|(_, pid)| crate::observe::cpu_seconds(*pid))
            .collect()
    }

    pub async fn splice_counts(&self) -> anyhow::Result<[f64; 3]> {
        let text = crate::observe::metrics(self.counted_at).await?;
        Ok(LABELS.map(|label| sample(&text, "postern_splices_total", &[("path", label)])))
    }

    /// Checks that exactly `sessions` sessions since `before` took this lane's path.
    pub async fn verify(&self, before: [f64; 3], sessions: u64) -> anyhow::Result<()> {
        let after = self.splice_counts().await?;
        let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        for (label, d) in LABELS.iter().zip(&delta) {
            let expected = if *label == self.path.label() {
                sessions as f64
            } else {
                0.0
            };
            if *d != expected {
                bail!(
                    "path {}: expected {sessions} sessions counted as postern_splices_total{{path=\"{}\"}} \
                     on replica b, got local +{}, peer +{}, relay +{}",
                    self.path.name(),
                    self.path.label(),
                    delta[0],
                    delta[1],
                    delta[2]
                );
            }
        }
        Ok(())
    }
}

/// Everything the benchmark runs, kept alive together.
pub struct Setup {
    pub lanes: Vec<Lane>,
    /// Kept for their processes.
    _pairs: Vec<Pair>,
}

pub async fn start(
    paths: &[PathKind],
    bin_dir: &Path,
    agent: AgentProgram,
    dir: &Path,
    target: SocketAddr,
) -> anyhow::Result<Setup> {
    let cli_bin = bin_dir.join("postern");
    let mut pairs: Vec<(Transport, Pair)> = Vec::new();
    for transport in [
        Transport::PeerPort,
        Transport::PeerPortPlaintext,
        Transport::Relay,
    ] {
        if paths.iter().any(|p| p.transport() == transport) {
            let sub = dir.join(format!("{transport:?}").to_lowercase());
            let pair = start_pair(transport, bin_dir, agent, &sub, target).await?;
            pairs.push((transport, pair));
        }
    }
    let mut lanes = Vec::new();
    for &path in paths {
        let (_, pair) = pairs
            .iter()
            .find(|(t, _)| *t == path.transport())
            .context("a pair for every transport")?;
        let ingress = match path {
            PathKind::Local | PathKind::LocalSocat => &pair.b,
            PathKind::Peer | PathKind::PeerPlaintext | PathKind::Relay => &pair.a,
        };
        let (connect, local) =
            cluster::connect(&cli_bin, &pair.config, &ingress.url(), CONNECTION).await?;
        let processes = vec![
            (ROLES[0], connect.id().context("postern connect exited")?),
            (ROLES[1], pair.a.pid()),
            (ROLES[2], pair.b.pid()),
            (ROLES[3], pair.agent.id().context("the agent exited")?),
        ];
        let relay = match path {
            PathKind::LocalSocat => Some(crate::relay_floor::chain(1, local).await?),
            _ => None,
        };
        lanes.push(Lane {
            path,
            processes,
            local: relay.as_ref().map_or(local, |r| r.local),
            _relay: relay,
            ingress: format!("{} ({})", ingress.name, ingress.id),
            counted_at: pair.b.internal_addr,
            _connect: connect,
        });
    }
    Ok(Setup {
        lanes,
        _pairs: pairs.into_iter().map(|(_, p)| p).collect(),
    })
}
