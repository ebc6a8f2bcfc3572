//! The DynamoDB store's credential chain against a real HTTP endpoint: a small
//! server on 127.0.0.1 stands in for the ECS/EKS container credentials
//! endpoint (reached through `AWS_CONTAINER_CREDENTIALS_FULL_URI`, loopback
//! being allowed over plain http), and moto's DynamoDB-API server accepts
//! whatever keys it hands out. The environment is passed as a map, never set
//! on the process: these tests run in parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use postern_state::dynamodb::credentials::{
    ContainerCredentials, ContainerCredentialsError, credentials_from_env,
};
use postern_state::dynamodb::{DynamoConfig, DynamoStore};
use postern_state::testing::MotoServer;
use postern_state::{Connection, PolicyStore, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
const SECRET_KEY: &str = "s3cr3t-access-key";

/// What the stand-in endpoint answers to its n-th request (from 0).
enum Reply {
    Ok(String),
    Status(u16),
    /// Accepts and never answers.
    Silent,
}

/// One request as the endpoint saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

struct CredentialsEndpoint {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl CredentialsEndpoint {
    async fn start(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut silent = Vec::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let Some(request) = read_head(&mut stream).await else {
                    continue;
                };
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(request);
                    log.len() - 1
                };
                let (status, body) = match reply(index) {
                    Reply::Ok(body) => (200, body),
                    Reply::Status(status) => (status, r#"{"code":"Denied"}"#.to_owned()),
                    Reply::Silent => {
                        silent.push(stream);
                        continue;
                    }
                };
                let head = format!(
                    "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                // An oversized body is cut off by the client: ignore the reset.
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        Self { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/creds", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_owned());
    Some(Seen {
        path,
        authorization,
    })
}

/// A container credentials response valid for `valid_for` from now.
fn credentials(access_key_id: &str, valid_for: Duration) -> String {
    let expiration = DateTime::from(SystemTime::now() + valid_for)
        .fmt(DateTimeFormat::DateTime)
        .unwrap();
    credentials_expiring(access_key_id, &expiration)
}

fn credentials_expiring(access_key_id: &str, expiration: &str) -> String {
    format!(
        r#"{{"RoleArn":"arn:aws:iam::123456789012:role/postern","AccessKeyId":"{access_key_id}","SecretAccessKey":"{SECRET_KEY}","Token":"session-{access_key_id}","Expiration":"{expiration}"}}"#
    )
}

fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn container(pairs: &[(&str, String)], timeout: Duration) -> ContainerCredentials {
    ContainerCredentials::from_env(&env(pairs), timeout)
        .unwrap()
        .expect("a container credentials URI is set")
}

fn moto_config(moto: &MotoServer, table: &str, endpoint: &CredentialsEndpoint) -> DynamoConfig {
    let mut config = DynamoConfig::new(table, "us-east-1");
    config.endpoint = Some(moto.endpoint());
    config.create_table = true;
    let chain = env(&[
        (FULL_URI, endpoint.url()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "Bearer task-token".into(),
        ),
    ]);
    config.credentials = Some(credentials_from_env(&chain, Duration::from_secs(1)).unwrap());
    config
}

fn tcp(name: &str) -> Connection {
    Connection::tcp(name, "10.0.0.5:5432", "agent-1", 1_700_000_000_000)
}

/// The store works end to end on credentials from the endpoint, the token goes
/// with every fetch, and credentials that expire are fetched again by the SDK's
/// own calls without the store doing anything; until then they are cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_runs_on_container_credentials_and_refreshes_them() {
    let moto = MotoServer::start();
    let endpoint = CredentialsEndpoint::start(|n| match n {
        0 => Reply::Ok(credentials("ASIAFIRST", Duration::from_secs(2))),
        _ => Reply::Ok(credentials("ASIANEXT", Duration::from_secs(3600))),
    })
    .await;
    let store = DynamoStore::connect(moto_config(&moto, "postern-creds", &endpoint))
        .await
        .unwrap();
    store.create_connection(&tcp("before")).await.unwrap();
    assert_eq!(
        store.connection("before").await.unwrap(),
        Some(tcp("before"))
    );

    tokio::time::sleep(Duration::from_millis(2200)).await;
    store.create_connection(&tcp("after")).await.unwrap();
    for _ in 0..10 {
        assert_eq!(store.connections().await.unwrap().len(), 2);
    }
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 2, "one fetch, one refresh: {seen:?}");
    for request in &seen {
        assert_eq!(request.path, "/creds");
        assert_eq!(request.authorization.as_deref(), Some("Bearer task-token"));
    }
}

/// Credentials that can no longer be had make the SDK's calls `Unavailable`,
/// and the error names the endpoint's variable and what went wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_lost_after_expiry_make_the_store_unavailable() {
    let moto = MotoServer::start();
    let endpoint = CredentialsEndpoint::start(|n| match n {
        0 => Reply::Ok(credentials("ASIAFIRST", Duration::from_secs(2))),
        _ => Reply::Status(500),
    })
    .await;
    let store = DynamoStore::connect(moto_config(&moto, "postern-lost", &endpoint))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let err = store.connections().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let message = format!("{err}");
    assert!(
        message.contains("HTTP 500") && message.contains(FULL_URI),
        "{message}"
    );
    assert!(!format!("{err:?}").contains(SECRET_KEY), "{err:?}");
}

/// A token file wins over a token and is read at every fetch (Pod Identity
/// rotates it); a failed refresh keeps still-valid credentials in use.
#[tokio::test]
async fn the_token_file_is_read_at_every_fetch_and_valid_credentials_survive_a_failed_refresh() {
    let endpoint = CredentialsEndpoint::start(|n| match n {
        0 => Reply::Ok(credentials("ASIAFIRST", Duration::from_secs(2))),
        1 => Reply::Ok(credentials("ASIASECOND", Duration::from_secs(2))),
        _ => Reply::Status(503),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let provider = container(
        &[
            (FULL_URI, endpoint.url()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "unused".into()),
        ],
        Duration::from_secs(1),
    );
    let first = provider.credentials().await.unwrap();
    assert_eq!(first.access_key_id(), "ASIAFIRST");
    assert_eq!(first.secret_access_key(), SECRET_KEY);
    assert_eq!(first.session_token(), Some("session-ASIAFIRST"));
    assert!(first.expiry().is_some());
    // Cached: no second request.
    provider.credentials().await.unwrap();
    assert_eq!(endpoint.seen().len(), 1);

    std::fs::write(&token_file, "second-token").unwrap();
    // Two seconds of life are refreshed after one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = provider.credentials().await.unwrap();
    assert_eq!(second.access_key_id(), "ASIASECOND");
    let tokens: Vec<_> = endpoint
        .seen()
        .into_iter()
        .map(|seen| seen.authorization)
        .collect();
    assert_eq!(
        tokens,
        [
            Some("first-token".to_owned()),
            Some("second-token".to_owned())
        ]
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let kept = provider.credentials().await.unwrap();
    assert_eq!(kept.access_key_id(), "ASIASECOND", "still valid, kept");
    assert_eq!(endpoint.seen().len(), 3);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = provider.credentials().await.unwrap_err();
    assert!(
        matches!(err, ContainerCredentialsError::Status { status: 503, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn plain_http_to_another_host_is_refused_naming_the_variable() {
    for uri in [
        "http://192.0.2.10/creds",
        "http://credentials.internal/creds",
    ] {
        let err = credentials_from_env(&env(&[(FULL_URI, uri.into())]), Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(err.var, FULL_URI, "{uri}");
        assert!(err.to_string().contains("use https"), "{err}");
        let err = StoreError::from(err);
        assert!(
            matches!(
                err,
                StoreError::Invalid {
                    field: FULL_URI,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

/// Oversized, malformed, refused, silent and absent endpoints each give an
/// error that says which; at connect the store reports them as `Unavailable`.
#[tokio::test]
async fn bad_endpoints_give_clear_errors() {
    let oversized = CredentialsEndpoint::start(|_| Reply::Ok("x".repeat(1 << 20))).await;
    let not_json = CredentialsEndpoint::start(|_| Reply::Ok("<html>hello</html>".into())).await;
    let no_token = CredentialsEndpoint::start(|_| {
        Reply::Ok(format!(
            r#"{{"AccessKeyId":"ASIA1","SecretAccessKey":"{SECRET_KEY}","Expiration":"2099-01-01T00:00:00Z"}}"#
        ))
    })
    .await;
    let expired = CredentialsEndpoint::start(|_| {
        Reply::Ok(credentials_expiring("ASIAOLD", "2001-01-01T00:00:00Z"))
    })
    .await;
    let forbidden = CredentialsEndpoint::start(|_| Reply::Status(403)).await;
    let silent = CredentialsEndpoint::start(|_| Reply::Silent).await;
    let nobody = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "http://127.0.0.1:{}/creds",
            listener.local_addr().unwrap().port()
        )
    };
    for (url, why) in [
        (oversized.url(), "more than 16384 bytes"),
        (
            not_json.url(),
            "malformed credentials response: expected value",
        ),
        (no_token.url(), "missing field `Token`"),
        (expired.url(), "expired at 2001-01-01T00:00:00Z"),
        (
            forbidden.url(),
            "HTTP 403: check AWS_CONTAINER_AUTHORIZATION_TOKEN",
        ),
        (silent.url(), "did not answer within 300ms"),
        (nobody, "cannot reach"),
    ] {
        let started = Instant::now();
        let provider = container(&[(FULL_URI, url.clone())], Duration::from_millis(300));
        let err = provider.credentials().await.unwrap_err().to_string();
        assert!(err.contains(why), "{url}: {err}");
        assert!(err.contains(FULL_URI), "{url}: {err}");
        assert!(!err.contains(SECRET_KEY), "{url}: {err}");
        assert!(started.elapsed() < Duration::from_secs(3), "{url}");
    }

    let mut config = DynamoConfig::new("postern-never", "us-east-1");
    config.endpoint = Some("http://127.0.0.1:9".into());
    config.credentials = Some(
        credentials_from_env(&env(&[(FULL_URI, not_json.url())]), Duration::from_secs(1)).unwrap(),
    );
    let err = DynamoStore::connect(config).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        err.to_string().contains("malformed credentials response"),
        "{err}"
    );
}
