//! psql and pgbench against the real Postgres through a relay that runs every
//! byte through the decoders and the session machine: forwarding is
//! byte-identical, and the statements and rows seen are the ones sent.

mod common;

use common::{Database, Relay, postgres, run};
use postern_l7_pg::session::{Outcome, Protocol};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_command_and_script() {
    let db = Database::create("psql");
    let relay = Relay::start(postgres()).await;

    let out = run(
        "psql",
        relay.port,
        &[
            "-X",
            "-At",
            "-d",
            &db.name,
            "-c",
            "select 1 as a; select generate_series(1, 5)",
        ],
    )
    .await;
    assert_eq!(out, "1\n1\n2\n3\n4\n5\n");
    let record = &relay.records(1).await[0];
    record.assert_faithful();
    assert_eq!(
        record.results(),
        [(
            "select 1 as a; select generate_series(1, 5)".to_string(),
            Outcome::Ok,
            6
        )]
    );
    relay.clear();

    let script = std::env::temp_dir().join(format!("postern-l7pg-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "create table items (id int primary key, name text);\n\
         insert into items values (1, 'a'), (2, 'b'), (3, 'c');\n\
         -- a comment\n\
         select * from items order by id;\n\
         update items set name = 'z' where id > 1;\n\
         delete from items where id = 3;\n\
         select count(*) from items;\n\
         select nope;\n",
    )
    .unwrap();
    let out = run(
        "psql",
        relay.port,
        &["-X", "-At", "-d", &db.name, "-f", script.to_str().unwrap()],
    )
    .await;
    let _ = std::fs::remove_file(&script);
    assert_eq!(
        out,
        "CREATE TABLE\nINSERT 0 3\n1|a\n2|b\n3|c\nUPDATE 2\nDELETE 1\n2\n"
    );
    let record = &relay.records(1).await[0];
    record.assert_faithful();
    let results = record.results();
    let sql: Vec<&str> = results.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        sql,
        [
            "create table items (id int primary key, name text);",
            "insert into items values (1, 'a'), (2, 'b'), (3, 'c');",
            // psql drops whole-line comments before sending.
            "select * from items order by id;",
            "update items set name = 'z' where id > 1;",
            "delete from items where id = 3;",
            "select count(*) from items;",
            "select nope;",
        ]
    );
    let rows: Vec<u64> = results.iter().map(|r| r.2).collect();
    assert_eq!(rows, [0, 3, 3, 2, 1, 1, 0]);
    assert!(results[..6].iter().all(|r| r.1 == Outcome::Ok));
    assert!(matches!(&results[6].1, Outcome::Error { code, .. } if code == "42703"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_both_ways() {
    let db = Database::create("copy");
    let relay = Relay::start(postgres()).await;
    run(
        "psql",
        relay.port,
        &[
            "-X",
            "-d",
            &db.name,
            "-c",
            "create table t (id int, name text)",
        ],
    )
    .await;

    let rows: String = (1..=2500).map(|i| format!("{i}\tname {i}\n")).collect();
    let file = std::env::temp_dir().join(format!("postern-l7pg-copy-{}.tsv", std::process::id()));
    std::fs::write(&file, &rows).unwrap();
    let copy_in = format!("\\copy t from '{}'", file.display());
    run("psql", relay.port, &["-X", "-d", &db.name, "-c", &copy_in]).await;
    let _ = std::fs::remove_file(&file);
    let out = run(
        "psql",
        relay.port,
        &[
            "-X",
            "-d",
            &db.name,
            "-c",
            "\\copy (select * from t order by id) to stdout",
        ],
    )
    .await;
    assert_eq!(out, rows, "COPY OUT returns what COPY IN sent");

    let records = relay.records(3).await;
    let mut copies = Vec::new();
    for record in &records {
        record.assert_faithful();
        for (sql, outcome, count) in record.results() {
            if sql.to_lowercase().starts_with("copy") {
                copies.push((sql, outcome, count));
            }
        }
    }
    copies.sort_by(|a, b| a.0.cmp(&b.0));
    // What psql's \copy sends, and the rows counted from "COPY n".
    assert_eq!(
        copies,
        [
            (
                "COPY  ( select * from t order by id ) TO STDOUT ".to_string(),
                Outcome::Ok,
                2500
            ),
            ("COPY  t FROM STDIN ".to_string(), Outcome::Ok, 2500),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_simple_extended_and_prepared() {
    let db = Database::create("bench");
    let relay = Relay::start(postgres()).await;
    run("pgbench", relay.port, &["-i", "-s", "1", "-q", &db.name]).await;
    let init = relay.records(1).await;
    init[0].assert_faithful();
    let accounts_copy = init[0]
        .results()
        .into_iter()
        .find(|r| r.0.contains("copy pgbench_accounts"))
        .expect("pgbench -i loads pgbench_accounts with COPY");
    assert_eq!((accounts_copy.1, accounts_copy.2), (Outcome::Ok, 100_000));
    relay.clear();

    const TRANSACTIONS: usize = 4;
    for (mode, protocol) in [
        ("simple", Protocol::Simple),
        ("extended", Protocol::Extended),
        ("prepared", Protocol::Extended),
    ] {
        let t = TRANSACTIONS.to_string();
        let out = run(
            "pgbench",
            relay.port,
            &["-n", "-M", mode, "-c", "2", "-t", &t, &db.name],
        )
        .await;
        assert!(
            out.contains(&format!(
                "number of transactions actually processed: {}",
                2 * TRANSACTIONS
            )),
            "{out}"
        );
        // pgbench opens one connection to look at the tables, then one per client.
        let records = relay.records(3).await;
        let mut updates = 0;
        for record in &records {
            record.assert_faithful();
            for (sql, outcome, rows) in record.results() {
                assert_eq!(outcome, Outcome::Ok, "{mode}: {sql}");
                if sql.starts_with("UPDATE pgbench_accounts") {
                    updates += 1;
                    assert_eq!(rows, 1, "{mode}: one account updated");
                }
                if sql.starts_with("SELECT abalance") {
                    assert_eq!(rows, 1, "{mode}: one balance read");
                }
            }
            for (sql, kind, name) in record.statements() {
                if !sql.starts_with("UPDATE pgbench_accounts") {
                    continue;
                }
                assert_eq!(kind, protocol, "{mode}");
                // Prepared mode executes a named statement prepared once:
                // Execute is mapped back to its text through the name.
                match mode {
                    "prepared" => assert!(name.is_some_and(|n| !n.is_empty()), "{mode}"),
                    "extended" => assert_eq!(name.as_deref(), Some(""), "{mode}"),
                    _ => assert_eq!(name, None),
                }
            }
        }
        assert_eq!(
            updates,
            2 * TRANSACTIONS,
            "{mode}: every transaction's UPDATE was seen"
        );
        relay.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_requested_by_the_client_passes_through() {
    let relay = Relay::start(postgres()).await;
    let output = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            &relay.port.to_string(),
        ])
        .args(["-U", "postgres", "-d", "postgres", "-c", "select 'through'"])
        .env("PGSSLMODE", "prefer")
        .output()
        .await
        .expect("psql is installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "through\n");
    let record = &relay.records(1).await[0];
    assert_eq!(record.error, None);
    assert_eq!(record.from_client, record.to_server);
    assert_eq!(record.from_server, record.to_client);
    use postern_l7_pg::session::{Event, Phase};
    // Either the server has TLS on (the stream became opaque) or it refused
    // and the statement was seen in clear.
    if record
        .events
        .contains(&Event::EncryptionAnswered { accepted: true })
    {
        assert_eq!(record.phase, Some(Phase::Encrypted));
        assert!(record.statements().is_empty());
    } else {
        assert_eq!(record.statements().len(), 1);
    }
}
