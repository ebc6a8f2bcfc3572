//! Failover: three replicas on one Redis behind a TCP load balancer, agents
//! spread over them, sessions under load through a replica that survives;
//! then `kill -9` of another replica. Reports the errors the sessions not on
//! it saw, and the time until every agent is reachable again through new
//! sessions (each agent's connection probed repeatedly from the kill on).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use postern_agent::{AgentConfig, AgentHandle};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::cluster::{self, ClusterConfig, Replica};
use crate::md;
use crate::outcome::{Common, Outcome};
use crate::stats::{self, Latency};
use crate::{lb, redis, target};

/// The target: every agent reachable again this soon after a replica dies.
pub const TARGET_SECONDS: f64 = 2.0;
const REPLICAS: [&str; 3] = ["a", "b", "c"];
/// The replica the users enter (survives) and the one killed.
const INGRESS: usize = 0;
const KILLED: usize = 2;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Agents, spread over the three replicas by the load balancer [default: 12; --quick 6].
    #[arg(long)]
    pub agents: Option<usize>,
    /// Tunnels per agent. 1: every agent of the killed replica has to reconnect
    /// (the agent's own default is 2, each to a different replica).
    #[arg(long, default_value_t = 1)]
    pub tunnels: usize,
    /// Sessions under load (sequential round trips) through agents on the surviving replicas [default: 6; --quick 3].
    #[arg(long)]
    pub load_sessions: Option<usize>,
    /// Seconds of load before the kill [default: 3; --quick 1].
    #[arg(long)]
    pub before_secs: Option<f64>,
    /// Give up waiting for every agent after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    pub limit_secs: f64,
    /// Small sizes for a smoke test that finishes in seconds.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub common: Common,
}

pub struct Options {
    pub agents: usize,
    pub tunnels: usize,
    pub load_sessions: usize,
    pub before: Duration,
    pub limit: Duration,
    pub bin_dir: PathBuf,
}

impl Args {
    pub fn options(&self) -> Options {
        Options {
            agents: self.agents.unwrap_or(if self.quick { 6 } else { 12 }),
            tunnels: self.tunnels,
            load_sessions: self.load_sessions.unwrap_or(if self.quick { 3 } else { 6 }),
            before: Duration::from_secs_f64(self.before_secs.unwrap_or(if self.quick {
                1.0
            } else {
                3.0
            })),
            limit: Duration::from_secs_f64(self.limit_secs),
            bin_dir: self.common.bin_dir.clone(),
        }
    }
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    measure(&args.options())
        .await?
        .finish(args.common.json.as_deref())
}

/// One new session through `port`: a byte echoed within `timeout`.
async fn probe(port: SocketAddr, timeout: Duration) -> bool {
    let attempt = async {
        let mut socket = TcpStream::connect(port).await?;
        socket.write_all(b"E?").await?;
        Ok::<_, std::io::Error>(socket.read_u8().await? == b'?')
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
}

/// What the sessions under load saw.
#[derive(Default)]
struct Load {
    round_trips: AtomicU64,
    errors: AtomicU64,
    errors_after_kill: AtomicU64,
    stop: AtomicBool,
}

/// Sequential 64-byte round trips on one session through `port`; a failed
/// session is counted and replaced by a new one.
async fn load_session(port: SocketAddr, load: Arc<Load>, killed: Arc<AtomicBool>) -> Latency {
    let mut histogram = stats::histogram();
    let request = [7u8; 64];
    let mut reply = [0u8; 64];
    while !load.stop.load(Ordering::Relaxed) {
        let session = async {
            let mut socket = TcpStream::connect(port).await?;
            socket.set_nodelay(true)?;
            socket.write_u8(b'E').await?;
            while !load.stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                socket.write_all(&request).await?;
                tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut reply))
                    .await??;
                stats::record(&mut histogram, sent.elapsed());
                load.round_trips.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, std::io::Error>(())
        };
        if session.await.is_err() {
            load.errors.fetch_add(1, Ordering::Relaxed);
            if killed.load(Ordering::Relaxed) {
                load.errors_after_kill.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Latency::of(&histogram)
}

#[derive(Serialize)]
struct AgentResult {
    name: String,
    /// Replicas holding its tunnels before the kill, and after.
    before: Vec<String>,
    after: Vec<String>,
    /// Seconds from the kill until a new session through it succeeded.
    reachable_after_s: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    scenario: &'static str,
    replicas: Vec<String>,
    killed: String,
    ingress: String,
    tunnels_per_agent: usize,
    agents: Vec<AgentResult>,
    agents_on_killed: usize,
    load_sessions: usize,
    load_round_trips: u64,
    /// Failed sessions among those under load (none of them used the killed replica).
    load_errors: u64,
    load_errors_after_kill: u64,
    load_latency: Vec<Latency>,
    /// Until every agent was reachable again; null if not within the limit.
    all_reachable_after_s: Option<f64>,
    /// A final round of probes, one per agent, all succeeded.
    confirmed: bool,
    target_seconds: f64,
    meets_target: bool,
}

struct Cluster {
    _redis: redis::Redis,
    _config: ClusterConfig,
    replicas: Vec<Option<Replica>>,
    _balancer: lb::Balancer,
    agents: Vec<(String, AgentHandle)>,
    /// Per agent: `postern connect` to its connection through the ingress replica.
    ports: Vec<(Child, SocketAddr)>,
    placement: Vec<Vec<String>>,
}

async fn start(options: &Options, dir: &std::path::Path) -> anyhow::Result<Cluster> {
    ensure!(
        options.agents >= REPLICAS.len(),
        "--agents must be at least {}",
        REPLICAS.len()
    );
    let target = target::start().await?;
    let redis = redis::start(dir).await?;
    let config = ClusterConfig::new(&options.bin_dir, dir, redis.url(), Vec::new())?;
    let mut replicas = Vec::new();
    for name in REPLICAS {
        replicas.push(Some(cluster::start_replica(&config, name).await?));
    }
    let replica = |i: usize| replicas[i].as_ref().expect("started");
    let balancer = lb::start(replicas.iter().flatten().map(|r| r.public_addr).collect()).await?;
    let api = config.api(replica(INGRESS))?;
    let ca_pem = std::fs::read(config.certs.ca_path())?;
    let cli_bin = options.bin_dir.join("postern");
    let mut agents = Vec::new();
    let mut placement = Vec::new();
    let mut ports = Vec::new();
    for i in 0..options.agents {
        let name = format!("failover-{i:03}");
        let token = cluster::add_agent(&api, &name).await?;
        cluster::add_connection(&api, &name, target, &name).await?;
        let mut agent = AgentConfig::new(balancer.url(), token);
        agent.ca_pem = Some(ca_pem.clone());
        agent.tunnels = options.tunnels;
        let handle = postern_agent::spawn(agent).context("agent configuration")?;
        // One at a time, so the balancer's turns spread them over the replicas.
        let held = handle
            .wait_replicas(options.tunnels.min(REPLICAS.len()), Duration::from_secs(30))
            .await
            .with_context(|| format!("agent {name} did not connect within 30 s"))?;
        placement.push(held);
        agents.push((name, handle));
    }
    let killed_id = &replica(KILLED).id;
    if !placement.iter().any(|p| p.contains(killed_id)) {
        bail!("no agent holds a tunnel on replica {killed_id}: nothing would fail over");
    }
    for (name, _) in &agents {
        ports.push(cluster::connect(&cli_bin, &config, &replica(INGRESS).url(), name).await?);
    }
    Ok(Cluster {
        _redis: redis,
        _config: config,
        replicas,
        _balancer: balancer,
        agents,
        ports,
        placement,
    })
}

pub async fn measure(options: &Options) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    eprintln!(
        "failover: Redis, replicas a b c behind a TCP load balancer, {} agents ({} tunnel(s) each)",
        options.agents, options.tunnels
    );
    let mut cluster = start(options, dir.path()).await?;
    let ids: Vec<String> = cluster
        .replicas
        .iter()
        .flatten()
        .map(|r| r.id.clone())
        .collect();
    let killed_id = ids[KILLED].clone();
    for (i, (name, _)) in cluster.agents.iter().enumerate() {
        ensure!(
            probe(cluster.ports[i].1, Duration::from_secs(10)).await,
            "agent {name} is not reachable before the kill"
        );
    }
    let survivors: Vec<usize> = (0..cluster.agents.len())
        .filter(|i| !cluster.placement[*i].contains(&killed_id))
        .collect();
    ensure!(
        !survivors.is_empty(),
        "every agent holds a tunnel on {killed_id}"
    );
    let load = Arc::new(Load::default());
    let killed = Arc::new(AtomicBool::new(false));
    let mut sessions = tokio::task::JoinSet::new();
    for s in 0..options.load_sessions {
        let port = cluster.ports[survivors[s % survivors.len()]].1;
        sessions.spawn(load_session(port, load.clone(), killed.clone()));
    }
    tokio::time::sleep(options.before).await;
    let before_kill = load.round_trips.load(Ordering::Relaxed);
    ensure!(
        before_kill > 0,
        "no round trip completed under load before the kill"
    );
    eprintln!(
        "failover: {before_kill} round trips on {} sessions; kill -9 replica {killed_id}",
        options.load_sessions
    );
    let replica = cluster.replicas[KILLED].take().context("replica c")?;
    let killed_at = Instant::now();
    killed.store(true, Ordering::Relaxed);
    replica.kill_and_wait().await?;
    let mut probes = tokio::task::JoinSet::new();
    for (i, (_, port)) in cluster.ports.iter().enumerate() {
        let port = *port;
        let limit = options.limit;
        probes.spawn(async move {
            while killed_at.elapsed() < limit {
                if probe(port, Duration::from_millis(500)).await {
                    return (i, Some(killed_at.elapsed().as_secs_f64()));
                }
                // A retry interval, so refusals do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (i, None)
        });
    }
    let mut reachable = vec![None; cluster.agents.len()];
    while let Some(done) = probes.join_next().await {
        let (i, at) = done?;
        reachable[i] = at;
    }
    let all_reachable = reachable
        .iter()
        .try_fold(0.0f64, |max, at| at.map(|at| max.max(at)));
    eprintln!(
        "failover: every agent reachable again after {}",
        all_reachable.map_or("(not within the limit)".into(), |s| format!("{s:.3} s"))
    );
    let mut confirmed = true;
    for (_, port) in &cluster.ports {
        confirmed &= probe(*port, Duration::from_secs(5)).await;
    }
    load.stop.store(true, Ordering::Relaxed);
    let mut load_latency = Vec::new();
    while let Some(done) = sessions.join_next().await {
        load_latency.push(done?);
    }
    let agents: Vec<AgentResult> = cluster
        .agents
        .iter()
        .zip(&cluster.placement)
        .zip(&reachable)
        .map(|(((name, handle), before), at)| AgentResult {
            name: name.clone(),
            before: before.clone(),
            after: handle.replicas(),
            reachable_after_s: *at,
        })
        .collect();
    let agents_on_killed = agents
        .iter()
        .filter(|a| a.before.contains(&killed_id))
        .count();
    let meets_target = all_reachable.is_some_and(|s| s <= TARGET_SECONDS) && confirmed;
    let report = Report {
        scenario: "failover",
        replicas: ids.clone(),
        killed: killed_id.clone(),
        ingress: ids[INGRESS].clone(),
        tunnels_per_agent: options.tunnels,
        agents_on_killed,
        agents,
        load_sessions: options.load_sessions,
        load_round_trips: load.round_trips.load(Ordering::Relaxed),
        load_errors: load.errors.load(Ordering::Relaxed),
        load_errors_after_kill: load.errors_after_kill.load(Ordering::Relaxed),
        load_latency,
        all_reachable_after_s: all_reachable,
        confirmed,
        target_seconds: TARGET_SECONDS,
        meets_target,
    };
    let mut outcome = Outcome::new("failover", &report)?;
    let out = &mut outcome.markdown;
    md!(
        out,
        "Failover: replicas {} behind a TCP load balancer, {} agents with {} tunnel(s) each \
         ({} on {killed_id}), users entering {}; {} sessions under load through agents on the \
         surviving replicas; kill -9 {killed_id}:\n",
        ids.join(", "),
        report.agents.len(),
        options.tunnels,
        agents_on_killed,
        report.ingress,
        options.load_sessions
    );
    md!(
        out,
        "| agents on the killed replica | all agents reachable again after | slowest agent of the others | round trips under load | failed sessions under load (after the kill) | worst round trip under load |"
    );
    md!(out, "|---:|---:|---:|---:|---:|---:|");
    let others = report
        .agents
        .iter()
        .filter(|a| !a.before.contains(&killed_id))
        .filter_map(|a| a.reachable_after_s)
        .fold(0.0f64, f64::max);
    let worst = report
        .load_latency
        .iter()
        .map(|l| l.max_us)
        .fold(0.0f64, f64::max);
    md!(
        out,
        "| {} | {} | {:.3} s | {} | {} ({}) | {:.1} ms |",
        agents_on_killed,
        all_reachable.map_or("not within the limit".into(), |s| format!("{s:.3} s")),
        others,
        report.load_round_trips,
        report.load_errors,
        report.load_errors_after_kill,
        worst / 1000.0
    );
    let moved: Vec<String> = report
        .agents
        .iter()
        .filter(|a| a.before.contains(&killed_id))
        .map(|a| {
            let at = a
                .reachable_after_s
                .map_or("not reached".into(), |s| format!("{s:.3} s"));
            format!("{} → {}: {at}", a.name, a.after.join(", "))
        })
        .collect();
    md!(
        out,
        "\nAgents of {killed_id}, where they went and when they answered: {}.",
        moved.join("; ")
    );
    outcome.verdict(
        format!("every agent reachable ≤ {TARGET_SECONDS} s after a replica is killed"),
        format!(
            "{}; {} failed sessions among {} under load on the surviving replicas",
            all_reachable.map_or(
                format!("not all within {} s", options.limit.as_secs_f64()),
                |s| format!("{s:.3} s")
            ),
            report.load_errors,
            options.load_sessions
        ),
        meets_target,
    );
    let mut stops = tokio::task::JoinSet::new();
    for (_, handle) in cluster.agents.drain(..) {
        stops.spawn(handle.stop());
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), stops.join_all()).await;
    Ok(outcome)
}
