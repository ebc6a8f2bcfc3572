//! The agent's Postgres engine against the real server with real clients
//! (psql, tokio-postgres): the person never gives a database password, every
//! statement is audited, guardrails refuse what the policy forbids and the
//! session goes on, masked values never reach the client.

mod support;

use postern_testkit::postgres::Database;
use support::Engine;

fn direct_psql(db: &Database, sql: &str) -> String {
    db.sql(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_works_as_the_agents_login_and_every_statement_is_audited() {
    let db = Database::create("agent_pg_basic");
    db.sql("create table items (id int primary key, name text); insert into items select g, 'item ' || g from generate_series(1, 500) g");
    let engine = Engine::for_database(&db, "").await;

    // The person asked for user alice; the database sees the agent's login
    // and, in application_name, who is behind it.
    let (ok, out, err) = engine
        .psql(
            &db.name,
            &[
                "-c",
                "select current_user, current_setting('application_name')",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "postgres|psql (postern:alice)");

    // A script, then \copy both ways: the same results as a direct connection.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        "select count(*) from items;\nselect name from items where id = 42;\nupdate items set name = 'renamed' where id = 7;\n",
    )
    .unwrap();
    let (ok, out, err) = engine
        .psql(&db.name, &["-f", script.path().to_str().unwrap()])
        .await;
    assert!(ok, "{err}");
    assert_eq!(out, "500\nitem 42\nUPDATE 1\n");
    let copied = tempfile::NamedTempFile::new().unwrap();
    let path = copied.path().to_str().unwrap().to_owned();
    let (ok, _, err) = engine
        .psql(&db.name, &["-c", &format!("\\copy items to '{path}'")])
        .await;
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 500);
    db.sql("create table items_copy (id int, name text)");
    let (ok, _, err) = engine
        .psql(
            &db.name,
            &["-c", &format!("\\copy items_copy from '{path}'")],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(
        direct_psql(
            &db,
            "select count(*), sum(id) from items_copy except select count(*), sum(id) from items"
        ),
        ""
    );

    let audits = engine.audits(6).await;
    let statements: Vec<(&str, &str, u64)> = audits
        .iter()
        .map(|a| (a.statement.as_str(), a.outcome.as_str(), a.rows))
        .collect();
    assert!(
        statements.contains(&("select count(*) from items;", "ok", 1)),
        "{statements:?}"
    );
    assert!(
        statements.contains(&("update items set name = 'renamed' where id = 7;", "ok", 1)),
        "{statements:?}"
    );
    assert!(
        statements.iter().any(
            |(sql, outcome, rows)| sql.starts_with("COPY  items FROM STDIN")
                || (sql.contains("items_copy") && *outcome == "ok" && *rows == 500)
        ),
        "{statements:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardrails_refuse_with_42501_and_the_session_goes_on() {
    let db = Database::create("agent_pg_guard");
    db.sql("create table accounts (id int, owner text); insert into accounts values (1, 'ann'), (2, 'bob')");
    let policy =
        r#"{"guardrails": {"deny_tables": ["secrets"], "deny_kinds": ["drop", "truncate"]}}"#;
    let engine = Engine::for_database(&db, policy).await;
    db.sql("create table secrets (v text); insert into secrets values ('s3')");

    // One session: every refusal leaves it usable.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        "DROP TABLE accounts;\n\
         /* harmless */ dRoP table \"accounts\";\n\
         select 1; drop table accounts;\n\
         delete from accounts;\n\
         select * from SECRETS;\n\
         select * from public.\"secrets\";\n\
         truncate accounts;\n\
         select count(*) from accounts;\n",
    )
    .unwrap();
    let (_, out, err) = engine
        .psql(&db.name, &["-f", script.path().to_str().unwrap()])
        .await;
    // psql sends `select 1; drop ...` on one line as two queries.
    assert_eq!(out, "1\n2\n", "{err}");
    assert_eq!(err.matches("statement blocked by rule").count(), 7, "{err}");
    assert!(
        err.contains("deny_kind") && err.contains("require_where") && err.contains("deny_table"),
        "{err}"
    );
    assert_eq!(db.sql("select count(*) from accounts").trim(), "2");
    // One Query with several statements: refused whole, nothing of it runs.
    let (ok, _, err) = engine
        .psql(
            &db.name,
            &[
                "-c",
                "insert into accounts values (3, 'x'); drop table accounts",
            ],
        )
        .await;
    assert!(!ok && err.contains("deny_kind:drop"), "{err}");
    assert_eq!(db.sql("select count(*) from accounts").trim(), "2");

    // The extended protocol: a prepared statement is checked at Parse.
    let client = engine.client(&db.name).await;
    let refused = client
        .prepare("select v from secrets where v = $1")
        .await
        .unwrap_err();
    let code = refused.as_db_error().map(|e| e.code().code().to_owned());
    assert_eq!(code.as_deref(), Some("42501"), "{refused:?}");
    let rows = client
        .query("select owner from accounts where id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, &str>(0), "ann");

    let audits = engine.audits(12).await;
    let blocked: Vec<&str> = audits
        .iter()
        .filter(|a| a.outcome == "blocked")
        .map(|a| a.rule.as_str())
        .collect();
    assert_eq!(blocked.len(), 9, "{audits:?}");
    assert!(audits.iter().any(
        |a| a.statement == "select owner from accounts where id = $1"
            && a.outcome == "ok"
            && a.parameters == 1
            && a.parameter_values.is_empty()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_is_enforced_by_the_parse_and_by_the_database() {
    let db = Database::create("agent_pg_ro");
    db.sql("create table t (v int); create function sneaky() returns int language sql as 'insert into t values (1) returning v'");
    let engine = Engine::for_database(&db, r#"{"guardrails": {"read_only": true}}"#).await;
    for sql in [
        "insert into t values (1)",
        "with x as (delete from t returning *) select * from x",
        "select set_config('default_transaction_read_only', 'off', false)",
        "begin read write",
        "create table u (v int)",
    ] {
        let (ok, _, err) = engine.psql(&db.name, &["-c", sql]).await;
        assert!(
            !ok && err.contains("statement blocked by rule"),
            "{sql}: {err}"
        );
    }
    // What no parse can see, the database itself refuses.
    let (ok, _, err) = engine.psql(&db.name, &["-c", "select sneaky()"]).await;
    assert!(!ok && err.contains("read-only transaction"), "{err}");
    assert_eq!(db.sql("select count(*) from t").trim(), "0");
    let (ok, out, err) = engine
        .psql(&db.name, &["-c", "select count(*) from t"])
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masking_by_column_and_by_detector_whatever_the_alias_or_protocol() {
    let db = Database::create("agent_pg_mask");
    db.sql(
        "create table users (id int, email text, card text, note text, salary int);\
         insert into users values (1, 'ann@example.com', '4111 1111 1111 1111', 'call +44 20 7946 0958', 5000)",
    );
    let policy = r#"{"masking": {"columns": [{"column": "users.email"}, {"column": "salary"}], "detectors": ["card_number", "phone"]}}"#;
    let engine = Engine::for_database(&db, policy).await;
    let (ok, out, err) = engine
        .psql(
            &db.name,
            &[
                "-c",
                "select id, email as contact, card, note, salary from users",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1|****|************1111|call **********58|****");
    // Expressions over a protected column are masked whole; so is every
    // computed column of a statement that names one (fail closed).
    let (ok, out, err) = engine
        .psql(
            &db.name,
            &["-c", "select upper(email), length(card) from users"],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "****|****");
    let (ok, out, err) = engine
        .psql(&db.name, &["-c", "select length(card) from users"])
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "19");
    // COPY TO STDOUT would dodge masking: refused.
    let (ok, _, err) = engine.psql(&db.name, &["-c", "copy users to stdout"]).await;
    assert!(!ok && err.contains("masking_copy"), "{err}");

    // tokio-postgres asks for binary results: text columns are still masked,
    // a masked int becomes NULL (a binary value cannot be half masked).
    let client = engine.client(&db.name).await;
    let row = client
        .query_one(
            "select email e, card, salary from users where id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "****");
    assert_eq!(row.get::<_, &str>(1), "************1111");
    assert_eq!(row.get::<_, Option<i32>>(2), None);

    let audits = engine.audits(3).await;
    let masked = audits
        .iter()
        .find(|a| a.statement.starts_with("select id, email as contact"))
        .expect("the select is audited");
    assert_eq!(
        masked.masked_columns,
        vec!["card", "contact", "note", "salary"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_detector_masks_what_it_finds_and_only_that() {
    let db = Database::create("agent_pg_detect");
    db.sql(
        "create table notes (id int, body text);\
         insert into notes values\
         (1, 'mail Ann.Lee+x@mail.example.org now'),\
         (2, 'card 4111-1111-1111-1111, not 4111-1111-1111-1112'),\
         (3, 'ring 415-555-0132'),\
         (4, 'ssn 123-45-6789'),\
         (5, 'nino AB 12 34 56 C'),\
         (6, 'nir 2 84 05 73 108 058 04, not 2 84 05 73 108 058 05'),\
         (7, 'nothing to see: order 12345')",
    );
    let policy = r#"{"masking": {"detectors": ["email", "card_number", "phone", "us_ssn", "uk_nino", "fr_nir"]}}"#;
    let engine = Engine::for_database(&db, policy).await;
    let (ok, out, err) = engine
        .psql(&db.name, &["-c", "select body from notes order by id"])
        .await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "mail A***@mail.example.org now");
    assert_eq!(
        lines[1], "card ************1111, not 4111-1111-1111-1112",
        "Luhn decides"
    );
    assert!(
        lines[2].starts_with("ring ") && lines[2].ends_with("32") && !lines[2].contains("555"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "ssn ***-**-6789");
    assert_eq!(lines[4], "nino *********");
    assert_eq!(
        lines[5], "nir *************, not 2 84 05 73 108 058 05",
        "the key decides"
    );
    assert_eq!(lines[6], "nothing to see: order 12345");
    let audits = engine.audits(1).await;
    assert_eq!(audits[0].masked_columns, vec!["body"]);
    assert_eq!(audits[0].rows, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_database_through_the_agents_own_key() {
    let db = Database::create("agent_pg_cancel");
    let engine = Engine::for_database(&db, "").await;
    let client = engine.client(&db.name).await;
    let token = client.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(60)").await });
    // Cancel once the query is running.
    postern_testkit::wait_for(|| {
        let active = db.sql(
            "select count(*) from pg_stat_activity where query = 'select pg_sleep(60)' and state = 'active'",
        );
        async move { (active.trim() == "1").then_some(()) }
    })
    .await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let error = sleeper.await.unwrap().unwrap_err();
    assert_eq!(
        error.as_db_error().map(|e| e.code().code()),
        Some("57014"),
        "{error:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // The session's key is forgotten at its end.
    let keys = engine.config.cancel_keys.clone();
    postern_testkit::wait_for(|| {
        let empty = keys.is_empty();
        async move { empty.then_some(()) }
    })
    .await;
}
