//! `postern-loadtest startup --quick` end to end, on the gateway binary cargo
//! built for this test run (debug: the report's structure is what is checked
//! here, not the times; BENCHMARKS.md has release numbers). Needs the local
//! Postgres (POSTERN_TEST_PG_HOST/PORT, user postgres), psql and redis-server.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const LOADTEST: &str = env!("CARGO_BIN_EXE_postern-loadtest");

#[test]
fn startup_quick_reports_time_to_ready_per_store() {
    let bin_dir = Path::new(LOADTEST).parent().unwrap();
    assert!(
        bin_dir.join("postern-gateway").exists(),
        "postern-gateway is not built in {}: run `cargo test --workspace` (scripts/test), which builds it",
        bin_dir.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("startup.json");
    let output = Command::new(LOADTEST)
        .args(["startup", "--quick", "--bin-dir"])
        .arg(bin_dir)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "postern-loadtest startup failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("| store | median ms | p90 ms | max ms |"),
        "{stdout}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["runs"], 3);
    assert_eq!(report["target_ms"], 200.0);
    assert_eq!(report["gateway_tls"], false);
    assert!(report["binary"].is_string());
    let results = report["results"].as_array().unwrap();
    let scenarios: Vec<&str> = results
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(scenarios, ["sqlite", "postgres + redis"]);
    for result in results {
        let ready: Vec<f64> = result["ready_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(ready.len(), 3, "{result}");
        assert!(
            ready.iter().all(|ms| ms.is_finite() && *ms > 0.0),
            "{result}"
        );
        let (median, p90, max) = (
            result["median_ms"].as_f64().unwrap(),
            result["p90_ms"].as_f64().unwrap(),
            result["max_ms"].as_f64().unwrap(),
        );
        assert!(median <= p90 && p90 <= max, "{result}");
        assert_eq!(max, ready.iter().copied().fold(0.0, f64::max), "{result}");
        assert_eq!(result["meets_target"], max < 200.0, "{result}");
        assert!(stdout.contains(&format!("| {} |", result["scenario"].as_str().unwrap())));
    }
}
