//! Statement audit: what an agent's protocol engine reports on its leg of a
//! session is recorded by the session's ingress under the user's identity,
//! is never passed to the user, cannot be forged from the user's side, and
//! can be read back by session, person and connection.

mod support;

use std::sync::Arc;

use postern_state::memory::MemoryRouteStore;
use postern_state::{AuditQuery, AuditSink};
use postern_tunnel::Secret;
use postern_tunnel::auth::{SESSION_HEADER, set_bearer};
use postern_tunnel::open::open_session;
use postern_tunnel::proto::agent_tunnel_client::AgentTunnelClient;
use postern_tunnel::proto::frame::Kind;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::{AgentMessage, Frame, StatementAudit};
use support::Replicas;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

fn audit(statement: &str, outcome: &str, rule: &str, rows: u64) -> Frame {
    Frame {
        kind: Some(Kind::Audit(StatementAudit {
            statement: statement.into(),
            parameters: 1,
            outcome: outcome.into(),
            error_code: if outcome == "blocked" {
                "42501".into()
            } else {
                String::new()
            },
            rule: rule.into(),
            rows,
            duration_us: 1200,
            masked_columns: vec!["email".into()],
            ..StatementAudit::default()
        })),
    }
}

/// A minimal agent speaking the real protocol: takes one session request,
/// attaches, reports two statements, sends `reply`, and returns what the
/// user's side sent it.
async fn reporting_agent(
    replicas: &Replicas,
    token: Secret,
    reply: &'static [u8],
) -> tokio::task::JoinHandle<Vec<Frame>> {
    let channel = replicas.channel(&replicas.url(0));
    let mut client = AgentTunnelClient::new(channel);
    let (_keep_control_open, rx) = mpsc::channel::<AgentMessage>(4);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    set_bearer(request.metadata_mut(), &token).unwrap();
    let mut control = client.control(request).await.unwrap().into_inner();
    tokio::spawn(async move {
        let _keep_control_open = _keep_control_open;
        let session_id = loop {
            let message = control
                .message()
                .await
                .unwrap()
                .expect("control stream open");
            if let Some(GatewayKind::SessionRequest(request)) = message.kind {
                break request.session_id;
            }
        };
        let frames = vec![
            audit("SELECT email FROM users WHERE id = $1", "ok", "", 1),
            audit("DROP TABLE users", "blocked", "deny_kind:drop", 0),
            postern_tunnel::frame::data(0, bytes::Bytes::from_static(reply)),
            postern_tunnel::frame::close(None),
        ];
        let mut attach = tonic::Request::new(tokio_stream::iter(frames));
        set_bearer(attach.metadata_mut(), &token).unwrap();
        attach
            .metadata_mut()
            .insert(SESSION_HEADER, session_id.parse().unwrap());
        let inbound = client.attach(attach).await.unwrap().into_inner();
        inbound.filter_map(Result::ok).collect::<Vec<Frame>>().await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statements_are_recorded_under_the_sessions_identity_and_never_reach_the_user() {
    let replicas = Replicas::start(1, Arc::new(MemoryRouteStore::new())).await;
    let token = replicas.add_agent("db-agent").await;
    replicas
        .add_connection("pg-prod", "127.0.0.1:5432", "db-agent")
        .await;
    let agent = reporting_agent(&replicas, token, b"result").await;

    let channel = replicas.channel(&replicas.url(0));
    let opened = open_session(
        channel,
        None,
        &replicas.user_token,
        &"pg-prod".parse().unwrap(),
    )
    .await
    .unwrap();
    // A user trying to write the audit trail themselves.
    opened
        .outgoing
        .send(audit("SELECT 'innocent'", "ok", "", 0))
        .await
        .unwrap();
    opened
        .outgoing
        .send(postern_tunnel::frame::close(None))
        .await
        .unwrap();
    // The user's side is done: its request stream ends.
    drop(opened.outgoing);
    let to_user: Vec<Frame> = opened.inbound.filter_map(Result::ok).collect().await;
    assert!(
        to_user
            .iter()
            .all(|f| !matches!(f.kind, Some(Kind::Audit(_)))),
        "audit frames reached the user: {to_user:?}"
    );
    assert!(
        to_user
            .iter()
            .any(|f| matches!(&f.kind, Some(Kind::Data(d)) if d.payload == "result")),
        "the data did: {to_user:?}"
    );
    let to_agent = agent.await.unwrap();
    assert!(
        to_agent
            .iter()
            .all(|f| !matches!(f.kind, Some(Kind::Audit(_)))),
        "a forged audit frame crossed the gateway: {to_agent:?}"
    );

    let store = replicas.store.clone();
    let statements = postern_testkit::wait_for(|| {
        let store = store.clone();
        async move {
            let query = AuditQuery {
                actor: Some("alice".into()),
                action_prefix: Some("sql.".into()),
                limit: 10,
                ..AuditQuery::default()
            };
            let events = store.events(&query).await.unwrap();
            (events.len() == 2).then_some(events)
        }
    })
    .await;
    let (blocked, ok) = (&statements[0], &statements[1]);
    assert_eq!(ok.outcome, "ok");
    assert_eq!(ok.target, "pg-prod");
    assert!(
        ok.detail.contains("SELECT email FROM users WHERE id = $1"),
        "{}",
        ok.detail
    );
    assert!(
        ok.detail.contains("\"masked_columns\":[\"email\"]"),
        "{}",
        ok.detail
    );
    assert_eq!(blocked.outcome, "blocked");
    assert!(
        blocked.detail.contains("deny_kind:drop"),
        "{}",
        blocked.detail
    );
    let session = ok
        .session_id
        .clone()
        .expect("statements carry their session");
    assert_eq!(blocked.session_id.as_ref(), Some(&session));
    let by_session = store
        .events(&AuditQuery {
            session_id: Some(session),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = by_session.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| a.starts_with("sql.")).count(),
        2,
        "only the agent's two statements: {by_session:?}"
    );
    assert_eq!(
        by_session.len(),
        3,
        "the statements and the session's opening: {by_session:?}"
    );
    assert_eq!(actions.last(), Some(&"session.open"), "{by_session:?}");

    let metrics = replicas.metrics(0).await;
    assert!(
        metrics.contains("postern_statements_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postern_statements_total{outcome=\"blocked\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postern_errors_total{kind=\"bad_request\"} 1"),
        "{metrics}"
    );
}
