//! The real `postern-gateway` binary on each policy store that
//! `POSTERN_POLICY_STORE` can name: it opens (and migrates or creates) the
//! store, registers the bootstrap admin token there, and the token works over
//! the API. A malformed value stops it at start with an error naming the variable.

use std::process::Stdio;
use std::time::Duration;

use postern_state::PolicyStore;
use postern_state::dynamodb::{DynamoConfig, DynamoStore};
use postern_state::testing::MotoServer;
use postern_testkit::postgres::Database;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ADMIN_TOKEN: &str = "pst_user_bootstrap-0123456789abcdef0123456789";

fn gateway(store: &str, extra: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postern-gateway"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("POSTERN_LISTEN_ADDR", "127.0.0.1:0")
        .env("POSTERN_INTERNAL_ADDR", "127.0.0.1:0")
        .env("POSTERN_TLS_DISABLED", "true")
        .env("POSTERN_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("POSTERN_POLICY_STORE", store)
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts the gateway and returns it with its public address once ready.
async fn start(mut command: Command) -> (Child, String) {
    let mut child = command.spawn().expect("postern-gateway starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value["event"] == "ready"
            {
                return value;
            }
        }
        let mut stderr = String::new();
        use tokio::io::AsyncReadExt;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        panic!("the gateway exited before it was ready:\n{stderr}");
    })
    .await
    .expect("ready within 60 s");
    let addr = ready["public_addr"].as_str().unwrap().to_owned();
    (child, addr)
}

/// `GET /v1/whoami` with the bootstrap token answers as the admin (plain
/// HTTP/1.1: the public port serves it beside gRPC when TLS is off).
async fn assert_admin_works(addr: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/whoami HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (&body["user"], &body["role"]),
        (&"admin".into(), &"admin".into()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_on_postgres() {
    let db = Database::create("gateway_store");
    let url = format!(
        "postgres://postgres@{}:{}/{}?sslmode=disable",
        db.host, db.port, db.name
    );
    let (mut child, addr) = start(gateway(&url, &[])).await;
    assert_admin_works(&addr).await;
    assert_eq!(
        db.sql("select user_name || ':' || role from user_tokens")
            .trim(),
        "admin:admin"
    );
    assert!(
        !db.sql("select max(version) from postern_schema")
            .trim()
            .is_empty()
    );
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_on_dynamodb() {
    let moto = MotoServer::start();
    let url = format!(
        "dynamodb://postern-gw?region=us-east-1&endpoint={}&create_table=true",
        moto.endpoint()
    );
    let aws = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let (mut child, addr) = start(gateway(&url, &aws)).await;
    assert_admin_works(&addr).await;
    child.kill().await.unwrap();

    // The token is in the table the gateway created.
    let mut config = DynamoConfig::from_url(&url).unwrap();
    config.create_table = false;
    config.static_credentials("testing", "testing");
    let store = DynamoStore::connect(config).await.unwrap();
    let tokens = store.user_tokens().await.unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].user, "admin");
}

#[tokio::test]
async fn bad_policy_stores_stop_the_gateway_naming_the_variable() {
    for (store, why) in [
        ("dynamodb://postern", "region is required"),
        ("postgres://gw:hunter2@db:port/p", "postgres://"),
        ("mysql://db/p", "expected sqlite:PATH"),
    ] {
        let output = tokio::time::timeout(Duration::from_secs(30), gateway(store, &[]).output())
            .await
            .expect("exits at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{store}: {stderr}");
        assert!(
            stderr.contains("POSTERN_POLICY_STORE") && stderr.contains(why),
            "{store}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    // Without AWS credentials the DynamoDB store refuses to start, saying which.
    let output = gateway(
        "dynamodb://postern?region=us-east-1&endpoint=http://127.0.0.1:9",
        &[],
    )
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
}
