//! What a platform deployment needs from the gateway binary: a SIGTERM that
//! arrives as soon as `/readyz` answers still drains; the certificate and key
//! can come from environment variables; a `rediss://` Redis may use a private CA;
//! on ECS, a task that ECS is stopping drains before SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use postern_state::testing::{RedisServer, RedisTls, free_port};
use postern_tunnel::tls::DevCertificates;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The gateway binary with only the given variables (plus PATH), JSON logs on
/// stderr into `log`, stdout piped for its ready line.
fn gateway(dir: &Path, log: &Path, vars: &[(&str, String)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postern-gateway"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("POSTERN_LISTEN_ADDR", "127.0.0.1:0")
        .env("POSTERN_INTERNAL_ADDR", "127.0.0.1:0")
        .env("POSTERN_SQLITE_PATH", dir.join("postern.db"));
    for (name, value) in vars {
        command.env(name, value);
    }
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .expect("postern-gateway starts")
}

/// The ready line's JSON, or the exit status if the gateway exits first.
async fn ready_line(child: &mut Child) -> Result<serde_json::Value, std::process::ExitStatus> {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value["event"] == "ready"
            {
                return Ok(value);
            }
        }
        Err(child.wait().await.unwrap())
    })
    .await
    .expect("the gateway is ready or exits within 30 s")
}

const PEER_SECRET: &str = "test-peer-secret-0123456789abcdef0123";

/// The status line of GET /readyz, or `None` while nothing listens.
async fn readyz(addr: SocketAddr) -> Option<String> {
    let mut socket = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /readyz HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    socket.read_to_string(&mut response).await.ok()?;
    response.lines().next().map(str::to_owned)
}

/// Before the fix the handlers were installed only after the ready line, so
/// a SIGTERM in between killed the process (status: signal 15, no drain).
/// With Redis and the relay transport that window is widest: /readyz answers
/// while the replica still subscribes its inbox and announces itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_readyz_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    for round in 0..5 {
        let log = dir.path().join(format!("gateway-{round}.log"));
        // The internal port is chosen here, so /readyz can be polled before
        // the gateway prints its ready line.
        let internal = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut child = gateway(
            dir.path(),
            &log,
            &[
                ("POSTERN_TLS_DISABLED", "true".into()),
                ("POSTERN_INTERNAL_ADDR", internal.to_string()),
                ("POSTERN_DRAIN_GRACE_MS", "0".into()),
                ("POSTERN_REDIS_URL", redis.url()),
                ("POSTERN_PEER_SECRET", PEER_SECRET.into()),
                ("POSTERN_PEER_TRANSPORT", "relay".into()),
            ],
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match readyz(internal).await {
                Some(status) if status.contains(" 200 ") => break,
                _ => {
                    // Polling for the listener: there is no earlier event to wait on.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!(
                            "round {round}: exited before ready ({status}): {}",
                            std::fs::read_to_string(&log).unwrap()
                        );
                    }
                    assert!(tokio::time::Instant::now() < deadline, "not ready in 30 s");
                }
            }
        }
        postern_testkit::sigterm(&child);
        drained(&mut child, &log, &format!("round {round}")).await;
    }
}

/// Waits for the gateway to exit 0 within 20 s, having logged its drain;
/// returns its log.
async fn drained(child: &mut Child, log: &Path, what: &str) -> String {
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what}: did not exit within 20 s"))
        .unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert_eq!(status.code(), Some(0), "{what}: {status}: {log}");
    assert!(
        log.lines().any(|line| line.contains("\"draining\"")),
        "{what}: no drain line in {log}"
    );
    log
}

/// A TLS client config trusting only `ca_pem`, speaking HTTP/1.1.
fn https_client(ca_pem: &[u8]) -> tokio_rustls::TlsConnector {
    let mut config = postern_tunnel::tls::client_config(Some(ca_pem)).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_and_key_from_pem_variables() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, _) = DevCertificates::load_or_create(&dir.path().join("tls")).unwrap();
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap();
    let log = dir.path().join("gateway.log");
    let mut child = gateway(
        dir.path(),
        &log,
        &[
            ("POSTERN_TLS_CERT_PEM", read(certs.cert_path())),
            ("POSTERN_TLS_KEY_PEM", read(certs.key_path())),
        ],
    );
    let ready = ready_line(&mut child)
        .await
        .unwrap_or_else(|status| panic!("{status}: {}", std::fs::read_to_string(&log).unwrap()));
    let public: SocketAddr = ready["public_addr"].as_str().unwrap().parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(public).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = https_client(std::fs::read(certs.ca_path()).unwrap().as_slice())
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the certificate from POSTERN_TLS_CERT_PEM");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // The key never reaches the log, not even in the logged configuration.
    let key_line = read(certs.key_path()).lines().nth(1).unwrap().to_owned();
    postern_testkit::sigterm(&child);
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains(&key_line), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, _) = DevCertificates::load_or_create(&dir.path().join("tls")).unwrap();
    let redis = RedisServer::start_tls(RedisTls {
        cert: certs.cert_path(),
        key: certs.key_path(),
        ca: certs.ca_path(),
    });
    let url = format!("rediss://localhost:{}", redis.tls_port().unwrap());
    let base = [
        ("POSTERN_TLS_DISABLED", "true".to_owned()),
        ("POSTERN_REDIS_URL", url),
        ("POSTERN_PEER_SECRET", PEER_SECRET.to_owned()),
        // No peer listener to configure: replicas would relay through this Redis.
        ("POSTERN_PEER_TRANSPORT", "relay".to_owned()),
    ];

    // With the CA: ready, and the replica announced itself in that Redis.
    let log = dir.path().join("with-ca.log");
    let mut vars = base.to_vec();
    vars.push((
        "POSTERN_REDIS_CA_CERT",
        certs.ca_path().display().to_string(),
    ));
    let mut child = gateway(dir.path(), &log, &vars);
    let ready = ready_line(&mut child)
        .await
        .unwrap_or_else(|status| panic!("{status}: {}", std::fs::read_to_string(&log).unwrap()));
    let replica = ready["replica"].as_str().unwrap();
    let replicas: Vec<String> = redis
        .command(&["SMEMBERS", "postern:{replicas}:ids"])
        .unwrap();
    assert!(replicas.iter().any(|r| r == replica), "{replicas:?}");
    postern_testkit::sigterm(&child);
    assert_eq!(child.wait().await.unwrap().code(), Some(0));

    // Without it the server's certificate is not trusted: a clear start-up error.
    let log = dir.path().join("without-ca.log");
    let mut child = gateway(dir.path(), &log, &base);
    let status = ready_line(&mut child)
        .await
        .expect_err("no ready line without the CA");
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(&log).unwrap();
    for part in ["POSTERN_REDIS_URL", "system's trust store", "UnknownIssuer"] {
        assert!(log.contains(part), "{part:?} not in {log}");
    }
}

/// A stand-in for ECS's task metadata endpoint (no real one runs outside
/// ECS): `GET /v4/test-task/task` answers the current desired status, or 500
/// while it is "error"; every request is counted.
struct TaskMetadata {
    addr: SocketAddr,
    desired: tokio::sync::watch::Sender<&'static str>,
    requests: tokio::sync::watch::Receiver<usize>,
}

async fn task_metadata() -> TaskMetadata {
    use axum::extract::State;
    use axum::http::StatusCode;
    type Shared = (
        tokio::sync::watch::Receiver<&'static str>,
        Arc<tokio::sync::watch::Sender<usize>>,
    );
    async fn task(State((desired, requests)): State<Shared>) -> (StatusCode, String) {
        requests.send_modify(|n| *n += 1);
        match *desired.borrow() {
            "error" => (StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
            status => (
                StatusCode::OK,
                serde_json::json!({
                    "Cluster": "postern",
                    "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/postern/test-task",
                    "DesiredStatus": status,
                    "KnownStatus": "RUNNING",
                    "Containers": [],
                })
                .to_string(),
            ),
        }
    }
    let (desired, desired_rx) = tokio::sync::watch::channel("error");
    let (requests_tx, requests) = tokio::sync::watch::channel(0usize);
    let app = axum::Router::new()
        .route("/v4/test-task/task", axum::routing::get(task))
        .with_state((desired_rx, Arc::new(requests_tx)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    TaskMetadata {
        addr,
        desired,
        requests,
    }
}

impl TaskMetadata {
    /// Waits until the gateway has read the endpoint `more` more times.
    async fn read_more(&mut self, more: usize, log: &Path) {
        let target = *self.requests.borrow() + more;
        let polled = tokio::time::timeout(
            Duration::from_secs(10),
            self.requests.wait_for(|n| *n >= target),
        )
        .await;
        assert!(
            polled.is_ok(),
            "the gateway did not poll the task metadata endpoint: {}",
            std::fs::read_to_string(log).unwrap()
        );
    }
}

/// On ECS the load balancer closes a task's connections before SIGTERM
/// comes, so the gateway drains as soon as the task metadata says ECS wants
/// the task stopped. An endpoint that fails, or says RUNNING, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_desired_status_stopped_drains_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let mut metadata = task_metadata().await;
    let log = dir.path().join("gateway.log");
    let mut child = gateway(
        dir.path(),
        &log,
        &[
            ("POSTERN_TLS_DISABLED", "true".into()),
            ("POSTERN_DRAIN_GRACE_MS", "0".into()),
            (
                "ECS_CONTAINER_METADATA_URI_V4",
                format!("http://{}/v4/test-task", metadata.addr),
            ),
        ],
    );
    let ready = ready_line(&mut child).await.expect("ready");
    let internal: SocketAddr = ready["internal_addr"].as_str().unwrap().parse().unwrap();

    metadata.read_more(2, &log).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "a failing endpoint must not stop it"
    );
    metadata.desired.send_replace("RUNNING");
    metadata.read_more(2, &log).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "RUNNING must not stop it"
    );
    let status = readyz(internal).await.expect("the internal port answers");
    assert!(status.contains(" 200 "), "{status}");

    metadata.desired.send_replace("STOPPED");
    let log = drained(&mut child, &log, "STOPPED, without a signal").await;
    for expected in [
        "cannot read the ECS task metadata",
        "ECS is stopping this task",
    ] {
        assert!(log.contains(expected), "no {expected:?} in {log}");
    }
}
