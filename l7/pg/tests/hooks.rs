//! Guardrail and masking hooks in a relay to the real Postgres: a blocked
//! statement gets SQLSTATE 42501 and the session goes on; masked values
//! reach the client with correct lengths, also through the extended protocol
//! when the client does not describe its portal.

mod common;

use bytes::{Bytes, BytesMut};
use common::{Database, Relay, postgres};
use postern_l7_pg::messages::*;
use postern_l7_pg::session::{Hooks, Outcome, RowContext, Statement, Verdict};
use postern_l7_pg::{BackendDecoder, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A stand-in for the guardrail engine: refuses text that drops a table,
/// masks text columns named `email`.
struct Guard;

impl Hooks for Guard {
    fn check(&mut self, statement: &Statement<'_>) -> Verdict {
        let sql = match statement {
            Statement::Query { sql } | Statement::Parse { sql, .. } => sql.to_lowercase(),
            Statement::FunctionCall { .. } => return Verdict::Allow,
        };
        if sql.contains("drop table") {
            Verdict::Block {
                rule: "no-drop".into(),
                reason: "dropping tables is not allowed".into(),
            }
        } else {
            Verdict::Allow
        }
    }

    fn wants_rows(&self) -> bool {
        true
    }

    fn rewrite_row(&mut self, row: RowContext<'_>, values: &mut [Option<Bytes>]) -> bool {
        let Some(columns) = row.columns else {
            panic!("rows without columns: the session must describe portals itself");
        };
        let mut changed = false;
        for (field, value) in columns.fields.iter().zip(values) {
            if field.name == "email" && field.is_text() && value.is_some() {
                *value = Some(Bytes::from_static(b"<masked>"));
                changed = true;
            }
        }
        changed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_blocks_and_masks_and_carries_on() {
    let db = Database::create("hooks");
    let relay = Relay::start_with(postgres(), || Guard).await;
    let psql = |args: Vec<String>| {
        let port = relay.port.to_string();
        let db = db.name.clone();
        async move {
            tokio::process::Command::new("psql")
                .args([
                    "-X",
                    "-At",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-d",
                    &db,
                ])
                .args(args)
                .env("PGSSLMODE", "disable")
                .output()
                .await
                .expect("psql is installed")
        }
    };
    let setup = "create table users (id int, email text); \
                 insert into users values (1, 'alice@example.com'), (2, null)";
    let output = psql(vec!["-c".into(), setup.into()]).await;
    assert!(output.status.success());
    relay.records(1).await;
    relay.clear();

    // One psql session: a multi-statement string that hides a DROP is
    // refused whole, then the session goes on and reads masked rows.
    let output = psql(vec![
        "-c".into(),
        "select 1; DROP TABLE users".into(),
        "-c".into(),
        "select id, email, length(email) from users order by id".into(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("statement blocked by rule \"no-drop\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("dropping tables is not allowed"),
        "{stderr}"
    );
    // The table is still there; the masked value has its own length.
    assert_eq!(stdout, "1|<masked>|17\n2||\n", "{stderr}");
    let record = &relay.records(1).await[0];
    let outcomes: Vec<Outcome> = record.results().into_iter().map(|r| r.1).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Blocked {
                rule: "no-drop".into(),
                reason: "dropping tables is not allowed".into()
            },
            Outcome::Ok
        ]
    );
}

/// A minimal extended-protocol client on a raw socket.
struct Client {
    stream: TcpStream,
    decoder: BackendDecoder,
    buf: BytesMut,
}

impl Client {
    async fn connect(port: u16, db: &str) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut client = Client {
            stream,
            decoder: BackendDecoder::new(Limits::default()),
            buf: BytesMut::new(),
        };
        let startup = StartupMessage::new(vec![
            ("user".into(), "postgres".into()),
            ("database".into(), db.into()),
        ]);
        client.send(&[startup.encode()]).await;
        client.until_ready().await;
        client
    }

    async fn send(&mut self, messages: &[Bytes]) {
        self.stream.write_all(&messages.concat()).await.unwrap();
    }

    /// Message type bytes and bodies up to and including ReadyForQuery.
    async fn until_ready(&mut self) -> Vec<(u8, Bytes)> {
        let mut messages = Vec::new();
        loop {
            while let Some(message) = self.decoder.decode(&mut self.buf).unwrap() {
                let byte = message.type_byte().unwrap();
                messages.push((byte, message.body()));
                if byte == b'Z' {
                    return messages;
                }
            }
            let n = self.stream.read_buf(&mut self.buf).await.unwrap();
            assert!(n > 0, "connection closed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_blocks_and_masks_without_describe() {
    let db = Database::create("hooks_ext");
    let relay = Relay::start_with(postgres(), || Guard).await;
    let mut client = Client::connect(relay.port, &db.name).await;
    client
        .send(&[Query::new("create table users (id int, email text); insert into users values (1, 'bob@example.com')").encode()])
        .await;
    client.until_ready().await;

    // Prepared once, executed later without any Describe.
    let parse = Parse {
        name: "get".into(),
        sql: "select id, email from users where id = $1".into(),
        param_types: vec![],
    };
    client.send(&[parse.encode(), Sync.encode()]).await;
    let answers = client.until_ready().await;
    assert_eq!(answers.iter().map(|m| m.0).collect::<Vec<_>>(), b"1Z");
    let bind = Bind {
        statement: "get".into(),
        params: vec![Some(Bytes::from_static(b"1"))],
        ..Bind::default()
    };
    client
        .send(&[bind.encode(), Execute::default().encode(), Sync.encode()])
        .await;
    let answers = client.until_ready().await;
    let types: Vec<u8> = answers.iter().map(|m| m.0).collect();
    assert_eq!(
        types, b"2DCZ",
        "no RowDescription the client did not ask for"
    );
    let row = DataRow::parse(answers[1].1.clone()).unwrap();
    assert_eq!(
        row.values,
        [
            Some(Bytes::from_static(b"1")),
            Some(Bytes::from_static(b"<masked>"))
        ]
    );

    // A blocked Parse in a pipeline: the allowed work before it is answered,
    // then the block, then ReadyForQuery; the rest of the batch is dropped.
    let drop_table = Parse {
        name: String::new(),
        sql: "DROP TABLE users".into(),
        param_types: vec![],
    };
    client
        .send(&[
            bind.encode(),
            Execute::default().encode(),
            drop_table.encode(),
            Bind::default().encode(),
            Execute::default().encode(),
            Sync.encode(),
        ])
        .await;
    let answers = client.until_ready().await;
    let types: Vec<u8> = answers.iter().map(|m| m.0).collect();
    assert_eq!(types, b"2DCEZ");
    let error = ErrorResponse::parse(answers[3].1.clone()).unwrap();
    assert_eq!(error.code(), Some("42501"));

    // Still usable, and the table is still there.
    client
        .send(&[Query::new("select count(*) from users").encode()])
        .await;
    let answers = client.until_ready().await;
    let count = answers.iter().find(|m| m.0 == b'D').unwrap();
    assert_eq!(
        DataRow::parse(count.1.clone()).unwrap().values,
        [Some(Bytes::from_static(b"1"))]
    );
    client.send(&[Terminate.encode()]).await;
    drop(client);
    let record = &relay.records(1).await[0];
    assert_eq!(record.error, None);
}
