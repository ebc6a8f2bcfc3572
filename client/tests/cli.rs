//! The real `postern` binary: login, admin commands, and their errors.

mod common;

use std::time::Duration;

use common::{AGENT, Cluster, echo_server};
use postern_state::PolicyStore;
use postern_tunnel::Secret;

struct Cli<'a> {
    cluster: &'a Cluster,
}

impl Cli<'_> {
    /// Runs `postern ARGS` with only a private config file: no token in the environment.
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_postern"))
            .args(args)
            .env("POSTERN_CONFIG", self.cluster.dir.path().join("cli.json"))
            .env_remove("POSTERN_TOKEN")
            .env_remove("POSTERN_GATEWAY_URL")
            .env_remove("POSTERN_CA_CERT")
            .output()
            .await
            .unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "postern {args:?} failed: {stderr}");
        stdout
    }

    async fn fails(&self, args: &[&str]) -> String {
        let (ok, _, stderr) = self.run(args).await;
        assert!(!ok, "postern {args:?} should fail");
        stderr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_manage_connections_agents_and_tokens() {
    let cluster = Cluster::start().await;
    let cli = Cli { cluster: &cluster };
    let ca = cluster.ca_path.display().to_string();

    assert!(
        cli.fails(&["ls"])
            .await
            .contains("not logged in: run `postern login")
    );
    let refused = cli
        .fails(&[
            "login",
            &cluster.url,
            "--token",
            "pst_user_wrong",
            "--ca-cert",
            &ca,
        ])
        .await;
    assert!(refused.contains("unknown or revoked token"), "{refused}");
    let untrusted = cli
        .fails(&[
            "login",
            &cluster.url,
            "--token",
            cluster.admin_token.expose(),
        ])
        .await;
    assert!(
        untrusted.contains("cannot reach the gateway"),
        "an unknown CA is not trusted: {untrusted}"
    );

    let out = cli
        .ok(&[
            "login",
            &cluster.url,
            "--token",
            cluster.admin_token.expose(),
            "--ca-cert",
            &ca,
        ])
        .await;
    assert!(out.contains("as root (admin)"), "{out}");
    assert!(cli.ok(&["whoami"]).await.starts_with("root (admin)"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cluster.dir.path().join("cli.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the saved token is private");
    }

    let echo = echo_server().await.to_string();
    cli.ok(&[
        "connection",
        "add",
        "echo",
        "--kind",
        "tcp",
        "--target",
        &echo,
        "--agent",
        AGENT,
    ])
    .await;
    let duplicate = cli
        .fails(&[
            "connection",
            "add",
            "echo",
            "--target",
            &echo,
            "--agent",
            AGENT,
        ])
        .await;
    assert!(
        duplicate.contains("connection \"echo\" already exists"),
        "{duplicate}"
    );
    let bad_target = cli
        .fails(&[
            "connection",
            "add",
            "x",
            "--target",
            "no-port",
            "--agent",
            AGENT,
        ])
        .await;
    assert!(bad_target.contains("must be HOST:PORT"), "{bad_target}");
    let bad_kind = cli
        .fails(&[
            "connection",
            "add",
            "x",
            "--kind",
            "udp",
            "--target",
            "h:1",
            "--agent",
            AGENT,
        ])
        .await;
    assert!(bad_kind.contains("udp"), "{bad_kind}");
    let listing = cli.ok(&["ls"]).await;
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("echo ") && l.contains(&echo) && l.ends_with("yes")),
        "{listing}"
    );

    // A new agent: its token is printed once and works.
    let added = cli.ok(&["agent", "add", "edge-2"]).await;
    let token = added
        .split_whitespace()
        .find(|w| w.starts_with("pst_agent_"))
        .expect("token printed")
        .to_owned();
    let agent = cluster.spawn_agent(Secret::new(token));
    agent
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("the new agent connects");
    let agents = cli.ok(&["agent", "ls"]).await;
    assert!(
        agents
            .lines()
            .any(|l| l.starts_with("edge-2") && l.ends_with("yes")),
        "{agents}"
    );
    agent.stop().await;

    let added = cli
        .ok(&["token", "add", "bob", "--group", "ops", "--group", "dba"])
        .await;
    assert!(added.contains("pst_user_"), "{added}");
    let tokens = cli.ok(&["token", "ls"]).await;
    assert!(
        tokens
            .lines()
            .any(|l| l.starts_with("bob") && l.contains(" user ") && l.ends_with("ops,dba")),
        "{tokens}"
    );
    let refused = cli
        .fails(&["token", "add", "carol", "--group", "has space"])
        .await;
    assert!(refused.contains("invalid group"), "{refused}");

    let missing = cli.fails(&["connect", "nope"]).await;
    assert!(
        missing.contains("connection \"nope\" does not exist"),
        "{missing}"
    );

    cli.ok(&["connection", "rm", "echo"]).await;
    assert!(!cli.ok(&["ls"]).await.contains("echo"));
    let audit = cli.ok(&["audit"]).await;
    for action in [
        "connection.create",
        "agent.create",
        "token.create",
        "connection.delete",
    ] {
        assert!(
            audit.contains(action),
            "{action} missing from audit:\n{audit}"
        );
    }
    cli.ok(&["logout"]).await;
    assert!(cli.fails(&["ls"]).await.contains("not logged in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_with_credential_tls_and_policy() {
    let cluster = Cluster::start().await;
    let cli = Cli { cluster: &cluster };
    let ca = cluster.ca_path.display().to_string();
    cli.ok(&[
        "login",
        &cluster.url,
        "--token",
        cluster.admin_token.expose(),
        "--ca-cert",
        &ca,
    ])
    .await;
    let policy = cluster.dir.path().join("orders-policy.json");
    std::fs::write(
        &policy,
        r#"{"guardrails": {"deny_tables": ["payroll.*"]}, "masking": {"detectors": ["email"]}}"#,
    )
    .unwrap();
    let policy = policy.display().to_string();
    let add = |extra: &'static [&'static str]| {
        let mut args = vec![
            "connection",
            "add",
            "orders",
            "--kind",
            "postgres",
            "--target",
            "orders.internal:5432",
            "--agent",
            AGENT,
        ];
        args.extend_from_slice(extra);
        args
    };

    let refusals: [(&[&str], &str); 4] = [
        (&[], "credential: required for kind postgres"),
        (
            &["--credential", "env:orders"],
            "credential: \"env:orders\" is not a credential reference",
        ),
        (
            &["--credential", "env:ORDERS", "--tls", "always"],
            "tls: \"always\" is not a TLS mode (expected: disable, prefer, require, verify-full)",
        ),
        (
            &[
                "--credential",
                "env:ORDERS",
                "--policy",
                "/nonexistent/p.json",
            ],
            "--policy /nonexistent/p.json: cannot read it",
        ),
    ];
    for (extra, expected) in refusals {
        let stderr = cli.fails(&add(extra)).await;
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    let tcp_with_policy = cli
        .fails(&[
            "connection",
            "add",
            "ssh",
            "--target",
            "h:22",
            "--agent",
            AGENT,
            "--read-only",
        ])
        .await;
    assert!(
        tcp_with_policy.contains("policy: only connections of kind postgres take one"),
        "{tcp_with_policy}"
    );

    let mut args = add(&[
        "--credential",
        "file:orders-ro",
        "--database",
        "orders",
        "--tls",
        "require",
        "--read-only",
        "--policy",
    ]);
    args.push(&policy);
    cli.ok(&args).await;
    let listing = cli.ok(&["ls"]).await;
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("orders ") && l.contains(" postgres ")),
        "{listing}"
    );
    let shown = cli.ok(&["connection", "show", "orders"]).await;
    for expected in [
        "kind:        postgres\n",
        "target:      orders.internal:5432\n",
        "database:    orders\n",
        "credential:  file:orders-ro\n",
        "tls:         require\n",
        "\"read_only\": true",
        "\"payroll.*\"",
        "\"email\"",
    ] {
        assert!(shown.contains(expected), "{expected:?} missing:\n{shown}");
    }
    let stored = cluster
        .store
        .connection("orders")
        .await
        .unwrap()
        .unwrap()
        .policy
        .unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"guardrails": {"deny_tables": ["payroll.*"], "read_only": true},
                           "masking": {"detectors": ["email"]}})
    );
    let missing = cli.fails(&["connection", "show", "nope"]).await;
    assert!(
        missing.contains("connection \"nope\" does not exist"),
        "{missing}"
    );
}
