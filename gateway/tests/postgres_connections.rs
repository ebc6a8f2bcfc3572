//! Connections of kind postgres: the admin API checks their Layer 7 settings
//! (credential reference, TLS mode, SQL policy) before storing them, and the
//! session request an agent receives carries them, whether the agent's tunnel
//! is on the user's replica or the request was passed on by a peer.

mod support;

use std::sync::Arc;

use postern_state::memory::MemoryRouteStore;
use postern_state::{Connection, ConnectionKind, PolicyStore, Role, RouteStore, UserToken, now_ms};
use postern_tunnel::Secret;
use postern_tunnel::auth::{TokenKind, generate_token, hash_token, set_bearer};
use postern_tunnel::open::open_session;
use postern_tunnel::proto::agent_message::Kind as AgentKind;
use postern_tunnel::proto::agent_tunnel_client::AgentTunnelClient;
use postern_tunnel::proto::gateway_message::Kind as GatewayKind;
use postern_tunnel::proto::{AgentMessage, SessionRejected, SessionRequest};
use serde_json::{Value, json};
use support::Replicas;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A minimal agent speaking the real control protocol on replica `index`: it
/// hands every session request it receives to the test and rejects it, so the
/// user's open ends at once with the rejection.
async fn recording_agent(
    replicas: &Replicas,
    index: usize,
    token: Secret,
) -> mpsc::UnboundedReceiver<SessionRequest> {
    let mut client = AgentTunnelClient::new(replicas.channel(&replicas.url(index)));
    let (to_gateway, rx) = mpsc::channel::<AgentMessage>(4);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    set_bearer(request.metadata_mut(), &token).unwrap();
    let mut control = client.control(request).await.unwrap().into_inner();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(message)) = control.message().await {
            if let Some(GatewayKind::SessionRequest(request)) = message.kind {
                let rejection = AgentMessage {
                    kind: Some(AgentKind::SessionRejected(SessionRejected {
                        session_id: request.session_id.clone(),
                        reason: "recording agent: no target here".into(),
                    })),
                };
                let _ = seen_tx.send(request);
                if to_gateway.send(rejection).await.is_err() {
                    break;
                }
            }
        }
    });
    seen
}

fn orders_policy() -> Value {
    json!({
        "guardrails": {"read_only": true, "deny_tables": ["payroll.*"]},
        "masking": {"columns": [{"column": "*.email"}], "detectors": ["card_number"]}
    })
}

/// Opens a session to `connection` on replica `index`; returns the refusal.
async fn refused_open(replicas: &Replicas, index: usize, connection: &str) -> String {
    let opened = open_session(
        replicas.channel(&replicas.url(index)),
        None,
        &replicas.user_token,
        &connection.parse().unwrap(),
    )
    .await;
    match opened {
        Ok(_) => panic!("the recording agent attaches to nothing"),
        Err(status) => status.message().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_receives_the_postgres_settings_locally_and_through_a_peer() {
    let routes: Arc<dyn RouteStore> = Arc::new(MemoryRouteStore::new());
    let replicas = Replicas::start(2, routes.clone()).await;
    let token = replicas.add_agent("db-agent").await;
    replicas
        .store
        .create_connection(&Connection {
            kind: ConnectionKind::Postgres,
            database: Some("orders".into()),
            credential: Some("env:ORDERS".into()),
            tls: Some("verify-full".into()),
            policy: Some(orders_policy()),
            ..Connection::tcp("orders", "orders.internal:5432", "db-agent", now_ms())
        })
        .await
        .unwrap();
    replicas
        .store
        .create_connection(&Connection {
            kind: ConnectionKind::Postgres,
            credential: Some("file:reporting".into()),
            ..Connection::tcp("reporting", "reporting.internal:5432", "db-agent", now_ms())
        })
        .await
        .unwrap();
    replicas
        .add_connection("ssh", "bastion.internal:22", "db-agent")
        .await;
    // The agent's only tunnel is to replica 1: users on replica 0 are passed on.
    let mut seen = recording_agent(&replicas, 1, token).await;
    let holder = replicas.replica_id(1);
    postern_testkit::wait_for(|| {
        let routes = routes.clone();
        let holder = holder.clone();
        async move {
            let held = routes.agent_replicas("db-agent").await.unwrap();
            held.contains(&holder).then_some(())
        }
    })
    .await;

    for user_on in [1, 0] {
        let refusal = refused_open(&replicas, user_on, "orders").await;
        assert!(
            refusal.contains("recording agent: no target here"),
            "user on replica {user_on}: {refusal}"
        );
        let request = seen.recv().await.unwrap();
        assert_eq!(request.kind, "postgres");
        assert_eq!(request.connection, "orders");
        assert_eq!(request.target, "orders.internal:5432");
        assert_eq!(request.user, "alice");
        assert_eq!(request.ingress_replica, replicas.replica_id(user_on));
        let postgres = request
            .postgres
            .unwrap_or_else(|| panic!("user on replica {user_on}: no postgres settings"));
        assert_eq!(postgres.database, "orders");
        assert_eq!(postgres.credential, "env:ORDERS");
        assert_eq!(postgres.tls, "verify-full");
        assert!(
            !postgres.policy_json.contains('\n') && !postgres.policy_json.contains(": "),
            "compact JSON: {}",
            postgres.policy_json
        );
        let policy: Value = serde_json::from_str(&postgres.policy_json).unwrap();
        assert_eq!(policy, orders_policy());
    }

    // No database, TLS or policy: the defaults, spelled out for the agent.
    refused_open(&replicas, 0, "reporting").await;
    let postgres = seen.recv().await.unwrap().postgres.unwrap();
    assert_eq!(
        (
            postgres.database.as_str(),
            postgres.credential.as_str(),
            postgres.tls.as_str(),
            postgres.policy_json.as_str()
        ),
        ("", "file:reporting", "prefer", "")
    );

    // A tcp connection carries none.
    refused_open(&replicas, 0, "ssh").await;
    let request = seen.recv().await.unwrap();
    assert_eq!((request.kind.as_str(), request.postgres), ("tcp", None));
}

/// The admin API over HTTPS, as the CLI calls it.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl Admin {
    async fn new(replicas: &Replicas) -> Self {
        let token = generate_token(TokenKind::User);
        replicas
            .store
            .create_user_token(&UserToken {
                user: "root".into(),
                token_hash: hash_token(token.expose()),
                role: Role::Admin,
                created_at_ms: now_ms(),
                groups: Vec::new(),
            })
            .await
            .unwrap();
        let mut tls = postern_tunnel::tls::client_config(Some(&replicas.ca_pem)).unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        Self {
            http,
            base: replicas.url(0),
            token,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn create(&self, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/v1/connections", Some(body))
            .await
    }
}

fn postgres_body(extra: Value) -> Value {
    let mut body = json!({"name": "orders", "kind": "postgres", "target": "db:5432", "agent": "db-agent",
                          "credential": "env:ORDERS"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_checks_layer7_settings_and_names_the_field() {
    let replicas = Replicas::start(1, Arc::new(MemoryRouteStore::new())).await;
    let admin = Admin::new(&replicas).await;

    let refusals = [
        (
            postgres_body(json!({"credential": "env:orders"})),
            "credential: \"env:orders\" is not a credential reference: use env:NAME",
        ),
        (
            postgres_body(json!({"credential": "file:../etc/passwd"})),
            "credential: \"file:../etc/passwd\" is not a credential reference",
        ),
        (
            json!({"name": "orders", "kind": "postgres", "target": "db:5432", "agent": "db-agent"}),
            "credential: required for kind postgres",
        ),
        (
            postgres_body(json!({"tls": "strict"})),
            "tls: \"strict\" is not a TLS mode (expected: disable, prefer, require, verify-full)",
        ),
        (
            postgres_body(json!({"policy": {"guardrails": {"readonly": true}}})),
            "policy: unknown field `readonly`, expected one of",
        ),
        (
            postgres_body(json!({"policy": "{\"guardrails\":"})),
            "policy: invalid type: string",
        ),
        (
            postgres_body(json!({"policy": {"guardrails": {"deny_patterns": ["(unclosed"]}}})),
            "policy: guardrails: deny pattern \"(unclosed\" is not a valid regular expression",
        ),
        (
            json!({"name": "ssh", "kind": "tcp", "target": "h:22", "agent": "db-agent",
                   "policy": {"guardrails": {"read_only": true}}}),
            "policy: only connections of kind postgres take one",
        ),
        (
            json!({"name": "x", "kind": "mongodb", "target": "h:1", "agent": "db-agent"}),
            "kind: unknown connection kind \"mongodb\" (expected: tcp, postgres)",
        ),
    ];
    for (body, expected) in refusals {
        let (status, answer) = admin.create(body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{body}:\n{message}");
    }
    assert!(
        replicas.store.connections().await.unwrap().is_empty(),
        "nothing refused was stored"
    );

    let policy = json!({"guardrails": {"read_only": true}, "audit_parameters": true});
    let (status, created) = admin
        .create(postgres_body(
            json!({"database": "orders", "policy": policy}),
        ))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["tls"], "prefer", "the default TLS mode is stored");
    let (status, shown) = admin
        .call(reqwest::Method::GET, "/v1/connections/orders", None)
        .await;
    assert_eq!(status, 200, "{shown}");
    for (field, value) in [
        ("name", json!("orders")),
        ("kind", json!("postgres")),
        ("database", json!("orders")),
        ("credential", json!("env:ORDERS")),
        ("tls", json!("prefer")),
        ("policy", policy.clone()),
        ("agent_connected", json!(false)),
    ] {
        assert_eq!(shown[field], value, "{field} in {shown}");
    }
    let (status, missing) = admin
        .call(reqwest::Method::GET, "/v1/connections/nope", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        missing["error"]["message"],
        "connection \"nope\" does not exist (see `postern ls`)"
    );

    // A tcp connection's JSON is what it always was.
    let (status, tcp) = admin
        .create(json!({"name": "ssh", "kind": "tcp", "target": "h:22", "agent": "db-agent"}))
        .await;
    assert_eq!(status, 201, "{tcp}");
    let mut keys: Vec<&String> = tcp.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["agent", "created_at_ms", "kind", "name", "target"]);

    let events = postern_state::AuditSink::events(
        replicas.store.as_ref(),
        &postern_state::AuditQuery {
            action_prefix: Some("connection.create".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let orders = events.iter().find(|e| e.target == "orders").unwrap();
    assert!(
        orders
            .detail
            .contains("kind=postgres target=db:5432 agent=db-agent database=orders credential=env:ORDERS tls=prefer policy="),
        "{}",
        orders.detail
    );
}
