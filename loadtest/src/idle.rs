//! Memory per idle agent tunnel on one replica: a real `postern-gateway`
//! process (peering on, as in production) and N agents, each with its own name,
//! token and one tunnel (its own TLS + HTTP/2 connection and control stream),
//! driven from this process by the real agent library.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use postern_agent::{AgentConfig, AgentHandle};
use postern_tunnel::Secret;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde::Serialize;

use crate::cluster::{self, ClusterConfig};
use crate::md;
use crate::observe::{Machine, Memory, machine, memory, open_fds, sample, wait_metrics};
use crate::outcome::{Outcome, met};
use crate::redis;

/// The target for one idle agent tunnel on a replica.
pub const TARGET_KIB: f64 = 25.0;
/// Agents connecting at once: a burst of TLS handshakes, not a stampede.
const WAVE: usize = 500;
/// Registrations in flight at once (one HTTP/2 connection).
const REGISTER_CONCURRENCY: usize = 32;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Agents, each with its own token and one tunnel [default: 10000; --quick 500].
    #[arg(long)]
    pub agents: Option<usize>,
    /// Control-stream keepalive interval of gateway and agents [default: 20000, the
    /// production default; --quick 1000].
    #[arg(long)]
    pub keepalive_ms: Option<u64>,
    /// How long the agents idle before the final measurement [default: 1.5 keepalive intervals].
    #[arg(long)]
    pub idle_secs: Option<f64>,
    /// Small sizes for a smoke test that finishes in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Run the gateway under this program to see where its memory goes,
    /// e.g. "heaptrack -o /tmp/gateway" (memory is still read from the gateway itself).
    #[arg(long, value_delimiter = ' ')]
    pub gateway_wrapper: Vec<String>,
    #[command(flatten)]
    pub common: crate::outcome::Common,
}

impl Args {
    pub fn options(&self) -> Options {
        let keepalive = Duration::from_millis(self.keepalive_ms.unwrap_or(if self.quick {
            1000
        } else {
            20_000
        }));
        Options {
            agents: self.agents.unwrap_or(if self.quick { 500 } else { 10_000 }),
            keepalive,
            idle: self
                .idle_secs
                .map_or(keepalive.mul_f64(1.5), Duration::from_secs_f64),
            bin_dir: self.common.bin_dir.clone(),
            gateway_wrapper: self.gateway_wrapper.clone(),
        }
    }
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    measure(&args.options())
        .await?
        .finish(args.common.json.as_deref())
}

pub struct Options {
    pub agents: usize,
    pub keepalive: Duration,
    pub idle: Duration,
    pub bin_dir: PathBuf,
    pub gateway_wrapper: Vec<String>,
}

/// Raises this process's open-file limit (children inherit it) to at least `needed`.
fn raise_nofile(needed: u64) -> anyhow::Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= needed {
        return Ok(current);
    }
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    // Only a privileged process may raise the hard limit; try, then say what to do.
    let new_max = maximum.max(needed);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(needed),
            maximum: Some(new_max),
        },
    )
    .or_else(|_| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(needed.min(maximum)),
                maximum: Some(maximum),
            },
        )
    })
    .context("setrlimit(RLIMIT_NOFILE)")?;
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now < needed {
        bail!(
            "RLIMIT_NOFILE: {needed} open files are needed (one socket per agent in this process \
             and in the gateway) but the hard limit is {maximum}: raise it (`ulimit -Hn {needed}` \
             as root, or /etc/security/limits.conf) or run fewer --agents"
        );
    }
    Ok(now)
}

#[derive(Serialize)]
struct Stage {
    moment: String,
    agents: usize,
    memory: Memory,
    open_fds: u64,
}

#[derive(Serialize)]
struct PerAgent {
    vm_rss: f64,
    rollup_rss: f64,
    anonymous: f64,
}

impl PerAgent {
    fn between(from: &Stage, to: &Stage) -> Self {
        let n = (to.agents - from.agents) as f64;
        let kib = |f: fn(&Memory) -> u64| (f(&to.memory) as f64 - f(&from.memory) as f64) / n;
        Self {
            vm_rss: kib(|m| m.vm_rss_kib),
            rollup_rss: kib(|m| m.rollup_rss_kib),
            anonymous: kib(|m| m.anonymous_kib),
        }
    }
}

#[derive(Serialize)]
struct Report {
    scenario: &'static str,
    machine: Machine,
    agents: usize,
    keepalive_ms: u128,
    idle_secs: f64,
    nofile_limit: u64,
    stages: Vec<Stage>,
    /// (idle − before agents) / agents: the headline number.
    kib_per_agent: PerAgent,
    /// (all connected − half connected) / second half: without one-time costs.
    marginal_kib_per_agent: PerAgent,
    target_kib: f64,
    meets_target: bool,
}

async fn register(api: ClusterApi, count: usize) -> anyhow::Result<Vec<(String, Secret)>> {
    let names: Vec<String> = (0..count).map(|i| format!("idle-{i:05}")).collect();
    let mut agents = Vec::with_capacity(count);
    for chunk in names.chunks(REGISTER_CONCURRENCY) {
        let mut tasks = tokio::task::JoinSet::new();
        for name in chunk {
            let api = api.clone();
            let name = name.clone();
            tasks.spawn(async move {
                let token = cluster::add_agent(&api, &name).await?;
                Ok::<_, anyhow::Error>((name, token))
            });
        }
        while let Some(done) = tasks.join_next().await {
            agents.push(done??);
        }
    }
    Ok(agents)
}

type ClusterApi = Arc<postern::api::ApiClient>;

/// Starts agents in waves and waits until each holds its tunnel.
async fn connect(
    agents: &[(String, Secret)],
    url: &str,
    ca_pem: &[u8],
    keepalive: Duration,
    handles: &mut Vec<AgentHandle>,
) -> anyhow::Result<()> {
    for wave in agents.chunks(WAVE) {
        let mut started = Vec::with_capacity(wave.len());
        for (name, token) in wave {
            let mut config = AgentConfig::new(url, token.clone());
            config.ca_pem = Some(ca_pem.to_vec());
            config.tunnels = 1;
            config.keepalive_interval = keepalive;
            let handle = postern_agent::spawn(config).context("agent configuration")?;
            started.push((name, handle));
        }
        for (name, handle) in started {
            if handle
                .wait_connected(Duration::from_secs(60))
                .await
                .is_none()
            {
                bail!("agent {name} did not connect within 60 s");
            }
            handles.push(handle);
        }
    }
    Ok(())
}

pub async fn measure(options: &Options) -> anyhow::Result<Outcome> {
    ensure!(options.agents >= 2, "--agents must be at least 2");
    let nofile_limit = raise_nofile(options.agents as u64 + 1024)?;
    let dir = tempfile::tempdir()?;
    let redis = redis::start(dir.path()).await?;
    let env = vec![(
        "POSTERN_KEEPALIVE_INTERVAL_MS".to_owned(),
        options.keepalive.as_millis().to_string(),
    )];
    let mut config = ClusterConfig::new(&options.bin_dir, dir.path(), redis.url(), env)?;
    config.wrapper = options.gateway_wrapper.clone();
    let gateway = cluster::start_replica(&config, "a").await?;
    let pid = gateway.pid();
    eprintln!(
        "gateway replica {} (pid {pid}) with Redis on port {}; registering {} agents",
        gateway.id, redis.port, options.agents
    );
    let api = Arc::new(config.api(&gateway)?);
    let agents = register(api, options.agents).await?;
    let ca_pem = std::fs::read(config.certs.ca_path())?;
    let url = gateway.url();

    let stage = |moment: &str, agents: usize| -> anyhow::Result<Stage> {
        let stage = Stage {
            moment: moment.to_owned(),
            agents,
            memory: memory(pid)?,
            open_fds: open_fds(pid)?,
        };
        eprintln!(
            "{:<16} {:>6} agents  VmRSS {:>8} KiB  smaps Rss {:>8} KiB  fds {}",
            stage.moment,
            agents,
            stage.memory.vm_rss_kib,
            stage.memory.rollup_rss_kib,
            stage.open_fds
        );
        Ok(stage)
    };
    let connected = |n: usize| {
        wait_metrics(
            gateway.internal_addr,
            Duration::from_secs(60),
            "postern_agents_connected reaching the number of agents started",
            move |text| sample(text, "postern_agents_connected", &[]) == n as f64,
        )
    };
    let mut stages = vec![stage("before agents", 0)?];
    let half = options.agents / 2;
    let mut handles = Vec::with_capacity(options.agents);
    connect(
        &agents[..half],
        &url,
        &ca_pem,
        options.keepalive,
        &mut handles,
    )
    .await?;
    connected(half).await?;
    stages.push(stage("half connected", half)?);
    connect(
        &agents[half..],
        &url,
        &ca_pem,
        options.keepalive,
        &mut handles,
    )
    .await?;
    connected(options.agents).await?;
    stages.push(stage("all connected", options.agents)?);
    // The measured idle period: keepalives cross every tunnel at least once.
    tokio::time::sleep(options.idle).await;
    let text = connected(options.agents).await?;
    ensure!(
        sample(&text, "postern_sessions_open", &[]) == 0.0,
        "sessions are open: the agents are not idle"
    );
    let idle_moment = format!("idle {} s", options.idle.as_secs_f64());
    stages.push(stage(&idle_moment, options.agents)?);

    let kib_per_agent = PerAgent::between(&stages[0], &stages[3]);
    let report = Report {
        scenario: "idle_agents",
        machine: machine(),
        agents: options.agents,
        keepalive_ms: options.keepalive.as_millis(),
        idle_secs: options.idle.as_secs_f64(),
        nofile_limit,
        marginal_kib_per_agent: PerAgent::between(&stages[1], &stages[2]),
        meets_target: kib_per_agent.vm_rss <= TARGET_KIB,
        kib_per_agent,
        stages,
        target_kib: TARGET_KIB,
    };
    let mut outcome = Outcome::new("idle_agents", &report)?;
    print(&report, &mut outcome.markdown);
    outcome.verdict(
        format!("memory per idle agent ≤ {TARGET_KIB:.0} KiB (gateway VmRSS)"),
        format!(
            "{:.1} KiB per agent, {} agents",
            report.kib_per_agent.vm_rss, report.agents
        ),
        report.meets_target,
    );
    if !config.wrapper.is_empty() {
        eprintln!("stopping the gateway so its wrapper can finish");
        gateway.kill_and_wait().await?;
    }
    // Stop the agents before the gateway goes, all at once, so none is left
    // reconnecting in the background of the next scenario.
    let mut stops = tokio::task::JoinSet::new();
    for handle in handles {
        stops.spawn(handle.stop());
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), stops.join_all()).await;
    Ok(outcome)
}

fn print(report: &Report, out: &mut String) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    md!(
        out,
        "\nOne gateway replica (peering on, Redis), {} idle agents with one tunnel each, \
         keepalives every {} ms:\n",
        report.agents,
        report.keepalive_ms
    );
    md!(
        out,
        "| moment | agent tunnels | VmRSS MiB | smaps Rss MiB | anonymous MiB | threads | open fds |"
    );
    md!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for s in &report.stages {
        md!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {} |",
            s.moment,
            s.agents,
            mib(s.memory.vm_rss_kib),
            mib(s.memory.rollup_rss_kib),
            mib(s.memory.anonymous_kib),
            s.memory.threads,
            s.open_fds
        );
    }
    md!(out, "\n| KiB per agent | VmRSS | smaps Rss | anonymous |");
    md!(out, "|---|---:|---:|---:|");
    for (what, p) in [
        ("idle vs before agents", &report.kib_per_agent),
        (
            "second half only (marginal)",
            &report.marginal_kib_per_agent,
        ),
    ] {
        md!(
            out,
            "| {what} | {:.1} | {:.1} | {:.1} |",
            p.vm_rss,
            p.rollup_rss,
            p.anonymous
        );
    }
    md!(
        out,
        "\nTarget ≤ {:.0} KiB per idle agent (VmRSS): {} ({:.1} KiB)",
        report.target_kib,
        met(report.meets_target),
        report.kib_per_agent.vm_rss
    );
}
