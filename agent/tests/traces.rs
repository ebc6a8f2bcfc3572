//! One session is one trace. The real programs run as separate processes —
//! the `postern` CLI, two `postern-gateway` replicas (the user's and the one
//! holding the agent's tunnel) and `postern-agent` — each exporting spans over
//! OTLP/gRPC to a collector stand-in in this test, and the spans of one
//! session must form one tree across all four: CLI → ingress replica →
//! holder replica → agent → holder (attach) → ingress (splice).
//!
//! The gateway and CLI binaries are the ones `cargo test --workspace` builds
//! beside this package's `postern-agent` (scripts/test runs that).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use postern_state::testing::RedisServer;
use postern_tunnel::Secret;
use postern_tunnel::auth::{TokenKind, generate_token};
use postern_tunnel::tls::DevCertificates;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const AGENT: &str = env!("CARGO_BIN_EXE_postern-agent");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_through_a_peer_link_is_one_trace() {
    session_is_one_trace("direct").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_through_the_redis_relay_is_one_trace() {
    session_is_one_trace("relay").await;
}

async fn session_is_one_trace(transport: &str) {
    let collector = Collector::start().await;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (certs, _) = DevCertificates::load_or_create(&dir.path().join("tls")).unwrap();
    let cluster = Cluster {
        dir: dir.path().to_owned(),
        certs,
        redis_url: redis.url(),
        peer_secret: generate_token(TokenKind::User),
        admin_token: generate_token(TokenKind::User),
        otlp: collector.endpoint(),
        transport: transport.to_owned(),
    };
    // The first replica migrates the shared SQLite file before the second starts.
    let ingress = cluster.start_replica("ingress").await;
    let holder = cluster.start_replica("holder").await;

    let echo = postern_testkit::echo_server().await;
    let cli = cluster.cli(&ingress);
    let added = cli.ok(&["agent", "add", "edge"]).await;
    let agent_token = added
        .split_whitespace()
        .find_map(|word| word.strip_prefix("POSTERN_AGENT_TOKEN="))
        .unwrap_or_else(|| panic!("no agent token in:\n{added}"))
        .to_owned();
    cli.ok(&[
        "connection",
        "add",
        "echo",
        "--target",
        &echo.to_string(),
        "--agent",
        "edge",
    ])
    .await;

    // The agent dials only the holder: the user's session must cross replicas.
    let mut agent = Command::new(AGENT)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("POSTERN_GATEWAY_URL", holder.url())
        .env("POSTERN_AGENT_TOKEN", &agent_token)
        .env("POSTERN_CA_CERT", cluster.certs.ca_path())
        .env("POSTERN_LOG_FORMAT", "text")
        .envs(cluster.otel_env())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("agent.log")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // `agent ls` says whether the agent holds a tunnel to the replica asked.
    let holder_cli = cluster.cli(&holder);
    let connected = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let agents = holder_cli.ok(&["agent", "ls"]).await;
            if agents
                .lines()
                .any(|line| line.starts_with("edge") && line.trim_end().ends_with("yes"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if connected.is_err() {
        panic!(
            "the agent did not connect; its log:\n{}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        );
    }

    let mut connect = cli
        .command(&["connect", "echo", "--port", "0"])
        .env("POSTERN_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("connect.log")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(connect.stdout.take().unwrap()).lines();
    let first = stdout.next_line().await.unwrap().unwrap_or_default();
    let local: SocketAddr = first
        .strip_prefix("listening on ")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("postern connect printed {first:?}"));
    let mut socket = tokio::net::TcpStream::connect(local).await.unwrap();
    socket.write_all(b"traced bytes").await.unwrap();
    let mut echoed = [0u8; 12];
    socket.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"traced bytes");
    drop(socket);

    let wanted = [
        ("postern", "session"),
        ("postern-gateway", "session"),
        ("postern-gateway", "session.pass_on"),
        ("postern-agent", "session"),
        ("postern-gateway", "session.attach"),
        ("postern-gateway", "session.splice"),
    ];
    // The CLI's span ends when the session closes; every program exports on
    // a 50 ms batch timer.
    let spans = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let notified = collector.notify.notified();
            let spans = collector.spans();
            if wanted
                .iter()
                .all(|(service, name)| spans.iter().any(|s| s.is(service, name)))
            {
                return spans;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "not every hop exported its span; got {:#?}\nlogs in {}",
            collector.spans(),
            dir.path().display()
        )
    });
    // Spans leave on the batch timer; whether `postern connect` flushes and
    // exits on SIGTERM is not asserted here: it was seen not to exit within
    // 10 s on either path (an open problem, written up in the issue).
    let _ = connect.kill().await;

    let one = |service: &str, name: &str, replica: Option<&str>| -> SpanRecord {
        let found: Vec<_> = spans
            .iter()
            .filter(|s| s.is(service, name))
            .filter(|s| {
                replica.is_none_or(|r| s.attributes.get("replica").map(String::as_str) == Some(r))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {service} {name} span ({replica:?}): {spans:#?}"
        );
        found[0].clone()
    };
    let cli_span = one("postern", "session", None);
    let ingress_span = one("postern-gateway", "session", Some(&ingress.id));
    let pass_on = one("postern-gateway", "session.pass_on", Some(&holder.id));
    let agent_span = one("postern-agent", "session", None);
    let attach = one("postern-gateway", "session.attach", Some(&holder.id));
    let splice = one("postern-gateway", "session.splice", Some(&ingress.id));

    let chain = [
        &cli_span,
        &ingress_span,
        &pass_on,
        &agent_span,
        &attach,
        &splice,
    ];
    for span in chain {
        assert_eq!(span.trace_id, cli_span.trace_id, "one trace: {span:#?}");
    }
    assert!(
        cli_span.parent.is_empty(),
        "the CLI's session span is the root"
    );
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1].parent, pair[0].span_id,
            "{} {} is a child of {} {}",
            pair[1].service, pair[1].name, pair[0].service, pair[0].name
        );
    }
    let session_id = &ingress_span.attributes["session_id"];
    for span in [&pass_on, &agent_span, &attach, &splice] {
        assert_eq!(&span.attributes["session_id"], session_id, "{span:#?}");
    }
    assert_eq!(cli_span.attributes["connection"], "echo");
    assert_eq!(ingress_span.attributes["connection"], "echo");
    assert_eq!(ingress_span.attributes["user"], "admin");
    assert_eq!(ingress_span.instance.as_deref(), Some(ingress.id.as_str()));
    assert_eq!(pass_on.instance.as_deref(), Some(holder.id.as_str()));
    // Server spans on every hop the session crossed, a client span where it began.
    assert_eq!(cli_span.kind, 3, "client");
    for span in [&ingress_span, &pass_on, &agent_span, &attach, &splice] {
        assert_eq!(span.kind, 2, "server: {span:#?}");
    }
    let _ = agent.kill().await;
}

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct SpanRecord {
    service: String,
    instance: Option<String>,
    name: String,
    kind: i32,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    attributes: HashMap<String, String>,
}

impl SpanRecord {
    fn is(&self, service: &str, name: &str) -> bool {
        self.service == service && self.name == name
    }
}

/// Receives OTLP/gRPC trace exports and keeps every span.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
    notify: Arc<tokio::sync::Notify>,
    addr: Option<SocketAddr>,
}

impl Collector {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let collector = Collector {
            addr: Some(listener.local_addr().unwrap()),
            ..Default::default()
        };
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        collector
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    fn spans(&self) -> Vec<SpanRecord> {
        self.spans.lock().unwrap().clone()
    }
}

fn strings(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            any_value::Value::IntValue(i) => Some((kv.key.clone(), i.to_string())),
            _ => None,
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| strings(&r.attributes))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(SpanRecord {
                    service: resource.get("service.name").cloned().unwrap_or_default(),
                    instance: resource.get("service.instance.id").cloned(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent: span.parent_span_id,
                    attributes: strings(&span.attributes),
                });
            }
        }
        self.spans.lock().unwrap().extend(received);
        self.notify.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Two replicas sharing a SQLite file and a Redis, TLS on every hop.
struct Cluster {
    dir: PathBuf,
    certs: DevCertificates,
    redis_url: String,
    peer_secret: Secret,
    admin_token: Secret,
    otlp: String,
    transport: String,
}

struct Replica {
    _child: Child,
    id: String,
    public_addr: SocketAddr,
}

impl Replica {
    /// `localhost`: the name on the dev certificate.
    fn url(&self) -> String {
        format!("https://localhost:{}", self.public_addr.port())
    }
}

fn sibling(name: &str) -> PathBuf {
    let path = Path::new(AGENT).parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built: run the workspace's tests (scripts/test), or `cargo build -p postern-gateway -p postern` first",
        path.display()
    );
    path
}

impl Cluster {
    /// Exports quickly, so the test waits on spans, not on a 5 s batch timer.
    fn otel_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.otlp.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
        ]
    }

    async fn start_replica(&self, name: &str) -> Replica {
        let relay = self.transport == "relay";
        let mut child = Command::new(sibling("postern-gateway"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("POSTERN_LOG_FORMAT", "text")
            .env("POSTERN_REPLICA_ID", format!("replica-{name}"))
            .env("POSTERN_LISTEN_ADDR", "127.0.0.1:0")
            .env("POSTERN_INTERNAL_ADDR", "127.0.0.1:0")
            .envs((!relay).then_some(("POSTERN_PEER_ADDR", "127.0.0.1:0")))
            .envs(relay.then_some(("POSTERN_PEER_TRANSPORT", "relay")))
            .env("POSTERN_TLS_CERT", self.certs.cert_path())
            .env("POSTERN_TLS_KEY", self.certs.key_path())
            .env("POSTERN_SQLITE_PATH", self.dir.join("postern.db"))
            .env("POSTERN_REDIS_URL", &self.redis_url)
            .env("POSTERN_PEER_SECRET", self.peer_secret.expose())
            .env("POSTERN_BOOTSTRAP_ADMIN_TOKEN", self.admin_token.expose())
            .envs(self.otel_env())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join(format!("gateway-{name}.log"))).unwrap(),
            ))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && value["event"] == "ready"
                {
                    return value;
                }
            }
            panic!("replica {name} exited; see {}", self.dir.display());
        })
        .await
        .unwrap_or_else(|_| panic!("replica {name} did not get ready within 30 s"));
        // Keep draining stdout so the gateway never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Replica {
            _child: child,
            id: ready["replica"].as_str().unwrap().to_owned(),
            public_addr: ready["public_addr"].as_str().unwrap().parse().unwrap(),
        }
    }

    fn cli(&self, replica: &Replica) -> Cli {
        Cli {
            env: vec![
                (
                    "POSTERN_CONFIG",
                    self.dir.join("cli.json").display().to_string(),
                ),
                ("POSTERN_GATEWAY_URL", replica.url()),
                ("POSTERN_TOKEN", self.admin_token.expose().to_owned()),
                (
                    "POSTERN_CA_CERT",
                    self.certs.ca_path().display().to_string(),
                ),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", self.otlp.clone()),
                ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
            ],
        }
    }
}

/// The `postern` CLI, logged in as the bootstrap admin on one replica.
struct Cli {
    env: Vec<(&'static str, String)>,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(sibling("postern"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    async fn ok(&self, args: &[&str]) -> String {
        let output = self.command(args).output().await.unwrap();
        assert!(
            output.status.success(),
            "postern {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}
