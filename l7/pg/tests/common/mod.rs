//! Test support: the real Postgres, and a TCP relay that runs every byte of
//! both directions through the decoders and the session machine.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use postern_l7_pg::messages::{ErrorResponse, WireMessage};
use postern_l7_pg::session::{
    Action, AuditOnly, Event, Hooks, Outcome, Phase, Protocol, Session, SessionOptions,
};
use postern_l7_pg::{
    BackendDecoder, BackendMessage, FrontendDecoder, FrontendMessage, Limits, Message, Tag,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Postgres the tests run against (see `postern_testkit::postgres::shared`).
pub fn postgres() -> (String, u16) {
    postern_testkit::postgres::shared()
}

/// Everything one relayed connection carried and produced.
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub from_client: Vec<u8>,
    pub to_server: Vec<u8>,
    pub from_server: Vec<u8>,
    pub to_client: Vec<u8>,
    pub events: Vec<Event>,
    pub phase: Option<Phase>,
    pub error: Option<String>,
}

impl Record {
    /// (SQL, protocol, statement name) of each statement started.
    pub fn statements(&self) -> Vec<(String, Protocol, Option<String>)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StatementStarted(s) => {
                    Some((s.sql.to_string(), s.protocol, s.statement_name.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// (SQL, outcome, rows) of each statement, joined by id.
    pub fn results(&self) -> Vec<(String, Outcome, u64)> {
        let mut sql = std::collections::HashMap::new();
        let mut results = Vec::new();
        for event in &self.events {
            match event {
                Event::StatementStarted(s) => {
                    sql.insert(s.id, s.sql.to_string());
                }
                Event::StatementFinished(f) => results.push((
                    sql.get(&f.id).cloned().unwrap_or_default(),
                    f.outcome.clone(),
                    f.rows,
                )),
                _ => {}
            }
        }
        results
    }

    /// Forwarding is byte-identical both ways, every message parses to a
    /// typed value that re-encodes to its raw bytes, and the session ended
    /// cleanly with every statement finished.
    pub fn assert_faithful(&self) {
        assert_eq!(self.error, None, "the session refused a message");
        assert!(
            self.from_client == self.to_server,
            "client → server bytes were changed ({} in, {} out)",
            self.from_client.len(),
            self.to_server.len()
        );
        assert!(
            self.from_server == self.to_client,
            "server → client bytes were changed ({} in, {} out)",
            self.from_server.len(),
            self.to_client.len()
        );
        let frontend = reencode_all(&self.from_client, true);
        let backend = reencode_all(&self.from_server, false);
        assert!(frontend > 0 && backend > 0);
        let started = self
            .events
            .iter()
            .filter(|e| matches!(e, Event::StatementStarted(_)))
            .count();
        assert_eq!(started, self.results().len(), "every statement finished");
        assert_eq!(self.phase, Some(Phase::Terminated));
    }
}

/// Decodes a whole stream with a fresh decoder, parses each message to its
/// typed form and checks that encoding it gives the raw bytes back. Returns
/// how many messages there were.
fn reencode_all(stream: &[u8], frontend: bool) -> usize {
    let mut buf = BytesMut::from(stream);
    let mut front = FrontendDecoder::new(Limits::default());
    let mut back = BackendDecoder::new(Limits::default());
    let mut count = 0;
    loop {
        let next: Option<Message> = if frontend {
            front.decode(&mut buf).expect("frontend stream decodes")
        } else {
            back.decode(&mut buf).expect("backend stream decodes")
        };
        let Some(message) = next else { break };
        let encoded = if frontend {
            FrontendMessage::parse(&message)
                .expect("frontend message parses")
                .encode()
        } else {
            BackendMessage::parse(&message)
                .expect("backend message parses")
                .encode()
        };
        assert_eq!(
            &encoded,
            message.raw(),
            "typed re-encoding of {} differs",
            message.tag()
        );
        assert_ne!(message.tag(), Tag::EncryptionResponse);
        count += 1;
    }
    assert!(buf.is_empty(), "the stream ends on a message boundary");
    count
}

/// A TCP relay on an ephemeral port in front of `target`.
pub struct Relay {
    pub port: u16,
    records: Arc<Mutex<Vec<Record>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: (String, u16)) -> Relay {
        Self::start_with(target, || AuditOnly).await
    }

    /// A relay whose sessions use hooks made by `hooks`.
    pub async fn start_with<H, F>(target: (String, u16), hooks: F) -> Relay
    where
        H: Hooks + Send + 'static,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let hooks = Arc::new(hooks);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let records = Arc::new(Mutex::new(Vec::new()));
        let kept = records.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                let kept = kept.clone();
                let session = Session::new(hooks(), SessionOptions::default());
                tokio::spawn(async move {
                    let record = relay(client, target, session).await;
                    kept.lock().unwrap().push(record);
                });
            }
        });
        Relay {
            port,
            records,
            task,
        }
    }

    /// The connections that have ended, waiting briefly for the last ones
    /// (a client exits as soon as it sent Terminate).
    pub async fn records(&self, expected: usize) -> Vec<Record> {
        for _ in 0..200 {
            if self.records.lock().unwrap().len() >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let records = self.records.lock().unwrap().clone();
        assert_eq!(records.len(), expected, "relayed connections");
        records
    }

    pub fn clear(&self) {
        self.records.lock().unwrap().clear();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay<H: Hooks>(
    client: TcpStream,
    target: (String, u16),
    mut session: Session<H>,
) -> Record {
    let server = TcpStream::connect((target.0.as_str(), target.1))
        .await
        .expect("connect to postgres");
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut record = Record::default();
    let (mut from_client, mut from_server) = (BytesMut::new(), BytesMut::new());
    let (mut client_open, mut server_open) = (true, true);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut chunk2 = vec![0u8; 64 * 1024];
    while client_open || server_open {
        let mut actions = Vec::new();
        let result = tokio::select! {
            read = client_read.read(&mut chunk), if client_open => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    client_open = false;
                    let _ = server_write.shutdown().await;
                    continue;
                }
                record.from_client.extend_from_slice(&chunk[..n]);
                from_client.extend_from_slice(&chunk[..n]);
                session.on_client_bytes(&mut from_client, &mut actions)
            }
            read = server_read.read(&mut chunk2), if server_open => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    server_open = false;
                    let _ = client_write.shutdown().await;
                    continue;
                }
                record.from_server.extend_from_slice(&chunk2[..n]);
                from_server.extend_from_slice(&chunk2[..n]);
                session.on_server_bytes(&mut from_server, &mut actions)
            }
        };
        for action in actions {
            match action {
                Action::ToServer(bytes) => {
                    record.to_server.extend_from_slice(&bytes);
                    let _ = server_write.write_all(&bytes).await;
                }
                Action::ToClient(bytes) => {
                    record.to_client.extend_from_slice(&bytes);
                    let _ = client_write.write_all(&bytes).await;
                }
                Action::Event(event) => record.events.push(event),
            }
        }
        if let Err(error) = result {
            // End the session as the agent will: a FATAL error to the client.
            let fatal = ErrorResponse::protocol_violation(&error).encode();
            let _ = client_write.write_all(&fatal).await;
            record.error = Some(error.to_string());
            break;
        }
    }
    record.phase = Some(session.phase());
    record
}

pub use postern_testkit::postgres::Database;

/// Runs a client tool against the relay without TLS (so the session sees the
/// protocol); returns its stdout, failing the test if it failed.
pub async fn run(tool: &str, port: u16, args: &[&str]) -> String {
    let output = tokio::process::Command::new(tool)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await
        .unwrap_or_else(|e| panic!("{tool} is installed (scripts/test installs it): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
