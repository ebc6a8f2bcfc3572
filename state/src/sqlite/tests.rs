//! The SQLite store against a private in-memory or temporary database.

use super::*;

fn connection(name: &str) -> Connection {
    Connection::tcp(name, "127.0.0.1:5432", "agent-1", 1)
}

fn postgres_connection(name: &str) -> Connection {
    Connection {
        kind: ConnectionKind::Postgres,
        database: Some("orders".into()),
        credential: Some("file:orders-ro".into()),
        tls: Some("verify-full".into()),
        policy: Some(serde_json::json!({
            "guardrails": {"read_only": true, "deny_tables": ["payroll.*"]},
            "masking": {"detectors": ["email"]}
        })),
        ..Connection::tcp(name, "orders.internal:5432", "agent-1", 2)
    }
}

#[tokio::test]
async fn postgres_connections_keep_their_layer7_settings() {
    let store = SqliteStore::in_memory().await.unwrap();
    store
        .create_connection(&postgres_connection("orders"))
        .await
        .unwrap();
    store.create_connection(&connection("echo")).await.unwrap();
    let read = store.connection("orders").await.unwrap().unwrap();
    assert_eq!(read, postgres_connection("orders"));
    assert_eq!(
        read.policy.unwrap()["guardrails"]["deny_tables"][0],
        "payroll.*"
    );
    // A postgres connection with no settings beyond the required credential.
    let bare = Connection {
        kind: ConnectionKind::Postgres,
        credential: Some("env:ORDERS".into()),
        ..Connection::tcp("bare", "db:5432", "agent-1", 3)
    };
    store.create_connection(&bare).await.unwrap();
    assert_eq!(
        store.connections().await.unwrap(),
        vec![bare, connection("echo"), postgres_connection("orders")]
    );
}

#[tokio::test]
async fn connections_made_before_layer7_settings_read_back_as_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postern.db");
    {
        // A database as the first two migrations left it, with one connection.
        let pool = SqlitePool::connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::raw_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        for (index, migration) in MIGRATIONS[..2].iter().enumerate() {
            sqlx::raw_sql(*migration).execute(&pool).await.unwrap();
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(index as i64 + 1)
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::query(
            "INSERT INTO connections (name, kind, target, agent, created_at_ms) \
             VALUES ('legacy', 'tcp', '10.0.0.5:22', 'agent-1', 7)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.connection("legacy").await.unwrap(),
        Some(Connection::tcp("legacy", "10.0.0.5:22", "agent-1", 7))
    );
    store
        .create_connection(&postgres_connection("orders"))
        .await
        .unwrap();
    assert_eq!(
        store.connection("orders").await.unwrap(),
        Some(postgres_connection("orders"))
    );
}

#[tokio::test]
async fn connections_crud_and_duplicates() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.create_connection(&connection("pg")).await.unwrap();
    let err = store
        .create_connection(&connection("pg"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                kind: "connection",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        store.connection("pg").await.unwrap(),
        Some(connection("pg"))
    );
    assert_eq!(store.connections().await.unwrap().len(), 1);
    assert!(store.delete_connection("pg").await.unwrap());
    assert!(!store.delete_connection("pg").await.unwrap());
    assert_eq!(store.connection("pg").await.unwrap(), None);
    let err = store
        .create_connection(&connection("bad name"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("connection name"), "{err}");
}

#[tokio::test]
async fn agents_and_tokens_are_found_by_hash_only() {
    let store = SqliteStore::in_memory().await.unwrap();
    let agent = Agent {
        name: "a1".into(),
        token_hash: "h1".into(),
        created_at_ms: 1,
    };
    store.create_agent(&agent).await.unwrap();
    assert!(store.create_agent(&agent).await.is_err());
    assert_eq!(store.agent_by_token_hash("h1").await.unwrap(), Some(agent));
    assert_eq!(store.agent_by_token_hash("h2").await.unwrap(), None);
    let token = UserToken {
        user: "alice".into(),
        token_hash: "u1".into(),
        role: Role::Admin,
        created_at_ms: 2,
        groups: vec!["ops".into()],
    };
    store.create_user_token(&token).await.unwrap();
    assert_eq!(store.user_by_token_hash("u1").await.unwrap(), Some(token));
    assert_eq!(store.user_tokens().await.unwrap().len(), 1);
    assert!(store.delete_agent("a1").await.unwrap());
}

#[tokio::test]
async fn sessions_and_audit_are_recorded() {
    let store = SqliteStore::in_memory().await.unwrap();
    let record = SessionRecord {
        id: "s1".into(),
        user: "alice".into(),
        connection: "pg".into(),
        agent: "a1".into(),
        replica: "r1".into(),
        started_at_ms: 10,
        ended_at_ms: None,
        bytes_up: 0,
        bytes_down: 0,
        outcome: None,
    };
    store.record_session_start(&record).await.unwrap();
    store
        .record_session_end(&SessionEnd {
            id: "s1".into(),
            ended_at_ms: 20,
            bytes_up: 5,
            bytes_down: 7,
            outcome: "ok".into(),
        })
        .await
        .unwrap();
    let sessions = store.sessions(10).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (
            sessions[0].bytes_up,
            sessions[0].bytes_down,
            sessions[0].outcome.as_deref()
        ),
        (5, 7, Some("ok"))
    );
    let event = AuditEvent {
        at_ms: 1,
        actor: "alice".into(),
        action: "connection.create".into(),
        target: "pg".into(),
        outcome: "ok".into(),
        detail: String::new(),
        session_id: None,
    };
    store.record(&event).await.unwrap();
    let all = |limit| AuditQuery {
        limit,
        ..AuditQuery::default()
    };
    assert_eq!(store.events(&all(5)).await.unwrap(), vec![event.clone()]);

    let statement = |actor: &str, session: &str, n: i64| AuditEvent {
        at_ms: n,
        actor: actor.into(),
        action: "sql.statement".into(),
        target: "pg".into(),
        outcome: "ok".into(),
        detail: format!("statement {n}"),
        session_id: Some(session.into()),
    };
    for (n, (actor, session)) in [
        ("alice", "s1"),
        ("bob", "s2"),
        ("alice", "s1"),
        ("alice", "s3"),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .record(&statement(actor, session, n as i64 + 2))
            .await
            .unwrap();
    }
    let details =
        |events: Vec<AuditEvent>| -> Vec<String> { events.into_iter().map(|e| e.detail).collect() };
    let cases: Vec<(AuditQuery, Vec<&str>)> = vec![
        (
            AuditQuery {
                session_id: Some("s1".into()),
                limit: 10,
                ..AuditQuery::default()
            },
            vec!["statement 4", "statement 2"],
        ),
        (
            AuditQuery {
                actor: Some("alice".into()),
                action_prefix: Some("sql.".into()),
                limit: 10,
                ..AuditQuery::default()
            },
            vec!["statement 5", "statement 4", "statement 2"],
        ),
        (
            AuditQuery {
                actor: Some("alice".into()),
                limit: 10,
                ..AuditQuery::default()
            },
            vec!["statement 5", "statement 4", "statement 2", ""],
        ),
        (
            AuditQuery {
                action_prefix: Some("sql_".into()),
                limit: 10,
                ..AuditQuery::default()
            },
            vec![],
        ),
        (
            AuditQuery {
                target: Some("pg".into()),
                limit: 2,
                ..AuditQuery::default()
            },
            vec!["statement 5", "statement 4"],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            details(store.events(&query).await.unwrap()),
            expected,
            "{query:?}"
        );
    }
}

#[tokio::test]
async fn a_file_database_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("postern.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create_connection(&connection("pg")).await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.connections().await.unwrap(), vec![connection("pg")]);
}

#[tokio::test]
async fn a_batch_of_audit_events_is_written_whole_and_in_order() {
    let store = SqliteStore::in_memory().await.unwrap();
    let events: Vec<AuditEvent> = (0..300)
        .map(|i| AuditEvent {
            at_ms: 1000 + i,
            actor: "alice".into(),
            action: "sql.statement".into(),
            target: "pg".into(),
            outcome: "ok".into(),
            detail: format!("{{\"n\": {i}}}"),
            session_id: Some("s1".into()),
        })
        .collect();
    store.record_batch(&events).await.unwrap();
    let read = store
        .events(&AuditQuery {
            session_id: Some("s1".into()),
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(read.len(), 300);
    // Newest first: the batch's order is kept.
    let details: Vec<&str> = read.iter().rev().map(|e| e.detail.as_str()).collect();
    let expected: Vec<String> = (0..300).map(|i| format!("{{\"n\": {i}}}")).collect();
    assert_eq!(details, expected);
}
