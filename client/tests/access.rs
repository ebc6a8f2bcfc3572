//! Access rules, MFA and just-in-time reviews end to end: the real `postern`
//! binary against an in-process gateway and agent.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{
    AGENT, Cluster, echo_once, echo_server, listening_port, raw_open, run_postern, spawn_postern,
    test_settings, wait_for,
};
use postern_gateway::access::documents::replace_rule;
use postern_gateway::access::{AccessRule, Action};
use postern_state::{AuditQuery, AuditSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn audit(cluster: &Cluster, actor: &str, action: &str) -> Vec<postern_state::AuditEvent> {
    cluster
        .store
        .events(&AuditQuery {
            actor: Some(actor.into()),
            action_prefix: Some(action.into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_decide_who_reaches_what_and_denials_name_the_rule() {
    let cluster = Cluster::start().await;
    let echo = echo_server().await.to_string();
    cluster.add_connection("staging-echo", &echo, AGENT).await;
    cluster.add_connection("prod-echo", &echo, AGENT).await;
    replace_rule(
        &*cluster.store,
        &AccessRule::new("devs-staging", &["dev"], &["staging-*"], &[Action::Connect]),
    )
    .await
    .unwrap();
    let dana = cluster.add_person("dana", &["dev"]).await;
    let as_dana = || cluster.cli_env_as(&dana);

    // Allowed by the rule: the local port carries bytes.
    let (mut child, mut lines) = spawn_postern(
        as_dana(),
        &["connect", "staging-echo", "--port", "0"],
        std::process::Stdio::inherit(),
    );
    let port = listening_port(&lines.recv().await.expect("listening line"));
    echo_once(SocketAddr::from(([127, 0, 0, 1], port)), b"hello staging").await;
    child.kill().await.unwrap();

    // Not allowed: refused before listening, naming the rule and the group.
    let (ok, out, err) = run_postern(as_dana(), &["connect", "prod-echo", "--port", "0"]).await;
    assert!(!ok, "{out}");
    assert!(!out.contains("listening"), "{out}");
    assert!(
        err.contains("dana may not connect on \"prod-echo\"")
            && err.contains("rule \"testers\" needs group testers")
            && err.contains("your groups: dev"),
        "{err}"
    );
    // The gateway itself refuses, whatever the client does.
    let status = raw_open(&cluster, &dana, "prod-echo").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("needs group testers"),
        "{status:?}"
    );
    let denied = audit(&cluster, "dana", "session.open").await;
    assert!(
        denied.iter().any(|e| e.target == "prod-echo"
            && e.outcome == "denied"
            && e.detail.contains("forbidden")),
        "{denied:?}"
    );
    assert!(
        denied.iter().any(|e| e.target == "staging-echo"
            && e.outcome == "ok"
            && e.detail.contains("rule=devs-staging")),
        "{denied:?}"
    );

    // `postern ls` shows only what dana may reach; admin commands are refused.
    let (ok, out, _) = run_postern(as_dana(), &["ls"]).await;
    assert!(ok);
    assert!(
        out.contains("staging-echo") && !out.contains("prod-echo"),
        "{out}"
    );
    let (ok, _, err) = run_postern(
        as_dana(),
        &[
            "connection",
            "add",
            "x",
            "--target",
            "h:1",
            "--agent",
            AGENT,
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("no access rule grants admin on \"x\""),
        "{err}"
    );
    let (ok, out, _) = run_postern(as_dana(), &["whoami"]).await;
    assert!(
        ok && out.starts_with("dana (user) on")
            && out.contains("groups: dev")
            && out.contains("mfa: no"),
        "{out}"
    );

    // An admin widens the rule through the CLI; dana gets in at once.
    let (ok, out, err) = run_postern(
        cluster.cli_env_as(&cluster.admin_token),
        &[
            "rule",
            "put",
            "devs-staging",
            "--group",
            "dev",
            "--connection",
            "staging-*",
            "--connection",
            "prod-echo",
            "--action",
            "connect",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("version 2"), "{out}");
    let (mut child, mut lines) = spawn_postern(
        as_dana(),
        &["connect", "prod-echo", "--port", "0"],
        std::process::Stdio::inherit(),
    );
    let port = listening_port(&lines.recv().await.expect("listening line"));
    echo_once(SocketAddr::from(([127, 0, 0, 1], port)), b"hello prod").await;
    child.kill().await.unwrap();
    let (ok, out, _) = run_postern(cluster.cli_env_as(&cluster.admin_token), &["rule", "ls"]).await;
    assert!(ok && out.contains("staging-*,prod-echo"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_cannot_prove_mfa() {
    let cluster = Cluster::start().await;
    let echo = echo_server().await.to_string();
    cluster.add_connection("vault", &echo, AGENT).await;
    let admin = cluster.cli_env_as(&cluster.admin_token);
    let (ok, out, err) = run_postern(
        admin.clone(),
        &["connection", "access", "vault", "--require-mfa"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("MFA required"), "{out}");
    // The harness's person may connect by the rules, but an API key is one factor.
    let (ok, _, err) = run_postern(cluster.cli_env(), &["connect", "vault", "--port", "0"]).await;
    assert!(!ok);
    assert!(
        err.contains("requires MFA") && err.contains("postern login <gateway-url> --mfa"),
        "{err}"
    );
    let status = raw_open(&cluster, &cluster.user_token, "vault")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    // Lifted again: in.
    run_postern(admin, &["connection", "access", "vault"]).await;
    let (ok, _, _) = run_postern(cluster.cli_env(), &["ls"]).await;
    assert!(ok);
    assert!(
        raw_open(&cluster, &cluster.user_token, "vault")
            .await
            .is_ok()
    );
}

/// A webhook receiver: answers 500 to the first delivery (so the gateway must
/// retry), 200 after; keeps every body.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        let mut served = 0;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then as many body bytes as content-length says.
            let body = loop {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "webhook request cut short");
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break request[end + 4..end + 4 + length].to_vec();
                    }
                }
            };
            served += 1;
            let status = if served == 1 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if served > 1 {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
            }
            let reply =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            socket.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    (url, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_grant_time_boxed_access_and_everything_is_audited() {
    let (hook, deliveries) = webhook_receiver().await;
    let mut settings = test_settings();
    settings.review_webhook = Some(hook.into());
    let cluster = Cluster::start_with(true, settings).await;
    let echo = echo_server().await.to_string();
    cluster.add_connection("prod-db", &echo, AGENT).await;
    replace_rule(
        &*cluster.store,
        &AccessRule::new("oncall-prod", &["oncall"], &["prod-*"], &[Action::Connect]),
    )
    .await
    .unwrap();
    let admin = cluster.cli_env_as(&cluster.admin_token);
    let (ok, out, err) = run_postern(
        admin,
        &[
            "connection",
            "access",
            "prod-db",
            "--approvers",
            "dba",
            "--window",
            "1h",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("approval from group dba (lasting 3600 s)"),
        "{out}"
    );
    // Olga is on call and a DBA herself; Bob approves; Pete is on call too.
    let olga = cluster.add_person("olga", &["oncall", "dba"]).await;
    let bob = cluster.add_person("bob", &["dba"]).await;
    let pete = cluster.add_person("pete", &["oncall"]).await;

    // Olga's `postern connect` asks for a review and waits.
    let (mut olga_connect, mut olga_lines) = spawn_postern(
        cluster.cli_env_as(&olga),
        &[
            "connect",
            "prod-db",
            "--port",
            "0",
            "--reason",
            "incident 42",
        ],
        std::process::Stdio::inherit(),
    );
    let waiting = olga_lines.recv().await.expect("waiting line");
    let id = waiting
        .strip_prefix("waiting for approval ")
        .unwrap_or_else(|| panic!("{waiting:?}"))
        .to_owned();
    let status = raw_open(&cluster, &olga, "prod-db").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status
            .message()
            .contains("needs an approval from group dba"),
        "{status:?}"
    );

    let (ok, out, _) = run_postern(cluster.cli_env_as(&bob), &["review", "ls"]).await;
    assert!(ok);
    assert!(
        out.contains(&id)
            && out.contains("olga")
            && out.contains("prod-db")
            && out.contains("incident 42"),
        "{out}"
    );
    // Nobody approves their own request; non-approvers cannot either.
    let (ok, _, err) = run_postern(cluster.cli_env_as(&olga), &["review", "approve", &id]).await;
    assert!(!ok && err.contains("your own request"), "{err}");
    let (ok, _, err) = run_postern(cluster.cli_env_as(&pete), &["review", "approve", &id]).await;
    assert!(!ok && err.contains("only members of group dba"), "{err}");

    let (ok, out, err) = run_postern(
        cluster.cli_env_as(&bob),
        &["review", "approve", &id, "--comment", "go ahead"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("olga may open sessions to prod-db for 3600 s"),
        "{out}"
    );
    // Deciding twice is refused.
    let (ok, _, err) = run_postern(cluster.cli_env_as(&bob), &["review", "deny", &id]).await;
    assert!(!ok && err.contains("already approved by bob"), "{err}");

    // Olga's waiting `postern connect` goes on and listens.
    let port = listening_port(&olga_lines.recv().await.expect("listening line"));
    echo_once(SocketAddr::from(([127, 0, 0, 1], port)), b"approved bytes").await;
    terminate_cleanly(&mut olga_connect).await;
    // Within the window, a new `postern connect` needs no new review.
    let (mut again, mut again_lines) = spawn_postern(
        cluster.cli_env_as(&olga),
        &["connect", "prod-db", "--port", "0"],
        std::process::Stdio::inherit(),
    );
    listening_port(&again_lines.recv().await.expect("listening line"));
    // Stopped the moment it listens: no signal falls between two handlers.
    terminate_cleanly(&mut again).await;

    // Pete's request is denied: his `postern connect` ends with the reason.
    let (pete_connect, mut pete_lines) = spawn_postern(
        cluster.cli_env_as(&pete),
        &["connect", "prod-db", "--port", "0"],
        std::process::Stdio::piped(),
    );
    let pete_id = pete_lines
        .recv()
        .await
        .expect("waiting line")
        .strip_prefix("waiting for approval ")
        .unwrap()
        .to_owned();
    assert_ne!(pete_id, id);
    let (ok, _, err) = run_postern(
        cluster.cli_env_as(&bob),
        &["review", "deny", &pete_id, "--comment", "not now"],
    )
    .await;
    assert!(ok, "{err}");
    let output = pete_connect.wait_with_output().await.unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(&format!("review {pete_id} was denied by bob: not now")),
        "{err}"
    );

    // Stopped while it waits for an approval, `postern connect` says so and fails.
    let quinn = cluster.add_person("quinn", &["oncall"]).await;
    let (quinn_connect, mut quinn_lines) = spawn_postern(
        cluster.cli_env_as(&quinn),
        &["connect", "prod-db", "--port", "0"],
        std::process::Stdio::piped(),
    );
    let waiting = quinn_lines.recv().await.expect("waiting line");
    assert!(waiting.starts_with("waiting for approval "), "{waiting}");
    postern_testkit::sigterm(&quinn_connect);
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        quinn_connect.wait_with_output(),
    )
    .await
    .expect("postern connect exits within 10 s of SIGTERM")
    .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("stopped before the local port opened"),
        "{err}"
    );

    // An expired grant decides nothing, and goes when the next review is asked for.
    use postern_state::PolicyStore;
    let expired = serde_json::json!({
        "person": "zed", "connection": "prod-db", "review_id": "r-old",
        "approved_by": "bob", "expires_at_ms": 1_000,
    });
    cluster
        .store
        .put_document("grant", "r-old", &expired, 0)
        .await
        .unwrap();
    // And so does a review decided long ago.
    let decided_long_ago = serde_json::json!({
        "id": "r-ancient", "person": "zed", "connection": "prod-db", "reason": "",
        "approvers": "dba", "window_secs": 60, "status": "approved",
        "requested_at_ms": 1_000, "decided_by": "bob", "decided_at_ms": 2_000,
    });
    cluster
        .store
        .put_document("review", "r-ancient", &decided_long_ago, 0)
        .await
        .unwrap();
    let (ok, out, err) =
        run_postern(cluster.cli_env_as(&pete), &["review", "request", "prod-db"]).await;
    assert!(
        ok && out.contains("approvers in group dba have been told"),
        "{out}{err}"
    );
    assert_eq!(
        cluster.store.document("grant", "r-old").await.unwrap(),
        None
    );
    assert_eq!(
        cluster.store.document("review", "r-ancient").await.unwrap(),
        None
    );
    assert!(
        cluster
            .store
            .document("review", &id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        cluster
            .store
            .document("grant", &id)
            .await
            .unwrap()
            .is_some()
    );

    // Audited: the request, the decisions, and the session riding on the approval.
    let requested = audit(&cluster, "olga", "review.request").await;
    assert!(
        requested
            .iter()
            .any(|e| e.detail.contains(&id) && e.detail.contains("incident 42")),
        "{requested:?}"
    );
    let decided = audit(&cluster, "bob", "review.").await;
    assert!(
        decided
            .iter()
            .any(|e| e.action == "review.approve" && e.detail.contains(&id)),
        "{decided:?}"
    );
    assert!(
        decided
            .iter()
            .any(|e| e.action == "review.deny" && e.detail.contains(&pete_id)),
        "{decided:?}"
    );
    let sessions = audit(&cluster, "olga", "session.open").await;
    assert!(
        sessions
            .iter()
            .any(|e| e.outcome == "ok" && e.detail.contains(&format!("review={id}"))),
        "{sessions:?}"
    );

    // Approvers were told, through a retried webhook, in Slack's shape.
    let texts: Vec<String> = wait_for(|| {
        let deliveries = deliveries.lock().unwrap().clone();
        async move {
            let texts: Vec<String> = deliveries
                .iter()
                .map(|d| d["text"].as_str().unwrap_or_default().to_owned())
                .collect();
            // Every request and decision above: six, Quinn's unanswered one included.
            (texts.len() >= 6).then_some(texts)
        }
    })
    .await;
    assert!(
        texts
            .iter()
            .any(|t| t.contains("olga asks for access to prod-db") && t.contains("incident 42")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("bob approved access to prod-db for olga")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("bob denied access to prod-db for pete")),
        "{texts:?}"
    );
    // Counted once the receiver's answer is in, a moment after it kept the body.
    wait_for(|| async {
        cluster
            .metrics()
            .await
            .contains("postern_review_webhook_deliveries_total{result=\"ok\"} 6")
            .then_some(())
    })
    .await;
}

/// `connect` without `exec` on a Postgres connection: psql reads, and every
/// write is refused by the agent's read-only guardrail and by the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_without_exec_is_read_only_on_postgres() {
    let db = postern_testkit::postgres::Database::create("rbac_ro");
    db.sql(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'kept');",
    );
    let cluster = Cluster::start().await;
    cluster
        .add_postgres_connection("orders-db", &db.addr(), AGENT, Some(&db.name))
        .await;
    replace_rule(
        &*cluster.store,
        &AccessRule::new("analysts", &["analyst"], &["orders-*"], &[Action::Connect]),
    )
    .await
    .unwrap();
    let ann = cluster.add_person("ann", &["analyst"]).await;
    let (mut child, mut lines) = spawn_postern(
        cluster.cli_env_as(&ann),
        &["connect", "orders-db", "--port", "0"],
        std::process::Stdio::inherit(),
    );
    let port = listening_port(&lines.recv().await.expect("listening line")).to_string();
    let psql = |sql: &'static str| {
        let port = port.clone();
        let name = db.name.clone();
        async move {
            let out = tokio::process::Command::new("psql")
                .args([
                    "-X",
                    "-At",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "ann",
                    "-d",
                    &name,
                    "-c",
                    sql,
                ])
                .env("PGCONNECT_TIMEOUT", "10")
                .output()
                .await
                .expect("psql is installed (scripts/test installs it)");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, out, err) = psql("SELECT body FROM notes").await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "kept");
    let (ok, _, err) = psql("INSERT INTO notes VALUES (2, 'written')").await;
    assert!(!ok, "a write went through");
    assert!(err.contains("read"), "{err}");
    assert_eq!(db.sql("SELECT count(*) FROM notes").trim(), "1");
    child.kill().await.unwrap();
    let opened = audit(&cluster, "ann", "session.open").await;
    assert!(
        opened
            .iter()
            .any(|e| e.detail.contains("rule=analysts read_only=true")),
        "{opened:?}"
    );
}

/// People from the identity provider: groups from its claim decide, a login
/// without a second factor is refused with how to log in again, and
/// `postern login --mfa` then `postern connect` gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_logins_meet_rules_and_mfa_through_postern_connect() {
    use postern_testkit::oidc::TestIssuer;
    use serde_json::json;
    let issuer = TestIssuer::start().await;
    let env = postern_tunnel::env::Env::from_pairs([
        ("POSTERN_OIDC_ISSUER", issuer.issuer()),
        ("POSTERN_OIDC_AUDIENCE", issuer.audience()),
        ("POSTERN_OIDC_CLIENT_ID", issuer.client_id()),
        ("POSTERN_OIDC_MFA_ACR", "urn:postern:test:mfa".to_owned()),
    ]);
    let oidc = postern_gateway::config::oidc::from_env(&env)
        .unwrap()
        .unwrap();
    let cluster = Cluster::start_with_oidc(oidc).await;
    let echo = echo_server().await.to_string();
    cluster.add_connection("vault", &echo, AGENT).await;
    replace_rule(
        &*cluster.store,
        &AccessRule::new("sre-vault", &["sre"], &["vault"], &[Action::Connect]),
    )
    .await
    .unwrap();
    let (ok, _, err) = run_postern(
        cluster.cli_env_as(&cluster.admin_token),
        &["connection", "access", "vault", "--require-mfa"],
    )
    .await;
    assert!(ok, "{err}");
    let as_token = |token: String| cluster.cli_env_as(&postern_tunnel::Secret::new(token));
    let with = |extra: serde_json::Value| {
        let mut claims = issuer.claims("sam");
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        issuer.issue(&claims)
    };

    // Groups come from the token; one factor is not enough for this connection.
    let one_factor = with(json!({"groups": ["sre"], "amr": ["pwd"]}));
    let (ok, out, _) = run_postern(as_token(one_factor.clone()), &["whoami"]).await;
    assert!(
        ok && out.starts_with("sam@example.com (person)")
            && out.contains("groups: sre")
            && out.contains("mfa: no"),
        "{out}"
    );
    let (ok, _, err) = run_postern(
        as_token(one_factor.clone()),
        &["connect", "vault", "--port", "0"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("requires MFA") && err.contains("postern login <gateway-url> --mfa"),
        "{err}"
    );
    // The gateway refuses the session itself, and audits it.
    let status = raw_open(&cluster, &postern_tunnel::Secret::new(one_factor), "vault")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    // MFA, but not in the group the rule names.
    let wrong_group = with(json!({"groups": ["dev"], "amr": ["pwd", "mfa"]}));
    let (ok, _, err) =
        run_postern(as_token(wrong_group), &["connect", "vault", "--port", "0"]).await;
    assert!(
        !ok && err.contains("rule \"sre-vault\" needs group sre")
            && err.contains("your groups: dev"),
        "{err}"
    );
    // A forged or expired token is refused before any rule is looked at.
    let (ok, _, err) = run_postern(as_token(issuer.expired("sam")), &["ls"]).await;
    assert!(!ok && err.contains("expired"), "{err}");
    let forged = TestIssuer::tamper(&with(json!({"groups": ["sre"], "amr": ["mfa"]})));
    let (ok, _, err) = run_postern(as_token(forged), &["ls"]).await;
    assert!(!ok && err.contains("unauthenticated"), "{err}");

    // The whole way: `postern login --mfa` (device flow), then `postern connect`.
    issuer.set_auto_approve(Some(json!({"sub": "sam", "groups": ["sre"]})));
    let config = cluster.dir.path().join("sam.json");
    let env = vec![("POSTERN_CONFIG".to_owned(), config.display().to_string())];
    let ca = cluster.ca_path.display().to_string();
    let (ok, out, err) = run_postern(
        env.clone(),
        &["login", &cluster.url, "--ca-cert", &ca, "--mfa"],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("MFA: yes"), "{out}");
    let (mut child, mut lines) = spawn_postern(
        env,
        &["connect", "vault", "--port", "0"],
        std::process::Stdio::inherit(),
    );
    let port = listening_port(&lines.recv().await.expect("listening line"));
    echo_once(SocketAddr::from(([127, 0, 0, 1], port)), b"two factors").await;
    child.kill().await.unwrap();

    // Waiting for an approval outlasts short access tokens: they are renewed
    // while `postern connect` waits, and it gets in once approved.
    let admin = cluster.cli_env_as(&cluster.admin_token);
    for args in [
        vec![
            "rule",
            "put",
            "sre-vault",
            "--group",
            "sre",
            "--connection",
            "vault*",
            "--action",
            "connect",
        ],
        vec![
            "connection",
            "add",
            "vault-jit",
            "--target",
            &echo,
            "--agent",
            AGENT,
        ],
        vec![
            "connection",
            "access",
            "vault-jit",
            "--approvers",
            "dba",
            "--window",
            "10m",
        ],
    ] {
        let (ok, _, err) = run_postern(admin.clone(), &args).await;
        assert!(ok, "{args:?}: {err}");
    }
    issuer.set_access_token_lifetime(std::time::Duration::from_secs(5));
    let env = vec![("POSTERN_CONFIG".to_owned(), config.display().to_string())];
    let (ok, out, err) = run_postern(env.clone(), &["login", &cluster.url, "--ca-cert", &ca]).await;
    assert!(ok, "{out}{err}");
    let (mut child, mut lines) = spawn_postern(
        env,
        &["connect", "vault-jit", "--port", "0"],
        std::process::Stdio::inherit(),
    );
    let waiting = lines.recv().await.expect("waiting line");
    let review = waiting
        .strip_prefix("waiting for approval ")
        .unwrap_or_else(|| panic!("{waiting}"))
        .to_owned();
    let before = issuer.refresh_count();
    wait_for(|| async { (issuer.refresh_count() >= before + 2).then_some(()) }).await;
    let bob = cluster.add_person("bob", &["dba"]).await;
    let (ok, _, err) = run_postern(cluster.cli_env_as(&bob), &["review", "approve", &review]).await;
    assert!(ok, "{err}");
    let port = listening_port(&lines.recv().await.expect("listening line"));
    echo_once(
        SocketAddr::from(([127, 0, 0, 1], port)),
        b"after a long wait",
    )
    .await;
    child.kill().await.unwrap();

    let opened = audit(&cluster, "sam@example.com", "session.open").await;
    assert!(
        opened
            .iter()
            .any(|e| e.outcome == "ok" && e.detail.contains("rule=sre-vault")),
        "{opened:?}"
    );
    assert!(
        opened
            .iter()
            .any(|e| e.outcome == "denied" && e.detail.contains("mfa_required")),
        "{opened:?}"
    );
}

/// SIGTERM, as a supervisor sends it: a listening `postern connect` exits 0, promptly.
async fn terminate_cleanly(connect: &mut tokio::process::Child) {
    postern_testkit::sigterm(connect);
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), connect.wait())
        .await
        .expect("postern connect exits within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
