//! The quick benchmark scenarios end to end (`all --quick`, and one scenario
//! on its own), on the binaries cargo built for this test run (`cargo test --workspace` builds postern-gateway and postern
//! because their packages have integration tests; the agent runs as
//! `postern-loadtest agent`, the same library, because cargo does not build the
//! postern-agent binary for tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const LOADTEST: &str = env!("CARGO_BIN_EXE_postern-loadtest");

fn bin_dir() -> PathBuf {
    let dir = Path::new(LOADTEST).parent().unwrap().to_owned();
    for name in ["postern-gateway", "postern"] {
        assert!(
            dir.join(name).exists(),
            "{name} is not built in {}: run `cargo test --workspace` (scripts/test), which builds it",
            dir.display()
        );
    }
    dir
}

/// Runs `postern-loadtest ARGS --bin-dir … --json …`; returns the process
/// output and the JSON report, if it wrote one.
fn run(args: &[&str]) -> (Output, Option<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(LOADTEST)
        .args(args)
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let report = std::fs::read(&json)
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).unwrap());
    (output, report)
}

fn succeeded(args: &[&str]) -> (String, Value) {
    let (output, report) = run(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "postern-loadtest {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (stdout, report.expect("a JSON report"))
}

fn positive(value: &Value, what: &str) -> f64 {
    let number = value.as_f64().unwrap_or_else(|| panic!("{what}: {value}"));
    assert!(number.is_finite() && number > 0.0, "{what}: {number}");
    number
}

/// A scenario's section of results.json.
fn scenario<'a>(results: &'a Value, name: &str) -> &'a Value {
    let section = &results["scenarios"][name];
    assert!(section.is_object(), "no {name} in results.json: {results}");
    section
}

/// (count, path) of each result row, in order, `count` read from `key`.
fn rows_by<'a>(section: &'a Value, key: &str) -> Vec<(u64, &'a str)> {
    section["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[key].as_u64().unwrap(), r["path"].as_str().unwrap()))
        .collect()
}

/// The three paths, in the harness's order, for each count.
fn every_path_for(counts: &[u64]) -> Vec<(u64, &'static str)> {
    counts
        .iter()
        .flat_map(|&n| [(n, "direct"), (n, "ssh_l"), (n, "postern")])
        .collect()
}

fn check_bulk(bulk: &Value) {
    assert_eq!(rows_by(bulk, "streams"), every_path_for(&[1, 16]));
    for r in bulk["results"].as_array().unwrap() {
        positive(&r["upload_median"], "bulk upload");
        positive(&r["download_median"], "bulk download");
        positive(&r["upload_vs_ssh"], "bulk ratio");
    }
}

fn check_latency(latency: &Value) {
    let results = latency["results"].as_array().unwrap();
    let paths: Vec<&str> = results
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["direct", "ssh_l", "postern"]);
    for r in results {
        let l = &r["latency"];
        let p: Vec<f64> = ["p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"]
            .iter()
            .map(|k| positive(&l[*k], k))
            .collect();
        assert!(
            p.windows(2).all(|w| w[0] <= w[1]),
            "percentiles out of order: {l}"
        );
        assert_eq!(l["count"].as_u64(), Some(300), "{l}");
        let curve = r["distribution"].as_array().unwrap();
        assert!(curve.len() >= 2, "{r}");
        assert_eq!(curve.last().unwrap()[0].as_f64(), Some(100.0));
    }
}

fn check_session_open(open: &Value) {
    assert_eq!(rows_by(open, "concurrency"), every_path_for(&[1, 8]));
    for r in open["results"].as_array().unwrap() {
        positive(&r["median_sessions_per_s"], "sessions/s");
        assert_eq!(r["latency"]["count"].as_u64(), Some(50), "{r}");
        positive(&r["latency"]["p99_us"], "session open p99");
    }
}

fn check_pgbench(pgbench: &Value) {
    let paths: Vec<(u64, &str)> = pgbench["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["clients"].as_u64().unwrap(), r["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        paths,
        [
            (1, "direct"),
            (1, "ssh_l"),
            (1, "postern"),
            (8, "direct"),
            (8, "ssh_l"),
            (8, "postern")
        ]
    );
    for r in pgbench["results"].as_array().unwrap() {
        positive(&r["median_tps"], "tps");
        positive(&r["vs_ssh"], "ratio");
        // The relays' CPU per transaction: none on the direct path.
        match r["path"].as_str().unwrap() {
            "direct" => assert!(r["relay_cpu_us_per_tx"].is_null(), "{r}"),
            _ => {
                positive(&r["relay_cpu_us_per_tx"], "relay CPU per transaction");
            }
        }
    }
    assert!(
        pgbench["statements_audited"].as_f64().unwrap() > 10.0,
        "{pgbench}"
    );
    assert_eq!(pgbench["targets"].as_array().unwrap().len(), 2);
}

fn check_splice(splice: &Value) {
    let results = splice["results"].as_array().unwrap();
    let paths: Vec<&str> = results
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["local", "peer", "peer_plaintext", "relay"]);
    let rounds = splice["rounds"].as_u64().unwrap();
    for result in results {
        let path = result["path"].as_str().unwrap();
        // Warm-up and every round: upload, download and round trips, each one
        // session, proven by the splice counter of the agent's replica.
        assert_eq!(result["verified_sessions"].as_u64(), Some((rounds + 1) * 3));
        let median = &result["median"];
        positive(&median["upload_mb_s"], &format!("{path} upload"));
        positive(&median["round_trips_per_s"], &format!("{path} rate"));
        let p50 = positive(&median["p50_us"], &format!("{path} p50"));
        let p99 = positive(&median["p99_us"], &format!("{path} p99"));
        assert!(p50 <= p99, "{path}: p50 {p50} > p99 {p99}");
    }
    assert!(results[0]["ingress"].as_str().unwrap().starts_with("b "));
    assert!(results[1]["ingress"].as_str().unwrap().starts_with("a "));
    let ratios: Vec<&str> = splice["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(ratios, ["peer", "peer_plaintext", "relay"]);
}

fn check_idle(idle: &Value) {
    assert_eq!(idle["agents"], 500);
    let stages = idle["stages"].as_array().unwrap();
    let agents: Vec<u64> = stages
        .iter()
        .map(|s| s["agents"].as_u64().unwrap())
        .collect();
    assert_eq!(agents, [0, 250, 500, 500]);
    let rss = |i: usize| stages[i]["memory"]["vm_rss_kib"].as_u64().unwrap();
    assert!(rss(0) > 0 && rss(2) > rss(0), "{stages:?}");
    // One socket per tunnel, at least.
    assert!(stages[2]["open_fds"].as_u64().unwrap() >= 500);
    let per_agent = positive(&idle["kib_per_agent"]["vm_rss"], "KiB per agent");
    assert!(
        per_agent < 2048.0,
        "{per_agent} KiB per idle agent is implausible"
    );
}

fn check_failover(failover: &Value) {
    let agents = failover["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 6);
    let killed = failover["killed"].as_str().unwrap();
    assert_eq!(killed, "replica-c");
    let on_killed = agents
        .iter()
        .filter(|a| a["before"].as_array().unwrap().iter().any(|r| r == killed))
        .count();
    assert!(on_killed >= 1, "{failover}");
    assert_eq!(
        failover["agents_on_killed"].as_u64(),
        Some(on_killed as u64)
    );
    // The killed replica holds no tunnel afterwards.
    for a in agents {
        assert!(
            !a["after"].as_array().unwrap().iter().any(|r| r == killed),
            "{a}"
        );
    }
    positive(&failover["load_round_trips"], "round trips under load");
    assert!(failover["load_errors"].is_u64());
    assert!(failover["meets_target"].is_boolean());
}

#[test]
fn all_quick_runs_every_scenario_and_writes_json_markdown_and_plots() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(LOADTEST)
        .args(["all", "--quick", "--agent", "loadtest", "--out"])
        .arg(out.path())
        .arg("--bin-dir")
        .arg(bin_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "postern-loadtest all --quick failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    // One progress line per step as it starts and ends.
    for (i, name) in [
        "bulk",
        "latency",
        "session-open",
        "pgbench",
        "splice",
        "idle-agents",
        "failover",
    ]
    .iter()
    .enumerate()
    {
        let step = format!("[{}/7] {name}: ", i + 1);
        assert!(stderr.contains(&format!("{step}starting")), "{stderr}");
        assert!(stderr.contains(&format!("{step}done in")), "{stderr}");
    }

    let results: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results["quick"], true);
    // The bound for --quick, with room to spare on this shared machine (about 30 s).
    let seconds = positive(&results["seconds"], "seconds");
    assert!(seconds < 120.0, "all --quick took {seconds} s");
    assert!(results["machine"]["cpus"].as_u64().unwrap() > 0);
    assert_eq!(results["steps"].as_array().unwrap().len(), 7);
    assert!(
        !results["load_average_samples"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    check_bulk(scenario(&results, "bulk"));
    check_latency(scenario(&results, "latency"));
    check_session_open(scenario(&results, "session_open"));
    check_pgbench(scenario(&results, "pgbench"));
    check_splice(scenario(&results, "splice"));
    check_idle(scenario(&results, "idle_agents"));
    check_failover(scenario(&results, "failover"));
    // A verdict for each target of the issue.
    let verdicts = results["verdicts"].as_array().unwrap();
    let targets: Vec<&str> = verdicts
        .iter()
        .map(|v| v["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [
            "bulk",
            "session_open",
            "pgbench",
            "pgbench",
            "splice",
            "splice",
            "splice",
            "idle_agents",
            "failover"
        ],
        "{verdicts:?}"
    );
    assert!(verdicts.iter().all(|v| v["met"].is_boolean()));

    let markdown = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    for heading in [
        "## Targets",
        "## bulk",
        "## latency",
        "## session open",
        "## pgbench",
        "## splice",
        "## idle agents",
        "## failover",
        "## Steps",
    ] {
        assert!(
            markdown.contains(heading),
            "no {heading:?} in results.md:\n{markdown}"
        );
    }
    assert!(
        markdown.contains("| sessions | path | upload MB/s |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| path | round trips/s | p50 µs |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| clients | path | tps | vs ssh -L |"),
        "{markdown}"
    );
    assert!(markdown.contains("| peer vs local |"), "{markdown}");
    assert!(
        markdown.contains("| moment | agent tunnels |"),
        "{markdown}"
    );
    assert!(markdown.contains("**met**") || markdown.contains("**missed**"));

    let plots: Vec<&str> = results["plots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        plots,
        [
            "throughput.svg",
            "latency.svg",
            "session-open.svg",
            "pgbench.svg",
            "splice.svg"
        ]
    );
    for file in plots {
        let svg = std::fs::read_to_string(out.path().join(file)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{file}"
        );
        assert!(
            markdown.contains(&format!("]({file})")),
            "{file} not linked"
        );
        // Every path is in the legend.
        for path in ["direct", "postern"] {
            if file != "splice.svg" {
                assert!(svg.contains(path), "{file} has no {path}");
            }
        }
        assert!(
            svg.contains("<path") || svg.contains("<rect") || svg.contains("<polyline"),
            "{file}"
        );
    }
}

#[test]
fn a_scenario_on_its_own_prints_its_table_and_writes_its_json() {
    let (stdout, report) = succeeded(&["session-open", "--quick", "--sessions", "20"]);
    assert!(
        stdout.contains("| at once | path | sessions/s |"),
        "{stdout}"
    );
    assert!(stdout.contains("Target session open p99"), "{stdout}");
    assert_eq!(report["scenario"], "session_open");
    assert_eq!(report["results"].as_array().unwrap().len(), 6);
    let verdicts = report["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 1);
    assert!(verdicts[0]["met"].is_boolean());
}
