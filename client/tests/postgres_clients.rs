//! Real Postgres clients (psql, pgbench) through the real `postern connect`
//! binary to the real local Postgres.

mod common;

use common::{AGENT, Cluster, postern_connect, postgres};
use tokio::process::Command;

struct Psql {
    host: String,
    port: u16,
    db: String,
}

impl Psql {
    async fn run(&self, args: &[&str]) -> String {
        let output = Command::new("psql")
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                &self.host,
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                &self.db,
            ])
            .args(args)
            .output()
            .await
            .expect("psql is installed (the test command installs the PostgreSQL client)");
        assert!(
            output.status.success(),
            "psql {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    async fn pgbench(&self, args: &[&str]) -> String {
        let output = Command::new("pgbench")
            .args([
                "-h",
                &self.host,
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .arg(&self.db)
            .output()
            .await
            .expect("pgbench is installed");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "pgbench {args:?} failed: {text}");
        text
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_and_pgbench_through_postern_connect() {
    let (host, port) = postgres();
    let db = format!("postern_e2e_{}", std::process::id());
    let admin = Psql {
        host: host.clone(),
        port,
        db: "postgres".into(),
    };
    admin
        .run(&["-c", &format!("DROP DATABASE IF EXISTS {db}")])
        .await;
    admin.run(&["-c", &format!("CREATE DATABASE {db}")]).await;
    let direct = Psql {
        host: host.clone(),
        port,
        db: db.clone(),
    };

    let cluster = Cluster::start().await;
    cluster
        .add_connection("pg", &format!("{host}:{port}"), AGENT)
        .await;
    let connect = postern_connect(&cluster, "pg").await;
    let local_port = connect.port;
    let proxied = Psql {
        host: "127.0.0.1".into(),
        port: local_port,
        db: db.clone(),
    };

    // -c: the same answer as a direct connection.
    let query = "SELECT 6 * 7, current_database(), current_user, version()";
    assert_eq!(
        proxied.run(&["-c", query]).await,
        direct.run(&["-c", query]).await
    );

    // A script.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE TABLE people (id int PRIMARY KEY, name text);\n\
         INSERT INTO people SELECT g, 'person ' || g FROM generate_series(1, 5000) g;\n\
         UPDATE people SET name = upper(name) WHERE id % 2 = 0;\n\
         SELECT count(*), sum(id), max(name) FROM people;\n",
    )
    .unwrap();
    let scripted = proxied.run(&["-f", script.to_str().unwrap()]).await;
    assert!(
        scripted.ends_with("5000|12502500|person 999\n"),
        "{scripted}"
    );

    // \copy both ways, compared with the direct path.
    let csv_in = dir.path().join("in.csv");
    let rows: String = (1..=20_000)
        .map(|i| format!("{i},\"row, {i}\"\n"))
        .collect();
    std::fs::write(&csv_in, &rows).unwrap();
    proxied
        .run(&["-c", "CREATE TABLE copied (id int, label text)"])
        .await;
    proxied
        .run(&[
            "-c",
            &format!("\\copy copied FROM '{}' CSV", csv_in.display()),
        ])
        .await;
    assert_eq!(
        direct
            .run(&["-c", "SELECT count(*), sum(id) FROM copied"])
            .await,
        "20000|200010000\n"
    );
    let csv_out = dir.path().join("out.csv");
    proxied
        .run(&[
            "-c",
            &format!(
                "\\copy (SELECT * FROM copied ORDER BY id) TO '{}' CSV",
                csv_out.display()
            ),
        ])
        .await;
    assert_eq!(std::fs::read_to_string(&csv_out).unwrap(), rows);

    // pgbench: initialise, then the select-only script in each query mode.
    proxied.pgbench(&["-i", "-s", "1", "-q"]).await;
    for mode in ["simple", "extended", "prepared"] {
        let report = proxied
            .pgbench(&["-S", "-M", mode, "-c", "8", "-j", "2", "-t", "200"])
            .await;
        assert!(
            report.contains("number of transactions actually processed: 1600/1600"),
            "{mode}: {report}"
        );
        assert!(
            report.contains("number of failed transactions: 0"),
            "{mode}: {report}"
        );
    }
    // And the write-heavy default script.
    let report = proxied.pgbench(&["-c", "4", "-t", "100"]).await;
    assert!(
        report.contains("number of transactions actually processed: 400/400"),
        "{report}"
    );

    // Every session ended cleanly: PostgreSQL resetting the connection after
    // the client's Terminate is an ordinary end, not an error.
    let sessions = common::wait_for(|| async {
        let sessions = cluster.sessions().await;
        sessions
            .iter()
            .all(|s| s.outcome.is_some())
            .then_some(sessions)
    })
    .await;
    assert!(sessions.len() > 30, "{} sessions recorded", sessions.len());
    for session in &sessions {
        assert_eq!(session.outcome.as_deref(), Some("ok"), "{session:?}");
        assert_eq!(
            (session.user.as_str(), session.connection.as_str()),
            ("alice", "pg")
        );
    }

    drop(connect);
    admin
        .run(&["-c", &format!("DROP DATABASE {db} WITH (FORCE)")])
        .await;
}
