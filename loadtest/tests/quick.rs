//! The quick benchmark scenarios end to end, on the binaries cargo built for
//! this test run (`cargo test --workspace` builds postern-gateway and postern
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

#[test]
fn splice_quick_measures_and_proves_the_local_and_peer_paths() {
    let (stdout, report) = succeeded(&["splice", "--quick", "--agent", "loadtest"]);
    assert!(stdout.contains("| path | user enters |"), "{stdout}");
    assert!(stdout.contains("| peer vs local |"), "{stdout}");
    let results = report["results"].as_array().unwrap();
    let paths: Vec<&str> = results
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["local", "peer"]);
    let rounds = report["rounds"].as_u64().unwrap();
    for result in results {
        let path = result["path"].as_str().unwrap();
        // Warm-up and every round: upload, download and round trips, each one session.
        assert_eq!(result["verified_sessions"].as_u64(), Some((rounds + 1) * 3));
        assert_eq!(
            result["upload_mb_s"].as_array().unwrap().len() as u64,
            rounds
        );
        let median = &result["median"];
        positive(&median["upload_mb_s"], &format!("{path} upload"));
        positive(&median["download_mb_s"], &format!("{path} download"));
        positive(&median["round_trips_per_s"], &format!("{path} rate"));
        let p50 = positive(&median["p50_us"], &format!("{path} p50"));
        let p99 = positive(&median["p99_us"], &format!("{path} p99"));
        assert!(p50 <= p99, "{path}: p50 {p50} > p99 {p99}");
    }
    assert!(results[0]["ingress"].as_str().unwrap().starts_with("b "));
    assert!(results[1]["ingress"].as_str().unwrap().starts_with("a "));
    let ratio = &report["ratios"][0];
    assert_eq!(ratio["path"], "peer");
    for field in ["upload", "download", "round_trips_per_s", "p50_latency"] {
        positive(&ratio[field], field);
    }
    assert!(ratio["meets_target"].is_boolean());
}

#[test]
fn relay_is_measured_or_refused_with_a_clear_reason() {
    let (output, report) = run(&[
        "splice",
        "--quick",
        "--agent",
        "loadtest",
        "--rounds",
        "1",
        "--paths",
        "local,relay",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        // A gateway with relay: it must have been proven by the splice counter.
        let report = report.expect("a JSON report");
        assert_eq!(report["results"][1]["path"], "relay");
        assert_eq!(report["results"][1]["verified_sessions"].as_u64(), Some(6));
    } else {
        assert!(
            stderr.contains("POSTERN_PEER_TRANSPORT") && stderr.contains("relay"),
            "relay failed without naming POSTERN_PEER_TRANSPORT:\n{stderr}"
        );
        assert!(
            report.is_none(),
            "no report for a path that was not measured"
        );
    }
}

#[test]
fn idle_agents_quick_reports_memory_per_agent() {
    let (stdout, report) = succeeded(&["idle-agents", "--quick"]);
    assert!(stdout.contains("| moment | agent tunnels |"), "{stdout}");
    assert!(stdout.contains("KiB per idle agent"), "{stdout}");
    assert_eq!(report["agents"], 500);
    let stages = report["stages"].as_array().unwrap();
    let agents: Vec<u64> = stages
        .iter()
        .map(|s| s["agents"].as_u64().unwrap())
        .collect();
    assert_eq!(agents, [0, 250, 500, 500]);
    let rss = |i: usize| stages[i]["memory"]["vm_rss_kib"].as_u64().unwrap();
    assert!(rss(0) > 0 && rss(2) > rss(0), "{stages:?}");
    // One socket per tunnel, at least.
    assert!(stages[2]["open_fds"].as_u64().unwrap() >= 500);
    let per_agent = positive(&report["kib_per_agent"]["vm_rss"], "KiB per agent");
    assert!(
        per_agent < 2048.0,
        "{per_agent} KiB per idle agent is implausible"
    );
    assert!(report["meets_target"].is_boolean());
}

#[test]
fn pgbench_quick_measures_three_paths_and_proves_layer_7() {
    let (stdout, report) = succeeded(&["pgbench", "--quick", "--clients", "1,2"]);
    assert!(
        stdout.contains("| clients | path | tps | vs ssh -L |"),
        "{stdout}"
    );
    let results = report["results"].as_array().unwrap();
    let paths: Vec<(u64, &str)> = results
        .iter()
        .map(|r| (r["clients"].as_u64().unwrap(), r["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        paths,
        [
            (1, "direct"),
            (1, "ssh_l"),
            (1, "postern"),
            (2, "direct"),
            (2, "ssh_l"),
            (2, "postern")
        ]
    );
    for result in results {
        positive(&result["median_tps"], "tps");
        positive(&result["vs_ssh"], "ratio");
    }
    assert!(
        report["statements_audited"].as_f64().unwrap() > 10.0,
        "{report}"
    );
    assert_eq!(report["targets"].as_array().unwrap().len(), 2);
}
