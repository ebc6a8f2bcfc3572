//! Many tasks racing on the same objects, as concurrent admins and replicas
//! do: exactly one create of a name wins, deletes are counted once, and no
//! concurrent session end or audit record is lost.

use futures::future::join_all;
use postern_state::*;

use super::contract::{Shared, session, tcp};

const TASKS: usize = 16;

pub async fn run_all(store: Shared) {
    creates_of_one_connection_name_have_one_winner(store.clone()).await;
    creates_of_one_agent_and_token_have_one_winner(store.clone()).await;
    deletes_of_one_connection_count_once(store.clone()).await;
    concurrent_session_ends_and_audit_records_are_all_kept(store).await;
}

/// Runs `TASKS` copies of `f(i)` at once on the multi-threaded runtime.
async fn race<T, F, Fut>(store: &Shared, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Shared, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks = (0..TASKS).map(|i| {
        let barrier = barrier.clone();
        let work = f(store.clone(), i);
        tokio::spawn(async move {
            barrier.wait().await;
            work.await
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task panicked"))
        .collect()
}

fn winner_of<T: std::fmt::Debug>(results: &[StoreResult<T>], kind: &str) -> usize {
    let winners: Vec<usize> = (0..results.len()).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{kind}: {results:?}");
    for (i, result) in results.iter().enumerate() {
        if i != winners[0] {
            let err = result.as_ref().err().unwrap();
            assert!(
                matches!(err, StoreError::AlreadyExists { .. }),
                "{kind} #{i}: {err:?}"
            );
        }
    }
    winners[0]
}

async fn creates_of_one_connection_name_have_one_winner(store: Shared) {
    for round in 0..3 {
        let name = format!("contested-{round}");
        let contender = |i: usize| Connection {
            target: format!("10.0.0.{i}:5432"),
            ..tcp(&name)
        };
        let results = race(&store, |store, i| {
            let c = contender(i);
            async move { store.create_connection(&c).await }
        })
        .await;
        let winner = winner_of(&results, "create_connection");
        // What is stored is the winner's, whole.
        assert_eq!(
            store.connection(&name).await.unwrap(),
            Some(contender(winner))
        );
    }
    assert_eq!(store.connections().await.unwrap().len(), 3);
}

async fn creates_of_one_agent_and_token_have_one_winner(store: Shared) {
    // Same name, different token hashes: one agent, and only its token works.
    let results = race(&store, |store, i| async move {
        let agent = Agent {
            name: "racer".into(),
            token_hash: format!("{i:064x}"),
            created_at_ms: i as i64,
        };
        store.create_agent(&agent).await
    })
    .await;
    let winner = winner_of(&results, "create_agent");
    for i in 0..TASKS {
        let found = store
            .agent_by_token_hash(&format!("{i:064x}"))
            .await
            .unwrap();
        assert_eq!(found.is_some(), i == winner, "token {i}: {found:?}");
    }
    assert_eq!(store.agents().await.unwrap().len(), 1);

    // Same user token hash from many admins: one token.
    let results = race(&store, |store, i| async move {
        let token = UserToken {
            user: format!("user-{i}"),
            token_hash: "f".repeat(64),
            role: Role::User,
            created_at_ms: i as i64,
            groups: Vec::new(),
        };
        store.create_user_token(&token).await
    })
    .await;
    let winner = winner_of(&results, "create_user_token");
    let stored = store
        .user_by_token_hash(&"f".repeat(64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.user, format!("user-{winner}"));

    // Concurrent deletes of the agent: one says it deleted it.
    let deleted = race(&store, |store, _| async move {
        store.delete_agent("racer").await.unwrap()
    })
    .await;
    assert_eq!(deleted.iter().filter(|d| **d).count(), 1, "{deleted:?}");
    assert_eq!(
        store
            .agent_by_token_hash(&format!("{winner:064x}"))
            .await
            .unwrap(),
        None
    );
}

async fn deletes_of_one_connection_count_once(store: Shared) {
    for round in 0..3 {
        let name = format!("contested-{round}");
        let deleted = race(&store, |store, _| {
            let name = name.clone();
            async move { store.delete_connection(&name).await.unwrap() }
        })
        .await;
        assert_eq!(
            deleted.iter().filter(|d| **d).count(),
            1,
            "{name}: {deleted:?}"
        );
    }
    assert_eq!(store.connections().await.unwrap(), vec![]);
}

async fn concurrent_session_ends_and_audit_records_are_all_kept(store: Shared) {
    const SESSIONS: usize = 40;
    for i in 0..SESSIONS {
        let record = session(&format!("race-{i:02}"), 10_000 + i as i64);
        store.record_session_start(&record).await.unwrap();
    }
    let ends = race(&store, |store, task| async move {
        // Each task ends its share of the sessions and audits each end.
        for i in (task..SESSIONS).step_by(TASKS) {
            let id = format!("race-{i:02}");
            store
                .record_session_end(&SessionEnd {
                    id: id.clone(),
                    ended_at_ms: 20_000 + i as i64,
                    bytes_up: 1_000 + i as u64,
                    bytes_down: 2_000 + i as u64,
                    outcome: format!("outcome-{i}"),
                })
                .await?;
            store
                .record(&AuditEvent {
                    at_ms: 20_000,
                    actor: "system".into(),
                    action: "session.end".into(),
                    target: "orders".into(),
                    outcome: "ok".into(),
                    detail: id.clone(),
                    session_id: Some(id),
                })
                .await?;
        }
        StoreResult::Ok(())
    })
    .await;
    assert!(ends.iter().all(|r| r.is_ok()), "{ends:?}");

    let sessions = store.sessions(1000).await.unwrap();
    for i in 0..SESSIONS {
        let id = format!("race-{i:02}");
        let s = sessions
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("{id} lost"));
        assert_eq!(
            (
                s.ended_at_ms,
                s.bytes_up,
                s.bytes_down,
                s.outcome.as_deref()
            ),
            (
                Some(20_000 + i as i64),
                1_000 + i as u64,
                2_000 + i as u64,
                Some(&*format!("outcome-{i}"))
            ),
            "{id}"
        );
    }
    let query = AuditQuery {
        action_prefix: Some("session.end".into()),
        limit: 1000,
        ..AuditQuery::default()
    };
    let mut audited: Vec<String> = store
        .events(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect();
    audited.sort();
    let expected: Vec<String> = (0..SESSIONS).map(|i| format!("race-{i:02}")).collect();
    assert_eq!(audited, expected);
    let one = AuditQuery {
        session_id: Some("race-07".into()),
        limit: 10,
        ..AuditQuery::default()
    };
    assert_eq!(store.events(&one).await.unwrap().len(), 1);
}
