//! Postgres at Layer 7, end to end: real clients (psql, pgbench, psycopg,
//! tokio-postgres) → the real `postern connect` → gateway → agent, which logs
//! in to the real Postgres itself, guards, masks and audits every statement
//! under the person's identity.

mod common;

use std::time::Duration;

use common::{AGENT, Cluster, ConnectProcess, postern_connect, postgres};
use postern_state::{AuditQuery, AuditSink, Connection, ConnectionKind, PolicyStore, now_ms};
use postern_testkit::postgres::Database;
use tokio::process::Command;

const POLICY: &str =
    r#"{"masking": {"columns": [{"column": "users.email"}], "detectors": ["card_number"]}}"#;

/// A cluster whose agent has the login `env:ORDERS` (postgres), and a
/// connection `pg` of kind postgres to `db` with masking.
async fn cluster_for(db: &Database) -> Cluster {
    let cluster = Cluster::start().await;
    let (host, port) = postgres();
    cluster
        .store
        .create_connection(&Connection {
            kind: ConnectionKind::Postgres,
            database: Some(db.name.clone()),
            credential: Some("env:ORDERS".into()),
            tls: Some("prefer".into()),
            policy: Some(serde_json::from_str(POLICY).unwrap()),
            ..Connection::tcp("pg", &format!("{host}:{port}"), AGENT, now_ms())
        })
        .await
        .unwrap();
    // The same database with the default policy (guardrails, no masking).
    cluster
        .add_postgres_connection("pg-plain", &format!("{host}:{port}"), AGENT, Some(&db.name))
        .await;
    cluster
}

/// A client tool through `postern connect`, as user `someone` (the agent logs
/// in as itself): returns (success, stdout, stderr).
async fn tool(connect: &ConnectProcess, program: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(program)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &connect.port.to_string(),
            "-U",
            "someone",
        ])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} is installed (scripts/test installs it): {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn psql(connect: &ConnectProcess, db: &str, args: &[&str]) -> String {
    let mut all = vec!["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", db];
    all.extend_from_slice(args);
    let (ok, out, err) = tool(connect, "psql", &all).await;
    assert!(ok, "psql {args:?}: {err}");
    out
}

/// tokio-postgres through `postern connect`, as user `someone`.
async fn tokio_client(connect: &ConnectProcess, db: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=someone dbname={db}",
            connect.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    client
}

const PSYCOPG_SCRIPT: &str = r#"
import json, sys
import psycopg
host, port, db = sys.argv[1], sys.argv[2], sys.argv[3]
with psycopg.connect(host=host, port=port, dbname=db, user="someone", connect_timeout=10) as conn:
    out = {}
    out["one"] = conn.execute("select %s::int + 1", (41,)).fetchone()[0]
    cur = conn.cursor()
    cur.executemany("insert into notes (id, body) values (%s, %s)", [(i, f"note {i}") for i in range(100)])
    out["prepared"] = [conn.execute("select body from notes where id = %s", (i,), prepare=True).fetchone()[0] for i in (1, 2, 3)]
    with cur.copy("copy notes (id, body) from stdin") as copy:
        for i in range(100, 150):
            copy.write_row((i, f"copied {i}"))
    out["count"] = conn.execute("select count(*) from notes").fetchone()[0]
    out["users"] = conn.execute("select id, email, card from users order by id").fetchall()
    try:
        conn.execute("drop table notes")
    except psycopg.Error as e:
        out["blocked"] = e.sqlstate
        conn.rollback()
    out["after"] = conn.execute("select 'still usable'").fetchone()[0]
    print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_clients_work_through_layer_7_with_masking_and_audit() {
    let db = Database::create("l7_clients");
    db.sql(
        "create table users (id int primary key, email text, card text);\
         insert into users values (1, 'ann@example.com', '4111111111111111'), (2, 'bob@example.com', 'none');\
         create table notes (id int primary key, body text)",
    );
    let cluster = cluster_for(&db).await;
    let mut connect = postern_connect(&cluster, "pg").await;
    let hint = connect.lines.recv().await.unwrap();
    assert!(
        hint.contains("psql") && hint.contains("no password"),
        "{hint}"
    );

    // psql: the same answers as a direct connection, except masked values.
    let query = "select 6 * 7, current_database(), current_user";
    assert_eq!(
        psql(&connect, &db.name, &["-c", query]).await,
        db.sql(query)
    );
    assert_eq!(
        psql(
            &connect,
            &db.name,
            &["-c", "select id, email, card from users order by id"]
        )
        .await,
        "1|****|************1111\n2|****|none\n"
    );
    assert_eq!(
        db.sql("select email from users where id = 1"),
        "ann@example.com\n"
    );

    // A script and \copy both ways.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "insert into notes select g, 'bulk ' || g from generate_series(1000, 5999) g;\n\
         update notes set body = upper(body) where id % 2 = 0;\n\
         select count(*), sum(id) from notes;\n",
    )
    .unwrap();
    let out = psql(&connect, &db.name, &["-f", script.to_str().unwrap()]).await;
    assert!(out.ends_with("5000|17497500\n"), "{out}");
    let csv = dir.path().join("notes.csv");
    let csv_path = csv.display().to_string();
    // COPY TO would carry rows past masking: refused where masking is on,
    // and \copy works both ways on the same database without masking.
    let copy_out = format!("\\copy (select * from notes order by id) to '{csv_path}' csv");
    let (ok, _, err) = tool(&connect, "psql", &["-X", "-d", &db.name, "-c", &copy_out]).await;
    assert!(!ok && err.contains("masking_copy"), "{err}");
    let plain = postern_connect(&cluster, "pg-plain").await;
    psql(&plain, &db.name, &["-c", &copy_out]).await;
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 5000);
    psql(
        &connect,
        &db.name,
        &["-c", "delete from notes where id >= 1000"],
    )
    .await;
    psql(
        &plain,
        &db.name,
        &["-c", &format!("\\copy notes from '{csv_path}' csv")],
    )
    .await;
    assert_eq!(
        db.sql("select count(*), sum(id) from notes"),
        "5000|17497500\n"
    );
    db.sql("delete from notes");

    // pgbench: initialised directly (its -i drops tables, which the default
    // guardrails refuse), then every query mode and the read-write script.
    let (host, port) = postgres();
    let init = std::process::Command::new("pgbench")
        .args([
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            &host,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            &db.name,
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for mode in ["simple", "extended", "prepared"] {
        let (ok, out, err) = tool(
            &connect,
            "pgbench",
            &[
                "-S", "-M", mode, "-c", "4", "-j", "2", "-t", "100", &db.name,
            ],
        )
        .await;
        assert!(
            ok && out.contains("processed: 400/400") && out.contains("failed transactions: 0"),
            "{mode}: {out}{err}"
        );
    }
    let (ok, out, err) = tool(
        &connect,
        "pgbench",
        &["-c", "2", "-t", "50", "-n", &db.name],
    )
    .await;
    assert!(ok && out.contains("processed: 100/100"), "{out}{err}");

    // psycopg (libpq from PyPI): parameters, server-side prepared statements,
    // executemany, COPY FROM STDIN, masked rows, a block that leaves the session usable.
    let output = Command::new(postern_testkit::postgres::python_with_psycopg())
        .args([
            "-c",
            PSYCOPG_SCRIPT,
            "127.0.0.1",
            &connect.port.to_string(),
            &db.name,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "psycopg: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(got["one"], 42);
    assert_eq!(
        got["prepared"],
        serde_json::json!(["note 1", "note 2", "note 3"])
    );
    assert_eq!(got["count"], 150);
    assert_eq!(
        got["users"],
        serde_json::json!([[1, "****", "************1111"], [2, "****", "none"]])
    );
    assert_eq!(got["blocked"], "42501");
    assert_eq!(got["after"], "still usable");

    // tokio-postgres: binary results, masked as text would be.
    let client = tokio_client(&connect, &db.name).await;
    let row = client
        .query_one(
            "select id, max(email) from users where id > $1 group by id order by id limit 1",
            &[&0i32],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, &str>(1)), (1, "****"));

    // Every statement is in the audit trail under the person who ran it.
    let events = cluster
        .store
        .events(&AuditQuery {
            actor: Some("alice".into()),
            target: Some("pg".into()),
            action_prefix: Some("sql.".into()),
            limit: 10_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let detail = |e: &postern_state::AuditEvent| -> serde_json::Value {
        serde_json::from_str(&e.detail).unwrap()
    };
    assert!(
        events
            .iter()
            .any(|e| detail(e)["statement"] == query && e.outcome == "ok"),
        "{events:?}"
    );
    let masked = events
        .iter()
        .find(|e| detail(e)["statement"] == "select id, email, card from users order by id")
        .expect("the masked select is audited");
    assert_eq!(
        detail(masked)["masked_columns"],
        serde_json::json!(["card", "email"])
    );
    assert_eq!(detail(masked)["rows"], 2);
    let blocked = events
        .iter()
        .find(|e| e.outcome == "blocked")
        .expect("the DROP is audited");
    assert_eq!(detail(blocked)["statement"], "drop table notes");
    assert_eq!(detail(blocked)["rule"], "deny_kind:drop");
    assert!(events.iter().all(|e| e.session_id.is_some()));
    assert!(
        events.len() > 1000,
        "pgbench's statements are audited too: {}",
        events.len()
    );
    drop(connect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_bad_input_and_refusals_through_the_tunnel() {
    let db = Database::create("l7_cancel");
    let cluster = cluster_for(&db).await;
    let connect = postern_connect(&cluster, "pg").await;

    // Ctrl-C's CancelRequest takes its own session through the tunnel.
    let client = tokio_client(&connect, &db.name).await;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let result = client.simple_query("select pg_sleep(60)").await;
        (client, result)
    });
    postern_testkit::wait_for(|| {
        let active = db.sql("select count(*) from pg_stat_activity where query = 'select pg_sleep(60)' and state = 'active'");
        async move { (active.trim() == "1").then_some(()) }
    })
    .await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (client, result) = tokio::time::timeout(Duration::from_secs(20), sleeper)
        .await
        .unwrap()
        .unwrap();
    let error = result.unwrap_err();
    assert_eq!(
        error.as_db_error().map(|e| e.code().code()),
        Some("57014"),
        "{error:?}"
    );
    assert_eq!(
        client
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    // An oversized message ends only its own session, in the protocol's format.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", connect.port))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let startup = postern_l7_pg::messages::StartupMessage::new(vec![("user".into(), "x".into())]);
    use postern_l7_pg::messages::WireMessage;
    raw.write_all(&startup.encode()).await.unwrap();
    raw.write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xf0, b's'])
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("08P01") && text.contains("above the limit"),
        "{text}"
    );
    assert_eq!(
        client
            .query_one("select 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    let metrics = cluster.metrics().await;
    assert!(
        metrics.contains(r#"postern_statements_total{outcome="protocol_error"} 1"#),
        "{metrics}"
    );

    // A refused open reaches psql as a Postgres error it prints.
    let ghost = cluster.add_agent("ghost").await;
    drop(ghost);
    cluster
        .store
        .create_connection(&Connection {
            kind: ConnectionKind::Postgres,
            credential: Some("env:ORDERS".into()),
            ..Connection::tcp("offline", "127.0.0.1:1", "ghost", now_ms())
        })
        .await
        .unwrap();
    let offline = postern_connect(&cluster, "offline").await;
    let (ok, _, err) = tool(&offline, "psql", &["-X", "-d", "x", "-c", "select 1"]).await;
    assert!(
        !ok && err.contains("FATAL:  postern: ") && err.contains("ghost"),
        "{err}"
    );
}
