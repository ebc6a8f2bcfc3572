//! `all`: every scenario in sequence, one progress line per step on stderr,
//! then `results.json`, `results.md` (a table per scenario, and a verdict per
//! target of the issue) and SVG plots in one directory.

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::md;
use crate::outcome::{Common, Outcome, Verdict, load_average, met, write_json};
use crate::procs::Baselines;
use crate::splice::{AgentProgram, PathKind};
use crate::{bulk, failover, idle, latency, pgbench, plot, session_open, splice};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Small sizes: every scenario, in under two minutes on debug builds.
    #[arg(long)]
    pub quick: bool,
    /// Where results.json, results.md and the plots go.
    #[arg(long, default_value = "loadtest/results")]
    pub out: PathBuf,
    /// Where the binaries are (postern-gateway, postern, postern-agent).
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Which program runs the splice scenario's agent.
    #[arg(long, value_enum, default_value = "postern-agent")]
    pub agent: AgentProgram,
    /// Paths of the splice scenario, local first.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "local,peer,peer-plaintext,relay"
    )]
    pub splice_paths: Vec<PathKind>,
    /// Idle agents on one replica [default: 10000; --quick 500].
    #[arg(long)]
    pub idle_agents: Option<usize>,
    /// Scenarios to leave out: bulk, latency, session-open, pgbench, splice, idle-agents, failover.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
}

const SCENARIOS: [&str; 7] = [
    "bulk",
    "latency",
    "session-open",
    "pgbench",
    "splice",
    "idle-agents",
    "failover",
];

#[derive(Serialize)]
struct Step {
    scenario: &'static str,
    seconds: f64,
    load_average_before: f64,
    load_average_after: f64,
    error: Option<String>,
}

#[derive(Serialize)]
struct Results {
    date: String,
    quick: bool,
    machine: crate::observe::Machine,
    /// Other work on the machine shows here: the 1-minute load average before and after each step.
    steps: Vec<Step>,
    /// The 1-minute load average every 5 s during the run.
    load_average_samples: Vec<f64>,
    seconds: f64,
    verdicts: Vec<Verdict>,
    plots: Vec<&'static str>,
    scenarios: serde_json::Map<String, serde_json::Value>,
}

struct Runner {
    started: Instant,
    load: std::sync::Arc<std::sync::Mutex<Vec<f64>>>,
    steps: Vec<Step>,
    outcomes: Vec<Outcome>,
    skip: Vec<String>,
    index: usize,
}

impl Runner {
    async fn step(
        &mut self,
        scenario: &'static str,
        work: impl Future<Output = anyhow::Result<Outcome>>,
    ) {
        self.index += 1;
        if self.skip.iter().any(|s| s == scenario) {
            eprintln!("[{}/{}] {scenario}: skipped", self.index, SCENARIOS.len());
            return;
        }
        let load_before = load_average();
        eprintln!(
            "[{}/{}] {scenario}: starting at {:.0} s (load average {load_before:.2})",
            self.index,
            SCENARIOS.len(),
            self.started.elapsed().as_secs_f64()
        );
        let began = Instant::now();
        let result = work.await;
        let seconds = began.elapsed().as_secs_f64();
        let error = match result {
            Ok(outcome) => {
                for v in &outcome.verdicts {
                    eprintln!(
                        "[{}/{}] {scenario}: target {}: {} ({})",
                        self.index,
                        SCENARIOS.len(),
                        v.target,
                        met(v.met),
                        v.measured
                    );
                }
                self.outcomes.push(outcome);
                None
            }
            Err(e) => {
                eprintln!(
                    "[{}/{}] {scenario}: FAILED: {e:#}",
                    self.index,
                    SCENARIOS.len()
                );
                Some(format!("{e:#}"))
            }
        };
        eprintln!(
            "[{}/{}] {scenario}: {} in {seconds:.1} s",
            self.index,
            SCENARIOS.len(),
            if error.is_none() { "done" } else { "failed" }
        );
        self.steps.push(Step {
            scenario,
            seconds,
            load_average_before: load_before,
            load_average_after: load_average(),
            error,
        });
    }
}

fn common(args: &Args) -> Common {
    Common {
        bin_dir: args.bin_dir.clone(),
        json: None,
    }
}

/// Sizes of each scenario: `--quick`, or modest ones that keep a full run near ten minutes.
fn sized<T>(quick: bool, quick_value: T, full: T) -> Option<T> {
    Some(if quick { quick_value } else { full })
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    for s in &args.skip {
        anyhow::ensure!(
            SCENARIOS.contains(&s.as_str()),
            "--skip {s}: expected one of {}",
            SCENARIOS.join(", ")
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let q = args.quick;
    // How busy the machine is while the run goes on (it may be shared).
    let load = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let load = load.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                every.tick().await;
                load.lock().expect("not poisoned").push(load_average());
            }
        })
    };
    let mut runner = Runner {
        load,
        started: Instant::now(),
        steps: Vec::new(),
        outcomes: Vec::new(),
        skip: args.skip.clone(),
        index: 0,
    };
    let baseline_scenarios = ["bulk", "latency", "session-open"];
    let baselines = if baseline_scenarios
        .iter()
        .all(|s| args.skip.iter().any(|k| k == s))
    {
        None
    } else {
        Some(Baselines::start(&args.bin_dir).await)
    };
    match &baselines {
        Some(Ok(b)) => {
            let options = bulk::Args {
                mib: sized(q, 16, 256),
                rounds: sized(q, 1, 3),
                streams: vec![1, 16],
                quick: q,
                common: common(&args),
            }
            .options();
            runner.step("bulk", bulk::measure(b, &options)).await;
            let options = latency::Args {
                round_trips: sized(q, 300, 5000),
                rounds: sized(q, 1, 3),
                request_bytes: 64,
                quick: q,
                common: common(&args),
            }
            .options();
            runner.step("latency", latency::measure(b, &options)).await;
            let options = session_open::Args {
                sessions: sized(q, 50, 300),
                concurrency: 8,
                rounds: sized(q, 1, 3),
                quick: q,
                common: common(&args),
            }
            .options();
            runner
                .step("session-open", session_open::measure(b, &options))
                .await;
        }
        // The three scenarios fail with the reason; the others still run.
        Some(Err(e)) => {
            let reason = format!("starting the target, ssh -L and Postern: {e:#}");
            for scenario in baseline_scenarios {
                runner
                    .step(scenario, async { Err(anyhow::anyhow!("{reason}")) })
                    .await;
            }
        }
        // All three skipped: `step` says so.
        None => {
            for scenario in baseline_scenarios {
                runner
                    .step(scenario, async { Err(anyhow::anyhow!("skipped")) })
                    .await;
            }
        }
    }
    drop(baselines);
    let options = pgbench::Args {
        load: pgbench::Load {
            postgres: None,
            clients: vec![1, 8],
        },
        seconds: sized(q, 1, 5),
        rounds: sized(q, 1, 3),
        mode: "simple".into(),
        kind: "postgres".into(),
        quick: q,
        common: common(&args),
    }
    .options()?;
    runner.step("pgbench", pgbench::measure(&options)).await;
    let options = splice::Args {
        mib: sized(q, 16, 256),
        rounds: sized(q, 1, 3),
        round_trips: sized(q, 300, 5000),
        request_bytes: 64,
        paths: args.splice_paths.clone(),
        quick: q,
        agent: args.agent,
        common: common(&args),
    }
    .options();
    runner.step("splice", splice::measure(&options)).await;
    let options = idle::Args {
        agents: args.idle_agents.or(sized(q, 500, 10_000)),
        keepalive_ms: None,
        idle_secs: None,
        quick: q,
        gateway_wrapper: Vec::new(),
        common: common(&args),
    }
    .options();
    runner.step("idle-agents", idle::measure(&options)).await;
    let options = failover::Args {
        agents: None,
        tunnels: 1,
        load_sessions: None,
        before_secs: None,
        limit_secs: 30.0,
        quick: q,
        common: common(&args),
    }
    .options();
    runner.step("failover", failover::measure(&options)).await;

    sampler.abort();
    write(&args, runner)
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn write(args: &Args, runner: Runner) -> anyhow::Result<()> {
    let mut plots = Vec::new();
    for outcome in &runner.outcomes {
        for p in &outcome.plots {
            plots.push(plot::draw(p, &args.out)?);
        }
    }
    let machine = crate::observe::machine();
    let verdicts: Vec<Verdict> = runner
        .outcomes
        .iter()
        .flat_map(|o| o.verdicts.clone())
        .collect();
    let samples = runner.load.lock().expect("not poisoned").clone();
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let mut md = String::new();
    md!(
        md,
        "# Postern benchmarks{}\n",
        if args.quick {
            " (--quick: smoke-test sizes, not for comparison)"
        } else {
            ""
        }
    );
    md!(
        md,
        "{}; {} CPUs ({}), {:.1} GiB RAM, Linux {}; {:.0} s. Baselines measured in the same run, \
         paths alternating round by round; medians. The machine's 1-minute load average during \
         the run: {:.2}–{:.2}, median {:.2} (sampled every 5 s; other work on a shared machine \
         shows here; per step in the last table).\n",
        date(),
        machine.cpus,
        machine.cpu_model,
        machine.memory_gib,
        machine.kernel,
        runner.started.elapsed().as_secs_f64(),
        sorted.first().copied().unwrap_or(f64::NAN),
        sorted.last().copied().unwrap_or(f64::NAN),
        crate::stats::median(&sorted),
    );
    md!(md, "## Targets\n");
    md!(md, "| scenario | target | measured | verdict |");
    md!(md, "|---|---|---|---|");
    for v in &verdicts {
        md!(
            md,
            "| {} | {} | {} | **{}** |",
            v.scenario,
            v.target,
            v.measured,
            met(v.met)
        );
    }
    for step in runner.steps.iter().filter(|s| s.error.is_some()) {
        md!(
            md,
            "| {} | — | failed: {} | **not measured** |",
            step.scenario,
            step.error.as_deref().unwrap_or_default().replace('\n', " ")
        );
    }
    for outcome in &runner.outcomes {
        md!(md, "\n## {}\n", outcome.scenario.replace('_', " "));
        md!(md, "{}", outcome.markdown.trim());
        for p in &outcome.plots {
            let file = match p {
                crate::outcome::Plot::Percentiles { file, .. }
                | crate::outcome::Plot::Bars { file, .. } => file,
            };
            md!(md, "\n![{file}]({file})");
        }
    }
    md!(md, "\n## Steps\n");
    md!(
        md,
        "| scenario | seconds | load average before | after | result |"
    );
    md!(md, "|---|---:|---:|---:|---|");
    for s in &runner.steps {
        md!(
            md,
            "| {} | {:.1} | {:.2} | {:.2} | {} |",
            s.scenario,
            s.seconds,
            s.load_average_before,
            s.load_average_after,
            if s.error.is_some() { "failed" } else { "ok" }
        );
    }
    let failed: Vec<&str> = runner
        .steps
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| s.scenario)
        .collect();
    let results = Results {
        date: date(),
        quick: args.quick,
        machine,
        seconds: runner.started.elapsed().as_secs_f64(),
        verdicts,
        plots,
        scenarios: runner
            .outcomes
            .into_iter()
            .map(|o| (o.scenario.to_owned(), o.report))
            .collect(),
        steps: runner.steps,
        load_average_samples: samples,
    };
    write_json(&args.out.join("results.json"), &results)?;
    std::fs::write(args.out.join("results.md"), &md)
        .with_context(|| format!("writing {}", args.out.join("results.md").display()))?;
    println!("{md}");
    eprintln!("results in {}", args.out.display());
    anyhow::ensure!(failed.is_empty(), "scenarios failed: {}", failed.join(", "));
    Ok(())
}
