//! The gateway binary logs JSON by default (`POSTERN_LOG_FORMAT=json`), one
//! object a line, and what it logs about a session carries the session's span:
//! session id, user, connection and replica.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::echo_session;
use support::processes::ProcessCluster;

/// The log's lines as JSON objects; a line that is not one fails the test.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| panic!("a log line that is not a JSON object: {line}"))
        })
        .collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_log_lines_are_json_within_the_session_span() {
    let cluster = ProcessCluster::start(1).await;
    let echo = postern_testkit::echo_server().await;
    let token = cluster.add_agent("agent-logs").await;
    cluster
        .add_connection("echo-logs", &echo.to_string(), "agent-logs")
        .await;
    let agent = cluster.spawn_agent(cluster.url(0), token, 1);
    assert!(
        agent
            .wait_connected(Duration::from_secs(10))
            .await
            .is_some()
    );
    let url = cluster.url(0);
    echo_session(
        &url,
        &cluster.ca_pem,
        &cluster.user_token,
        "echo-logs",
        4096,
        7,
    )
    .await
    .expect("the session echoes");
    let refused = echo_session(&url, &cluster.ca_pem, &cluster.user_token, "no-such", 1, 0);
    assert!(refused.await.is_err());

    // The session's end is logged once both legs are done, a moment later.
    let lines = postern_testkit::wait_for(|| async {
        let lines = json_lines(&cluster.log(0));
        lines
            .iter()
            .any(|line| message(line) == "session ended")
            .then_some(lines)
    })
    .await;
    let replica = &cluster.gateway(0).replica;
    let in_session = |wanted: &str| {
        lines
            .iter()
            .find(|line| message(line) == wanted)
            .unwrap_or_else(|| panic!("no {wanted:?} line in {lines:#?}"))["span"]
            .clone()
    };
    let opened = in_session("session open");
    let ended = in_session("session ended");
    for span in [&opened, &ended] {
        assert_eq!(span["name"], "session", "{span}");
        assert_eq!(span["user"], "alice", "{span}");
        assert_eq!(span["connection"], "echo-logs", "{span}");
        assert_eq!(span["replica"], replica.as_str(), "{span}");
        let id = span["session_id"].as_str().unwrap_or_default();
        assert!(uuid_like(id), "a session id: {span}");
    }
    assert_eq!(opened["session_id"], ended["session_id"]);
    let refusal = in_session("session refused");
    assert_eq!(refusal["connection"], "no-such", "{refusal}");
    assert_ne!(refusal["session_id"], opened["session_id"]);
    agent.stop().await;
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
