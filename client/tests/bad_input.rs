//! Refusals and hostile input: each ends only its own session, quickly, with
//! a clear error, and is counted.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{AGENT, Cluster, echo_once, echo_server, raw_open, raw_outcome};
use postern::api::{ApiClient, ApiError};
use postern::config::Login;
use postern_state::{Agent, PolicyStore, now_ms};
use postern_tunnel::Secret;
use postern_tunnel::auth::set_bearer;
use postern_tunnel::proto::agent_tunnel_client::AgentTunnelClient;
use postern_tunnel::proto::{AgentHello, AgentMessage, agent_message};
use prost::Message;
use tonic::Code;

const QUICKLY: Duration = Duration::from_secs(5);

async fn control_with(cluster: &Cluster, token: Option<&str>) -> tonic::Status {
    let hello = AgentMessage {
        kind: Some(agent_message::Kind::Hello(AgentHello::default())),
    };
    let mut request = tonic::Request::new(futures::stream::iter([hello]));
    if let Some(token) = token {
        set_bearer(request.metadata_mut(), &Secret::new(token)).unwrap();
    }
    AgentTunnelClient::new(cluster.channel())
        .control(request)
        .await
        .expect_err("refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_agent_tokens_are_refused() {
    let cluster = Cluster::start().await;
    let missing = control_with(&cluster, None).await;
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("missing `authorization: Bearer"),
        "{}",
        missing.message()
    );
    let wrong = control_with(&cluster, Some("pst_agent_0000")).await;
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(
        wrong.message().contains("unknown or revoked agent token"),
        "{}",
        wrong.message()
    );
    // A user's token is not an agent's.
    let user = control_with(&cluster, Some(cluster.user_token.expose())).await;
    assert_eq!(user.code(), Code::Unauthenticated);

    // A real agent with a bad token never connects, and says why in its status.
    let impostor = cluster.spawn_agent(Secret::new("pst_agent_bogus"));
    assert_eq!(impostor.wait_connected(Duration::from_secs(2)).await, None);
    impostor.stop().await;
    let metrics = cluster.metrics().await;
    let counted = postern_testkit::exposition::sample(
        &metrics,
        "postern_errors_total",
        &[("kind", "unauthenticated")],
    );
    assert!(counted.is_some_and(|n| n >= 1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_user_tokens_are_refused() {
    let cluster = Cluster::start().await;
    cluster
        .add_connection("echo", &echo_server().await.to_string(), AGENT)
        .await;
    for token in ["pst_user_nope", cluster.agent_token.expose()] {
        let status = raw_open(&cluster, &Secret::new(token), "echo")
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status.message().contains("run `postern login` again"),
            "{}",
            status.message()
        );
    }

    // The JSON API answers in its own format.
    let login = Login {
        gateway_url: cluster.url.clone(),
        token: Secret::new("pst_user_nope"),
        ca_cert: Some(cluster.ca_path.clone()),
        oidc: None,
    };
    match ApiClient::new(login)
        .unwrap()
        .get::<serde_json::Value>("/v1/connections")
        .await
    {
        Err(ApiError::Refused { status, code, .. }) => {
            assert_eq!((status.as_u16(), code.as_str()), (401, "unauthenticated"))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A user may connect but not administer.
    let login = Login {
        gateway_url: cluster.url.clone(),
        token: cluster.user_token.clone(),
        ca_cert: Some(cluster.ca_path.clone()),
        oidc: None,
    };
    let body = serde_json::json!({ "name": "x", "kind": "tcp", "target": "h:1", "agent": AGENT });
    match ApiClient::new(login)
        .unwrap()
        .post::<_, serde_json::Value>("/v1/connections", &body)
        .await
    {
        Err(ApiError::Refused {
            status,
            code,
            message,
        }) => {
            assert_eq!((status.as_u16(), code.as_str()), (403, "forbidden"));
            assert!(
                message.contains("no access rule grants admin on \"x\""),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_connection_offline_agent_and_unreachable_target_fail_fast() {
    let cluster = Cluster::start().await;
    cluster
        .store
        .create_agent(&Agent {
            name: "ghost".into(),
            token_hash: "never-connects".into(),
            created_at_ms: now_ms(),
        })
        .await
        .unwrap();
    cluster
        .add_connection("haunted", "127.0.0.1:5432", "ghost")
        .await;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    cluster
        .add_connection("nowhere", &closed_port.to_string(), AGENT)
        .await;

    let cases = [
        (
            "missing",
            Code::NotFound,
            "connection \"missing\" does not exist".to_owned(),
        ),
        (
            "haunted",
            Code::Unavailable,
            "agent \"ghost\" serving connection \"haunted\" is offline".to_owned(),
        ),
        (
            "nowhere",
            Code::Unavailable,
            format!("cannot reach {closed_port}"),
        ),
    ];
    for (connection, code, message) in cases {
        let status =
            tokio::time::timeout(QUICKLY, raw_open(&cluster, &cluster.user_token, connection))
                .await
                .unwrap_or_else(|_| panic!("{connection}: no answer within {QUICKLY:?}"))
                .expect_err("refused");
        assert_eq!(status.code(), code, "{connection}: {status:?}");
        assert!(
            status.message().contains(&message),
            "{connection}: {}",
            status.message()
        );
    }
    let metrics = cluster.metrics().await;
    for kind in ["not_found", "agent_offline", "target_unreachable"] {
        assert!(
            metrics.contains(&format!("postern_errors_total{{kind=\"{kind}\"}} 1")),
            "{kind}: {metrics}"
        );
    }
}

/// Sends `messages` on a fresh session to the echo target and returns how it ended,
/// while a healthy session on the same gateway and agent keeps working.
async fn hostile_session(
    messages: Vec<Bytes>,
) -> (
    Cluster,
    Result<Option<postern_tunnel::proto::Close>, tonic::Status>,
) {
    let cluster = Cluster::start().await;
    cluster
        .add_connection("echo", &echo_server().await.to_string(), AGENT)
        .await;
    let port = cluster.local_port("echo").await;
    let mut healthy = tokio::net::TcpStream::connect(port).await.unwrap();
    let mut probe = [0u8; 5];
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    healthy.write_all(b"alive").await.unwrap();
    healthy.read_exact(&mut probe).await.unwrap();

    let (tx, inbound) = raw_open(&cluster, &cluster.user_token, "echo")
        .await
        .expect("session opens");
    for message in messages {
        tx.send(message).await.unwrap();
    }
    let outcome = tokio::time::timeout(Duration::from_secs(10), raw_outcome(inbound))
        .await
        .expect("the hostile session ends");
    drop(tx);

    // The healthy session and new sessions are unaffected.
    healthy.write_all(b"still").await.unwrap();
    healthy.read_exact(&mut probe).await.unwrap();
    assert_eq!(&probe, b"still");
    echo_once(port, b"new session after the bad one").await;
    assert_eq!(
        cluster.gateway().shared.agents.link_count(),
        1,
        "the agent stays connected"
    );
    (cluster, outcome)
}

fn assert_ended_with_error(
    outcome: &Result<Option<postern_tunnel::proto::Close>, tonic::Status>,
    expected: &str,
) {
    match outcome {
        Ok(Some(close)) => {
            assert!(close.error, "{close:?}");
            assert!(close.reason.contains(expected), "{close:?}");
        }
        Err(status) => assert!(status.message().contains(expected), "{status:?}"),
        Ok(None) => panic!("the session ended without saying why"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_frame_ends_only_its_session() {
    let huge = postern_tunnel::frame::data(0, Bytes::from(vec![7u8; 2 << 20])).encode_to_vec();
    let (cluster, outcome) = hostile_session(vec![Bytes::from(huge)]).await;
    assert_ended_with_error(&outcome, "message length too large");
    let metrics = cluster.metrics().await;
    let counted = postern_testkit::exposition::sample(
        &metrics,
        "postern_errors_total",
        &[("kind", "stream_error")],
    );
    assert!(counted.is_some_and(|n| n >= 1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_frame_ends_only_its_session() {
    // Field 1 (data), length-delimited, claims 5 bytes but carries 1.
    let (_cluster, outcome) = hostile_session(vec![Bytes::from_static(&[0x0a, 0x05, 0x01])]).await;
    assert_ended_with_error(&outcome, "decode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frame_out_of_sequence_ends_only_its_session() {
    let first = postern_tunnel::frame::data(0, Bytes::from_static(b"abc")).encode_to_vec();
    let gap = postern_tunnel::frame::data(100, Bytes::from_static(b"def")).encode_to_vec();
    let (_cluster, outcome) = hostile_session(vec![Bytes::from(first), Bytes::from(gap)]).await;
    assert_ended_with_error(&outcome, "expected offset 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_dials_only_its_allowed_targets() {
    let cluster = Cluster::start().await;
    let allowed = echo_server().await;
    let forbidden = echo_server().await;
    let token = cluster.add_agent("fenced").await;
    let agent = cluster.spawn_agent_with(token, |config| {
        config.allowed_targets = Some(format!("{allowed}").parse().unwrap());
    });
    agent.wait_connected(QUICKLY).await.expect("agent connects");
    cluster
        .add_connection("allowed", &allowed.to_string(), "fenced")
        .await;
    cluster
        .add_connection("forbidden", &forbidden.to_string(), "fenced")
        .await;

    echo_once(cluster.local_port("allowed").await, b"inside the fence").await;
    let status = raw_open(&cluster, &cluster.user_token, "forbidden")
        .await
        .expect_err("refused by the agent");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .contains("not in this agent's POSTERN_ALLOWED_TARGETS"),
        "{}",
        status.message()
    );
    agent.stop().await;
}

/// What the API's extractors refuse is answered in the API's JSON error
/// shape, with the status they chose, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_api_requests_get_json_errors() {
    let cluster = Cluster::start().await;
    let mut tls = postern_tunnel::tls::client_config(Some(&cluster.ca_pem)).unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let url = format!("{}/v1/connections", cluster.url);
    let token = cluster.admin_token.expose();
    let cases = [
        ("application/json", "{not json", 400),
        ("application/json", r#"{"name": "x"}"#, 422),
        ("text/plain", r#"{"name": "x"}"#, 415),
    ];
    for (content_type, body, status) in cases {
        let response = http
            .post(&url)
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_request", "{error}");
        assert!(
            !error["error"]["message"].as_str().unwrap().is_empty(),
            "{error}"
        );
    }
    let response = http
        .get(format!("{}/v1/audit?limit=lots", cluster.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let error: serde_json::Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{error}"
    );
    let response = http.put(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "bad_request", "{error}");
    let metrics = cluster.metrics().await;
    assert!(
        metrics.contains("postern_errors_total{kind=\"bad_request\"} 5"),
        "{metrics}"
    );
}
