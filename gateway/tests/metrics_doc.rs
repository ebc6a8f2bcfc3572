//! docs/metrics.md, a replica's `/metrics` and the Grafana dashboard agree:
//! the scrape has every documented metric with its type, labels and label
//! values and nothing undocumented; the dashboard queries only documented
//! metrics and labels, and every documented metric has a panel.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postern_state::memory::MemoryRouteStore;
use postern_testkit::exposition::{self, Family};
use postern_tunnel::Secret;
use support::{Replicas, echo_session};

/// One row of a table in docs/metrics.md.
#[derive(Debug)]
struct Documented {
    name: String,
    kind: String,
    labels: BTreeMap<String, BTreeSet<String>>,
}

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Rows `| `name` | type | `label`: `value`, ... [; `label`: ...] | meaning |`.
fn documented_metrics() -> Vec<Documented> {
    let path = repo_file("docs/metrics.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let metrics: Vec<Documented> = text
        .lines()
        .filter(|line| line.starts_with("| `postern_"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert!(cells.len() >= 4, "a metric row needs 4 cells: {line}");
            let labels = cells[2]
                .split(';')
                .filter_map(|part| {
                    let words = backticked(part);
                    let (label, values) = words.split_first()?;
                    Some((label.clone(), values.iter().cloned().collect()))
                })
                .collect();
            Documented {
                name: backticked(cells[0]).remove(0),
                kind: cells[1].to_owned(),
                labels,
            }
        })
        .collect();
    let names: BTreeSet<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names.len(), metrics.len(), "a metric documented twice");
    assert!(
        metrics.len() >= 15,
        "too few metric rows read from {path:?}"
    );
    metrics
}

/// What differs between the documentation and a scrape, one line each.
fn differences(documented: &[Documented], scraped: &[Family]) -> Vec<String> {
    let mut problems = Vec::new();
    let by_name: BTreeMap<String, &Family> =
        scraped.iter().map(|f| (f.queried_name(), f)).collect();
    for doc in documented {
        let Some(family) = by_name.get(&doc.name) else {
            problems.push(format!("{}: documented, not in the scrape", doc.name));
            continue;
        };
        if family.kind != doc.kind {
            problems.push(format!(
                "{}: documented as a {}, scraped as a {}",
                doc.name, doc.kind, family.kind
            ));
        }
        let labels: BTreeSet<String> = doc.labels.keys().cloned().collect();
        if family.label_names() != labels {
            problems.push(format!(
                "{}: documented labels {labels:?}, scraped {:?}",
                doc.name,
                family.label_names()
            ));
        }
        for (label, values) in &doc.labels {
            let scraped_values = family.label_values(label);
            if &scraped_values != values {
                problems.push(format!(
                    "{}{{{label}}}: documented values {values:?}, scraped {scraped_values:?}",
                    doc.name
                ));
            }
        }
    }
    let names: BTreeSet<&str> = documented.iter().map(|d| d.name.as_str()).collect();
    for name in by_name.keys() {
        if !names.contains(name.as_str()) {
            problems.push(format!("{name}: scraped, not in docs/metrics.md"));
        }
    }
    problems
}

fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition::sample(scrape, name, labels).unwrap_or(0.0)
}

fn at_least(scrape: &str, name: &str, labels: &[(&str, &str)], least: f64) {
    let seen = value(scrape, name, labels);
    assert!(
        seen >= least,
        "{name}{labels:?} is {seen}, expected at least {least}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_exports_exactly_the_documented_metrics() {
    let replicas = Replicas::start(2, Arc::new(MemoryRouteStore::new())).await;
    let echo = postern_testkit::echo_server().await;
    let token = replicas.add_agent("agent-1").await;
    replicas
        .add_connection("echo", &echo.to_string(), "agent-1")
        .await;
    // The agent's one tunnel is on replica 1: a session entering replica 0
    // is spliced over the peer link, one entering replica 1 locally.
    let agent = replicas.spawn_agent(replicas.url(1), token, 1);
    assert!(
        agent
            .wait_connected(Duration::from_secs(10))
            .await
            .is_some()
    );
    for (replica, seed) in [(0, 1), (1, 2)] {
        let url = replicas.url(replica);
        echo_session(
            &url,
            &replicas.ca_pem,
            &replicas.user_token,
            "echo",
            64 * 1024,
            seed,
        )
        .await
        .unwrap_or_else(|e| panic!("session through replica {replica}: {e}"));
    }
    // Refused: an unknown connection, and a token nobody issued.
    let refused = [
        (replicas.user_token.clone(), "no-such-connection"),
        (Secret::new("pst_user_bogus".to_owned()), "echo"),
    ];
    let url = replicas.url(0);
    for (token, connection) in refused {
        let opened = echo_session(&url, &replicas.ca_pem, &token, connection, 1, 0);
        assert!(opened.await.is_err(), "{connection} opened");
    }

    // A session is counted once both legs are done, a moment after the echo.
    let scrape = postern_testkit::wait_for(|| async {
        let scrape = replicas.metrics(0).await;
        (value(&scrape, "postern_sessions_total", &[("outcome", "ok")]) >= 1.0).then_some(scrape)
    })
    .await;
    let families = exposition::parse(&scrape).unwrap_or_else(|e| panic!("{e}:\n{scrape}"));
    let problems = differences(&documented_metrics(), &families);
    assert!(
        problems.is_empty(),
        "docs/metrics.md and the scrape of a replica differ:\n  {}\n\nthe scrape:\n{scrape}",
        problems.join("\n  ")
    );

    // The activity above moved what it should, on the replica that counts it.
    let holder = replicas.metrics(1).await;
    at_least(
        &scrape,
        "postern_session_bytes_total",
        &[("direction", "up")],
        65536.0,
    );
    at_least(
        &scrape,
        "postern_session_bytes_total",
        &[("direction", "down")],
        65536.0,
    );
    at_least(&scrape, "postern_session_open_seconds_count", &[], 1.0);
    at_least(
        &scrape,
        "postern_errors_total",
        &[("kind", "not_found")],
        1.0,
    );
    at_least(
        &scrape,
        "postern_errors_total",
        &[("kind", "unauthenticated")],
        1.0,
    );
    at_least(
        &scrape,
        "postern_policy_cache_lookups_total",
        &[("result", "miss")],
        1.0,
    );
    at_least(&scrape, "postern_replicas_live", &[], 2.0);
    at_least(&holder, "postern_agents_connected", &[], 1.0);
    at_least(&holder, "postern_splices_total", &[("path", "peer")], 1.0);
    at_least(&holder, "postern_splices_total", &[("path", "local")], 1.0);
    agent.stop().await;
}

/// Every `"expr"` in the dashboard, however deep.
fn expressions(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match inner {
                    serde_json::Value::String(expr) if key == "expr" => found.push(expr.clone()),
                    _ => expressions(inner, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, found)),
        _ => {}
    }
}

/// What a PromQL expression refers to.
#[derive(Default)]
struct References {
    /// Metric names with the labels their `{...}` matchers name.
    selectors: Vec<(String, Vec<String>)>,
    /// Labels in `by (...)` and `without (...)`.
    grouping: Vec<String>,
}

/// A small PromQL scanner: identifiers, strings skipped, `{...}` matchers and
/// `by`/`without` lists; enough for the dashboard's queries.
fn references(expr: &str) -> References {
    let chars: Vec<char> = expr.chars().collect();
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let identifier = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && is_part(chars[*i]) {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    let skip_space = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    // From an opening quote to past its closing one.
    let skip_string = |i: &mut usize| {
        *i += 1;
        while *i < chars.len() && chars[*i] != '"' {
            *i += if chars[*i] == '\\' { 2 } else { 1 };
        }
        *i += 1;
    };
    let mut found = References::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            skip_string(&mut i);
        } else if c == '$' || (i > 0 && is_part(chars[i - 1]) && is_start(c)) {
            // A Grafana variable, or the rest of a number such as `5m`.
            i += 1;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
        } else if is_start(c) {
            let word = identifier(&mut i);
            skip_space(&mut i);
            if word == "by" || word == "without" {
                if chars.get(i) == Some(&'(') {
                    i += 1;
                    while i < chars.len() && chars[i] != ')' {
                        skip_space(&mut i);
                        let label = identifier(&mut i);
                        if label.is_empty() {
                            i += 1;
                        } else {
                            found.grouping.push(label);
                        }
                    }
                }
            } else if word.starts_with("postern_") {
                let mut matchers = Vec::new();
                if chars.get(i) == Some(&'{') {
                    while i < chars.len() && chars[i] != '}' {
                        i += 1;
                        skip_space(&mut i);
                        matchers.push(identifier(&mut i));
                        while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                            if chars[i] == '"' {
                                skip_string(&mut i);
                            } else {
                                i += 1;
                            }
                        }
                    }
                }
                matchers.retain(|m| !m.is_empty());
                found.selectors.push((word, matchers));
            }
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn the_dashboard_queries_documented_metrics_and_covers_them_all() {
    let documented = documented_metrics();
    let path = repo_file("infra/grafana/postern-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(
        dashboard["__inputs"]
            .as_array()
            .is_some_and(|inputs| inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS")),
        "the dashboard declares its DS_PROMETHEUS input"
    );
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(!exprs.is_empty(), "no queries in {path:?}");

    // Labels Prometheus adds, or a type does.
    let target_labels = ["instance", "job", "le"];
    let all_labels: BTreeSet<&str> = documented
        .iter()
        .flat_map(|d| d.labels.keys().map(String::as_str))
        .chain(target_labels)
        .collect();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let refs = references(expr);
        for (name, matchers) in refs.selectors {
            let doc = documented.iter().find(|d| {
                d.name == name
                    || (d.kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|suffix| name == format!("{}{suffix}", d.name)))
            });
            let Some(doc) = doc else {
                problems.push(format!("{name}: queried, not in docs/metrics.md: {expr}"));
                continue;
            };
            used.insert(doc.name.clone());
            for label in matchers {
                if !doc.labels.contains_key(&label) && !target_labels.contains(&label.as_str()) {
                    problems.push(format!("{name} has no label {label}: {expr}"));
                }
            }
        }
        for label in refs.grouping {
            if !all_labels.contains(label.as_str()) {
                problems.push(format!("grouping by an unknown label {label}: {expr}"));
            }
        }
    }
    for doc in &documented {
        if !used.contains(&doc.name) {
            problems.push(format!("{}: documented, in no panel", doc.name));
        }
    }
    assert!(
        problems.is_empty(),
        "{path:?} and docs/metrics.md differ:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_promql_scanner_finds_metrics_matchers_and_grouping() {
    let refs = references(
        r#"histogram_quantile(0.99, sum by (le, instance) (rate(postern_open_seconds_bucket{instance=~"$instance", path!="a,}b"}[$__rate_interval]))) / postern_x"#,
    );
    assert_eq!(
        refs.selectors,
        [
            (
                "postern_open_seconds_bucket".to_owned(),
                vec!["instance".to_owned(), "path".to_owned()]
            ),
            ("postern_x".to_owned(), vec![])
        ]
    );
    assert_eq!(refs.grouping, ["le", "instance"]);
}
