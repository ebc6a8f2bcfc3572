//! What the engine does with hostile input from either side, and its own
//! login over SCRAM and verified TLS to a private server that accepts
//! nothing else.

mod support;

use bytes::{BufMut, BytesMut};
use postern_agent::pg;
use postern_l7_pg::messages::{ErrorResponse, StartupMessage, WireMessage};
use postern_l7_pg::{BackendDecoder, Limits};
use postern_testkit::postgres::{Database, PrivateOptions, PrivatePostgres};
use postern_tunnel::tls::DevCertificates;
use support::{Engine, config_with_login, settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads backend messages until one of type `until` (or the end); returns their types.
async fn read_until(socket: &mut TcpStream, until: u8) -> Vec<(u8, bytes::Bytes)> {
    let mut decoder = BackendDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    loop {
        while let Some(message) = decoder.decode(&mut buf).unwrap() {
            let kind = message.type_byte().unwrap_or(0);
            seen.push((kind, message.body()));
            if kind == until {
                return seen;
            }
        }
        if socket.read_buf(&mut buf).await.unwrap() == 0 {
            return seen;
        }
    }
}

fn error_code(body: &bytes::Bytes) -> String {
    ErrorResponse::parse(body.clone())
        .unwrap()
        .code()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_client_message_ends_only_its_session_with_08p01() {
    let db = Database::create("agent_pg_bad_client");
    let engine = Engine::for_database(&db, "").await;
    let other = engine.client(&db.name).await;

    let mut socket = TcpStream::connect(("127.0.0.1", engine.port))
        .await
        .unwrap();
    let startup = StartupMessage::new(vec![
        ("user".into(), "alice".into()),
        ("database".into(), db.name.clone()),
    ]);
    socket.write_all(&startup.encode()).await.unwrap();
    let hello = read_until(&mut socket, b'Z').await;
    assert_eq!(hello.first().map(|m| m.0), Some(b'R'));
    // A Query declaring 2 GiB: refused before anything is allocated for it.
    let mut hostile = BytesMut::new();
    hostile.put_u8(b'Q');
    hostile.put_u32(0x7fff_fff0);
    hostile.put_slice(b"select");
    socket.write_all(&hostile).await.unwrap();
    let answer = read_until(&mut socket, 0xff).await;
    let (kind, body) = answer.last().expect("an answer before the end");
    assert_eq!(*kind, b'E');
    assert_eq!(error_code(body), "08P01");
    assert!(
        ErrorResponse::parse(body.clone())
            .unwrap()
            .message()
            .unwrap()
            .contains("above the limit")
    );

    // The other session never noticed; the violation is in the audit trail.
    let row = other.query_one("select 41 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let audits = engine.audits(2).await;
    assert!(
        audits
            .iter()
            .any(|a| a.outcome == "protocol_error" && a.error_message.starts_with("the client")),
        "{audits:?}"
    );
}

/// A database stand-in that logs in anyone, then answers a query with a
/// row declaring a length no real server would send.
async fn hostile_database() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut length = [0u8; 4];
                socket.read_exact(&mut length).await.unwrap();
                let mut startup = vec![0u8; u32::from_be_bytes(length) as usize - 4];
                socket.read_exact(&mut startup).await.unwrap();
                let mut hello = BytesMut::new();
                hello.put_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
                hello.put_slice(&[b'K', 0, 0, 0, 12, 0, 0, 0, 1, 1, 2, 3, 4]);
                hello.put_slice(&[b'Z', 0, 0, 0, 5, b'I']);
                socket.write_all(&hello).await.unwrap();
                let mut query = [0u8; 64];
                let _ = socket.read(&mut query).await;
                socket
                    .write_all(&[b'D', 0x7f, 0xff, 0xff, 0xf0, 0, 1])
                    .await
                    .unwrap();
                let _ = socket.read(&mut query).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_server_message_ends_the_session_with_08p01() {
    let target = hostile_database().await;
    let engine = Engine::start(
        target,
        settings(""),
        config_with_login("app", None),
        "alice",
    )
    .await;
    let client = engine.client("any").await;
    let error = client.simple_query("select 1").await.unwrap_err();
    assert_eq!(
        error.as_db_error().map(|e| e.code().code()),
        Some("08P01"),
        "{error:?}"
    );
    let audits = engine.audits(2).await;
    assert!(
        audits
            .iter()
            .any(|a| a.outcome == "protocol_error" && a.error_message.starts_with("the database")),
        "{audits:?}"
    );
    // The statement that was running is reported too, as failed.
    assert!(
        audits
            .iter()
            .any(|a| a.statement == "select 1" && a.outcome == "error"),
        "{audits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_logs_in_with_scram_over_verified_tls() {
    let certs_dir = tempfile::tempdir().unwrap();
    let (certs, _) = DevCertificates::load_or_create(certs_dir.path()).unwrap();
    let server = PrivatePostgres::start(
        "agent-tls",
        PrivateOptions {
            hba: "local all all trust\n\
                  hostssl all all 127.0.0.1/32 scram-sha-256\n\
                  hostnossl all all 127.0.0.1/32 reject\n"
                .into(),
            files: vec![
                (
                    "server.crt".into(),
                    std::fs::read(certs.cert_path()).unwrap(),
                ),
                (
                    "server.key".into(),
                    std::fs::read(certs.key_path()).unwrap(),
                ),
            ],
            settings: vec![
                "ssl=on".into(),
                "ssl_cert_file=server.crt".into(),
                "ssl_key_file=server.key".into(),
            ],
            ..PrivateOptions::default()
        },
    );
    server.sql(
        "create role app login password 'correct horse'; set password_encryption = 'scram-sha-256'",
    );
    server.sql("alter role app password 'correct horse'");
    let mut tls = settings("");
    tls.tls = "verify-full".into();
    tls.database = "postgres".into();
    let mut config = config_with_login("app", Some("correct horse"));
    config.db_ca_pem = Some(std::fs::read(certs.ca_path()).unwrap());
    let engine = Engine::start(server.addr(), tls.clone(), config.clone(), "alice").await;
    let (ok, out, err) = engine
        .psql(
            "ignored",
            &[
                "-c",
                "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "app|t");
    let audits = engine.audits(1).await;
    assert!(
        audits
            .iter()
            .any(|a| a.statement.contains("pg_stat_ssl") && a.outcome == "ok" && a.rows == 1),
        "the statement through SCRAM and TLS is audited: {audits:?}"
    );
    // Pipelined queries over TLS: records the TLS layer buffers are flushed.
    let client = engine.client("ignored").await;
    let queries = (0..200).map(|i| {
        let client = &client;
        async move {
            client
                .query_one("select $1::int * 2", &[&i])
                .await
                .unwrap()
                .get::<_, i32>(0)
        }
    });
    let doubled = futures::future::join_all(queries).await;
    assert_eq!(doubled, (0..200).map(|i| i * 2).collect::<Vec<i32>>());
    // libpq's pipeline mode (psycopg's executemany) ends with Sync and Flush:
    // they must reach the database, not wait in the TLS layer.
    server.sql("create table t (v int); grant all on t to app");
    let script = "import sys, psycopg\n\
        conn = psycopg.connect(host='127.0.0.1', port=sys.argv[1], dbname='postgres', user='x', connect_timeout=5)\n\
        conn.cursor().executemany('insert into t values (%s)', [(i,) for i in range(100)])\n\
        print(conn.execute('select count(*) from t').fetchone()[0])";
    let python = postern_testkit::postgres::python_with_psycopg();
    let run = tokio::process::Command::new(&python)
        .args(["-c", script, &engine.port.to_string()])
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .expect("the pipeline completes")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "100",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A wrong password: the person sees the database's own refusal.
    let wrong = Engine::start(
        server.addr(),
        tls.clone(),
        {
            let mut c = config_with_login("app", Some("wrong horse"));
            c.db_ca_pem = config.db_ca_pem.clone();
            c
        },
        "alice",
    )
    .await;
    let (ok, _, err) = wrong.psql("postgres", &["-c", "select 1"]).await;
    assert!(
        !ok && err.contains("password authentication failed for user \"app\""),
        "{err}"
    );

    // A certificate from another CA is refused before any login.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = DevCertificates::load_or_create(other_dir.path()).unwrap();
    let mut untrusting = config.clone();
    untrusting.db_ca_pem = Some(std::fs::read(other.ca_path()).unwrap());
    let plan = pg::Plan::new(Some(&tls), &untrusting).unwrap();
    let refused = pg::connect(&server.addr(), &plan, &untrusting)
        .await
        .err()
        .expect("refused");
    assert!(refused.contains("certificate"), "{refused}");

    // Without TLS this server refuses the agent, and says so to the person.
    let mut plain = tls.clone();
    plain.tls = "disable".into();
    let no_tls = Engine::start(server.addr(), plain, config.clone(), "alice").await;
    let (ok, _, err) = no_tls.psql("postgres", &["-c", "select 1"]).await;
    assert!(!ok && err.contains("no encryption"), "{err}");
}
