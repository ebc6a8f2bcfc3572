//! What every scenario hands back: its JSON report, its Markdown tables, a
//! verdict per target of the issue it measures, and data to plot. A scenario's
//! own subcommand prints the Markdown and writes the JSON; `all` gathers them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

/// Options every scenario's subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Where the binaries are (postern-gateway, postern, postern-agent).
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One target of the issue against what this run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub scenario: &'static str,
    /// What the issue asks, e.g. "session open p99 ≤ 10 ms".
    pub target: String,
    /// What was measured, in words and numbers.
    pub measured: String,
    pub met: bool,
}

/// A plot `all` draws as SVG.
pub enum Plot {
    /// Latency by percentile, one curve per path: (percentile 0–100, µs).
    Percentiles {
        file: &'static str,
        title: String,
        curves: Vec<(String, Vec<(f64, f64)>)>,
    },
    /// Grouped bars: per group (e.g. "1 stream upload"), a value per series (path).
    Bars {
        file: &'static str,
        title: String,
        unit: &'static str,
        groups: Vec<(String, Vec<(String, f64)>)>,
    },
}

pub struct Outcome {
    pub scenario: &'static str,
    pub report: serde_json::Value,
    pub markdown: String,
    pub verdicts: Vec<Verdict>,
    pub plots: Vec<Plot>,
}

impl Outcome {
    pub fn new(scenario: &'static str, report: &impl Serialize) -> anyhow::Result<Self> {
        Ok(Self {
            scenario,
            report: serde_json::to_value(report)?,
            markdown: String::new(),
            verdicts: Vec::new(),
            plots: Vec::new(),
        })
    }

    pub fn verdict(&mut self, target: impl Into<String>, measured: impl Into<String>, met: bool) {
        self.verdicts.push(Verdict {
            scenario: self.scenario,
            target: target.into(),
            measured: measured.into(),
            met,
        });
    }

    /// What a scenario's own subcommand does with it: the tables on stdout,
    /// the JSON (with the verdicts) to `json`.
    pub fn finish(mut self, json: Option<&Path>) -> anyhow::Result<()> {
        println!("{}", self.markdown);
        for v in &self.verdicts {
            println!("Target {}: {} ({})", v.target, met(v.met), v.measured);
        }
        if let Some(path) = json {
            if let Some(object) = self.report.as_object_mut() {
                object.insert("verdicts".into(), serde_json::to_value(&self.verdicts)?);
            }
            write_json(path, &self.report)?;
        }
        Ok(())
    }
}

pub fn met(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The 1-minute load average: the machine may be shared, so every report says how busy it was.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Writes Markdown into a String (writing to a String cannot fail).
#[macro_export]
macro_rules! md {
    ($out:expr) => { $out.push('\n') };
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
