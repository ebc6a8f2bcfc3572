//! The splice benchmark's results: medians per path, ratios against the local
//! path, a Markdown table on stdout and the same numbers as JSON.

use serde::Serialize;

use super::setup::{Lane, PathKind, ROLES};
use super::{Options, Sample};
use crate::md;
use crate::observe::{Machine, machine};
use crate::outcome::{Outcome, Plot, met};
use crate::stats::median;

/// The target: a spliced session keeps at least this share of a local one.
pub const TARGET_RATIO: f64 = 0.85;

#[derive(Serialize)]
pub struct Report {
    scenario: &'static str,
    machine: Machine,
    bytes: u64,
    rounds: usize,
    round_trips: usize,
    request_bytes: usize,
    agent_program: String,
    results: Vec<PathResult>,
    ratios: Vec<Ratio>,
    target_ratio: f64,
}

#[derive(Serialize)]
struct PathResult {
    path: PathKind,
    /// The replica the user's sessions entered.
    ingress: String,
    /// Sessions (warm-up included) that `postern_splices_total{path=...}` on
    /// the agent's replica counted on exactly this path.
    verified_sessions: u64,
    upload_mb_s: Vec<f64>,
    download_mb_s: Vec<f64>,
    round_trips_per_s: Vec<f64>,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    median: Medians,
    /// Median CPU per process: seconds per 10^9 bytes moved (bulk), and
    /// microseconds per round trip.
    cpu: Vec<ProcessCpu>,
}

#[derive(Serialize)]
struct ProcessCpu {
    process: &'static str,
    s_per_gb: f64,
    us_per_round_trip: f64,
}

#[derive(Serialize)]
struct Medians {
    upload_mb_s: f64,
    download_mb_s: f64,
    round_trips_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// A path against the local path: throughput and rate ratios (higher is
/// better), latency ratios (lower is better).
#[derive(Serialize)]
struct Ratio {
    path: PathKind,
    upload: f64,
    download: f64,
    round_trips_per_s: f64,
    p50_latency: f64,
    p99_latency: f64,
    /// Whether a spliced path keeps the target share; `local-socat` is not a
    /// splice but the floor one more relaying process sets, so it has no verdict.
    meets_target: Option<bool>,
}

impl Report {
    pub fn new(options: &Options, lanes: &[Lane], samples: &[Vec<Sample>], sessions: u64) -> Self {
        let results: Vec<PathResult> = lanes
            .iter()
            .zip(samples)
            .map(|(lane, samples)| {
                let series = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
                let upload = series(|s| s.upload);
                let download = series(|s| s.download);
                let rate = series(|s| s.rtt.per_second);
                let p50 = series(|s| s.rtt.p50_us);
                let p99 = series(|s| s.rtt.p99_us);
                let cpu = ROLES
                    .iter()
                    .enumerate()
                    .map(|(i, process)| ProcessCpu {
                        process,
                        s_per_gb: median(
                            &samples
                                .iter()
                                .map(|s| s.cpu_s_per_gb[i])
                                .collect::<Vec<_>>(),
                        ),
                        us_per_round_trip: median(
                            &samples
                                .iter()
                                .map(|s| s.cpu_us_per_round_trip[i])
                                .collect::<Vec<_>>(),
                        ),
                    })
                    .collect();
                PathResult {
                    cpu,
                    path: lane.path,
                    ingress: lane.ingress.clone(),
                    verified_sessions: sessions,
                    median: Medians {
                        upload_mb_s: median(&upload),
                        download_mb_s: median(&download),
                        round_trips_per_s: median(&rate),
                        p50_us: median(&p50),
                        p99_us: median(&p99),
                    },
                    upload_mb_s: upload,
                    download_mb_s: download,
                    round_trips_per_s: rate,
                    p50_us: p50,
                    p99_us: p99,
                }
            })
            .collect();
        let local = &results[0].median;
        let ratios = results[1..]
            .iter()
            .map(|r| {
                let m = &r.median;
                let upload = m.upload_mb_s / local.upload_mb_s;
                let download = m.download_mb_s / local.download_mb_s;
                let round_trips_per_s = m.round_trips_per_s / local.round_trips_per_s;
                Ratio {
                    path: r.path,
                    upload,
                    download,
                    round_trips_per_s,
                    p50_latency: m.p50_us / local.p50_us,
                    p99_latency: m.p99_us / local.p99_us,
                    meets_target: r
                        .path
                        .is_splice()
                        .then_some(upload.min(download).min(round_trips_per_s) >= TARGET_RATIO),
                }
            })
            .collect();
        Self {
            scenario: "splice",
            machine: machine(),
            bytes: options.bytes,
            rounds: options.rounds,
            round_trips: options.round_trips,
            request_bytes: options.request_bytes,
            agent_program: format!("{:?}", options.agent),
            results,
            ratios,
            target_ratio: TARGET_RATIO,
        }
    }

    /// Where the CPU goes: every process shares the machine's cores, so on a
    /// small machine the rates follow the total.
    fn print_cpu(&self, out: &mut String) {
        let header: Vec<String> = ROLES.iter().map(|r| r.to_string()).collect();
        for (what, unit, get) in [
            (
                "CPU seconds per 10^9 bytes moved (upload + download)",
                "s/GB",
                (|c: &ProcessCpu| c.s_per_gb) as fn(&ProcessCpu) -> f64,
            ),
            (
                "CPU microseconds per round trip",
                "µs",
                |c: &ProcessCpu| c.us_per_round_trip,
            ),
        ] {
            md!(out, "\n{what}, median:\n");
            md!(out, "| path | {} | all ({unit}) |", header.join(" | "));
            md!(out, "|---|{}---:|", "---:|".repeat(ROLES.len()));
            for r in &self.results {
                let values: Vec<f64> = r.cpu.iter().map(get).collect();
                let cells: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
                md!(
                    out,
                    "| {} | {} | {:.2} |",
                    r.path.name(),
                    cells.join(" | "),
                    values.iter().sum::<f64>()
                );
            }
        }
    }

    pub fn outcome(&self) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::new("splice", self)?;
        self.print(&mut outcome.markdown);
        for r in &self.ratios {
            let Some(meets_target) = r.meets_target else {
                continue;
            };
            outcome.verdict(
                format!(
                    "{}-spliced vs same-replica ≥ {TARGET_RATIO:.2}× (upload, download, round trips/s)",
                    r.path.name()
                ),
                format!(
                    "upload {:.2}×, download {:.2}×, round trips/s {:.2}×",
                    r.upload, r.download, r.round_trips_per_s
                ),
                meets_target,
            );
        }
        let groups = [
            (
                "upload",
                (|m: &Medians| m.upload_mb_s) as fn(&Medians) -> f64,
            ),
            ("download", |m: &Medians| m.download_mb_s),
        ]
        .iter()
        .map(|(direction, get)| {
            let bars = self
                .results
                .iter()
                .map(|r| (r.path.name().to_owned(), get(&r.median)))
                .collect();
            (format!("one session, {direction}"), bars)
        })
        .collect();
        outcome.plots.push(Plot::Bars {
            file: "splice.svg",
            title: "One session: same replica (local) vs spliced between replicas (median MB/s)"
                .into(),
            unit: "MB/s",
            groups,
        });
        Ok(outcome)
    }

    fn print(&self, out: &mut String) {
        md!(
            out,
            "\nOne session per measurement: {} MiB each way; {} sequential {}-byte round trips; \
             median of {} rounds:\n",
            self.bytes >> 20,
            self.round_trips,
            self.request_bytes,
            self.rounds
        );
        md!(
            out,
            "| path | user enters | upload MB/s | download MB/s | round trips/s | p50 µs | p99 µs | sessions verified |"
        );
        md!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
        for r in &self.results {
            let m = &r.median;
            md!(
                out,
                "| {} | replica {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
                r.path.name(),
                r.ingress,
                m.upload_mb_s,
                m.download_mb_s,
                m.round_trips_per_s,
                m.p50_us,
                m.p99_us,
                r.verified_sessions
            );
        }
        self.print_cpu(out);
        if self.ratios.is_empty() {
            return;
        }
        md!(
            out,
            "\nAgainst local (target: ≥ {TARGET_RATIO:.2}× on every rate):\n"
        );
        md!(
            out,
            "| path | upload | download | round trips/s | p50 latency | p99 latency | target |"
        );
        md!(out, "|---|---:|---:|---:|---:|---:|---|");
        for r in &self.ratios {
            md!(
                out,
                "| {} vs local | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {} |",
                r.path.name(),
                r.upload,
                r.download,
                r.round_trips_per_s,
                r.p50_latency,
                r.p99_latency,
                r.meets_target.map_or("the floor of one more hop", met)
            );
        }
    }
}
